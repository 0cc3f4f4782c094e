"""The engine driver in process (no Celery), against the real emulator, database and Redis: what makes
a cycle quiet, a re-quote or a full one, that a quiet cycle touches no database, and how drivers share
shards. The driver's ``tick`` is called by the test instead of its thread, so each step is observable."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots.engine.depth import WAIT_LIMIT_SECS
from bots.engine.driver import Driver
from bots.engine.lease import cycle_records
from bots.engine.runner import next_due
from bots.engine.shards import DRIVERS_KEY, shard_key
from bots.models import OPEN_ORDER_STATUSES, Bot, BotStatus, Fill, Order, OrderStatus
from exchanges.emulator.server import EmulatorServer
from exchanges.gateway import Trade
from exchanges.registry import clear_gateway_cache
from exchanges.streams import PushedUpdates
from mmplatform import aio
from mmplatform.redis_client import get_redis
from tests.bots.conftest import TAKER_KEY, emulator_open_orders, start_with_taker, started_bot

pytestmark = pytest.mark.django_db(transaction=True)  # the driver's pool threads have their own connections


@pytest.fixture
def no_streams(settings: Any) -> None:
    settings.ENGINE_BOOK_STREAMS = False
    settings.ENGINE_ORDER_STREAMS = False  # the polled account views (test_order_stream.py: the pushed ones)
    settings.ENGINE_FULL_CYCLE_SECS = 3600.0


@pytest.fixture
def running_bot(world_a: Any, frozen_emulator: EmulatorServer, no_streams: None) -> Bot:
    return started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=1,
                       monitoring_interval_secs=0.2, metrics_interval_secs=3600.0,
                       volatility_pause_threshold=1000.0, inventory_deviation_limit=1.0)


@pytest.fixture
def driver() -> Any:
    get_redis().delete(DRIVERS_KEY, *(shard_key(s) for s in range(64)))
    made = Driver("test")
    yield made
    made.stop()


def settle(driver: Driver, bot: Bot, predicate: Any, timeout_secs: float = 20) -> Any:
    """Tick the driver until ``predicate(runner)`` holds (pool cycles finish in their threads)."""
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        driver._feed_once(time.time())  # the feeder thread's pass (account views, books), in this thread
        driver.tick()
        runner = driver.runners.get(bot.pk)
        if runner is not None and not runner.busy and predicate(runner):
            return runner
    last = driver.runners.get(bot.pk)
    raise AssertionError(f"the driver never reached the expected state; last verdict: "
                         f"{last.last_verdict if last else 'no runner'}")


def quote_prices(server: EmulatorServer) -> set[Decimal]:
    return {Decimal(o.price) for o in emulator_open_orders(server)}


def test_first_cycle_is_full_then_quiet_cycles_touch_no_database(running_bot: Bot, driver: Driver,
                                                                  frozen_emulator: EmulatorServer) -> None:
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    assert runner.last_full_at > 0
    before_prices = quote_prices(frozen_emulator)
    cycles_before = len(cycle_records(running_bot.pk))
    driver._housekeeping_at = driver._flush_at = time.time() + 3600  # this tick: cycles only
    driver._feed_once(time.time())
    driver.bring_forward(runner)
    with CaptureQueriesContext(connection) as queries:
        driver.tick()
    assert runner.quiet_cycles == 1, "an unchanged market is a quiet cycle"
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert len(cycle_records(running_bot.pk)) == cycles_before + 1  # recorded in Redis
    assert quote_prices(frozen_emulator) == before_prices

    count = Bot.objects.get(pk=running_bot.pk).cycle_count
    driver._flush()  # once a second for all bots: cycle count and last cycle time
    assert Bot.objects.get(pk=running_bot.pk).cycle_count == count + 1


def test_a_mid_move_beyond_tolerance_requotes_on_the_kept_engine(running_bot: Bot, driver: Driver,
                                                                  frozen_emulator: EmulatorServer) -> None:
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    full_at = runner.last_full_at
    engine = runner.engine
    old = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    target = (frozen_emulator.market.mid("BTC/USDT") * Decimal("1.0015")).quantize(Decimal("0.01"))
    # the book's mid moves ~8 bps (our own ask stays best): past the 5 bps refresh tolerance
    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", target))
    get_redis().delete(*get_redis().keys("mm:md:book:*"))
    driver.bring_forward(runner)
    runner = settle(driver, running_bot, lambda r: not (old & {o.client_order_id for o in
                                                              emulator_open_orders(frozen_emulator)}))
    now_open = emulator_open_orders(frozen_emulator)
    assert len(now_open) == 2
    mid = sum(Decimal(o.price) for o in now_open) / 2
    assert abs(mid - target) / target < Decimal("0.0010"), (mid, target)
    assert runner.last_full_at == full_at, f"a re-quote is not a full cycle ({runner.last_verdict})"
    assert runner.last_verdict.startswith("requote")
    assert runner.engine is engine
    assert {o.client_order_id for o in now_open} == runner.known
    assert not Order.objects.filter(bot=running_bot, client_order_id__in=old, status__in=OPEN_ORDER_STATUSES).exists()
    assert driver.stats["guard_takes"] >= 1, driver.stats  # the quote guard's wait is counted (guard_wait_ms)
    assert "guard_wait_ms" in driver.stats
    # and its round trips: a re-quote stores and acknowledges its rows (statements) and waits for the venue
    assert driver.stats["requote_statements"] >= 2 and driver.stats["requote_loop_waits"] >= 1, driver.stats


def test_an_order_that_left_the_book_is_synced_and_replaced(running_bot: Bot, driver: Driver,
                                                            frozen_emulator: EmulatorServer) -> None:
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    full_at = runner.last_full_at
    victim = emulator_open_orders(frozen_emulator)[0]
    frozen_emulator.call(lambda: frozen_emulator.engine.cancel_order(victim.account_id, victim.symbol,
                                                                      order_id=victim.order_id))
    time.sleep(0.6)  # orders younger than SENT_MARGIN_SECS may be missing from a view for good reason
    driver.bring_forward(runner)
    runner = settle(driver, running_bot, lambda r: r.last_verdict.startswith("fills")
                    and victim.client_order_id not in r.known)
    assert runner.last_full_at == full_at  # the pair was reconciled on its own, not a full cycle
    row = Order.objects.get(client_order_id=victim.client_order_id)
    assert row.status == OrderStatus.CANCELED  # the sync learnt its fate from the venue
    assert len(emulator_open_orders(frozen_emulator)) == 2  # and the level was quoted again
    assert {o.client_order_id for o in emulator_open_orders(frozen_emulator)} == runner.known


def taker_world_bot(world: Any, server: EmulatorServer, *, interval_secs: float) -> Bot:
    """A one-level BTC/USDT bot on an emulator with a taker account (``start_with_taker``)."""
    return started_bot(world, server, trading_pairs="BTC/USDT", grid_levels=1, monitoring_interval_secs=interval_secs,
                       metrics_interval_secs=3600.0, volatility_pause_threshold=1000.0, inventory_deviation_limit=1.0)


def fill_the_bid(server: EmulatorServer, bot: Bot) -> Order:
    """The taker sweeps the book down to the bot's bid (IOC: the rest expires); returns the bid's row."""
    bid = Order.objects.get(bot=bot, side="buy", status=OrderStatus.OPEN)
    taker = server._keys[TAKER_KEY][0]
    server.call(lambda: server.engine.place_order(taker, "BTC/USDT", "SELL", "LIMIT", Decimal("5"), bid.price,
                                                  time_in_force="IOC", now_ms=int(time.time() * 1000)))
    time.sleep(0.6)  # orders younger than SENT_MARGIN_SECS may be missing from a view for good reason
    return bid


def test_a_fill_is_requoted_first_then_booked_once_on_the_kept_engine(world_a: Any, no_streams: None,
                                                                       driver: Driver) -> None:
    """A fill sync places the filled level's replacement before it books the fill: the new quote does not
    wait for the booking's statements (tick-to-quote), and the fill is booked exactly once, at its price."""
    server = start_with_taker()
    try:
        bot = taker_world_bot(world_a, server, interval_secs=0.2)
        runner = settle(driver, bot, lambda r: r.engine is not None)
        full_at = runner.last_full_at
        bid = fill_the_bid(server, bot)
        driver.bring_forward(runner)
        runner = settle(driver, bot, lambda r: bid.client_order_id not in r.known and len(r.known) == 2)
        assert runner.last_full_at == full_at, "a fill sync on the kept engine, not a full cycle"
        assert driver.stats["fills"] == 1, driver.stats
        fill = Fill.objects.get(bot=bot)  # booked once
        assert (fill.order_id, fill.side, fill.amount, fill.price) == (bid.pk, "buy", bid.amount, bid.price)
        assert Order.objects.get(pk=bid.pk).status == OrderStatus.FILLED
        new_bids = [o for o in emulator_open_orders(server) if o.side == "BUY"]
        assert len(new_bids) == 1 and new_bids[0].client_order_id != bid.client_order_id
        # the venue accepted the replacement (its own ms clock) before the fill's row was written
        assert new_bids[0].created_ms <= fill.created_at.timestamp() * 1000, (new_bids[0].created_ms, fill.created_at)
        assert {o.client_order_id for o in emulator_open_orders(server)} == runner.known
    finally:
        server.stop_thread()
        clear_gateway_cache()


