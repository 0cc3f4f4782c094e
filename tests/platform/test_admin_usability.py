"""The admin as an operator meets it: errors in the form's words, a page that says which role may,
idempotent emulator funding with the key masked, a bot form with the essentials first, and a
trading pair the venue does not list refused at save (against a real emulator server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.urls import reverse

from bots.engine.gateways import gateway_for_account
from bots.models import Bot, Order
from exchanges.emulator.server import EmulatorConfig, EmulatorServer
from exchanges.models import ExchangeAccount
from exchanges.registry import clear_gateway_cache
from mmplatform import aio
from tests.conftest import PASSWORD, TenantWorld, make_account
from tests.platform.test_config_validation import admin_payload

TOKEN = "usability-test-token-1234"
DENIED_TEMPLATE = "admin/permission_denied.html"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emulator = EmulatorServer(EmulatorConfig(port=0, admin_token=TOKEN, market_step_ms=0,
                                             symbols=("BTC/USDT", "ETH/USDT")))
    emulator.start_in_thread()
    yield emulator
    emulator.stop_thread()
    clear_gateway_cache()


def change_url(bot: Bot) -> str:
    return reverse("admin:bots_bot_change", args=[bot.pk])


# --- errors use the form's labels ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "other_label", "other_name"),
    [
        ("min_order_size_quote", "20000", "Maximum order size (quote)", "max_order_size_quote"),
        ("min_spread_bps", "2000", "Maximum spread (bps)", "max_spread_bps"),
        ("order_size_quote", "5", "Minimum order size (quote)", "min_order_size_quote"),
    ],
)
def test_a_field_error_names_other_fields_by_their_labels(
    client: Any, world_a: TenantWorld, field: str, value: str, other_label: str, other_name: str
) -> None:
    client.login(username="a-operator", password=PASSWORD)
    payload = admin_payload(world_a, world_a.bot)
    payload[field] = value
    response = client.post(change_url(world_a.bot), payload)
    assert response.status_code == 200
    messages = response.context["adminform"].form.errors[field]
    assert any(f"“{other_label}”" in m for m in messages), messages
    html = response.content.decode()
    assert other_name not in " ".join(messages) and f"{other_name} (" not in html
    # the note above the form names the field by its label and links to it
    label = str(response.context["adminform"].form.fields[field].label)
    assert f'href="#id_{field}">{label}</a>' in html


def test_a_field_with_an_error_in_a_collapsed_group_opens_it(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    payload = admin_payload(world_a, world_a.bot)
    payload["max_drawdown_ratio"] = "3"  # in "Risk limits", collapsed by default
    response = client.post(change_url(world_a.bot), payload)
    groups = dict(response.context["adminform"].fieldsets)
    assert "collapse" not in groups["Risk limits"].get("classes", [])
    assert "collapse" in groups["Strategy selection"]["classes"]


# --- a page that says which role may ---------------------------------------------------------------


def test_operator_adding_an_account_is_told_that_owners_may(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    response = client.get(reverse("admin:exchanges_exchangeaccount_add"))
    assert response.status_code == 403
    assert DENIED_TEMPLATE in [t.name for t in response.templates]
    html = response.content.decode()
    assert "you need the <strong>Owner</strong> role" in html
    assert "Operator in Firm A" in html
    assert "Owner in Firm A: a-owner" in html


def test_viewer_saving_a_bot_is_told_that_owners_and_operators_may(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    response = client.post(change_url(world_a.bot), admin_payload(world_a, world_a.bot))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Owner or Operator" in html and "Viewer in Firm A" in html and "a-bot" in html
    response = client.post(reverse("admin:bots_bot_delete", args=[world_a.bot.pk]), {"post": "yes"})
    assert response.status_code == 403 and "Owner or Operator" in response.content.decode()
    assert Bot.objects.filter(pk=world_a.bot.pk).exists()


def test_history_is_read_only_for_everyone_and_the_page_says_so(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    response = client.get(reverse("admin:bots_order_add"))
    assert response.status_code == 403
    assert "nobody, whatever their role" in response.content.decode()


def test_owner_adding_a_firm_is_told_the_platform_staff_may(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    response = client.get(reverse("admin:tenancy_tenant_add"))
    assert response.status_code == 403
    assert "platform&#x27;s staff" in response.content.decode()


def test_a_user_without_a_firm_is_told_how_to_join(client: Any, world_a: TenantWorld) -> None:
    from tests.conftest import make_user

    make_user("loner")
    client.login(username="loner", password=PASSWORD)
    response = client.get(reverse("admin:bots_bot_changelist"))
    assert response.status_code == 403
    assert "not a member of any firm" in response.content.decode()


def test_another_firms_object_stays_not_found(client: Any, world_a: TenantWorld, world_b: TenantWorld) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    assert client.post(change_url(world_b.bot), {"name": "x"}).status_code == 404
    assert client.get(reverse("admin:exchanges_exchangeaccount_delete", args=[world_b.account.pk])).status_code == 404


def test_every_denial_of_every_project_admin_gets_the_page(client: Any, world_a: TenantWorld) -> None:
    """Viewer: add and delete are refused on every tenant-owned model; each refusal is the page."""
    client.login(username="a-viewer", password=PASSWORD)
    order = Order.objects.create(tenant=world_a.tenant, bot=world_a.bot, exchange_account=world_a.account,
                                 trading_pair="BTC/USDT", client_order_id="mm-u-1", side="buy",
                                 price=Decimal("1"), amount=Decimal("1"))
    objects = {Bot: world_a.bot, ExchangeAccount: world_a.account, Order: order}
    checked = 0
    for model in admin.site._registry:
        if model._meta.app_label not in ("bots", "exchanges", "risk", "tenancy", "alerts"):
            continue
        opts = model._meta
        response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        assert response.status_code == 403, model
        assert DENIED_TEMPLATE in [t.name for t in response.templates], model
        checked += 1
        if model in objects:
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[objects[model].pk])
            response = client.get(url)
            assert response.status_code == 403 and DENIED_TEMPLATE in [t.name for t in response.templates], model
    assert checked >= 10


# --- emulator funding ------------------------------------------------------------------------------


def test_opening_on_the_emulator_twice_tops_up_once_and_masks_the_key(
    client: Any, world_a: TenantWorld, server: EmulatorServer, settings: Any
) -> None:
    settings.EMULATOR_ADMIN_TOKEN = TOKEN
    settings.EMULATOR_DEMO_BALANCES = "BTC=1,USDT=60000"
    key = "emu-key-0123456789-secretish"
    account = make_account(world_a.tenant, "emu", api_key=key, api_base_url=server.base_url)
    client.login(username="a-owner", password=PASSWORD)
    url = reverse("admin:exchanges_exchangeaccount_changelist")
    action = {"action": "open_on_emulator", "_selected_action": [account.pk]}
    first = client.post(url, action, follow=True).content.decode()
    second = client.post(url, action, follow=True).content.decode()
    assert "deposited BTC 1, USDT 60000" in first
    assert "nothing deposited" in second
    for page in (first, second):
        assert key not in page and "emu-…tish" in page
    balance = aio.run(gateway_for_account(account).fetch_balance())
    assert balance.free("USDT") == Decimal("60000") and balance.free("BTC") == Decimal("1")
    # trading spent some: the next run deposits only the difference
    server.call(lambda: server.engine.deposit(key, "USDT", Decimal("-100.5")))
    third = client.post(url, action, follow=True).content.decode()
    assert "deposited USDT 100.5" in third
    clear_gateway_cache()
    assert aio.run(gateway_for_account(account).fetch_balance()).free("USDT") == Decimal("60000")


# --- the bot form's groups -------------------------------------------------------------------------


def test_every_editable_bot_field_is_in_exactly_one_group() -> None:
    """A setting added later (e.g. a rebalancing schedule) must be placed in a group."""
    from bots.admin import BOT_FIELD_GROUPS, BotAdmin

    grouped = [name for group in BOT_FIELD_GROUPS for name in group.fields]
    assert len(grouped) == len(set(grouped)), "a field is in two groups"
    editable = {f.name for f in Bot._meta.get_fields() if getattr(f, "editable", False) and not f.auto_created}
    editable -= {"epoch", "created_at", "updated_at"}
    state = set(BotAdmin.readonly_fields)
    assert editable - set(grouped) == set(), "fields missing from the bot form"
    assert set(grouped) - editable - state == set(), "unknown fields in the groups"


def test_bot_form_shows_the_essentials_first_and_the_rest_collapsed(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    add = client.get(reverse("admin:bots_bot_add")).context["adminform"].fieldsets
    first_title, first = add[0]
    assert first_title == "Bot" and "collapse" not in first.get("classes", [])
    assert {"name", "exchange_accounts", "trading_pairs", "default_strategy", "spread_bps", "order_size_quote",
            "grid_levels"} <= set(first["fields"])
    assert len(first["fields"]) <= 10
    for title, options in add[1:]:
        assert "collapse" in options["classes"], title
        assert options.get("description"), title
    assert "Status" not in dict(add)
    change = client.get(change_url(world_a.bot))
    titles = [title for title, _ in change.context["adminform"].fieldsets]
    assert titles[:2] == ["Bot", "Status"]
    assert "kill_switch_engaged" in dict(change.context["adminform"].fieldsets)[
        "Status"]["fields"]
    html = change.content.decode()
    assert html.count("<details>") >= len(titles) - 2  # every collapsed group is a closed <details>


# --- trading pairs checked on the venue ------------------------------------------------------------


def new_bot_payload(world: TenantWorld, account: ExchangeAccount, pairs: str) -> dict[str, Any]:
    payload = admin_payload(world, world.bot)
    payload.update({"name": "fresh", "trading_pairs": pairs, "exchange_accounts": [account.pk]})
    return payload


def test_a_pair_the_venue_does_not_list_is_a_field_error_at_save(
    client: Any, world_a: TenantWorld, server: EmulatorServer
) -> None:
    account = make_account(world_a.tenant, "emu", api_base_url=server.base_url)
    client.login(username="a-operator", password=PASSWORD)
    response = client.post(reverse("admin:bots_bot_add"), new_bot_payload(world_a, account, "BTC/USDT,DOGE/XYZ"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["trading_pairs"]
    assert any("DOGE/XYZ is not listed on emu (binance)" in e for e in errors), errors
    assert not Bot.objects.filter(name="fresh").exists()
    # a near miss gets a suggestion; a listed pair saves
    response = client.post(reverse("admin:bots_bot_add"), new_bot_payload(world_a, account, "ETH/USDC"))
    assert any("Did you mean ETH/USDT" in e for e in response.context["adminform"].form.errors["trading_pairs"])
    response = client.post(reverse("admin:bots_bot_add"), new_bot_payload(world_a, account, "ETH/USDT"))
    assert response.status_code == 302
    assert Bot.objects.get(name="fresh").trading_pairs == "ETH/USDT"


def test_an_unlisted_pair_on_an_existing_bot_is_refused_and_nothing_changes(
    client: Any, world_a: TenantWorld, server: EmulatorServer
) -> None:
    ExchangeAccount.objects.filter(pk=world_a.account.pk).update(api_base_url=server.base_url)
    client.login(username="a-operator", password=PASSWORD)
    payload = admin_payload(world_a, world_a.bot)
    payload["trading_pairs"] = "DOGE/XYZ"
    response = client.post(change_url(world_a.bot), payload)
    assert response.status_code == 200 and "trading_pairs" in response.context["adminform"].form.errors
    world_a.bot.refresh_from_db()
    assert world_a.bot.trading_pairs == "BTC/USDT"


def test_an_unreachable_venue_saves_with_a_warning(client: Any, world_a: TenantWorld) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account = make_account(world_a.tenant, "down", api_base_url=f"http://127.0.0.1:{port}")
    client.login(username="a-operator", password=PASSWORD)
    response = client.post(reverse("admin:bots_bot_add"), new_bot_payload(world_a, account, "DOGE/XYZ"), follow=True)
    assert Bot.objects.filter(name="fresh", trading_pairs="DOGE/XYZ").exists()
    html = response.content.decode()
    assert "Saved without checking the trading pairs on down" in html and "DOGE/XYZ" in html
    clear_gateway_cache()


def test_labels_replace_identifiers_not_english_words() -> None:
    from bots.admin import labelled_message

    labels = {"tenant": "Firm", "spread_bps": "Spread (bps)", "min_spread_bps": "Minimum spread (bps)",
              "max_spread_bps": "Maximum spread (bps)"}
    assert labelled_message("must not exceed max_spread_bps (10.0), unlike min_spread_bps and spread_bps",
                            labels) == ("must not exceed “Maximum spread (bps)” (10.0), unlike "
                                        "“Minimum spread (bps)” and “Spread (bps)”")
    assert labelled_message("Accounts of another tenant: x.", labels) == "Accounts of another tenant: x."


# --- the reference price of a bot on several venues ----------------------------------------------


@pytest.mark.parametrize(("mode", "venue", "error"), [
    ("venue", "", "Choose the venue whose mid every venue follows."),
    ("venue", "okx", "None of the bot's exchange accounts is on okx (its venues: binance)."),
    ("venue", "kraken", "Select a valid choice. kraken is not one of the available choices."),
    ("median", "binance", "Only for 'One chosen venue's mid'; leave it empty."),
])
def test_a_reference_venue_the_bot_cannot_follow_is_a_field_error_and_nothing_changes(
    client: Any, world_a: TenantWorld, server: EmulatorServer, mode: str, venue: str, error: str
) -> None:
    ExchangeAccount.objects.filter(pk=world_a.account.pk).update(api_base_url=server.base_url)
    client.login(username="a-operator", password=PASSWORD)
    payload = admin_payload(world_a, world_a.bot)
    payload.update({"reference_price": mode, "reference_venue": venue, "spread_bps": "33"})
    response = client.post(change_url(world_a.bot), payload)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["reference_venue"] == [error]
    world_a.bot.refresh_from_db()
    assert (world_a.bot.reference_price, world_a.bot.reference_venue, world_a.bot.spread_bps) == ("own", "", 20.0)
    payload.update({"reference_price": "venue", "reference_venue": "binance"})
    assert client.post(change_url(world_a.bot), payload).status_code == 302
    world_a.bot.refresh_from_db()
    assert (world_a.bot.reference_price, world_a.bot.reference_venue) == ("venue", "binance")
