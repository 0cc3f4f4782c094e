"""Cross-venue hedging in-process (issue 15 item 5): a bot quotes BTC/USDT on a Binance-dialect account and
hedges each fill there with an IOC on an OKX-dialect account (two emulators, ccxt's real classes). A fill is
hedged exactly once with the base it moved, booked in the hedge account's position (P&L equal to the
venues' balances to the cent); a book beyond the limit is a slippage breach and a venue error a failed
hedge: a risk event, the maker account quotes nothing until a retry within the limit fills it or an
operator accepts the exposure; a remainder below the hedge venue's minimum is carried to the next fill.
The same through a real worker and emulator processes: test_hedging_worker.py."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bots import quoting, services
from bots.engine.venues import venue_backoff
from bots.models import Bot, BotStatus, Fill, Hedge, HedgeStatus, LiquidityPosition, Order, OrderPurpose
from exchanges.emulator.server import AccountConfig, EmulatorServer, FaultConfig
from exchanges.models import ExchangeAccount
from exchanges.registry import clear_gateway_cache
from risk.models import RiskEvent
from tests.bots.conftest import start_emulator
from tests.bots.test_multi_venue import full_cycle, start

pytestmark = pytest.mark.django_db(transaction=True)

PAIR = "BTC/USDT"
PASSPHRASE = "Hedge-Phrase-1"
BALANCES = {"BTC": Decimal("1"), "USDT": Decimal("60000")}
MAKER, HEDGE = "binance", "okx"


def key_of(venue: str) -> tuple[str, str]:
    return f"{venue}-hedge-key-000111", f"{venue}-hedge-secret-000111-abcdef"


def venue_emulator(venue: str, held: dict[str, Decimal] | None = None) -> EmulatorServer:
    """A frozen market (moves only when the test moves it) speaking ``venue``'s dialect."""
    api_key, secret = key_of(venue)
    return start_emulator(
        venue=venue, symbols=(PAIR,), market_step_ms=0,
        accounts=(AccountConfig(api_key, secret, dict(held or BALANCES),
                                passphrase=PASSPHRASE if venue == "okx" else ""),),
        dynamics={PAIR: {"noise_arrival_rate_per_sec": 0.0}},
    )


@pytest.fixture(autouse=True)
def fresh_books(settings: Any) -> Iterator[None]:
    settings.MARKET_DATA_CACHE_SECS = 0.0  # the tests move the mids: every read sees the venue's book
    yield
    venue_backoff._down.clear()


@pytest.fixture
def venues() -> Iterator[dict[str, EmulatorServer]]:
    servers = {venue: venue_emulator(venue) for venue in (MAKER, HEDGE)}
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


def hedged_bot(world: Any, servers: dict[str, EmulatorServer], **fields: Any) -> Bot:
    bot = world.bot
    accounts = {venue: venue_account(world, venue, server) for venue, server in servers.items()}
    bot.exchange_accounts.set(accounts.values())
    values: dict[str, Any] = {"trading_pairs": PAIR, "grid_levels": 1, "order_size_quote": Decimal("1000"),
                              "spread_bps": 10.0, "min_spread_bps": 2.0, "maker_fee_bps": 0.0,
                              "monitoring_interval_secs": 0.5, "adaptation_enabled": False,
                              "max_position_quote": Decimal("1000000"), "default_rebalance_threshold": 1.0,
                              "inventory_deviation_limit": 1.0, "hedge_enabled": True,
                              "hedge_account": accounts[HEDGE], "hedge_max_slippage_bps": 20.0,
                              "status": BotStatus.STARTING, "epoch": 1}
    values.update(fields)
    for name, value in values.items():
        setattr(bot, name, value)
    bot.save()
    return bot


def account_id(server: EmulatorServer) -> str:
    return next(iter(server._keys.values()))[0]


def open_orders(server: EmulatorServer) -> list[Any]:
    return list(server.call(lambda: server.engine.open_orders(account_id(server))))  # type: ignore[arg-type]


def balances(server: EmulatorServer) -> dict[str, Decimal]:
    held = server.call(lambda: server.engine.balances(account_id(server)))
    return {asset: b.free + b.locked for asset, b in held.items()}  # type: ignore[union-attr]


def move(server: EmulatorServer, mid: str) -> None:
    server.call(lambda: server.market.set_mid(PAIR, Decimal(mid)))