def test_a_pushed_fill_brings_its_bot_forward_to_a_fill_sync(world_a: Any, no_streams: None,
                                                             driver: Driver) -> None:
    """A trade the order stream pushes makes its bot's check run at once (a fill sync), not at the bot's next
    interval: the feeder, applying the push between its passes, hands the bot to the driver (``traded_bots``).
    The bot's next check is an hour away here; without the hand-over the fill would wait for it."""
    server = start_with_taker()
    try:
        bot = taker_world_bot(world_a, server, interval_secs=3600.0)
        runner = settle(driver, bot, lambda r: r.engine is not None)
        assert runner.next_due > time.time() + 3000
        driver._feed_once(time.time())  # the feeder's views of the bot's account
        bid = fill_the_bid(server, bot)
        trade = Trade(trade_id="pushed-1", exchange_order_id=bid.exchange_order_id or "",
                      client_order_id=bid.client_order_id, pair="BTC/USDT", side="buy", price=bid.price,
                      amount=bid.amount, fee=None, fee_currency=None, timestamp_ms=int(time.time() * 1000),
                      is_maker=True)
        gateway = runner.engine.order_manager.gateways[bid.exchange_account_id]
        final = aio.run(gateway.fetch_order("BTC/USDT", client_order_id=bid.client_order_id))  # as pushed
        assert final.status == "closed" or not final.is_open
        driver.pushed_orders.append((bid.exchange_account_id, PushedUpdates(orders=[final], trades=[trade])))
        driver._apply_pushes()  # the feeder, woken by the push between its passes
        assert list(driver.traded_bots) == [bot.pk]
        # (pushes come from a live stream: the feeder's passes stamp its view current, as they do in the worker)
        driver.order_streams_live.add(bid.exchange_account_id)
        runner = settle(driver, bot, lambda r: bid.client_order_id not in r.known and len(r.known) == 2,
                        timeout_secs=10)
        assert driver.stats["fills"] == 1, driver.stats
        assert Fill.objects.get(bot=bot).order_id == bid.pk
        assert runner.next_due > time.time() + 3000, "then back to its own interval"
    finally:
        server.stop_thread()
        clear_gateway_cache()


