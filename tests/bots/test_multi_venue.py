"""A bot quoting one pair on several venues at once, in-process against three emulators (the Binance,
OKX and Bybit dialects, ccxt's real classes): one position per account and pair, quotes on each, one
inventory aggregated across them with its per-venue split, a reference price that makes a thin venue
follow the deep one, a venue that does not list a pair or stops answering halts only itself, and the
kill sweep reaches every venue. The same through a real worker: test_multi_venue_worker.py."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from bots import quoting, services
from bots.engine.core import MarketMakingBot
from bots.engine.cycle import begin_cycle
from bots.engine.venues import venue_backoff
from bots.models import Bot, BotStatus, LiquidityPosition, Order
from bots.selectors import bot_summaries
from exchanges.emulator.server import AccountConfig, EmulatorServer, FaultConfig
from exchanges.models import ExchangeAccount
from exchanges.registry import clear_gateway_cache
from tests.bots.conftest import start_emulator

pytestmark = pytest.mark.django_db(transaction=True)

VENUES = ("binance", "okx", "bybit")
PASSPHRASE = "Multi-Venue-1"
BALANCES = {"BTC": Decimal("1"), "ETH": Decimal("20"), "USDT": Decimal("60000")}


def key_of(venue: str) -> tuple[str, str]:
    return f"{venue}-mv-key-000111", f"{venue}-mv-secret-000111-abcdef"


def venue_emulator(venue: str, symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT"),
                   held: dict[str, Decimal] | None = None) -> EmulatorServer:
    """A frozen market (moves only when a test moves it) speaking ``venue``'s dialect."""
    api_key, secret = key_of(venue)
    return start_emulator(
        venue=venue, symbols=symbols, market_step_ms=0,
        accounts=(AccountConfig(api_key, secret, dict(held or BALANCES),
                                passphrase=PASSPHRASE if venue == "okx" else ""),),
        dynamics={s: {"noise_arrival_rate_per_sec": 0.0} for s in symbols},
    )


@pytest.fixture(autouse=True)
def fresh_books(settings: Any) -> Iterator[None]:
    settings.MARKET_DATA_CACHE_SECS = 0.0  # the tests move the mids: every read sees the venue's book
    yield
    venue_backoff._down.clear()  # process memory: no test's failing venue sits out another's cycles


@pytest.fixture
def venues() -> Iterator[dict[str, EmulatorServer]]:
    servers = {venue: venue_emulator(venue) for venue in VENUES}
    yield servers
    for server in servers.values():
        server.stop_thread()
    clear_gateway_cache()


def venue_account(world: Any, venue: str, server: EmulatorServer) -> ExchangeAccount:
    api_key, secret = key_of(venue)
    account = ExchangeAccount(tenant=world.tenant, label=f"{venue}-desk", exchange_id=venue,
                              api_base_url=server.base_url, rate_limit_per_sec=500.0)
    account.set_credentials(api_key=api_key, api_secret=secret, passphrase=PASSPHRASE if venue == "okx" else "")
    account.save()
    return account


def multi_venue_bot(world: Any, servers: dict[str, EmulatorServer], **fields: Any) -> Bot:
    """The world's bot on one account per venue (its own binance account replaced)."""
    bot = world.bot
    accounts = [venue_account(world, venue, server) for venue, server in servers.items()]
    bot.exchange_accounts.set(accounts)
    values: dict[str, Any] = {"trading_pairs": "BTC/USDT", "grid_levels": 1, "order_size_quote": Decimal("1000"),
                              "monitoring_interval_secs": 0.5, "adaptation_enabled": False,
                              "max_position_quote": Decimal("1000000"),  # the limit is on the sum of the venues
                              "status": BotStatus.STARTING, "epoch": 1}
    values.update(fields)
    for name, value in values.items():
        setattr(bot, name, value)
    bot.save()
    return bot


def start(bot: Bot) -> MarketMakingBot:
    engine = MarketMakingBot(bot)
    assert engine.initialize_exchanges()
    assert engine.start_market_making(bot.pairs), engine.start_error
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    bot.refresh_from_db()
    return engine


def full_cycle(bot: Bot) -> MarketMakingBot:
    """A full cycle as the engine runs one (``bots.tasks.execute_cycle``)."""
    bot.refresh_from_db()
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False, skip_failing=True)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    return engine


def open_orders(server: EmulatorServer) -> list[Any]:
    account_id = next(iter(server._keys.values()))[0]
    return list(server.call(lambda: server.engine.open_orders(account_id)))  # type: ignore[arg-type]


