"""A fill sync on an account whose order stream is live takes the venue's listing and the fate of the
orders that left the book from the account view the pushes keep (``FillSyncMixin.sync_position`` with a
view), against the real emulator and database in process: it asks the venue about no order the view
accounts for, only about a row the view knows nothing of. The trades the order stream pushed (the
platform's ``OrderUpdateStream``, as the feeder runs it) are booked without a REST read once the position's
trades were read by REST, and only while they account for every fill the venue reports on its orders: a
fill whose trade was not pushed makes the sync read the trades.

The gateway's reads are counted by wrapping the real gateway's methods (they still reach the emulator)."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from bots.engine import keys
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.engine.market_data import BALANCE_SECS, AccountView
from bots.engine.trade_marks import trades_synced_in
from bots.models import Fill, LiquidityPosition, Order, OrderStatus
from exchanges.streams import OrderUpdateStream
from mmplatform import aio
from mmplatform.redis_client import WriteBatch, get_redis
from tests.bots.conftest import TAKER_KEY, start_with_taker, started_bot

pytestmark = pytest.mark.django_db(transaction=True)


def counted(monkeypatch: pytest.MonkeyPatch, gateway: Any, names: tuple[str, ...]) -> dict[str, int]:
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(gateway, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(gateway, name, wrapper)
    return calls


def synced_engine(world: Any, emulator: Any, *, levels: int) -> tuple[Any, MarketMakingBot, LiquidityPosition, Any,
                                                                   list[Order]]:
    """A started BTC/USDT bot, a new engine of it with its exchanges, its position, gateway and open rows."""
    bot = started_bot(world, emulator, trading_pairs="BTC/USDT", grid_levels=levels)
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    gateway = engine.order_manager.gateways[position.exchange_account_id]
    rows = list(Order.objects.filter(bot=bot, position=position, status=OrderStatus.OPEN).order_by("pk"))
    return bot, engine, position, gateway, rows


def test_a_sync_on_a_pushed_view_asks_the_venue_only_what_the_view_does_not_know(
        world_a: Any, frozen_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, engine, position, gateway, rows = synced_engine(world_a, frozen_emulator, levels=2)
    assert len(rows) == 4
    listed = aio.run(gateway.fetch_open_orders("BTC/USDT"))
    # the venue cancels one order (as a pushed CANCELED would say), and a second one the view never heard of
    pushed_gone, unheard_of = rows[0], rows[1]
    for row in (pushed_gone, unheard_of):
        aio.run(gateway.cancel_order("BTC/USDT", exchange_order_id=row.exchange_order_id))
    final = aio.run(gateway.fetch_order("BTC/USDT", client_order_id=pushed_gone.client_order_id))
    assert final.status == "canceled"
    now = time.time()
    view = AccountView(
        taken_at=now, balances={}, read_at=now,
        orders={o.client_order_id: o for o in listed
                if o.client_order_id not in (pushed_gone.client_order_id, unheard_of.client_order_id)},
        closed={pushed_gone.client_order_id: (now, final)})

    calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_order", "fetch_my_trades"))
    engine.order_manager.sync_position(position, mid=float("nan"), view=view)

    assert calls["fetch_open_orders"] == 0, "the view stands for the venue's listing"
    assert calls["fetch_order"] == 1, "only the row the view knows nothing of is asked about"
    assert calls["fetch_my_trades"] == 1, "rows left the book: the trades are read"
    statuses = dict(Order.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", "status"))
    assert statuses[pushed_gone.pk] == OrderStatus.CANCELED
    assert statuses[unheard_of.pk] == OrderStatus.CANCELED
    assert [statuses[r.pk] for r in rows[2:]] == [OrderStatus.OPEN, OrderStatus.OPEN]


def test_without_a_view_the_sync_reads_the_venue(world_a: Any, frozen_emulator: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=1,
                      order_size_quote=Decimal("500"))
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    gateway = engine.order_manager.gateways[position.exchange_account_id]
    row = Order.objects.filter(bot=bot, position=position, status=OrderStatus.OPEN).first()
    assert row is not None
    aio.run(gateway.cancel_order("BTC/USDT", exchange_order_id=row.exchange_order_id))

    calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_order", "fetch_my_trades"))
    engine.order_manager.sync_position(position, mid=float("nan"))

    assert calls == {"fetch_open_orders": 1, "fetch_order": 1, "fetch_my_trades": 1}
    row.refresh_from_db()
    assert row.status == OrderStatus.CANCELED


LOT = Decimal("0.00001")  # the emulator's BTC/USDT amount step


@pytest.fixture
def two_account_emulator() -> Any:
    from exchanges.registry import clear_gateway_cache

    server = start_with_taker()
    yield server
    server.stop_thread()
    clear_gateway_cache()


def take(server: Any, gateway: Any, order: Order, amount: Decimal) -> None:
    """The taker account trades ``amount`` of the bot's resting ``order``, after whatever rests in front of
    it (IOC at its price)."""
    book = aio.run(gateway.fetch_order_book("BTC/USDT", 100))
    if order.side == "buy":
        ahead = sum((level.amount for level in book.bids if level.price >= order.price), Decimal(0))
    else:
        ahead = sum((level.amount for level in book.asks if level.price <= order.price), Decimal(0))
    ahead -= order.amount - order.filled  # the bot's own order is last in its level's queue
    taker = server._keys[TAKER_KEY][0]
    side = "BUY" if order.side == "sell" else "SELL"
    server.call(lambda: server.engine.place_order(taker, "BTC/USDT", side, "LIMIT", ahead + amount, order.price,
                                                  time_in_force="IOC", now_ms=int(time.time() * 1000)))


def pushed_until(stream: OrderUpdateStream, done: Any) -> tuple[list[Any], list[Any]]:
    orders: list[Any] = []
    trades: list[Any] = []
    deadline = time.monotonic() + 15  # a guard against hanging, not a speed assertion
    while not done(orders, trades):
        assert time.monotonic() < deadline, f"not pushed: {orders} {trades}"
        updates = aio.run(stream.watch(), timeout_secs=15)
        orders += updates.orders
        trades += updates.trades
    return orders, trades


def test_pushed_trades_are_booked_without_a_read_while_they_account_for_every_fill(
        world_a: Any, two_account_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = two_account_emulator
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1, order_size_quote=Decimal("600"))
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    manager = engine.order_manager
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    gateway = manager.gateways[position.exchange_account_id]
    bid = Order.objects.get(bot=bot, position=position, side="buy", status=OrderStatus.OPEN)
    ask = Order.objects.get(bot=bot, position=position, side="sell", status=OrderStatus.OPEN)
    stream = OrderUpdateStream(gateway)
    aio.run(stream.subscribe())
    try:
        calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_order", "fetch_my_trades"))
        manager.sync_position(position, mid=float("nan"))  # a new engine reads the trades by REST first
        assert calls["fetch_my_trades"] == 1

        # the bid filled in two trades: pushed with its fills, booked from the pushes alone
        half = (bid.amount / 2).quantize(LOT)
        take(server, gateway, bid, half)
        bid.filled = half
        take(server, gateway, bid, bid.amount - half)
        bid.filled = Decimal(0)
        orders, trades = pushed_until(stream, lambda o, t: len(t) == 2 and any(x.status == "closed" for x in o))
        now = time.time()
        final = [o for o in orders if o.client_order_id == bid.client_order_id][-1]
        listed = aio.run(gateway.fetch_open_orders("BTC/USDT"))
        view = AccountView(taken_at=now, balances={}, read_at=now, orders={o.client_order_id: o for o in listed},
                           closed={bid.client_order_id: (now, final)}, trades={t.trade_id: (now, t) for t in trades})
        calls.update(dict.fromkeys(calls, 0))
        manager.reset_stored()  # as a cycle on the kept engine begins (``gate.begin_kept_cycle``)
        booked = manager.sync_position(position, mid=float("nan"), view=view)
        assert calls == {"fetch_open_orders": 0, "fetch_order": 0, "fetch_my_trades": 0}
        # the trades-pending mark the sync's acknowledgements set goes with the cycle's record, not on its own
        pending = keys.trades_pending(position.pk)
        assert get_redis().exists(pending), "deleted before the cycle's record went"
        batch = WriteBatch()
        for position_id in manager.take_synced_marks():
            trades_synced_in(batch, position_id)
        assert len(batch) == 1 and manager.take_synced_marks() == []
        batch.execute()
        assert not get_redis().exists(pending)
        venue = [t for t in aio.run(gateway.fetch_my_trades("BTC/USDT"))
                 if t.exchange_order_id == bid.exchange_order_id]
        assert sorted((f.exchange_trade_id, f.price, f.amount, f.fee, f.fee_currency) for f in booked) == sorted(
            (t.trade_id, t.price, t.amount, t.fee, t.fee_currency) for t in venue)
        bid.refresh_from_db()
        assert bid.status == OrderStatus.FILLED and bid.filled == bid.amount
        position.refresh_from_db()
        assert position.base_position == bid.amount - sum(f.fee for f in booked) and position.fill_count == 2

        # the same view again: nothing new, nothing read, nothing booked twice
        calls.update(dict.fromkeys(calls, 0))
        assert manager.sync_fills(position, mid=float("nan"), view=view) == []
        assert calls["fetch_my_trades"] == 0 and Fill.objects.filter(bot=bot).count() == 2

        # the ask partly filled, its pushed state in the view but not its trade: the sync reads the trades
        quarter = (ask.amount / 4).quantize(LOT)
        take(server, gateway, ask, quarter)
        orders, trades = pushed_until(stream, lambda o, t: t and any(x.client_order_id == ask.client_order_id
                                                                     for x in o))
        partial = [o for o in orders if o.client_order_id == ask.client_order_id][-1]
        assert partial.filled == quarter
        later = time.time()
        view = AccountView(taken_at=later, balances={}, read_at=later, orders={ask.client_order_id: partial},
                           trades=dict(view.trades))
        calls.update(dict.fromkeys(calls, 0))
        booked = manager.sync_position(position, mid=float("nan"), view=view)
        assert calls["fetch_my_trades"] == 1, "a fill the pushed trades do not account for is read by REST"
        assert [(f.exchange_trade_id, f.amount) for f in booked] == [(trades[0].trade_id, quarter)]
        assert Fill.objects.filter(bot=bot).count() == 3
    finally:
        aio.run(stream.close())


def test_an_order_this_engine_saw_closed_but_the_view_still_lists_is_not_asked_about(
        world_a: Any, frozen_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pushed view lists an order for a moment after the venue's answer that closed it (its push is on the way):
    the sync knows that order's fate from the engine's own answers, and neither asks the database whether it is a
    row to adopt or a stray to cancel (it did so for ~a fifth of the fill syncs in the latency bench)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    bot, engine, position, gateway, rows = synced_engine(world_a, frozen_emulator, levels=1)
    listed = aio.run(gateway.fetch_open_orders("BTC/USDT"))  # the listing before the cancel: the view is behind
    cancelled = rows[0]
    assert engine.order_manager.cancel([cancelled]) == 1
    assert Order.objects.get(pk=cancelled.pk).status == OrderStatus.CANCELED
    now = time.time()
    view = AccountView(taken_at=now, balances={}, read_at=now, orders={o.client_order_id: o for o in listed},
                       closed={})
    assert cancelled.client_order_id in view.orders

    calls = counted(monkeypatch, gateway, ("cancel_order", "fetch_order"))
    with CaptureQueriesContext(connection) as queries:
        engine.order_manager.reconcile_position(position, view=view)
    asked = [q["sql"] for q in queries.captured_queries if cancelled.client_order_id in q["sql"]]
    assert asked == [], "the database is not asked about an order this engine saw the venue close"
    assert calls == {"cancel_order": 0, "fetch_order": 0}, "it is neither a stray nor a row to look up"
    assert Order.objects.get(pk=cancelled.pk).status == OrderStatus.CANCELED

    # an engine that did not see that answer still asks (and finds the row: not a stray, nothing adopted)
    fresh = MarketMakingBot(bot)
    fresh.initialize_exchanges(emit_events=False, validate=False)
    fresh_gateway = fresh.order_manager.gateways[position.exchange_account_id]
    fresh_calls = counted(monkeypatch, fresh_gateway, ("cancel_order",))
    with CaptureQueriesContext(connection) as queries:
        fresh.order_manager.reconcile_position(position, view=view)
    assert [q for q in queries.captured_queries if cancelled.client_order_id in q["sql"]]
    assert fresh_calls == {"cancel_order": 0}
    assert Order.objects.get(pk=cancelled.pk).status == OrderStatus.CANCELED


def test_the_bots_of_an_account_share_the_pairs_safety_read_and_it_finds_another_bots_unbooked_trade(
        world_a: Any, two_account_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a live order stream the periodic REST read of the trades is the account's pair's, not each position's:
    a sync whose pair another bot checked within the minute reads nothing, and the read that checks the pair looks
    up the other bots' trades: one without a Fill row (a trade whose push never came) ``OWED_GRACE_MS`` after it
    happened makes its bot read the trades by REST from there, and book it. Before, each of the ~10 bots of an
    account's pair read the pair's last minute of trades by REST every minute."""
    from bots.engine import fills, keys
    from bots.engine.trade_marks import OWED_GRACE_MS, trade_sync_state
    from bots.models import Bot, BotStatus
    from mmplatform.redis_client import get_redis
    from tests.conftest import make_bot

    server = two_account_emulator
    wide = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1, order_size_quote=Decimal("600"),
                       spread_bps=400.0)  # quotes away from the peer's: a trade of the peer's bid leaves them be
    peer = make_bot(world_a.tenant, world_a.account, name="peer", pairs="BTC/USDT", grid_levels=1,
                    order_size_quote=Decimal("600"), spread_bps=20.0, adaptation_enabled=False,
                    monitoring_interval_secs=0.5, status=BotStatus.STARTING, epoch=1)
    starter = MarketMakingBot(peer)
    assert starter.initialize_exchanges() and starter.start_market_making(peer.pairs)
    Bot.objects.filter(pk=peer.pk).update(status=BotStatus.RUNNING)
    engines = {}
    for bot in (wide, peer):
        engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
        engine.initialize_exchanges(emit_events=False, validate=False)
        position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
        engines[bot.pk] = (engine.order_manager, position)
    wide_manager, wide_position = engines[wide.pk]
    peer_manager, peer_position = engines[peer.pk]
    account_id = peer_position.exchange_account_id
    gateway = peer_manager.gateways[account_id]
    redis = get_redis()

    def listed_view() -> AccountView:
        now = time.time()
        listed = aio.run(gateway.fetch_open_orders("BTC/USDT"))
        return AccountView(taken_at=now, balances={}, read_at=now, orders={o.client_order_id: o for o in listed})

    assert wide_manager.gateways[account_id] is gateway  # one gateway per account in the process
    reads = counted(monkeypatch, gateway, ("fetch_my_trades",))

    def check_due(position: LiquidityPosition) -> None:
        """The pair's check and the position's own REST read are both older than their intervals."""
        redis.delete(keys.trades_checked(account_id, "BTC/USDT"), keys.trades_recent(position.pk))

    # a read under the stream checks the pair: the other bot's sync right after it reads nothing
    peer_manager.sync_position(peer_position, mid=float("nan"), view=listed_view())
    assert redis.exists(keys.trades_checked(account_id, "BTC/USDT"))
    redis.delete(keys.trades_recent(wide_position.pk))
    wide_manager.sync_position(wide_position, mid=float("nan"), view=listed_view())
    assert reads["fetch_my_trades"] == 1

    # a trade of the peer's bid whose push never came: the peer's view still lists the bid untouched
    stale = listed_view()
    bid = Order.objects.get(bot=peer, position=peer_position, side="buy", status=OrderStatus.OPEN)
    take(server, gateway, bid, (bid.amount / 3).quantize(LOT))
    time.sleep(0.01)
    redis.delete(keys.trades_recent(peer_position.pk))  # the peer's own read is old; the pair's check is not
    assert peer_manager.sync_position(peer_position, mid=float("nan"), view=stale) == []
    assert reads["fetch_my_trades"] == 1, "the pair was checked within the minute: no REST read"
    assert not Fill.objects.filter(bot=peer).exists()

    # the pair's check falls due; the wide bot's sync makes it: the trade is younger than the grace, not judged yet
    check_due(wide_position)
    wide_manager.sync_position(wide_position, mid=float("nan"), view=stale)
    assert reads["fetch_my_trades"] == 2
    assert not redis.exists(keys.trades_owed(peer_position.pk)) and OWED_GRACE_MS > 1000
    # ... and a check once the grace has passed (shortened here) finds it unbooked: the peer owes a read
    monkeypatch.setattr(fills, "OWED_GRACE_MS", 0)
    check_due(wide_position)
    wide_manager.sync_position(wide_position, mid=float("nan"), view=stale)
    assert reads["fetch_my_trades"] == 3
    assert redis.exists(keys.trades_owed(peer_position.pk))
    assert redis.exists(keys.trades_checked(account_id, "BTC/USDT"))
    assert not Fill.objects.filter(bot=peer).exists(), "the checking bot books only its own trades"

    # the peer's next sync, on the same stale view, reads by REST and books the trade exactly as the venue has it
    booked = peer_manager.sync_position(peer_position, mid=float("nan"), view=stale)
    assert reads["fetch_my_trades"] == 4
    venue = [t for t in aio.run(gateway.fetch_my_trades("BTC/USDT")) if t.exchange_order_id == bid.exchange_order_id]
    assert len(venue) == 1 and reads["fetch_my_trades"] == 5  # (this read of the test's own counts too)
    assert [(f.exchange_trade_id, f.price, f.amount, f.fee) for f in booked] == [
        (venue[0].trade_id, venue[0].price, venue[0].amount, venue[0].fee)]
    assert not redis.exists(keys.trades_owed(peer_position.pk)), "the debt is paid"
    redis.delete(keys.trades_recent(peer_position.pk))
    assert peer_manager.sync_position(peer_position, mid=float("nan"), view=stale) == []
    assert reads["fetch_my_trades"] == 5 and Fill.objects.filter(bot=peer).count() == 1
    assert not Fill.objects.filter(bot=wide).exists()

    # a burst of fills syncs the pair's bots at once: the first that finds the check due claims it, the others
    # do not read
    check_due(wide_position)
    redis.delete(keys.trades_recent(peer_position.pk))
    assert trade_sync_state(wide_position.pk, shared=(account_id, "BTC/USDT")).safety_due
    assert not trade_sync_state(peer_position.pk, shared=(account_id, "BTC/USDT")).safety_due