def test_a_config_change_drops_the_kept_engine(running_bot: Bot, driver: Driver) -> None:
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    read, skipped = driver.stats["bots_read"], driver.stats["bots_read_skipped"]
    driver._housekeeping_at = 0.0
    driver.tick()  # nothing moved: the bots are not read again (rows.bots_fingerprint)
    assert (driver.stats["bots_read"], driver.stats["bots_read_skipped"]) == (read, skipped + 1)
    assert runner.engine is not None
    bot = Bot.objects.get(pk=running_bot.pk)
    bot.spread_bps = 80.0
    bot.save()
    driver._housekeeping_at = 0.0
    driver.tick()
    assert driver.stats["bots_read"] == read + 1
    assert runner.engine is None or runner.engine.config.strategy_settings.spread_bps == 80.0
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    assert runner.engine.config.strategy_settings.spread_bps == 80.0


def test_a_stopped_bot_is_dropped_and_its_lease_left_free(running_bot: Bot, driver: Driver) -> None:
    settle(driver, running_bot, lambda r: r.engine is not None)
    Bot.objects.filter(pk=running_bot.pk).update(status=BotStatus.STOPPING, epoch=running_bot.epoch + 1)
    driver._housekeeping_at = 0.0
    driver.tick()
    assert running_bot.pk not in driver.runners
    assert not get_redis().exists(f"mm:lease:bot:{running_bot.pk}")


def test_drivers_share_the_shards_fairly_and_a_stopped_one_hands_them_over(settings: Any, no_streams: None) -> None:
    settings.ENGINE_SHARDS = 8
    get_redis().delete(DRIVERS_KEY, *(shard_key(s) for s in range(8)))
    first, second = Driver("one"), Driver("two")
    try:
        first._housekeep(time.time())
        assert first.owned == set(range(8))
        second._housekeep(time.time())  # registers; nothing is free yet
        first._housekeep(time.time())  # sees two drivers: keeps its fair share
        second._housekeep(time.time())
        assert len(first.owned) == 4 and len(second.owned) == 4
        assert not first.owned & second.owned
        first.stop()  # a warm shutdown gives its shards back at once
        second._housekeep(time.time())
        assert second.owned == set(range(8))
    finally:
        second.stop()


def test_next_due_keeps_a_fixed_rate_and_skips_missed_cycles() -> None:
    assert next_due(100.0, 1.0, 100.4) == 101.0
    assert next_due(100.0, 1.0, 101.5) == 101.0  # late by half an interval: still due at its time
    assert next_due(100.0, 1.0, 105.0) == 105.0  # far behind: skip, do not run them back to back


