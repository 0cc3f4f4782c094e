"""Re-quotes by cancel-replace (``bots/engine/acts.py``, ``bots/engine/replacing.py``): on a venue that cancels and
places in one request (the emulator's Binance ``order/cancelReplace``), a re-quote moves each quote with one request,
the side never empty; the replaced row is settled with what the venue's answer says it had filled, and the trade of
that fill is booked once; an old quote that was filled before its replacement landed is settled as filled and its
replacement placed on its own. In process against the real emulator, database and Redis; the emulator's engine is
wrapped read-only to count the requests and note what rested on a side as each request was applied."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bots.engine.core import MarketMakingBot
from bots.engine.driver import Driver
from bots.models import Bot, Fill, LiquidityPosition, Order, OrderStatus
from exchanges.emulator.server import EmulatorServer
from mmplatform import aio
from strategies.requote_order import replacements
from strategies.types import OrderIntent
from tests.bots.conftest import EMULATOR_KEY, emulator_open_orders, started_bot
from tests.bots.test_driver import driver, no_streams, running_bot, settle  # noqa: F401  (fixtures)
from tests.bots.test_requote_order import assert_moved, requote_on_a_move

BUY, SELL = OrderIntent("buy", 99.0, 1.0, 0), OrderIntent("sell", 101.0, 1.0, 0)
LOT = Decimal("0.00001")  # the emulator's BTC/USDT amount step


def test_replacements_pair_each_new_quote_with_an_old_one_of_its_side() -> None:
    old = [("sell", 102.0, 1.0), ("buy", 98.0, 1.0), ("buy", 97.0, 1.0)]
    assert replacements([BUY, SELL], old) == [1, 0]
    assert replacements([BUY, OrderIntent("buy", 98.5, 1.0, 1)], old) == [1, 2]
    assert replacements([BUY], [("sell", 102.0, 1.0)]) is None  # no old bid to replace: nothing by cancel-replace
    assert replacements([BUY, SELL], [("sell", 102.0, 1.0)]) == [None, 0]  # the bid (filled) placed alongside
    assert replacements([], old) is None and replacements([BUY], []) is None
    # a new bid at or above an old ask (or a new ask at or below an old bid) may meet it: not by cancel-replace
    assert replacements([OrderIntent("buy", 102.0, 1.0, 0)], old) is None
    assert replacements([OrderIntent("sell", 98.0, 1.0, 0)], old) is None


def watch(server: EmulatorServer, account_id: str) -> tuple[Counter[str], list[tuple[str, int]], Any]:
    """Count the account's requests by kind at the matching engine, and note for each cancel-replace the side and
    how many of the account's orders rested on that side once it was applied. Returns (counts, notes, undo)."""
    engine = server.engine
    counts: Counter[str] = Counter()
    notes: list[tuple[str, int]] = []
    originals = {name: getattr(engine, name) for name in ("place_order", "cancel_order", "cancel_replace")}

    inside: list[str] = []  # the engine's cancel-replace cancels and places through its own methods: not requests

    def wrapped(name: str) -> Any:
        def call(acct: str, symbol: str, *args: Any, **kwargs: Any) -> Any:
            nested = bool(inside)
            inside.append(name)
            try:
                result = originals[name](acct, symbol, *args, **kwargs)
            finally:
                inside.pop()
            if acct == account_id and not nested:
                counts[name] += 1
                if name == "cancel_replace":
                    side = kwargs.get("side") or args[0]
                    notes.append((side, sum(1 for o in engine.open_orders(acct, symbol) if o.side == side)))
            return result
        return call

    for name in originals:
        setattr(engine, name, wrapped(name))

    def undo() -> None:
        for name, original in originals.items():
            setattr(engine, name, original)

    return counts, notes, undo


pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_a_requote_moves_each_quote_with_one_cancel_replace_and_no_side_stands_empty(
        running_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer, settings: Any) -> None:  # noqa: F811
    settings.ENGINE_CANCEL_REPLACE = True
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    old = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    assert len(old) == 2
    account_id = frozen_emulator._keys[EMULATOR_KEY][0]
    counts, notes, undo = watch(frozen_emulator, account_id)
    try:
        runner, statements = requote_on_a_move(driver, running_bot, runner, frozen_emulator, old)
    finally:
        undo()
    assert runner.last_verdict.startswith("requote"), runner.last_verdict
    assert counts == {"cancel_replace": 2}, counts  # no cancel, no placement on its own: one request a quote
    assert sorted(notes) == [("BUY", 1), ("SELL", 1)], notes  # the new quote rested as the old one went
    now_open = emulator_open_orders(frozen_emulator)
    assert sorted(o.side for o in now_open) == ["BUY", "SELL"]
    assert {o.client_order_id for o in now_open} == runner.known
    assert_moved(running_bot, old, runner.known)
    if connection.vendor == "postgresql":  # as placing first: the statements do not grow
        assert statements <= 5, statements


