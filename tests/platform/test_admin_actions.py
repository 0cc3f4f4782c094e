"""Admin actions: start / stop / kill / reconcile per bot, the tenant kill switch; scoped by tenant
and role; errors shown as messages, nothing changed."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from bots.models import Bot, BotStatus
from tests.conftest import PASSWORD, TenantWorld

CHANGELIST = "admin:bots_bot_changelist"


def run_action(client: Any, action: str, ids: list[int]) -> Any:
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": ids}, follow=True)


def test_operator_starts_and_stops_own_bot(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    response = run_action(client, "start_bots", [world_a.bot.pk])
    assert "Start selected bots: 1 bot(s)." in response.content.decode()
    bot = Bot.objects.get(pk=world_a.bot.pk)
    assert bot.status == BotStatus.STARTING and bot.epoch == 1
    run_action(client, "stop_bots", [bot.pk])
    bot.refresh_from_db()
    assert bot.status == BotStatus.STOPPING and bot.epoch == 2


def test_action_on_foreign_bot_changes_nothing(client: Any, world_a: TenantWorld, world_b: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    run_action(client, "start_bots", [world_b.bot.pk])
    assert Bot.objects.get(pk=world_b.bot.pk).status == BotStatus.STOPPED


def test_viewer_has_no_lifecycle_actions(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    page = client.get(reverse(CHANGELIST))
    assert "start_bots" not in page.content.decode()
    run_action(client, "start_bots", [world_a.bot.pk])
    assert Bot.objects.get(pk=world_a.bot.pk).status == BotStatus.STOPPED


def test_start_refused_with_a_clear_message_when_killed(client: Any, world_a: TenantWorld) -> None:
    Bot.objects.filter(pk=world_a.bot.pk).update(kill_switch_engaged=True)
    client.login(username="a-operator", password=PASSWORD)
    response = run_action(client, "start_bots", [world_a.bot.pk])
    assert "kill switch is engaged" in response.content.decode()
    assert Bot.objects.get(pk=world_a.bot.pk).status == BotStatus.STOPPED


def test_tenant_kill_switch_action_is_owner_only(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    page = client.get(reverse("admin:tenancy_tenant_changelist"))
    assert "engage_kill_switch" not in page.content.decode()
    client.login(username="a-owner", password=PASSWORD)
    page = client.get(reverse("admin:tenancy_tenant_changelist"))
    assert "engage_kill_switch" in page.content.decode()


def test_releasing_the_kill_switch_is_audited(client: Any, world_a: TenantWorld) -> None:
    from risk.models import RiskEvent

    Bot.objects.filter(pk=world_a.bot.pk).update(kill_switch_engaged=True)
    client.login(username="a-operator", password=PASSWORD)
    run_action(client, "release_kill_switch", [world_a.bot.pk])
    bot = Bot.objects.get(pk=world_a.bot.pk)
    assert not bot.kill_switch_engaged and bot.status == BotStatus.STOPPED
    event = RiskEvent.objects.get(bot=bot, event_type="KILL_SWITCH_RELEASED")
    assert "a-operator" in event.message


def test_bot_change_page_lists_the_bots_recent_orders(client: Any, world_a: TenantWorld) -> None:
    from decimal import Decimal

    from bots.models import Order
    from tests.conftest import make_bot

    other = make_bot(world_a.tenant, world_a.account, name="other")
    for i in range(60):  # newer orders of another bot must not push this bot's orders out
        Order.objects.create(tenant=world_a.tenant, bot=other, exchange_account=world_a.account,
                             trading_pair="BTC/USDT", client_order_id=f"mm-x-{i}", side="buy",
                             price=Decimal("1"), amount=Decimal("1"))
    mine = Order.objects.create(tenant=world_a.tenant, bot=world_a.bot, exchange_account=world_a.account,
                                trading_pair="BTC/USDT", client_order_id="mm-mine-1", side="sell",
                                price=Decimal("2"), amount=Decimal("1"))
    Order.objects.filter(pk=mine.pk).update(created_at=mine.created_at.replace(year=2020))
    client.login(username="a-viewer", password=PASSWORD)
    html = client.get(reverse("admin:bots_bot_change", args=[world_a.bot.pk])).content.decode()
    assert "mm-mine-1" in html and "mm-x-1" not in html