def test_a_bot_quotes_off_the_market_not_off_its_own_orders() -> None:
    from bots.engine.market_data import BookData, without_own

    book = BookData(bids=[(100.0, 2.0), (99.0, 5.0)], asks=[(101.0, 1.0), (102.0, 3.0)], fetched_at=1.0)
    mine = [("buy", 100.0, 2.0), ("sell", 102.0, 1.0)]
    stripped = without_own(book, mine)
    assert stripped.bids == [(99.0, 5.0)]  # our bid was the whole best level: the market's best is 99
    assert stripped.asks == [(101.0, 1.0), (102.0, 2.0)]  # others still rest at 102
    assert without_own(book, []) is book


def test_own_top_on_a_stale_depth_read_is_not_quoted_off(running_bot: Bot, driver: Driver,
                                                         frozen_emulator: EmulatorServer) -> None:
    """The pushed best bid is our own order and the depth behind it is an old read: taking our order out
    must not expose the old read's next level as the market (after a jump it is stale, and post-only
    quotes computed from it are rejected); the driver reads the depth first."""
    from bots.engine.core import exchange_key
    from bots.engine.market_data import BookData

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    position = next(iter(engine.active_positions.values()))
    ours = next(o for o in runner.live[position.pk] if o.side == "buy")
    venue, pair = exchange_key(engine.accounts[position.exchange_account_id]), position.trading_pair
    stale_level = float(ours.price) * 0.9  # far below anything real: only an old read could say it
    old = time.time() - 1.0
    driver._books[(venue, pair)] = (old, BookData([(float(ours.price), float(ours.amount)), (stale_level, 1.0)],
                                                  [(float(ours.price) * 1.01, 1.0)], old))
    driver.tops[(venue, pair)] = (float(ours.price), float(ours.amount), float(ours.price) * 1.01, 1.0, time.time())
    snapshot = driver._snapshot(runner, engine, position, {}, time.time())
    assert snapshot.best_bid > stale_level * 1.05, "quoted off a stale level behind our own order"
    # the depth was read again, and handed to the feeder (the one writer of ``_books``; it may have taken it already)
    handed = [held[1].fetched_at for key, held in list(driver.fresh_books) if key == (venue, pair)]
    assert max([*handed, driver._books[(venue, pair)][1].fetched_at]) > old