def taker_sells(server: EmulatorServer, price: Decimal, amount: Decimal) -> None:
    """A second account sells ``amount`` into the bids at ``price`` and above (IOC), whatever rests ahead first."""
    engine = server.engine

    def trade() -> None:
        if not engine.has_account("taker"):
            engine.create_account("taker", {"BTC": Decimal("100"), "USDT": Decimal("10000000")})
        engine.place_order("taker", "BTC/USDT", "SELL", "LIMIT", amount, price, time_in_force="IOC",
                           now_ms=int(time.time() * 1000))

    server.call(trade)


def bids_ahead(server: EmulatorServer, price: Decimal, own_remaining: Decimal) -> Decimal:
    """What rests at ``price`` or better on the bids before an order of ours there (ours is last in its level)."""
    book: Any = server.call(lambda: server.engine.book("BTC/USDT", 100))
    return sum((level.quantity for level in book.bids if level.price >= price), Decimal(0)) - own_remaining


@pytestmark_db
def test_a_replaced_quote_is_settled_with_what_it_had_filled_and_its_trade_booked_once(
        world_a: Any, frozen_emulator: EmulatorServer) -> None:
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=1,
                      order_size_quote=Decimal("600"))
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
    engine.initialize_exchanges(emit_events=False, validate=False)
    manager = engine.order_manager
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    bid = Order.objects.get(bot=bot, position=position, side="buy", status=OrderStatus.OPEN)
    ask = Order.objects.get(bot=bot, position=position, side="sell", status=OrderStatus.OPEN)
    gateway = manager.gateways[position.exchange_account_id]

    # a third of the bid trades just before its replacement lands; the whole ask trades (the venue closed it)
    part = (bid.amount / 3).quantize(LOT)
    taker_sells(frozen_emulator, bid.price, bids_ahead(frozen_emulator, bid.price, bid.amount) + part)
    frozen_emulator.call(lambda: frozen_emulator.engine.place_order(
        "taker", "BTC/USDT", "BUY", "LIMIT", Decimal("1"), ask.price, time_in_force="IOC",
        now_ms=int(time.time() * 1000)))
    assert aio.run(gateway.fetch_order("BTC/USDT", client_order_id=ask.client_order_id)).status == "closed"

    new = manager.store_intents(position, [OrderIntent("buy", float(bid.price) - 20, float(bid.amount), 0),
                                           OrderIntent("sell", float(ask.price) + 20, float(ask.amount), 0)],
                                cycle=bot.cycle_count + 100)
    outcomes = manager.send(new, {new[0].pk: bid, new[1].pk: ask})
    assert [o.error for o in outcomes] == [None, None]
    replaced = dict((o.client_order_id, r) for o, r in manager.replaced)
    assert replaced[bid.client_order_id].status == "canceled" and replaced[bid.client_order_id].filled == part
    assert manager.settle_cancels([o for o, _ in manager.replaced], [r for _, r in manager.replaced]) == 2
    bid.refresh_from_db()
    ask.refresh_from_db()
    assert (bid.status, bid.filled) == (OrderStatus.CANCELED, part)
    assert (ask.status, ask.filled) == (OrderStatus.FILLED, ask.amount)  # its replacement went on its own
    listed = {o.client_order_id for o in aio.run(gateway.fetch_open_orders("BTC/USDT"))}
    assert listed == {o.client_order_id for o in new}

    # the fills are booked by the next sync, exactly as the venue lists the trades, once
    booked = manager.sync_position(position, mid=float("nan"))
    venue = [t for t in aio.run(gateway.fetch_my_trades("BTC/USDT"))
             if t.exchange_order_id in (bid.exchange_order_id, ask.exchange_order_id)]
    assert sorted((f.exchange_trade_id, f.amount) for f in booked) == sorted((t.trade_id, t.amount) for t in venue)
    assert sum(f.amount for f in booked if f.order_id == bid.pk) == part
    assert manager.sync_position(position, mid=float("nan")) == []
    assert Fill.objects.filter(bot=bot).count() == len(venue)