def balances(server: EmulatorServer) -> dict[str, Decimal]:
    account_id = next(iter(server._keys.values()))[0]
    held = server.call(lambda: server.engine.balances(account_id))
    return {asset: b.free + b.locked for asset, b in held.items()}  # type: ignore[union-attr]


def test_one_pair_is_quoted_on_every_venue_with_one_inventory(world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    bot = multi_venue_bot(world_a, venues)
    engine = start(bot)
    try:
        positions = LiquidityPosition.objects.filter(bot=bot, is_active=True)
        assert sorted(p.exchange_account.exchange_id for p in positions) == sorted(VENUES), "one position per venue"
        for venue, server in venues.items():
            resting = open_orders(server)
            assert sorted(o.side.lower() for o in resting) == ["buy", "sell"], f"{venue}: a bid and an ask"
        client_ids = list(Order.objects.filter(bot=bot).values_list("client_order_id", flat=True))
        assert len(client_ids) == len(set(client_ids)) == 6

        # one inventory per pair: each venue's balances summed, with the split per account
        final = engine.inventory_manager.get_final_inventory(engine.account_labels())["BTC/USDT"]
        assert Decimal(repr(final["base"])) == sum(balances(s)["BTC"] for s in venues.values())
        assert Decimal(repr(final["quote"])) == sum(balances(s)["USDT"] for s in venues.values())
        assert set(final["venues"]) == {f"{v}-desk" for v in VENUES}
        assert sum(v["base"] for v in final["venues"].values()) == final["base"]

        # the kill switch sweeps every venue
        services.bot_kill(bot=bot, user=world_a.operator)
        for venue, server in venues.items():
            assert open_orders(server) == [], f"{venue}: orders left after the kill"
    finally:
        quoting.forget(bot)


def test_a_pair_one_venue_does_not_list_is_a_reason_of_that_venue_only(world_a: Any) -> None:
    servers = {"binance": venue_emulator("binance"), "okx": venue_emulator("okx", symbols=("BTC/USDT",))}
    try:
        bot = multi_venue_bot(world_a, servers, trading_pairs="BTC/USDT,ETH/USDT")
        start(bot)
        reasons = quoting.current([bot.pk])[bot.pk]
        assert reasons == {"ETH/USDT @ okx-desk": "okx-desk (okx) does not list ETH/USDT"}
        assert sorted(o.symbol for o in open_orders(servers["binance"])) == ["BTC/USDT"] * 2 + ["ETH/USDT"] * 2
        assert sorted(o.symbol for o in open_orders(servers["okx"])) == ["BTC/USDT"] * 2
        full_cycle(bot)  # the reason stays while the venue still does not list it
        assert quoting.current([bot.pk])[bot.pk] == reasons
        (summary,) = bot_summaries(tenant=world_a.tenant, bot_id=bot.pk)  # the bot page's banner
        assert summary.not_quoting_text == "Running — not quoting: okx-desk (okx) does not list ETH/USDT"
    finally:
        quoting.forget(bot)
        for server in servers.values():
            server.stop_thread()
        clear_gateway_cache()


def test_a_venue_that_stops_answering_halts_only_its_own_quotes(world_a: Any,
                                                                 venues: dict[str, EmulatorServer]) -> None:
    bot = multi_venue_bot(world_a, venues)
    start(bot)
    try:
        before = {venue: {o.client_order_id for o in open_orders(s)} for venue, s in venues.items()}
        venues["bybit"].stop_thread()  # the venue is gone: connection refused
        for venue in ("binance", "okx"):
            venues[venue].call(lambda s=venues[venue]: s.market.set_mid("BTC/USDT", Decimal("60600")))
        engine = full_cycle(bot)
        for venue in ("binance", "okx"):
            after = {o.client_order_id for o in open_orders(venues[venue])}
            assert after and after != before[venue], f"{venue} did not re-quote after the move"
        reasons = quoting.current([bot.pk]).get(bot.pk, {})
        assert list(reasons) == ["BTC/USDT @ bybit-desk"], reasons
        assert "bybit" in reasons["BTC/USDT @ bybit-desk"]
        assert engine.report.rebalanced == 0, "no rebalancing on an inventory missing a venue"
    finally:
        quoting.forget(bot)


def test_a_venue_that_hangs_sits_out_and_does_not_hold_up_the_others(
        world_a: Any, venues: dict[str, EmulatorServer], settings: Any) -> None:
    import time

    settings.EXCHANGE_HTTP_TIMEOUT_SECS = 1.0
    clear_gateway_cache()
    bot = multi_venue_bot(world_a, venues)
    start(bot)
    try:
        venues["bybit"].set_faults(FaultConfig(latency_ms=5000))  # every answer of bybit comes too late
        started = time.monotonic()
        full_cycle(bot)  # meets the timeouts once
        first = time.monotonic() - started
        assert first >= 1.0
        for venue in ("binance", "okx"):
            venues[venue].call(lambda s=venues[venue]: s.market.set_mid("BTC/USDT", Decimal("60600")))
        before = {venue: {o.client_order_id for o in open_orders(venues[venue])} for venue in ("binance", "okx")}
        started = time.monotonic()
        full_cycle(bot)
        second = time.monotonic() - started
        assert second < 1.0, f"the next cycle waited on bybit again ({second:.2f} s; the first took {first:.2f} s)"
        for venue in ("binance", "okx"):
            assert {o.client_order_id for o in open_orders(venues[venue])} - before[venue], f"{venue} did not re-quote"
        reason = quoting.current([bot.pk])[bot.pk]["BTC/USDT @ bybit-desk"]
        assert reason.startswith("bybit-desk (bybit): not connected: unreachable, next try in "), reason
    finally:
        quoting.forget(bot)


def test_quotes_on_a_thin_venue_follow_the_chosen_venue(world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    bot = multi_venue_bot(world_a, venues, reference_price="venue", reference_venue="binance", spread_bps=20.0)
    start(bot)
    try:
        venues["binance"].call(lambda: venues["binance"].market.set_mid("BTC/USDT", Decimal("60600")))
        full_cycle(bot)
        for venue in VENUES:
            prices = sorted(float(o.price) for o in open_orders(venues[venue]))
            centre = sum(prices) / 2
            if venue == "binance":
                assert abs(centre / 60600 - 1) < 0.002, (venue, prices)
            else:  # their own books sit at the old mid: the bid follows binance up, the ask stays post-only
                assert prices[0] > float(venues[venue].call(lambda v=venue: venues[v].market.mid("BTC/USDT"))), (
                    venue, prices)
    finally:
        quoting.forget(bot)


@pytest.mark.parametrize(("base_held", "side", "cheapest", "mids"), [
    # too much BTC: sold where the bid is highest
    (Decimal("3"), "sell", "okx", {"binance": "60000", "okx": "60300", "bybit": "59800"}),
    # too little: bought where the ask is lowest
    (Decimal("0.2"), "buy", "bybit", {"binance": "60000", "okx": "60300", "bybit": "59800"}),
])
def test_rebalancing_trades_on_the_cheapest_venue(world_a: Any, base_held: Decimal, side: str, cheapest: str,
                                                  mids: dict[str, str]) -> None:
    servers = {venue: venue_emulator(venue, held={"BTC": base_held, "USDT": Decimal("60000")}) for venue in VENUES}
    try:
        bot = multi_venue_bot(world_a, servers, default_rebalance_threshold=0.1, inventory_deviation_limit=0.9)
        start(bot)
        for venue, mid in mids.items():
            servers[venue].call(lambda s=servers[venue], m=mid: s.market.set_mid("BTC/USDT", Decimal(m)))
        engine = full_cycle(bot)
        assert engine.report.rebalanced == 1
        trades = list(Order.objects.filter(bot=bot, purpose="rebalance"))
        assert [(t.side, t.exchange_account.exchange_id) for t in trades] == [(side, cheapest)]
        full_cycle(bot)  # the next sync reads what the IOC did (OKX's answer to a placement is only its id)
        trades[0].refresh_from_db()
        assert trades[0].filled > 0 and trades[0].status == "filled", "the IOC traded on that venue's book"
    finally:
        quoting.forget(bot)
        for server in servers.values():
            server.stop_thread()
        clear_gateway_cache()


def test_rebalancing_skips_the_cheapest_venue_where_its_own_order_is_the_best_price(world_a: Any) -> None:
    """Too little BTC: the buy is cheapest on Bybit, but there the account's own (hand-placed) ask is the
    best ask, and the self-trade limit a tick short of it would take nothing. The trade goes to the
    cheapest venue where it passes, Binance, and fills there; nothing is sent to Bybit."""
    import ccxt

    from exchanges.ccxt_config import config_for

    servers = {venue: venue_emulator(venue, held={"BTC": Decimal("0.2"), "USDT": Decimal("60000")})
               for venue in VENUES}
    try:
        bot = multi_venue_bot(world_a, servers, default_rebalance_threshold=0.1, inventory_deviation_limit=0.9)
        start(bot)
        for venue, mid in {"binance": "60000", "okx": "60300", "bybit": "59800"}.items():
            servers[venue].call(lambda s=servers[venue], m=mid: s.market.set_mid("BTC/USDT", Decimal(m)))
        api_key, secret = key_of("bybit")
        by_hand = ccxt.bybit(config_for("bybit", servers["bybit"].base_url, api_key, secret))
        by_hand.create_order("BTC/USDT", "limit", "sell", 0.001, 59800)  # inside the spread: the best ask
        assert by_hand.fetch_order_book("BTC/USDT")["asks"][0][0] == 59800

        engine = full_cycle(bot)

        assert engine.report.rebalanced == 1
        trades = list(Order.objects.filter(bot=bot, purpose="rebalance"))
        assert [(t.side, t.exchange_account.exchange_id) for t in trades] == [("buy", "binance")]
        full_cycle(bot)
        trades[0].refresh_from_db()
        assert trades[0].filled > 0 and trades[0].status == "filled", "the IOC traded on Binance's book"
        assert [o["price"] for o in by_hand.fetch_open_orders("BTC/USDT") if not o["clientOrderId"]
                or not o["clientOrderId"].startswith("mm-")] == [59800], "the hand-placed ask was not touched"
    finally:
        quoting.forget(bot)
        for server in servers.values():
            server.stop_thread()
        clear_gateway_cache()


def test_the_position_limit_is_on_the_sum_of_the_venues(world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    """1 BTC on each venue at 60,000 is within a 150,000 limit on each, but 180,000 across them: the
    breach is the pair's, with each venue's share, and no venue adds to the position (no bid anywhere)."""
    from risk.models import RiskEvent

    bot = multi_venue_bot(world_a, venues, max_position_quote=Decimal("150000"))
    start(bot)
    try:
        full_cycle(bot)
        event = RiskEvent.objects.get(bot=bot, event_type="POSITION_LIMIT_EXCEEDED")
        assert event.trading_pair == "BTC/USDT"
        assert event.details["base_value_quote"] == pytest.approx(180000, rel=0.01)
        assert set(event.details["venues"]) == {f"{v}-desk" for v in VENUES}
        assert all(v["base"] == 1.0 for v in event.details["venues"].values())
        for venue, server in venues.items():
            assert [o.side.lower() for o in open_orders(server)] == ["sell"], f"{venue}: a bid grows the position"
    finally:
        quoting.forget(bot)


def test_self_trades_are_per_account_another_venues_orders_never_hold_back_a_quote(
        world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    """The no-self-trade state is keyed by slot (account, pair): an order resting on the Binance account
    is one of that slot's resting orders only; the same pair's quotes on OKX never check against it."""
    import ccxt

    from exchanges.ccxt_config import config_for
    from risk.checks import SELF_TRADE, RestingOrder

    bot = multi_venue_bot(world_a, venues)
    start(bot)
    try:
        api_key, secret = key_of("binance")
        trader = ccxt.binance(config_for("binance", venues["binance"].base_url, api_key, secret))
        ask = trader.fetch_order_book("BTC/USDT")["asks"][0][0] + 100
        trader.create_order("BTC/USDT", "limit", "sell", 0.001, ask)  # by hand, above the market: rests
        engine = full_cycle(bot)
        slots = {engine.accounts[account_id].exchange_id: (account_id, pair)
                 for account_id, pair in engine.active_positions}
        assert engine.listed_resting(slots["binance"]) == (RestingOrder("sell", ask, "an order not placed by a bot"),)
        assert engine.listed_resting(slots["okx"]) == engine.listed_resting(slots["bybit"]) == ()

        # an order on the Binance account that any bid would cross: the Binance bid is held back, OKX's is not
        engine.observe_resting(slots["binance"], (RestingOrder("sell", 1.0, "bot 99"),))
        engine.observe_resting(slots["okx"], ())
        denied = {}
        for venue in ("binance", "okx"):
            slot = slots[venue]
            decision = engine.decide_quotes(engine.active_positions[slot], engine.snapshots[slot], [], 0)
            denied[venue] = [(d.code, d.intent.side) for d in decision.denied]
            assert [i.side for i in decision.diff.place] == (["sell"] if venue == "binance" else ["buy", "sell"])
        assert denied == {"binance": [(SELF_TRADE, "buy")], "okx": []}
    finally:
        quoting.forget(bot)