def test_a_depth_read_another_process_shared_serves_this_feeder(running_bot: Bot, driver: Driver,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker process (every host) used to read each wanted book's depth itself: a copy another one read
    within the interval serves as it is, and only a book nobody read recently is read here."""
    from bots.engine.market_data import BookData, store_books

    settle(driver, running_bot, lambda r: r.engine is not None)
    (venue, pair), gateway = next(iter(driver.wanted_books.items()))
    reads: list[str] = []
    real = gateway.fetch_order_book

    async def counted(pair: str, depth: int = 20) -> Any:  # the real read, counted
        reads.append(pair)
        return await real(pair, depth)

    monkeypatch.setattr(gateway, "fetch_order_book", counted)

    # another process read the book a moment ago: this feeder takes that copy instead of reading
    theirs = BookData([(99.0, 1.5)], [(101.0, 2.5)], time.time())
    store_books([(venue, pair, theirs)])
    driver._books.pop((venue, pair), None)
    driver._feed_once(time.time())
    assert reads == []
    assert driver._books[(venue, pair)] == (theirs.fetched_at, theirs)
    assert driver.feed_stats["books_shared"] >= 1

    # a shared copy as old as the interval is no better than none: read, and shared in turn
    old = BookData([(99.0, 1.5)], [(101.0, 2.5)], time.time() - 10)
    store_books([(venue, pair, old)])
    driver._books[(venue, pair)] = (old.fetched_at, old)
    driver._feed_once(time.time())
    assert reads == [pair]
    assert driver._books[(venue, pair)][0] > theirs.fetched_at


def test_bots_started_together_spread_their_periodic_work(running_bot: Bot, driver: Driver, settings: Any) -> None:
    """A mass start (or a worker restart) must not put every bot's performance snapshot and periodic full
    cycle in the same second: the first full cycle picks a random phase for both."""
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    period = max(engine.config.metrics_interval_secs, runner.interval)
    snapshot_phases, full_phases = set(), set()
    for _ in range(20):
        runner.last_full_at = 0.0  # as a runner that never had a full cycle
        before = time.time()
        driver._capture(runner, engine, full=True)
        after = time.time()
        assert before + 0.1 * period <= runner.perf_due_at <= after + period
        assert before - 0.9 * settings.ENGINE_FULL_CYCLE_SECS <= runner.last_full_at <= after
        snapshot_phases.add(round(runner.perf_due_at - before))
        full_phases.add(round(after - runner.last_full_at))
    assert len(snapshot_phases) > 10 and len(full_phases) > 10
    # the first periodic full cycles of a burst spread over most of the period, not half of it
    assert max(full_phases) - min(full_phases) > 0.5 * settings.ENGINE_FULL_CYCLE_SECS
    runner.last_full_at = time.time() - 5  # a later full cycle keeps the plain period
    before = time.time()
    driver._capture(runner, engine, full=True)
    assert before <= runner.last_full_at and before + period <= runner.perf_due_at <= time.time() + period


def test_the_feeder_measures_how_late_the_io_loop_runs_what_is_handed_to_it() -> None:
    """Every venue call waits for the process's I/O loop: the feeder's probe (one callback in flight, every
    ``LOOP_PROBE_SECS``) counts how late the loop ran it, so a loop busy with the streams shows in the
    driver's stats (``aio_lag_*``). Here the loop is held by a blocking 120 ms callback (standing for a
    stream's parsing): the probe sent behind it counts over 50 ms; a free loop's probe does not."""
    import threading

    from bots.engine.loop_probe import LOOP_PROBE_SECS
    from mmplatform import aio

    driver = Driver("probe-test")
    try:
        def probe_until_counted(n: int) -> None:
            deadline = time.monotonic() + 5
            while driver.feed_stats["aio_lag_probes"] < n and time.monotonic() < deadline:
                driver._probe_loop()
                time.sleep(0.005)

        probe_until_counted(1)
        assert driver.feed_stats["aio_lag_probes"] == 1
        assert driver.feed_stats["aio_lag_over_50ms"] == 0

        driver._probe_loop()  # counted already; the next probe waits for its time, none is in flight
        assert driver.loop_probe.current[1] == -1.0

        time.sleep(LOOP_PROBE_SECS)
        busy = threading.Event()
        aio.get_loop().call_soon_threadsafe(lambda: (busy.set(), time.sleep(0.12)))
        busy.wait(5)
        driver._probe_loop()  # sent while the loop is held
        probe_until_counted(2)
        assert driver.feed_stats["aio_lag_probes"] == 2
        assert driver.feed_stats["aio_lag_over_50ms"] == 1
        assert driver.feed_stats["aio_lag_ms"] >= 50
    finally:
        driver.pool.shutdown(wait=True)


def test_the_checks_analyse_the_mid_history_the_feeder_read(running_bot: Bot, driver: Driver) -> None:
    """The driver thread's market analyses take the mid histories the feeder reads for every wanted book (one
    round trip per ``ANALYSIS_SECS``), not one Redis read of their own per pair; a history the feeder has
    not read (or read too long ago) is read by the check as before."""
    from bots.engine.analyses import MIDS_MAX_AGE_SECS
    from bots.engine.core import exchange_key
    from bots.engine.market_data import mid_history

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    slot, position = next(iter(engine.active_positions.items()))
    venue, pair = exchange_key(engine.accounts[position.exchange_account_id]), position.trading_pair
    driver._read_mids()
    read_at, times, mids = driver.mids[(venue, pair)]
    assert read_at == driver.mids_read_at
    assert (times, mids) == mid_history(venue, pair) and mids  # what Redis holds, all of it

    now = time.time()
    stamps = [now - 60 + i for i in range(60)]
    rising, falling = [100.0 + i for i in range(60)], [160.0 - i for i in range(60)]  # only in the copies
    for history, direction in ((rising, 1), (falling, -1)):
        driver.mids[(venue, pair)] = (now, stamps, history)
        driver.analyses.clear()
        analysis = driver._analysis(engine, position.exchange_account_id, pair, engine.snapshots[slot], now)
        assert analysis.trend_direction == direction and analysis.trend_strength > 0.5

    driver.mids[(venue, pair)] = (now - MIDS_MAX_AGE_SECS - 1, stamps, falling)  # too old: Redis's history
    driver.analyses.clear()
    own_read = driver._analysis(engine, position.exchange_account_id, pair, engine.snapshots[slot], now)
    assert own_read.trend_direction != -1


def test_the_driver_thread_reads_the_depth_behind_its_own_top_without_waiting(running_bot: Bot, driver: Driver,
                                                                              frozen_emulator: EmulatorServer) -> None:
    """The same stale depth behind our own pushed top, met by a check on the driver thread: it must not wait
    for the venue (every bot of the process would wait with it), so the read starts on the I/O loop, the
    check answers ``wait`` and the bot is skipped (not due) until the read lands; then the feeder gets the
    book, the bot is due again at its original time, and its check quotes off the fresh depth."""
    from bots.engine.core import exchange_key
    from bots.engine.depth import DepthPending
    from bots.engine.market_data import BookData

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    position = next(iter(engine.active_positions.values()))
    ours = next(o for o in runner.live[position.pk] if o.side == "buy")
    venue, pair = exchange_key(engine.accounts[position.exchange_account_id]), position.trading_pair
    stale_level = float(ours.price) * 0.9
    old = time.time() - 1.0
    driver._books[(venue, pair)] = (old, BookData([(float(ours.price), float(ours.amount)), (stale_level, 1.0)],
                                                  [(float(ours.price) * 1.01, 1.0)], old))
    driver.tops[(venue, pair)] = (float(ours.price), float(ours.amount), float(ours.price) * 1.01, 1.0, time.time())
    with pytest.raises(DepthPending):
        driver._snapshot(runner, engine, position, {}, time.time(), driver.shared)
    assert (venue, pair) in driver.depth.flying and driver.depth.waiters[(venue, pair)] == {running_bot.pk}
    with pytest.raises(DepthPending):  # a second check joins the read under way
        driver._snapshot(runner, engine, position, {}, time.time(), driver.shared)
    assert len(driver.depth.flying) == 1

    runner.wait_until = time.time() + WAIT_LIMIT_SECS
    deadline = time.monotonic() + 10
    while driver.depth.flying and time.monotonic() < deadline:
        driver.wake.wait(0.05)
        driver._take_depth()
    assert not driver.depth.flying and runner.wait_until == 0.0  # landed: the bot is checked again
    handed = [held[1].fetched_at for key, held in list(driver.fresh_books) if key == (venue, pair)]
    assert handed and max(handed) > old  # the feeder keeps the book
    snapshot = driver._snapshot(runner, engine, position, {}, time.time(), driver.shared)
    assert snapshot.best_bid > stale_level * 1.05, "quoted off a stale level behind our own order"


def test_a_pushed_top_our_order_shares_with_others_needs_no_depth_read(running_bot: Bot, driver: Driver) -> None:
    """Our order at the pushed best bid beside other orders at that price: the best price stands without ours,
    so the check quotes on it (the pushed size less ours) and reads no depth; the older levels behind it stay
    as they were."""
    from bots.engine.core import exchange_key
    from bots.engine.depth import DepthPending
    from bots.engine.market_data import BookData

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    position = next(iter(engine.active_positions.values()))
    ours = next(o for o in runner.live[position.pk] if o.side == "buy")
    venue, pair = exchange_key(engine.accounts[position.exchange_account_id]), position.trading_pair
    price, size = float(ours.price), float(ours.amount)
    old = time.time() - 1.0
    driver._books[(venue, pair)] = (old, BookData([(price, size), (price * 0.9, 1.0)], [(price * 1.01, 1.0)], old))
    driver.tops[(venue, pair)] = (price, size + 0.5, price * 1.01, 1.0, time.time())  # 0.5 of another's with ours
    snapshot = driver._snapshot(runner, engine, position, {}, time.time(), driver.shared)
    assert not driver.depth.flying
    assert snapshot.best_bid == price

    driver.tops[(venue, pair)] = (price, size, price * 1.01, 1.0, time.time())  # ours alone: the depth is read
    with pytest.raises(DepthPending):
        driver._snapshot(runner, engine, position, {}, time.time(), driver.shared)


def test_a_requote_that_waited_in_the_queue_decides_on_the_book_as_it_is_when_it_runs(
        running_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:
    """Under a burst the pool's queue holds a re-quote for seconds: the book its check saw is then past the
    staleness limit. The re-quote takes the feeder's book as it is when it runs and re-quotes on it,
    instead of cancelling every quote of the pair (and the next check placing them all again)."""
    from bots.engine.lease import BotLease

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    old = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    target = (frozen_emulator.market.mid("BTC/USDT") * Decimal("1.0015")).quantize(Decimal("0.01"))
    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", target))
    get_redis().delete(*get_redis().keys("mm:md:book:*"))
    driver._feed_once(time.time())
    checked = time.time()
    verdict = driver._check(runner, checked, {}, False)
    assert verdict.kind == "requote", verdict
    # the check was made long ago: the cycle waited in the pool's queue past the staleness limit
    for slot in verdict.pairs:
        engine.book_fetched_at[slot] = checked - 60.0
    lease = BotLease(running_bot.pk, 10.0)
    assert lease.acquire()
    runner.busy = True
    driver._cycle(runner, lease, verdict, checked)
    now_open = emulator_open_orders(frozen_emulator)
    assert len(now_open) == 2, "the re-quote cancelled its quotes instead of moving them"
    assert not old & {o.client_order_id for o in now_open}
    mid = sum(Decimal(o.price) for o in now_open) / 2
    assert abs(mid - target) / target < Decimal("0.0010"), (mid, target)
    counts = driver.finished[-1][6]
    assert counts is None or not counts.get("not_quoted_stale_book"), counts


def queue_a_requote(driver: Driver, runner: Any, server: EmulatorServer, gate: Any) -> Decimal:
    """Every pool thread blocked on ``gate``, the mid moved 15 bps, the driver ticked until the bot's
    re-quote is decided and waits in the pool's queue. Returns the new mid."""
    for _ in range(driver.pool.max_threads):  # every pool thread busy: the re-quote waits in the queue
        driver.pool.submit(gate.wait, 30.0, deadline=-1.0)
    target = (server.market.mid("BTC/USDT") * Decimal("1.0015")).quantize(Decimal("0.01"))
    server.call(lambda: server.market.set_mid("BTC/USDT", target))
    get_redis().delete(*get_redis().keys("mm:md:book:*"))
    driver.bring_forward(runner)
    deadline = time.monotonic() + 10
    while not runner.busy and time.monotonic() < deadline:
        driver._feed_once(time.time())
        driver.tick()
    assert runner.busy and runner.last_verdict.startswith("requote"), runner.last_verdict
    return target


