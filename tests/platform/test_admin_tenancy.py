"""Tenant isolation in the admin: list, change, delete, history, FK choices and actions.

For every registered tenant-owned admin, a member of tenant A sees A's rows, never B's; B's
objects answer 404 on every object URL; form choices list only A's objects; an action posted
with B's ids changes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule, DeadLetter
from bots.models import (
    Bot,
    BotEvent,
    Fill,
    Hedge,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    PerformanceSnapshot,
    RebalanceRun,
)
from exchanges.models import ExchangeAccount
from liquidity.models import ClientAccess, LiquidityStats, Sla
from mmplatform.tenancy.models import Membership, Tenant
from risk.models import RiskEvent
from tests.conftest import PASSWORD, TenantWorld, make_user


def populate(world: TenantWorld) -> dict[type, Any]:
    """One row of every tenant-owned model for the world's tenant."""
    t, bot, account = world.tenant, world.bot, world.account
    position = LiquidityPosition.objects.create(tenant=t, bot=bot, exchange_account=account, trading_pair="BTC/USDT")
    order = Order.objects.create(
        tenant=t, bot=bot, position=position, exchange_account=account, trading_pair="BTC/USDT",
        client_order_id=f"mm-{t.slug}-1", side="buy", price=Decimal("100"), amount=Decimal("1"),
    )
    now = timezone.now()
    fill = Fill.objects.create(
        tenant=t, bot=bot, order=order, exchange_account=account, exchange_trade_id=f"T-{t.slug}",
        trading_pair="BTC/USDT", side="buy", price=Decimal("100"), amount=Decimal("1"), executed_at=now,
    )
    channel = AlertChannel.objects.create(tenant=t, name=f"{t.slug}-mail", kind="email",
                                          emails=f"desk@{t.slug}.example")
    rule = AlertRule.objects.create(tenant=t, name=f"{t.slug}-rule", kinds=["kill_switch"], bot=bot)
    rule.channels.add(channel)
    alert = Alert.objects.create(tenant=t, rule=rule, bot=bot, kind="kill_switch", severity="critical",
                                 title="Kill switch engaged", dedup_key="k", event_type="KillSwitchEngaged",
                                 occurred_at=now, last_at=now)
    delivery = AlertDelivery.objects.create(tenant=t, alert=alert, channel=channel, status="dead", attempts=6)
    return {
        AlertChannel: channel,
        AlertRule: rule,
        Alert: alert,
        AlertDelivery: delivery,
        DeadLetter: DeadLetter.objects.get(pk=delivery.pk),
        Tenant: t,
        Membership: Membership.objects.get(tenant=t, user=world.owner),
        ExchangeAccount: account,
        Bot: bot,
        LiquidityPosition: position,
        Order: order,
        Fill: fill,
        Hedge: Hedge.objects.create(tenant=t, bot=bot, fill=fill, maker_account=account, hedge_account=account,
                                    trading_pair="BTC/USDT", need_base=Decimal("-1"), reference_price=Decimal("100")),
        BotEvent: BotEvent.objects.create(tenant=t, bot=bot, event_type="OrdersPlaced", payload={"n": 1}),
        RiskEvent: RiskEvent.objects.create(tenant=t, bot=bot, event_type="DAILY_LOSS_LIMIT", message="m"),
        PerformanceSnapshot: PerformanceSnapshot.objects.create(tenant=t, bot=bot, taken_at=now),
        InventorySnapshot: InventorySnapshot.objects.create(tenant=t, bot=bot, trading_pair="BTC/USDT", taken_at=now),
        RebalanceRun: RebalanceRun.objects.create(tenant=t, bot=bot, slot_start=now),
        Sla: Sla.objects.create(tenant=t, bot=bot, name=f"sla-{t.slug}", max_spread_bps=Decimal("50")),
        LiquidityStats: LiquidityStats.objects.create(
            tenant=t, bot=bot, exchange_account=account, trading_pair="BTC/USDT", resolution="minute",
            bucket_start=now.replace(second=0, microsecond=0), duration_ms=60_000),
        ClientAccess: ClientAccess.objects.create(tenant=t, bot=bot, user=make_user(f"{t.slug}-client", staff=False)),
    }


def admin_url(obj: Any, view: str) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])


def changelist_url(model: type) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.fixture
def rows(world_a: TenantWorld, world_b: TenantWorld) -> tuple[dict, dict]:
    return populate(world_a), populate(world_b)


