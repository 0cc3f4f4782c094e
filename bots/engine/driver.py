"""The engine driver: one per Celery worker process, it runs the cycles of every bot in the shards it
holds, so a machine carries a thousand bot-pairs instead of the few dozen a task-per-cycle could.

Shape (see docs/architecture.md, "Engine driver"):

* Bots are split into ``ENGINE_SHARDS`` shards (``bot_id % shards``). Each driver holds shard leases
  in Redis (renewed every second, TTL ``SHARD_TTL_SECS``) up to its fair share of the live drivers; a
  driver killed with -9 loses its shards when the leases expire and the others take them, a driver
  shut down warmly gives them back at once.
* Every cycle of a bot runs under the bot's own lease (``BotLease``) and its chain id, exactly as a
  task did: a stop, kill, reconcile or rebalance task takes the same lease, and a driver that lost a
  bot to another driver (new chain id) drops it at its next cycle. No two cycles of one bot overlap.
* A cycle is *quiet* when nothing but the mid moved and the strategy's quotes still sit within the
  refresh tolerance: the driver decides that in memory (``MarketMakingBot.decide_quotes`` and
  ``risk_in_memory`` on the engine object kept from the bot's last full cycle, one open-orders and one
  balance read per exchange account per interval shared by all its bots, one book per venue and pair
  shared by all bots). A quiet cycle writes a cycle record to Redis and nothing to Postgres.
* A cycle whose only change is a re-quote runs ``_adjust_orders`` on the kept engine (store-before-send, the
  lease and epoch fence, events) without the rest of the iteration. Anything else — a fill, a missing
  or stray order, a risk status, a denial, a bad book, a status or config change, the periodic
  ``ENGINE_FULL_CYCLE_SECS`` — runs the full ``monitoring_iteration`` (``bots.tasks.execute_cycle``)
  on a small thread pool, and the engine object it leaves becomes the new basis for quiet checks.
* Pushed best bid/ask (``exchanges.streams``) wakes the bots of a pair whose mid moved past a
  quarter of their refresh tolerance, so a re-quote does not wait for the next interval.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter, deque
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from bots.engine.bot import MarketMakingBot
from bots.engine.cycle import daily_reset_key
from bots.engine.depth import DepthReads
from bots.engine.due import DueQueue
from bots.engine.feed import AccountView, FeedMixin
from bots.engine.lease import _RELEASE, BotLease, add_cycle_record, check_token, extend_leases, take_for_checks
from bots.engine.loop_probe import LoopProbe
from bots.engine.market_data import BookData, MidHistoryReader
from bots.engine.performance import PerformanceFigures, count_quoting
from bots.engine.pool import CyclePool, patience
from bots.engine.requote import RequoteMixin
from bots.engine.rows import count_cycles, open_rows, raise_high_water
from bots.engine.runner import Runner, next_due
from bots.engine.schedule import ScheduleMixin
from bots.engine.shards import DRIVERS_KEY, HOUSEKEEPING_SECS, SHARD_TTL_SECS, ShardsMixin, shard_key
from bots.engine.shared_views import SharedViews
from bots.engine.venues import exchange_key
from bots.engine.verdict import Verdict, VerdictMixin
from bots.models import OPEN_ORDER_STATUSES, BotStatus, Order, OrderPurpose
from exchanges.gateway import ExchangeGateway
from mmplatform.redis_client import WriteBatch, get_redis
from strategies.analysis import MarketAnalysis

logger = logging.getLogger(__name__)

FLUSH_SECS = 1.0
"""The feeder's pass: account views and depth reads are at most this much later than due."""

LEASE_MIN_SECS = 10.0
"""A check's bot lease lives ``max(LEASE_MIN_SECS, 3 x interval)``; while its cycle is queued or running the
driver extends it (``_keep_leases``), so only a dead driver's leases expire."""