def test_a_cycle_queued_past_its_lease_ttl_keeps_the_lease_and_sends(running_bot: Bot, driver: Driver,
                                                                      frozen_emulator: EmulatorServer,
                                                                      monkeypatch: Any) -> None:
    """A pool that is behind holds a re-quote in its queue longer than the lease its check took. The driver
    keeps that lease alive while the cycle waits, so the re-quote still holds it at the send gate and moves
    the quotes; before, it lost the lease there, sent nothing and its engine was dropped (the next cycle a
    full one: the calm N=2,000 collapse)."""
    import threading

    import bots.engine.driver as driver_module
    from bots.engine import keys

    monkeypatch.setattr(driver_module, "LEASE_MIN_SECS", 2.0)  # the check's lease: 2 s (10 s in production)
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine = runner.engine
    old = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    gate = threading.Event()
    try:
        target = queue_a_requote(driver, runner, frozen_emulator, gate)
        token = runner.lease.token
        queued_until = time.monotonic() + 5.0  # 2.5 TTLs in the queue
        while time.monotonic() < queued_until:
            driver.tick()
            assert get_redis().get(keys.lease(running_bot.pk)) == token.encode(), "the queued cycle's lease expired"
            time.sleep(0.05)
    finally:
        gate.set()
    runner = settle(driver, running_bot, lambda r: not (old & {o.client_order_id for o in
                                                              emulator_open_orders(frozen_emulator)}))
    assert runner.engine is engine, "the re-quote lost its engine"
    assert not driver.stats.get("lease_lost"), driver.stats
    assert driver.stats["leases_extended"] >= 2
    now_open = emulator_open_orders(frozen_emulator)
    assert len(now_open) == 2
    assert abs(sum(Decimal(o.price) for o in now_open) / 2 - target) / target < Decimal("0.0010")