def fill_the_ask(servers: dict[str, EmulatorServer], mid: str) -> None:
    """The maker venue's market jumps through the bot's ask: the ask is taken (the bot sells)."""
    resting = [o for o in open_orders(servers[MAKER]) if o.side.lower() == "sell"]
    assert resting, "no ask resting on the maker venue"
    move(servers[MAKER], mid)
    assert not [o for o in open_orders(servers[MAKER]) if o.client_order_id == resting[0].client_order_id]


def pnl_from_trades(servers: dict[str, EmulatorServer], mark: Decimal) -> Decimal:
    """The bot's P&L recomputed from the venues' own trade lists (the matching engines'), not from our rows:
    each trade moves base by ±quantity and quote by ∓quantity × price, less its fee in the asset charged."""
    total = Decimal(0)
    for server in servers.values():
        trades = server.call(lambda s=server: s.engine.account_trades(account_id(s), PAIR, limit=1000))
        for t in trades:  # type: ignore[union-attr]
            base = t.quantity if t.is_buyer else -t.quantity
            quote = -t.quantity * t.price if t.is_buyer else t.quantity * t.price
            base -= t.fee if t.fee_asset == "BTC" else 0
            quote -= t.fee if t.fee_asset == "USDT" else 0
            total += base * mark + quote
    return total


def net_pnl(bot: Bot, mark: Decimal) -> Decimal:
    return sum((p.realised_pnl_quote + p.unrealised_pnl_quote(mark) - p.fees_paid_quote
                for p in LiquidityPosition.objects.filter(bot=bot)), Decimal(0))