class Driver(ShardsMixin, FeedMixin, VerdictMixin, RequoteMixin, ScheduleMixin):
    """Runs the cycles of the bots in this process's shards (one thread, a small pool for full cycles)."""

    def __init__(self, name: str = ""):
        self.token = f"{name or 'driver'}:{uuid.uuid4().hex[:12]}"
        self.owned: set[int] = set()
        self.runners: dict[int, Runner] = {}
        self.due_queue = DueQueue()  # when each runner is next looked at (due.py)
        self.accounts: dict[int, AccountView] = {}
        self.pool = CyclePool(settings.ENGINE_CYCLE_THREADS, "mm-cycle")  # earliest deadline first (pool.py)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.moved: deque[tuple[str, str, float]] = deque(maxlen=10_000)
        self.tops: dict[tuple[str, str], tuple[float, float, float, float, float]] = {}  # pushed best bid/ask
        self._book_keys: dict[tuple[str, str], tuple[BookData, tuple]] = {}  # the driver thread's (``_snapshot``)
        self.streams: dict[str, Any] = {}
        self.stream_tasks: dict[str, Any] = {}
        self.stream_symbols: dict[str, tuple[str, ...]] = {}
        self.order_stream_tasks = {}  # account -> (gateway, watcher)
        self.order_streams_live = set()  # accounts whose order updates are pushed right now
        self.pushed_orders = deque()  # (account, pushed orders and trades | None: read it) for the feeder
        self.feed_wake = threading.Event()  # watchers -> feeder: pushed order updates wait
        self.resync_wanted: set[int] = set()  # feeder: accounts pushes said to read by REST at its next pass
        self.traded_bots: deque[int] = deque()  # feeder -> driver: bots whose orders the pushes showed trading
        self.bots_read = None
        self._housekeeping_at = 0.0
        self._flush_at = 0.0
        self._pool_connections: dict[int, Any] = {}  # pool thread id -> its database connection
        self._connection_checked: dict[int, float] = {}  # pool thread id -> last close_old_connections()
        self._books: dict[tuple[str, str], tuple[float, BookData]] = {}  # in-process copy of shared books
        self.wanted_accounts: dict[int, tuple[ExchangeGateway, float]] = {}  # feeder: account -> (gateway, every)
        self.wanted_books: dict[tuple[str, str], ExchangeGateway] = {}  # feeder: (venue, pair) -> gateway
        self.feeder: threading.Thread | None = None
        self._urgent = 0  # urgent re-quotes in flight
        self.finished: deque[tuple[Runner, str, bool, bool, int, int, Counter[str] | None]] = deque()  # pool -> driver
        self.fresh_books: deque[tuple[tuple[str, str], tuple[float, BookData]]] = deque()  # -> feeder
        self.outdated: deque[int] = deque()  # pool -> feeder: accounts whose balances a fill moved
        # pool -> feeder: balances a fill sync read after the fill (account, read at, totals, free)
        self.fresh_balances: deque[tuple[int, float, dict[str, Decimal], dict[str, Decimal]]] = deque()
        self.analyses: dict[Any, tuple[float, MarketAnalysis]] = {}
        self.shared = SharedViews()
        self.by_pair: dict[tuple[str, str], dict[int, Runner]] = {}  # (venue, pair) -> bots quoting it
        self.stats: Counter[str] = Counter()  # cycles by verdict and full-cycle reason, since start
        self.feed_stats: Counter[str] = Counter()  # the feeder's counts (REST account reads, pushed orders)
        self.mids: dict[tuple[str, str], tuple[float, list[float], list[float]]] = {}  # feeder: mid histories
        self.mids_read_at = 0.0
        self.mid_reader = MidHistoryReader()  # feeder: the histories' tails read since its last read
        self.depth = DepthReads(self.wake)  # depth reads the checks started on the loop (depth.py)
        self.loop_probe = LoopProbe()  # feeder: how late the I/O loop runs what is handed to it
        self.snapshots_due: list[tuple[float, PerformanceFigures]] = []  # the checks' snapshots, not handed over yet

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="mm-engine-driver", daemon=True)
        self.thread.start()
        self.feeder = threading.Thread(target=self._feed, name="mm-engine-feeder", daemon=True)
        self.feeder.start()

    def stop(self, timeout_secs: float = 10.0) -> None:
        """Finish the running cycles, give the shards back at once (a warm shutdown)."""
        self.stopping.set()
        self.wake.set()
        self.feed_wake.set()
        for thread in (self.thread, self.feeder):
            if thread is not None:
                thread.join(timeout_secs)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._take_back()
        for conn in self._pool_connections.values():
            conn.close()  # the pool threads are gone; their sessions must not outlive the driver
        self._pool_connections.clear()
        try:
            self._flush(force=True)
            r = get_redis()
            pipe = r.pipeline(transaction=False)
            for shard in self.owned:
                pipe.eval(_RELEASE, 1, shard_key(shard), self.token)
            pipe.zrem(DRIVERS_KEY, self.token)
            pipe.execute()
        except Exception:
            logger.exception("engine driver: releasing shards failed (they expire in %s s)", SHARD_TTL_SECS)
        self.owned.clear()
        for task in (*self.stream_tasks.values(), *(t for _, t in self.order_stream_tasks.values())):
            task.cancel()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except Exception:
                    logger.exception("engine driver tick failed")
                    close_old_connections()
                    self.stopping.wait(0.5)
        finally:
            connections.close_all()  # this thread's own (no one else can close them once it is gone)

    def tick(self) -> None:
        now = time.time()
        self.stats["ticks"] += 1
        if now >= self._housekeeping_at:
            self._housekeeping_at = now + HOUSEKEEPING_SECS
            self._housekeep(now)
            self._take_back()  # (a cycle that just ended released its lease: not counted as lost below)
            self._keep_leases(now)
            for runner in self.runners.values():  # new runners; and a safety net: none is left unscheduled
                self._schedule(runner, now)
        self._apply_moves(now)
        self._bring_traded(now)
        self._take_depth()
        due = self._pop_due(now)
        if due:
            began = time.perf_counter()
            self._run_due(due, now)
            self.stats["run_due_ms"] += int(1000 * (time.perf_counter() - began))
            self.stats["run_due_calls"] += 1
            for runner in due:
                self._schedule(runner, now)
        upcoming = self.due_queue.next_at()
        idle = now + 0.5 if upcoming is None else min(now + 0.5, upcoming)
        if time.time() >= self._flush_at:
            self._hand_snapshots()
            self._flush()
        wait = idle - time.time()
        self.wake.wait(timeout=min(max(wait, 0.001), 0.5))
        self.wake.clear()
        self._take_back()  # the cycles that ended meanwhile (a pool thread woke us): their runners are free

    def _take_back(self) -> None:
        """Cycles the pool ended: the driver thread takes their runners back. The one writer of ``busy``,
        ``dropped``, ``stale``, ``touched``, the stats and the feeder's wants; a pool thread only hands over."""
        while self.finished:
            runner, kind, urgent, drop, wall_ms, queued_ms, counts = self.finished.popleft()
            self.stats[f"{kind}_wall_ms"] += wall_ms
            self.stats[f"{kind}_queued_ms"] += queued_ms
            if counts:
                self.stats.update(counts)
            if urgent:
                self._urgent -= 1
            if drop:
                runner.dropped = True  # forgotten at once; a fenced bot comes back if it is cycling
            if runner.stale:  # changed while the cycle ran: the next cycle is a full one, on the bot as it is now
                runner.engine, runner.stale = None, False
            elif runner.engine is not None and not runner.dropped:
                self._want(runner, runner.engine)  # its accounts and books, for the feeder
            runner.touched = True
            runner.busy, runner.lease = False, None
            self._index_quoted(runner)
            self._schedule(runner, time.time())

    def _take_depth(self) -> None:
        """Depth reads the checks started that answered: the feeder keeps each book, and the bots that waited
        for it are checked again at once (still due at their original time: the wait counts as lag)."""
        for key, book, waiters in self.depth.take():
            if book is not None:
                self.fresh_books.append((key, (book.fetched_at, book)))
            for pk in waiters:
                runner = self.runners.get(pk)
                if runner is not None:
                    runner.wait_until = 0.0
                    self._schedule(runner, time.time())

    # --- cycles ------------------------------------------------------------------------------------

    def _run_due(self, due: list[Runner], now: float) -> None:
        token = check_token()  # this tick's leases (one per bot key: one token serves them all; ``q:``)
        leases = {r.bot_id: BotLease(r.bot_id, max(LEASE_MIN_SECS, 3 * r.interval), token) for r in due}
        taken = take_for_checks([leases[r.bot_id] for r in due], [daily_reset_key(r.bot_id) for r in due])
        books: dict[tuple[str, str], BookData] = {}
        quiet: list[tuple[Runner, float, float, Verdict]] = []
        waiting: list[Runner] = []
        for runner, (got, chain, reset_pending) in zip(due, taken, strict=True):
            scheduled = runner.next_due
            woken, runner.woken = runner.woken, False
            lease = leases[runner.bot_id]
            if not got:  # a stop/kill/reconcile/rebalance task holds the bot: try again next interval
                runner.next_due = now + runner.interval
                continue
            if chain != runner.chain:  # another driver took the bot
                lease.release()
                runner.dropped = True
                continue
            started = time.time()
            verdict = self._check(runner, started, books, reset_pending)
            self.stats[verdict.kind if verdict.kind != "full" else "full: " + verdict.reason] += 1
            runner.last_verdict = f"{verdict.kind}: {verdict.reason} {verdict.detail}".strip()
            if verdict.kind == "quiet":
                quiet.append((runner, scheduled, started, verdict))
                runner.next_due = next_due(scheduled, runner.interval, started)
                continue
            if verdict.kind == "snapshot" and runner.engine is not None:  # taken here, stored off the bot:
                self._hand_snapshot(runner, started, verdict, scheduled)
                quiet.append((runner, scheduled, started, verdict))
                runner.next_due = next_due(scheduled, runner.interval, started)
                continue
            if verdict.kind == "wait":  # a depth read on the loop, an account view behind: due as it was, looked
                runner.wait_until = started + verdict.retry_secs  # at again then (or when the depth read lands)
                waiting.append(runner)
                continue
            if verdict.kind == "requote" and runner.engine is not None:  # a re-quote is on the kept engine:
                for pair, rows in verdict.cancels.items():  # its old quotes' cancels leave now, under this lease
                    if rows:
                        verdict.sent[pair] = (rows, runner.engine.order_manager.cancel_requests(rows))
            runner.busy, runner.lease, runner.lease_until = True, lease, now + lease.ttl_ms / 1000
            verdict.urgent = woken and verdict.kind == "requote"
            if verdict.urgent:
                self._urgent += 1
            self.pool.submit(self._cycle, runner, lease, verdict, scheduled, on_cancel=lease.release,
                             deadline=scheduled + patience(verdict.kind, verdict.reason, verdict.urgent))
        if quiet or waiting:
            self._record_quiet(quiet, leases, waiting)

    def _hand_snapshot(self, runner: Runner, now: float, verdict: Verdict, scheduled: float) -> None:
        """A performance snapshot is due: its figures are taken here from the kept engine, in memory (the
        driver thread holds the runner), and a pool thread stores them (``_store_snapshots``) without holding
        the bot, whose checks go on meanwhile. Before, the snapshot was a pool cycle that kept the bot busy
        while it waited behind the fill syncs and re-quotes (its patience is 5 s): at calm N=1,500 it
        waited 6.7 s on average, and the bot was not checked for that long (the p99 lag was 7 s). The
        figures wait in ``snapshots_due`` for the next flush (``_hand_snapshots``)."""
        engine = runner.engine
        assert engine is not None
        self.snapshots_due.append((scheduled + patience(verdict.kind, verdict.reason, False),
                                   engine.performance_figures()))
        runner.perf_due_at = now + max(engine.config.metrics_interval_secs, runner.interval)

    def _hand_snapshots(self) -> None:
        """The snapshots the checks took since the last flush go to one pool thread together: a batch costs a
        few round trips whatever its size (``performance.write_performances``), where one snapshot a bot
        cost six (at calm N=3,000, 50 snapshots a second). Due by the earliest one's patience; the ones
        still here when the driver stops are not stored (the bots' next engine takes them again)."""
        if self.snapshots_due:
            batch, self.snapshots_due = self.snapshots_due, []
            self.pool.submit(self._store_snapshots, [figures for _, figures in batch],
                             deadline=min(deadline for deadline, _ in batch))

    def _keep_leases(self, now: float) -> None:
        """The heartbeat of the leases the checks took for the cycles they handed to the pool: a cycle keeps
        its bot's lease until it has run, however long it waits in the queue. Without it, a cycle queued
        past its lease's TTL (a pool behind: calm N=2,000) found the lease gone at the send gate, its
        engine was dropped, and the bot's next cycle was a full one, which made the queue longer still.
        Extended once half the TTL is left (one command for all; housekeeping runs every second). A lease
        found no longer held by its token is counted (``lease_lost_queued``): that cycle stops at its
        send gate. A stop, kill or pause fences the bot's sends first and takes a queued cycle's lease at once
        (``lease.hold_leases``: no pool thread has started it); the cycle then does nothing
        (``BotLease.start``). It waits, up to ``HALT_WAIT_SECS``, only for a cycle that has started."""
        due = [r for r in self.runners.values() if r.busy and r.lease is not None
               and r.lease_until - now < r.lease.ttl_ms / 2000]
        if not due:
            return
        leases = [r.lease for r in due if r.lease is not None]
        for runner, lease, kept in zip(due, leases, extend_leases(leases), strict=True):
            if kept:
                runner.lease_until = now + lease.ttl_ms / 1000
            else:
                runner.lease = None  # released by its cycle meanwhile, or lost: nothing more to extend
                self.stats["lease_lost_queued"] += 1
        self.stats["leases_extended"] += len(due)

    def _record_quiet(self, quiet: list[tuple[Runner, float, float, Verdict]], leases: dict[int, BotLease],
                      waiting: list[Runner] | None = None) -> None:
        """The tick's quiet cycles: their cycle records, quote-uptime counts and lease releases, all in one
        Redis command (``WriteBatch``); the leases of the checks that wait for a depth read go with them."""
        finished = time.time()
        worker = worker_label()
        batch = WriteBatch()
        for runner in waiting or ():
            leases[runner.bot_id].release_on(batch)
        for runner, scheduled, started, verdict in quiet:
            add_cycle_record(batch, runner.bot_id, scheduled, started, finished, worker)
            for pair, both in verdict.uptime:
                count_quoting(batch, runner.bot_id, pair, both)
            leases[runner.bot_id].release_on(batch)
            runner.quiet_cycles += 1
        batch.execute()

    # --- the feeder: account views and depth reads, off the driver thread ------------------------------


    def _capture(self, runner: Runner, engine: MarketMakingBot | None, *, full: bool,
                 rows: list[Order] | None = None) -> None:
        """Keep what the next quiet check compares against: the engine, the open rows (read, unless
        the caller holds them: a re-quote knows what it cancelled and stored), the mids."""
        now = time.time()
        if engine is None or engine.bot.status != BotStatus.RUNNING or runner.stale:
            runner.engine = None  # (the driver thread clears ``stale`` when it takes the runner back)
            return
        if rows is None:
            rows = open_rows(runner.bot_id)
        else:
            rows = [o for o in rows if o.status in OPEN_ORDER_STATUSES]
        runner.rows = rows
        known = {o.client_order_id for o in rows}
        gone = runner.gone  # (in time order: the expired ones leave from the front)
        while gone and now - gone[oldest := next(iter(gone))] >= 30:
            del gone[oldest]
        for cid in runner.known - known:
            gone[cid] = now
        runner.known = known
        runner.live, runner.open_count = {}, {}
        for order in rows:
            runner.open_count[order.position_id] = runner.open_count.get(order.position_id, 0) + 1
            if order.purpose == OrderPurpose.QUOTE:
                runner.live.setdefault(order.position_id, []).append(order)
        runner.quoted_mid = {}
        for slot, position in engine.active_positions.items():
            snapshot = engine.snapshots.get(slot)
            account = engine.accounts.get(position.exchange_account_id)
            if snapshot is not None and account is not None and not snapshot.problem():
                runner.quoted_mid[(exchange_key(account), position.trading_pair)] = snapshot.mid
        runner.engine = engine
        if full:
            first = runner.last_full_at == 0.0
            period = max(engine.config.metrics_interval_secs, runner.interval)
            runner.last_full_at = now
            runner.perf_due_at = now + period
            if first:
                # bots that start together (a mass start, a worker restart) spread their periodic work
                # over its period instead of all snapshotting / fully cycling in the same second; a bot's
                # later full cycles keep its phase, so a burst of first ones is spread over 90 % of the period
                # (half of it before 2026-12-07: a slow mass start bunched its periodic full cycles twice as
                # densely, and they bunched into the calm bench's window)
                runner.perf_due_at = now + period * random.uniform(0.1, 1.0)
                runner.last_full_at = now - settings.ENGINE_FULL_CYCLE_SECS * random.uniform(0.0, 0.9)
            runner.high_water = float(engine.bot.equity_high_water_quote)
            runner.high_water_dirty = False

    # --- batched writes -----------------------------------------------------------------------------

    def _flush(self, force: bool = False) -> None:
        """Quiet cycles reach Postgres here, once a second for all bots: last cycle time, cycle count,
        the equity high-water mark."""
        self._flush_at = time.time() + FLUSH_SECS
        counts: dict[int, list[int]] = {}
        dirty = []
        for runner in list(self.runners.values()):
            if runner.quiet_cycles or runner.touched:
                counts.setdefault(runner.quiet_cycles, []).append(runner.bot_id)
                runner.quiet_cycles, runner.touched = 0, False
            if runner.high_water_dirty and not runner.busy:
                dirty.append(runner)
        if not counts and not dirty:
            return
        close_old_connections()
        count_cycles(counts, timezone.now())
        if force:
            dirty = [r for r in self.runners.values() if r.high_water_dirty]
        self._write_high_water(dirty)

    @staticmethod
    def _write_high_water(runners: list[Runner]) -> None:
        raise_high_water({runner.bot_id: Decimal(repr(round(runner.high_water, 8))) for runner in runners})
        for runner in runners:
            runner.high_water_dirty = False


def worker_label() -> str:
    from bots.tasks import worker_id

    return worker_id()


# --- one driver per worker process ----------------------------------------------------------------------

_driver: Driver | None = None


def start_driver() -> Driver | None:
    """Start this process's driver (Celery worker processes call this at start)."""
    global _driver
    if not settings.ENGINE_DRIVER_ENABLED or _driver is not None:
        return _driver
    _driver = Driver(worker_label())
    _driver.start()
    return _driver


def stop_driver() -> None:
    global _driver
    if _driver is not None:
        _driver.stop()
        _driver = None