def test_a_kill_takes_a_queued_cycles_lease_at_once_and_the_cycle_then_does_nothing(
        running_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer, world_a: Any, caplog: Any) -> None:
    """A pool that is behind holds a re-quote in its queue. A kill fences the bot and takes that cycle's lease
    at once (no pool thread has started it), so it commits and sweeps the venue without waiting
    ``HALT_WAIT_SECS`` for a cycle that has done nothing; when the cycle's turn comes it finds the kill's
    token and does nothing (``halted_queued``): nothing of the bot reaches the venue after the kill."""
    import logging
    import threading

    from bots import services
    from bots.engine import keys

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    assert len(emulator_open_orders(frozen_emulator)) == 2
    gate = threading.Event()
    try:
        queue_a_requote(driver, runner, frozen_emulator, gate)
        queued = runner.lease.token
        assert get_redis().get(keys.lease(running_bot.pk)) == queued.encode()
        kill = threading.Thread(target=services.bot_kill, kwargs={"bot": running_bot, "user": world_a.operator})
        with caplog.at_level(logging.WARNING, logger="bots.services"):
            kill.start()
            while kill.is_alive():  # the driver goes on meanwhile (its heartbeat keeps the queued lease)
                driver.tick()
                kill.join(0.05)
        assert not gate.is_set() and runner.busy, "the queued cycle ran before the kill returned"
        assert "still held the lease" not in caplog.text, "the kill waited for a cycle that had not started"
        assert emulator_open_orders(frozen_emulator) == [], "the kill's sweep left an order"
        assert get_redis().get(keys.lease(running_bot.pk)) != queued.encode()
    finally:
        gate.set()
    deadline = time.monotonic() + 20
    while runner.busy and time.monotonic() < deadline:
        driver.tick()
        time.sleep(0.02)
    assert not runner.busy
    assert driver.stats["halted_queued"] == 1, driver.stats
    assert not driver.stats.get("lease_lost"), driver.stats
    for _ in range(20):  # the driver goes on: nothing of the killed bot is sent
        driver._feed_once(time.time())
        driver.tick()
        time.sleep(0.02)
    assert emulator_open_orders(frozen_emulator) == []
    assert Order.objects.filter(bot=running_bot, status__in=OPEN_ORDER_STATUSES).count() == 0


