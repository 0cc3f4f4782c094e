"""Cross-venue hedging in the bot form: bad settings are field errors in the form's words and nothing is
saved (not even the ticked hedged accounts); a hedge venue that does not list a pair of the bot is refused
at save (asked on a real emulator); a good setting saves. Against two emulator servers (the maker's and the
hedge account's venues)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from bots.models import Bot
from exchanges.emulator.server import EmulatorConfig, EmulatorServer
from exchanges.models import ExchangeAccount
from exchanges.registry import clear_gateway_cache
from tests.conftest import PASSWORD, TenantWorld, make_account
from tests.platform.test_config_validation import admin_payload

pytestmark = pytest.mark.django_db(transaction=True)


def emulator(*symbols: str) -> EmulatorServer:
    server = EmulatorServer(EmulatorConfig(port=0, market_step_ms=0, symbols=symbols))
    server.start_in_thread()
    return server


@pytest.fixture
def servers() -> Iterator[dict[str, EmulatorServer]]:
    started = {"maker": emulator("BTC/USDT", "ETH/USDT"), "hedge": emulator("BTC/USDT", "ETH/USDT"),
               "thin": emulator("ETH/USDT")}
    yield started
    for server in started.values():
        server.stop_thread()
    clear_gateway_cache()


@pytest.fixture
def accounts(world_a: TenantWorld, servers: dict[str, EmulatorServer]) -> dict[str, ExchangeAccount]:
    ExchangeAccount.objects.filter(pk=world_a.account.pk).update(api_base_url=servers["maker"].base_url)
    world_a.account.refresh_from_db()
    return {"maker": world_a.account,
            "hedge": make_account(world_a.tenant, "hedge", api_base_url=servers["hedge"].base_url),
            "thin": make_account(world_a.tenant, "thin", api_base_url=servers["thin"].base_url),
            # the maker's own key again, under another label: hedging there trades against the quotes
            "twin": make_account(world_a.tenant, "twin", api_base_url=servers["maker"].base_url,
                                 api_key=f"key-{world_a.tenant.slug}-main-0123456789")}


def change_url(bot: Bot) -> str:
    return reverse("admin:bots_bot_change", args=[bot.pk])


def post(client: Any, world: TenantWorld, accounts: dict[str, ExchangeAccount], bot_accounts: list[str],
         **changes: Any) -> Any:
    payload = admin_payload(world, world.bot)
    payload["exchange_accounts"] = [accounts[name].pk for name in bot_accounts]
    payload.update(changes)
    return client.post(change_url(world.bot), payload)


BAD = [
    # (what, the bot's accounts, changes, field, words of the error)
    ("no hedge account", ["maker", "hedge"], {"hedge_enabled": "on"}, "hedge_account",
     "choose the exchange account hedges are sent on"),
    ("not one of the bot's accounts", ["maker"], {"hedge_enabled": "on", "hedge_account": "hedge"}, "hedge_account",
     "hedge (binance) is not one of the bot's exchange accounts (ticked: main)."),
    ("the only account", ["hedge"], {"hedge_enabled": "on", "hedge_account": "hedge"}, "hedge_account",
     "the bot needs another exchange account to quote on"),
    ("zero slippage", ["maker", "hedge"], {"hedge_enabled": "on", "hedge_account": "hedge",
                                           "hedge_max_slippage_bps": "0"}, "hedge_max_slippage_bps", "greater than 0"),
    ("negative slippage", ["maker", "hedge"], {"hedge_max_slippage_bps": "-3"}, "hedge_max_slippage_bps",
     "greater than 0"),
    ("slippage beyond 10 %", ["maker", "hedge"], {"hedge_enabled": "on", "hedge_account": "hedge",
                                                  "hedge_max_slippage_bps": "2500"}, "hedge_max_slippage_bps",
     "at most 1000 bps"),
    ("hedging its own fills", ["maker", "hedge"], {"hedge_enabled": "on", "hedge_account": "hedge",
                                                   "hedged_accounts": ["maker", "hedge"]}, "hedged_accounts",
     "hedge (binance) is the hedge account: it cannot hedge its own fills; untick it."),
    ("a hedged account the bot does not trade on", ["maker", "hedge"],
     {"hedge_enabled": "on", "hedge_account": "hedge", "hedged_accounts": ["thin"]}, "hedged_accounts",
     "Not among the bot's exchange accounts: thin."),
    ("the maker's own key", ["maker", "twin"], {"hedge_enabled": "on", "hedge_account": "twin"}, "hedge_account",
     "same venue and key as main"),
    ("a venue that does not list the pair", ["maker", "thin"], {"hedge_enabled": "on", "hedge_account": "thin"},
     "hedge_account", "thin (binance) does not list BTC/USDT: it could not hedge it."),
]


@pytest.mark.parametrize(("what", "bot_accounts", "changes", "field", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_hedge_setting_is_a_field_error_and_nothing_is_saved(
        client: Any, world_a: TenantWorld, accounts: dict[str, ExchangeAccount], what: str, bot_accounts: list[str],
        changes: dict[str, Any], field: str, words: str) -> None:
    changes = dict(changes)
    for name in ("hedge_account",):
        if name in changes:
            changes[name] = accounts[changes[name]].pk
    if "hedged_accounts" in changes:
        changes["hedged_accounts"] = [accounts[name].pk for name in changes["hedged_accounts"]]
    client.login(username="a-operator", password=PASSWORD)
    response = post(client, world_a, accounts, bot_accounts, spread_bps="33", **changes)
    assert response.status_code == 200, what
    errors = response.context["adminform"].form.errors
    assert any(words in str(e) for e in errors.get(field, [])), errors
    world_a.bot.refresh_from_db()
    assert (world_a.bot.hedge_enabled, world_a.bot.hedge_account_id, world_a.bot.spread_bps) == (False, None, 20.0)
    assert list(world_a.bot.hedged_accounts.all()) == []
    assert list(world_a.bot.exchange_accounts.all()) == [accounts["maker"]]


def test_an_error_names_the_fields_by_their_labels(client: Any, world_a: TenantWorld,
                                                   accounts: dict[str, ExchangeAccount]) -> None:
    client.login(username="a-operator", password=PASSWORD)
    response = post(client, world_a, accounts, ["maker", "hedge"], hedge_enabled="on",
                    hedge_account=accounts["hedge"].pk, hedge_max_slippage_bps="1e9")
    (message,) = response.context["adminform"].form.errors["hedge_max_slippage_bps"]
    assert "hedge_max_slippage_bps" not in message


def test_another_firms_account_cannot_be_the_hedge_account(client: Any, world_a: TenantWorld, world_b: TenantWorld,
                                                           accounts: dict[str, ExchangeAccount]) -> None:
    client.login(username="a-operator", password=PASSWORD)
    response = post(client, world_a, accounts, ["maker", "hedge"], hedge_enabled="on",
                    hedge_account=world_b.account.pk)
    assert "hedge_account" in response.context["adminform"].form.errors
    world_a.bot.refresh_from_db()
    assert world_a.bot.hedge_account_id is None


def test_a_good_hedge_setting_saves(client: Any, world_a: TenantWorld, accounts: dict[str, ExchangeAccount]) -> None:
    client.login(username="a-operator", password=PASSWORD)
    response = post(client, world_a, accounts, ["maker", "hedge"], hedge_enabled="on",
                    hedge_account=accounts["hedge"].pk, hedged_accounts=[accounts["maker"].pk],
                    hedge_max_slippage_bps="15")
    assert response.status_code == 302, response.context["adminform"].form.errors
    bot = Bot.objects.get(pk=world_a.bot.pk)
    assert (bot.hedge_enabled, bot.hedge_account_id, bot.hedge_max_slippage_bps) == (True, accounts["hedge"].pk, 15.0)
    assert list(bot.hedged_accounts.all()) == [accounts["maker"]]
    config = bot.to_config()
    assert config.hedge_settings.hedge_account == f"account-{accounts['hedge'].pk}"
    assert config.hedge_settings.hedged_accounts == (f"account-{accounts['maker'].pk}",)