def test_a_fill_is_hedged_once_on_the_hedge_venue_and_booked_with_the_position(
        world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    bot = hedged_bot(world_a, venues)
    before = {venue: balances(server) for venue, server in venues.items()}
    start(bot)
    try:
        assert open_orders(venues[HEDGE]) == [], "the hedge account quotes nothing"
        assert sorted(o.side.lower() for o in open_orders(venues[MAKER])) == ["buy", "sell"]

        fill_the_ask(venues, "60300")
        full_cycle(bot)
        (maker_fill,) = Fill.objects.filter(bot=bot, exchange_account__exchange_id=MAKER)
        assert maker_fill.side == "sell" and not maker_fill.is_hedge
        hedge = Hedge.objects.get(fill=maker_fill)
        assert hedge.status == HedgeStatus.HEDGED, hedge.reason
        assert (hedge.side, hedge.amount, hedge.hedged) == ("buy", maker_fill.amount, maker_fill.amount)
        assert hedge.limit_price <= maker_fill.price * Decimal("1.002")
        hedge_fills = list(Fill.objects.filter(bot=bot, exchange_account__exchange_id=HEDGE))
        assert hedge_fills and all(f.is_hedge and f.side == "buy" for f in hedge_fills)
        assert sum(f.amount for f in hedge_fills) == maker_fill.amount
        assert max(f.price for f in hedge_fills) <= hedge.limit_price
        (order,) = Order.objects.filter(bot=bot, purpose=OrderPurpose.HEDGE)
        assert order.time_in_force == "IOC" and order.client_order_id == hedge.order.client_order_id

        # a second sync of the same trades (a retried sync, another process) hedges nothing again
        full_cycle(bot)
        LiquidityPosition.objects.filter(bot=bot).update(last_trade_sync_ms=0)
        full_cycle(bot)
        assert Hedge.objects.filter(bot=bot).count() == 1
        assert Order.objects.filter(bot=bot, purpose=OrderPurpose.HEDGE).count() == 1

        # one inventory: what the maker sold the hedge bought (its fee, paid in base, is all that is left)
        positions = {p.exchange_account.exchange_id: p for p in LiquidityPosition.objects.filter(bot=bot)}
        hedge_fee_base = sum(f.fee for f in hedge_fills if f.fee_currency == "BTC")
        assert positions[MAKER].base_position + positions[HEDGE].base_position == -hedge_fee_base

        # the P&L to the cent: the positions' net P&L is what the two accounts' balances gained
        mark = Decimal("60123.45")
        after = {venue: balances(server) for venue, server in venues.items()}
        gained = sum(((after[v]["BTC"] - before[v]["BTC"]) * mark + after[v]["USDT"] - before[v]["USDT"]
                      for v in venues), Decimal(0))
        assert net_pnl(bot, mark).quantize(Decimal("0.01")) == gained.quantize(Decimal("0.01"))
        assert net_pnl(bot, mark).quantize(Decimal("0.01")) == pnl_from_trades(venues, mark).quantize(Decimal("0.01"))
        if connection.vendor == "postgresql":  # SQLite keeps decimal columns as floats
            assert net_pnl(bot, mark) == gained
    finally:
        quoting.forget(bot)


def test_a_slippage_breach_halts_the_maker_venue_until_a_retry_fills_within_the_limit(
        world_a: Any, venues: dict[str, EmulatorServer], settings: Any) -> None:
    bot = hedged_bot(world_a, venues)
    start(bot)
    try:
        move(venues[HEDGE], "61000")  # the hedge venue's asks are far above any limit of a buy near 60000
        fill_the_ask(venues, "60300")
        engine = full_cycle(bot)
        (hedge,) = Hedge.objects.filter(bot=bot)
        assert hedge.status == HedgeStatus.SLIPPAGE and hedge.hedged == 0
        (event,) = RiskEvent.objects.filter(bot=bot, event_type="HEDGE_SLIPPAGE")
        assert Decimal(event.details["unhedged_base"]) == hedge.amount
        assert "binance-desk quotes nothing on BTC/USDT" in event.message
        slot = f"{PAIR} @ {MAKER}-desk"
        assert "slippage breach" in quoting.current([bot.pk])[bot.pk][slot]
        assert open_orders(venues[MAKER]) == [], "the maker venue's quotes were cancelled"
        assert engine.hedge_halts

        # a new engine (another process, a restart) still halts: the row says so
        move(venues[MAKER], "60310")
        Hedge.objects.filter(pk=hedge.pk).update(next_attempt_at=hedge.next_attempt_at)  # not due yet
        full_cycle(bot)
        assert open_orders(venues[MAKER]) == []
        assert RiskEvent.objects.filter(bot=bot, event_type="HEDGE_SLIPPAGE").count() == 1

        # the book comes back within the limit: the retry (due) fills it, quoting resumes
        move(venues[HEDGE], "60000")
        Hedge.objects.filter(pk=hedge.pk).update(next_attempt_at=hedge.created_at)
        full_cycle(bot)
        hedge.refresh_from_db()
        assert hedge.status == HedgeStatus.HEDGED and hedge.hedged == hedge.amount and hedge.attempts == 2
        assert hedge.resolved_by == "retry"
        assert RiskEvent.objects.filter(bot=bot, event_type="HEDGE_RESOLVED").count() == 1
        assert sorted(o.side.lower() for o in open_orders(venues[MAKER])) == ["buy", "sell"]
    finally:
        quoting.forget(bot)


def test_a_failed_hedge_halts_until_an_operator_accepts_the_exposure(
        world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    bot = hedged_bot(world_a, venues)
    start(bot)
    try:
        venues[HEDGE].set_faults(FaultConfig(error_rate=1.0))  # the hedge venue answers 503 to everything
        fill_the_ask(venues, "60300")
        full_cycle(bot)
        (hedge,) = Hedge.objects.filter(bot=bot)
        assert hedge.status == HedgeStatus.FAILED
        (event,) = RiskEvent.objects.filter(bot=bot, event_type="HEDGE_FAILED")
        assert "okx-desk" in event.message and event.action_taken == "maker_quotes_halted"
        assert open_orders(venues[MAKER]) == []

        services.bot_resolve_hedges(bot=bot, user=world_a.operator, action="accept")
        hedge.refresh_from_db()
        assert hedge.status == HedgeStatus.ACCEPTED and hedge.resolved_by == world_a.operator.username
        full_cycle(bot)
        assert sorted(o.side.lower() for o in open_orders(venues[MAKER])) == ["buy", "sell"]
        # nothing more is sent for an accepted hedge, even once the venue answers again
        venues[HEDGE].set_faults(FaultConfig())
        full_cycle(bot)
        assert Order.objects.filter(bot=bot, purpose=OrderPurpose.HEDGE, filled__gt=0).count() == 0
    finally:
        quoting.forget(bot)


def test_a_remainder_below_the_hedge_venues_lot_goes_with_the_next_fill(
        world_a: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchanges.emulator import server as emulator_server

    servers = {MAKER: venue_emulator(MAKER)}
    # a hedge venue trading BTC in lots of 0.01 (~600 USDT): a 500 USDT fill alone rounds to nothing
    monkeypatch.setitem(emulator_server.KNOWN_SYMBOLS, PAIR, ("0.01", "0.01", "0.01", "5", "60000"))
    servers[HEDGE] = venue_emulator(HEDGE)
    try:
        bot = hedged_bot(world_a, servers, order_size_quote=Decimal("500"))
        start(bot)
        fill_the_ask(servers, "60300")
        full_cycle(bot)
        (first,) = Hedge.objects.filter(bot=bot)
        assert first.status == HedgeStatus.CARRIED and first.carry_base == first.need_base > 0
        assert not Order.objects.filter(bot=bot, purpose=OrderPurpose.HEDGE).exists()
        fill_the_ask(servers, "60600")
        full_cycle(bot)
        second = Hedge.objects.filter(bot=bot).exclude(pk=first.pk).get()
        first.refresh_from_db()
        assert first.carried_into_id == second.pk
        assert second.status == HedgeStatus.HEDGED, second.reason
        assert second.amount == Decimal("0.01")
        assert second.amount + second.carry_base == first.need_base + second.need_base
        assert second.carry_base > 0 and second.carried_into_id is None  # for the next fill
    finally:
        quoting.forget(world_a.bot)
        for server in servers.values():
            server.stop_thread()
        clear_gateway_cache()


def test_a_hedge_sent_before_a_crash_is_found_on_the_venue_by_its_id_and_never_sent_twice(
        world_a: Any, venues: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch) -> None:
    from bots.engine.orders import OrderManager

    bot = hedged_bot(world_a, venues)
    start(bot)
    try:
        original = OrderManager._save_acks

        def crash(orders: list[Order]) -> None:
            if any(o.purpose == OrderPurpose.HEDGE for o in orders):
                raise RuntimeError("the worker died with the IOC's answer unsaved")
            original(orders)

        monkeypatch.setattr(OrderManager, "_save_acks", staticmethod(crash))
        fill_the_ask(venues, "60300")
        with pytest.raises(RuntimeError):
            full_cycle(bot)
        (hedge,) = Hedge.objects.filter(bot=bot)
        assert hedge.order is not None and hedge.order.status == "pending", "stored before it was sent"
        assert sum(venues[HEDGE].placement_attempts().values()) == 1, "it reached the hedge venue"
        monkeypatch.setattr(OrderManager, "_save_acks", staticmethod(original))

        full_cycle(bot)  # another process: the venue knows the IOC by its id; nothing is sent again
        hedge.refresh_from_db()
        assert hedge.status == HedgeStatus.HEDGED and hedge.hedged == hedge.amount and hedge.attempts == 1
        assert sum(venues[HEDGE].placement_attempts().values()) == 1
        assert sum(f.amount for f in Fill.objects.filter(bot=bot, is_hedge=True)) == hedge.amount
    finally:
        quoting.forget(bot)


def test_a_fill_a_stop_found_is_hedged_at_the_next_start_or_accepted(
        world_a: Any, venues: dict[str, EmulatorServer]) -> None:
    bot = hedged_bot(world_a, venues)
    engine = start(bot)
    try:
        fill_the_ask(venues, "60300")
        services.bot_request_stop(bot=bot, user=world_a.operator)  # fences the bot, then its final sync
        bot.refresh_from_db()
        assert engine.stop_market_making()
        (owed,) = Hedge.objects.filter(bot=bot)
        assert owed.status == HedgeStatus.PENDING, "found by the stop's sync; a stopped bot sends nothing"
        assert not Order.objects.filter(bot=bot, purpose=OrderPurpose.HEDGE).exists()

        Bot.objects.filter(pk=bot.pk).update(status=BotStatus.STARTING, epoch=bot.epoch + 1)
        bot.refresh_from_db()
        start(bot)  # the start hedges it before anything is quoted
        owed.refresh_from_db()
        assert owed.status == HedgeStatus.HEDGED and owed.hedged == owed.fill.amount
    finally:
        quoting.forget(bot)


def test_a_hedge_venue_that_cannot_fund_the_hedge_is_a_failed_hedge(world_a: Any) -> None:
    servers = {MAKER: venue_emulator(MAKER), HEDGE: venue_emulator(HEDGE, {"BTC": Decimal("1"), "USDT": Decimal("1")})}
    try:
        bot = hedged_bot(world_a, servers)
        start(bot)
        fill_the_ask(servers, "60300")  # the bot sold on the maker venue: the hedge must buy with 1 USDT
        full_cycle(bot)
        (hedge,) = Hedge.objects.filter(bot=bot)
        assert hedge.status == HedgeStatus.FAILED and "InsufficientFunds" in hedge.reason, hedge.reason
        assert hedge.order is not None and hedge.order.status == "rejected"
        (event,) = RiskEvent.objects.filter(bot=bot, event_type="HEDGE_FAILED")
        assert Decimal(event.details["unhedged_base"]) == hedge.amount
        assert open_orders(servers[MAKER]) == []
    finally:
        quoting.forget(world_a.bot)
        for server in servers.values():
            server.stop_thread()
        clear_gateway_cache()