def test_a_halt_waits_for_a_started_cycle_and_takes_a_checks_lease_at_once(world_a: Any) -> None:
    """The lease rules a halt relies on (``lease.hold_leases``): a check's lease that no cycle has started
    is taken at once, and its cycle's start then raises HaltedError; a started cycle's lease is waited
    for (not taken within the wait); any other holder's (a task's) too."""
    from bots.engine.lease import BotLease, HaltedError, check_token, halt_token, hold_leases

    queued = BotLease(world_a.bot.pk, 10, check_token())
    assert queued.acquire()
    halt = BotLease(world_a.bot.pk, 10, halt_token())
    assert hold_leases([halt], 0.0) == [halt]
    with pytest.raises(HaltedError):
        queued.start()
    halt.release()
    with pytest.raises(HaltedError):  # the halt has ended meanwhile: its mark still tells the queued cycle
        queued.start()

    started = BotLease(world_a.bot.pk, 10, check_token())
    assert started.acquire()
    started.start()
    assert hold_leases([BotLease(world_a.bot.pk, 10, halt_token())], 0.1) == []
    started.release()
    assert hold_leases([BotLease(world_a.bot.pk, 10, halt_token())], 0.0) != []
    get_redis().delete(BotLease(world_a.bot.pk, 1).key)

    task = BotLease(world_a.bot.pk, 10)  # a start / stop / rebalance task's lease: never taken from it
    assert task.acquire()
    assert hold_leases([BotLease(world_a.bot.pk, 10, halt_token())], 0.1) == []
    task.release()


def test_the_flush_counts_each_bots_quiet_cycles_in_one_statement(world_a: Any) -> None:
    """``count_cycles``: each bot's ``cycle_count`` grows by its own number of quiet cycles and its last cycle
    time is set; a bot not listed is untouched (one statement on Postgres, one per count elsewhere)."""
    from datetime import UTC, datetime

    from bots.engine.rows import count_cycles
    from tests.conftest import make_bot

    bots = [make_bot(world_a.tenant, world_a.account, name=f"flush-{i}") for i in range(4)]
    Bot.objects.filter(pk=bots[0].pk).update(cycle_count=10)
    at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    with CaptureQueriesContext(connection) as queries:
        count_cycles({3: [bots[0].pk, bots[1].pk], 1: [bots[2].pk]}, at)
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    rows = {b.pk: b for b in Bot.objects.filter(pk__in=[b.pk for b in bots])}
    assert [rows[b.pk].cycle_count for b in bots] == [13, 3, 1, 0]
    assert [rows[b.pk].last_cycle_finished_at for b in bots] == [at, at, at, None]


def test_a_performance_snapshot_is_taken_at_the_check_and_stored_without_holding_the_bot(
        running_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:
    """A snapshot due at a check is taken there from the kept engine and stored by a pool thread; the bot is
    not busy meanwhile, so its checks go on while the store waits behind other cycles (before, the
    snapshot was a pool cycle holding the bot, and a pool behind left the bot unchecked for seconds)."""
    import threading

    from bots.engine import keys
    from bots.models import InventorySnapshot, PerformanceSnapshot

    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    get_redis().delete(keys.performance_due(running_bot.pk))  # (the start's snapshot set it for an hour)
    before = PerformanceSnapshot.objects.filter(bot=running_bot).count()
    inventory_before = InventorySnapshot.objects.filter(bot=running_bot).count()
    gate = threading.Event()
    for _ in range(driver.pool.max_threads):  # every pool thread busy: the store waits in the queue
        driver.pool.submit(gate.wait, 30.0, deadline=-1.0)
    try:
        driver._feed_once(time.time())
        runner.perf_due_at = 0.0
        driver.bring_forward(runner)
        driver.tick()
        assert runner.last_verdict.startswith("snapshot"), runner.last_verdict
        assert not runner.busy and runner.perf_due_at > time.time() + 3000
        driver.bring_forward(runner)
        driver._feed_once(time.time())
        driver.tick()
        assert runner.last_verdict.startswith("quiet"), "the bot is checked while its snapshot waits"
        assert PerformanceSnapshot.objects.filter(bot=running_bot).count() == before
    finally:
        gate.set()
    deadline = time.monotonic() + 10
    # handed to the pool at the next flush (with the other bots' snapshots of that second); the store writes
    # the performance row, then the inventory rows (two statements): wait for both
    while (PerformanceSnapshot.objects.filter(bot=running_bot).count() == before
           or InventorySnapshot.objects.filter(bot=running_bot).count() == inventory_before) \
            and time.monotonic() < deadline:
        driver.tick()
        time.sleep(0.05)
    snapshot = PerformanceSnapshot.objects.filter(bot=running_bot).latest("taken_at")
    assert PerformanceSnapshot.objects.filter(bot=running_bot).count() == before + 1
    assert snapshot.equity_quote > 0 and snapshot.tenant_id == running_bot.tenant_id
    assert InventorySnapshot.objects.filter(bot=running_bot).count() == inventory_before + 1  # one pair
    assert 0 < snapshot.quote_uptime_ratio <= 1