TENANT_MODELS = [m for m in admin.site._registry
                 if m._meta.app_label in ("tenancy", "exchanges", "bots", "risk", "alerts", "liquidity")]


def test_every_tenant_model_is_covered(rows: tuple[dict, dict]) -> None:
    assert set(TENANT_MODELS) == set(rows[0]), "a new admin model needs a row in populate()"


@pytest.mark.parametrize("model", TENANT_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("role", ["owner", "operator", "viewer"])
def test_member_sees_own_rows_only_and_foreign_objects_are_404(
    client: Any, world_a: TenantWorld, rows: tuple[dict, dict], model: type, role: str
) -> None:
    own, foreign = rows[0][model], rows[1][model]
    client.login(username=f"a-{role}", password=PASSWORD)

    listing = client.get(changelist_url(model))
    assert listing.status_code == 200
    shown = {obj.pk for obj in listing.context["cl"].result_list}
    assert own.pk in shown
    assert foreign.pk not in shown

    for view in ("change", "delete", "history"):
        assert client.get(admin_url(foreign, view)).status_code == 404, view
        assert client.post(admin_url(foreign, view), {"post": "yes"}).status_code == 404, view
    assert model.objects.filter(pk=foreign.pk).exists(), "a foreign object must survive a delete attempt"
    assert client.get(admin_url(own, "change")).status_code == 200


def test_superuser_sees_every_tenant(client: Any, superuser: Any, rows: tuple[dict, dict]) -> None:
    client.force_login(superuser)
    listing = client.get(changelist_url(Bot))
    assert {o.pk for o in listing.context["cl"].result_list} == {rows[0][Bot].pk, rows[1][Bot].pk}


def test_fk_choices_are_narrowed_to_own_tenant(client: Any, world_a: TenantWorld, world_b: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    form = client.get(reverse("admin:bots_bot_add")).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [world_a.tenant]
    assert list(form.fields["exchange_accounts"].queryset) == [world_a.account]

    form = client.get(reverse("admin:exchanges_exchangeaccount_add")).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [world_a.tenant]


def test_posting_a_foreign_fk_is_rejected_and_nothing_saved(
    client: Any, world_a: TenantWorld, world_b: TenantWorld
) -> None:
    client.login(username="a-owner", password=PASSWORD)
    before = Bot.objects.count()
    response = client.post(
        reverse("admin:bots_bot_add"),
        {"tenant": world_b.tenant.pk, "name": "sneaky", "trading_pairs": "BTC/USDT",
         "exchange_accounts": [world_b.account.pk]},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "tenant" in errors and "exchange_accounts" in errors
    assert Bot.objects.count() == before


def test_action_with_foreign_ids_changes_nothing(client: Any, world_a: TenantWorld, rows: tuple[dict, dict]) -> None:
    client.login(username="a-owner", password=PASSWORD)
    foreign_account = rows[1][ExchangeAccount]
    response = client.post(
        changelist_url(ExchangeAccount),
        {"action": "delete_selected", "_selected_action": [foreign_account.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert ExchangeAccount.objects.filter(pk=foreign_account.pk).exists()


def test_csv_export_contains_only_own_rows(client: Any, world_a: TenantWorld, rows: tuple[dict, dict]) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    response = client.post(
        changelist_url(Order),
        {"action": "export_csv", "_selected_action": [rows[0][Order].pk, rows[1][Order].pk]},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert rows[0][Order].client_order_id in body
    assert rows[1][Order].client_order_id not in body


def test_viewer_cannot_change_or_add(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    assert client.get(reverse("admin:bots_bot_add")).status_code == 403
    response = client.post(admin_url(world_a.bot, "change"), {"name": "renamed"})
    assert response.status_code == 403
    world_a.bot.refresh_from_db()
    assert world_a.bot.name == "a-bot"


def test_operator_cannot_manage_credentials_or_members(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    assert client.get(reverse("admin:exchanges_exchangeaccount_add")).status_code == 403
    assert client.get(reverse("admin:tenancy_membership_add")).status_code == 403
    assert client.get(reverse("admin:bots_bot_add")).status_code == 200


def test_user_without_membership_sees_no_module(client: Any, world_a: TenantWorld) -> None:
    from tests.conftest import make_user

    make_user("loner")
    client.login(username="loner", password=PASSWORD)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert response.context["app_list"] == []
    assert client.get(changelist_url(Bot)).status_code == 403