def test_a_full_cycle_on_a_live_view_takes_its_listing_and_balances_and_still_books_by_rest(
        world_a: Any, two_account_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine driver's full cycle (the periodic one, a bot's first) on an account whose order stream is live:
    the open orders and the balances are the view's, no REST read of them; the trades are read by REST as without a
    view (the full cycle's net), and an account the cycle booked fills on has its balances read."""
    server = two_account_emulator
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1, order_size_quote=Decimal("600"))
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    account_id = position.exchange_account_id
    gateway = engine.order_manager.gateways[account_id]
    bid = Order.objects.get(bot=bot, position=position, side="buy", status=OrderStatus.OPEN)
    resting = set(Order.objects.filter(bot=bot, status=OrderStatus.OPEN).values_list("client_order_id", flat=True))

    def live_view(balances_age_secs: float = 0.0) -> AccountView:
        """The account as the feeder keeps it under its order stream: every open order, the balances."""
        now = time.time()
        listed = aio.run(gateway.fetch_open_orders(None))
        balance = aio.run(gateway.fetch_balance())
        return AccountView(taken_at=now, read_at=now, orders={o.client_order_id: o for o in listed},
                           balances=balance.totals(), free=balance.free_amounts(), balances_at=now - balances_age_secs)

    view = live_view()
    calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_order", "fetch_my_trades", "fetch_balance"))
    engine.monitoring_iteration(begin_cycle(bot.pk), views=lambda a: view if a == account_id else None)
    assert (calls["fetch_open_orders"], calls["fetch_order"], calls["fetch_balance"]) == (0, 0, 0), calls
    assert engine.inventory_manager.balances[account_id] == view.balances
    assert set(Order.objects.filter(bot=bot, status=OrderStatus.OPEN).values_list("client_order_id", flat=True)
               ) == resting, "nothing moved: nothing re-quoted"

    # balances older than the feeder's balance interval are read
    view = live_view(balances_age_secs=BALANCE_SECS + 1)
    calls.update(dict.fromkeys(calls, 0))
    engine.monitoring_iteration(begin_cycle(bot.pk), views=lambda a: view if a == account_id else None)
    assert (calls["fetch_open_orders"], calls["fetch_balance"]) == (0, 1), calls

    # the bid filled; the view lists it no more but has no final state for it, and its balances are from before
    # the fill: the row is asked about, the trade read by REST from the position's own mark and booked, and the
    # balances read after it
    before = live_view()
    take(server, gateway, bid, bid.amount)
    view = replace(live_view(), balances=before.balances, free=before.free)
    assert bid.client_order_id not in view.orders
    calls.update(dict.fromkeys(calls, 0))
    engine.monitoring_iteration(begin_cycle(bot.pk), views=lambda a: view if a == account_id else None)
    assert calls == {"fetch_open_orders": 0, "fetch_order": 1, "fetch_my_trades": 1, "fetch_balance": 1}, calls
    venue = [t for t in aio.run(gateway.fetch_my_trades("BTC/USDT")) if t.exchange_order_id == bid.exchange_order_id]
    booked = Fill.objects.filter(bot=bot)
    assert sorted((f.exchange_trade_id, f.price, f.amount) for f in booked) == sorted(
        (t.trade_id, t.price, t.amount) for t in venue) and venue
    assert engine.inventory_manager.balances[account_id]["BTC"] > view.balances["BTC"], "read after the fill"
    bid.refresh_from_db()
    assert bid.status == OrderStatus.FILLED
    assert Order.objects.filter(bot=bot, side="buy", status=OrderStatus.OPEN).exists(), "the bid quoted again"
