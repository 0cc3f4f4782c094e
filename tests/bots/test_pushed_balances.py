"""Balances pushed by the venue (Binance's ``outboundAccountPosition``, which the emulator sends after a loop turn's
order updates): the platform's ``OrderUpdateStream`` hands them over with the orders and trades, the feeder applies
them to the account view (``AccountView.balances_pushed`` while they came after every update it shows), and a fill
sync takes them instead of reading the balances by REST (``RequoteMixin._reload_balances``). In process against
the real emulator (its own thread), database and Redis; the gateway's balance reads are counted by wrapping the real
methods (they still reach the emulator)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot
from bots.engine.driver import Driver
from bots.models import Fill, LiquidityPosition, Order, OrderStatus
from exchanges.gateway import Trade
from exchanges.registry import clear_gateway_cache
from exchanges.streams import OrderUpdateStream, PushedUpdates
from mmplatform import aio
from tests.bots.conftest import start_with_taker, started_bot
from tests.bots.test_driver import driver, fill_the_bid, no_streams, settle, taker_world_bot  # noqa: F401
from tests.bots.test_pushed_sync import LOT, counted, take, two_account_emulator  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_order_stream_hands_over_the_balances_pushed_after_a_fill(world_a: Any,
                                                                      two_account_emulator: Any) -> None:  # noqa: F811
    server = two_account_emulator
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1, order_size_quote=Decimal("600"))
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    bid = Order.objects.get(bot=bot, position=position, side="buy", status=OrderStatus.OPEN)
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    gateway = engine.order_manager.gateways[position.exchange_account_id]
    stream = OrderUpdateStream(gateway)
    aio.run(stream.subscribe())
    try:
        take(server, gateway, bid, (bid.amount / 2).quantize(LOT))
        batches: list[PushedUpdates] = []
        deadline = time.monotonic() + 15  # a guard against hanging, not a speed assertion
        while not (batches and batches[-1].balances_last and any(b.trades for b in batches)):
            assert time.monotonic() < deadline, batches
            batches.append(aio.run(stream.watch(), timeout_secs=15))
        pushed: dict[str, tuple[Decimal, Decimal]] = {}
        for batch in batches:
            for balances in batch.balances:
                pushed.update(balances)
        venue = aio.run(gateway.fetch_balance())
        for asset in ("BTC", "USDT"):
            free, locked = pushed[asset]
            assert (free, free + locked) == (venue.free_amounts()[asset], venue.totals()[asset]), asset
    finally:
        aio.run(stream.close())


def test_a_fill_sync_takes_the_balances_the_venue_pushed_after_the_fill(
        world_a: Any, no_streams: None, driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    server = start_with_taker()
    try:
        bot = taker_world_bot(world_a, server, interval_secs=3600.0)
        runner = settle(driver, bot, lambda r: r.engine is not None)
        driver._feed_once(time.time())  # the feeder's views of the bot's account
        bid = fill_the_bid(server, bot)
        account_id = bid.exchange_account_id
        gateway = runner.engine.order_manager.gateways[account_id]
        final = aio.run(gateway.fetch_order("BTC/USDT", client_order_id=bid.client_order_id))  # as pushed
        venue = aio.run(gateway.fetch_balance())
        balances = {a: (venue.free_amounts()[a], venue.totals()[a] - venue.free_amounts()[a]) for a in ("BTC", "USDT")}
        trade = Trade(trade_id="pushed-1", exchange_order_id=bid.exchange_order_id or "",
                      client_order_id=bid.client_order_id, pair="BTC/USDT", side="buy", price=bid.price,
                      amount=bid.amount, fee=None, fee_currency=None, timestamp_ms=int(time.time() * 1000),
                      is_maker=True)
        reads = counted(monkeypatch, gateway, ("fetch_balance", "fetch_balance_since"))
        # the fill's order update and trade, then the balances after them (as the venue pushes them)
        driver.pushed_orders.append((account_id, PushedUpdates([final], [trade], (balances,), True)))
        driver._apply_pushes()
        view = driver.accounts[account_id]
        assert view.balances_pushed and view.balances["BTC"] == venue.totals()["BTC"]
        assert view.free["USDT"] == venue.free_amounts()["USDT"]
        driver.order_streams_live.add(account_id)  # (pushes come from a live stream)
        runner = settle(driver, bot, lambda r: bid.client_order_id not in r.known and len(r.known) == 2,
                        timeout_secs=10)
        assert driver.stats["fills"] == 1 and driver.stats["balances_pushed"] == 1, driver.stats
        assert reads == {"fetch_balance": 0, "fetch_balance_since": 0}, "the pushed balances, no REST read"
        assert runner.engine.inventory_manager.balances[account_id]["BTC"] == venue.totals()["BTC"]
        assert Fill.objects.get(bot=bot).order_id == bid.pk

        # an order update after the last balances: they no longer include every update the view shows
        driver.pushed_orders.append((account_id, PushedUpdates([final], [])))
        driver._apply_pushes()
        assert not driver.accounts[account_id].balances_pushed
        driver.pushed_orders.append((account_id, PushedUpdates([], [], (balances,), True)))
        driver._apply_pushes()
        assert driver.accounts[account_id].balances_pushed
    finally:
        server.stop_thread()
        clear_gateway_cache()


def test_a_fill_the_engines_own_answer_found_counts_once_the_view_shows_it() -> None:
    """A cancel's (or a replacement's) answer can find a fill before its push lands: the pushed balances include it
    only once the view shows that order filled as far as the row knows (``requote._shows``)."""
    from bots.engine.market_data import AccountView
    from bots.engine.requote import _shows
    from exchanges.gateway import ExchangeOrder

    row = Order(client_order_id="mm-1-1-1-1-b0", filled=Decimal("0.4"), amount=Decimal("1"))

    def state(filled: str, status: str = "open") -> ExchangeOrder:
        return ExchangeOrder(exchange_order_id="9", client_order_id=row.client_order_id, pair="BTC/USDT",
                             side="buy", order_type="limit", price=Decimal("100"), amount=Decimal("1"),
                             filled=Decimal(filled), remaining=Decimal(1) - Decimal(filled), average_price=None,
                             status=status, timestamp_ms=None, updated_ms=None)

    def view(**parts: Any) -> AccountView:
        return AccountView(taken_at=0.0, balances={}, balances_pushed=True, **parts)

    assert _shows(view(orders={}), [])
    assert not _shows(view(orders={}), [row]), "not pushed yet"
    assert not _shows(view(orders={row.client_order_id: state("0.1")}), [row]), "pushed before that fill"
    assert _shows(view(orders={row.client_order_id: state("0.4")}), [row])
    assert _shows(view(orders={}, closed={row.client_order_id: (0.0, state("1", "closed"))}), [row])
