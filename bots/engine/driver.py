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

import asyncio
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.models import F
from django.utils import timezone

from bots.engine import keys
from bots.engine.core import (
    ORDER_BOOK_DEPTH,
    MarketMakingBot,
    begin_fenced_cycle,
    daily_reset_key,
    exchange_key,
)
from bots.engine.lease import _RELEASE, BotLease, FencedError, LeaseLostError, chain_key, new_chain
from bots.engine.market_data import (
    BookData,
    book_from,
    book_reader,
    mid_history,
    shared_book,
    store_books,
    to_snapshot,
    without_own,
)
from bots.engine.orders import client_id_prefix
from bots.models import OPEN_ORDER_STATUSES, Bot, BotStatus, Order, OrderPurpose
from exchanges.gateway import ExchangeGateway, ExchangeOrder
from mmplatform import aio
from mmplatform.redis_client import get_redis
from strategies.analysis import MarketAnalysis, analyze_market
from strategies.selection import select_strategy_type

logger = logging.getLogger(__name__)

SHARD_TTL_SECS = 10.0
DRIVERS_KEY = keys.DRIVERS
HOUSEKEEPING_SECS = 1.0
FLUSH_SECS = 1.0
SENT_MARGIN_SECS = 0.5
"""An order sent less than this before an account read may not be listed by it yet."""
DEPTH_WITH_STREAM_SECS = 2.0
"""How often the feeder re-reads a pair's depth when the venue pushes its best bid/ask."""
DEPTH_REUSE_SECS = 3.0
"""With a pushed best bid/ask newer than it, a depth read this recent still serves for the deeper levels."""
ACCOUNT_READ_MIN_SECS = 0.25
"""An account is read at most this often (a bot on a 50 ms clock must not have its own account reads
compete with its re-quotes on the I/O loop); quiet checks accept views up to 2 intervals + 1 s old."""
BALANCE_SECS = 10.0
"""An account's balances are read at least this often even when none of its orders changed."""
FEED_SECS = 0.02
FEED_MAX_DEFERRALS = 5
"""The feeder holds off at most this many passes in a row for urgent re-quotes."""
"""The feeder's pass: account views and depth reads are at most this much later than due."""
ANALYSIS_SECS = 1.0
"""Market analysis (volatility, trend, liquidity) is recomputed at most this often per venue and pair."""


def shard_key(shard: int) -> str:
    return keys.shard(shard)


def shard_of(bot_id: int, account_id: int | None = None) -> int:
    """A bot's shard follows its (first) exchange account, so every bot of an account is driven by one
    process and the account is read once per interval, not once per process."""
    return (account_id if account_id is not None else bot_id) % settings.ENGINE_SHARDS


_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


@dataclass
class AccountView:
    """One exchange account as the venue listed it: open orders by client id, total balances."""

    taken_at: float
    orders: dict[str, ExchangeOrder]
    balances: dict[str, Decimal]
    outdated: bool = False  # a fill moved its balances: read it again at the next due cycle
    balances_at: float = 0.0  # when the balances were read (the orders may be newer)


@dataclass
class Runner:
    """The driver's memory of one bot between cycles."""

    bot_id: int
    epoch: int
    chain: str
    interval: float
    error_delay: float
    signature: tuple
    next_due: float
    engine: MarketMakingBot | None = None
    live: dict[int, list[Order]] = field(default_factory=dict)  # position id -> open quote rows
    rows: list[Order] = field(default_factory=list)  # every open row (quotes and rebalancing orders)
    open_count: dict[int, int] = field(default_factory=dict)  # position id -> open rows of any purpose
    known: set[str] = field(default_factory=set)  # client ids of every open row
    gone: dict[str, float] = field(default_factory=dict)  # client id -> when it left our open set
    quoted_mid: dict[tuple[str, str], float] = field(default_factory=dict)
    last_full_at: float = 0.0
    perf_due_at: float = 0.0
    high_water: float = 0.0
    high_water_dirty: bool = False
    busy: bool = False
    dropped: bool = False
    stale: bool = False  # changed while a cycle ran: do not keep that cycle's engine
    quiet_cycles: int = 0
    woken: bool = False  # this cycle was brought forward by a pushed mid move
    wake_after: bool = False  # a pushed move arrived during a cycle: run again when it ends
    last_verdict: str = ""
    touched: bool = False  # cycled since the last flush


@dataclass
class Verdict:
    kind: str  # "quiet" | "requote" | "fills" | "snapshot" | "full"
    reason: str = ""
    detail: str = ""
    pairs: list[str] = field(default_factory=list)
    uptime: list[tuple[str, bool]] = field(default_factory=list)
    cancels: dict[str, list[Order]] = field(default_factory=dict)  # requote: rows to cancel, by pair
    sent: dict[str, tuple[list[Order], Any]] = field(default_factory=dict)  # requote: cancels already sent
    urgent: bool = False  # a re-quote brought forward by a pushed move: the feeder holds off meanwhile


class Driver:
    """Runs the cycles of the bots in this process's shards (one thread, a small pool for full cycles)."""

    def __init__(self, name: str = ""):
        self.token = f"{name or 'driver'}:{uuid.uuid4().hex[:12]}"
        self.owned: set[int] = set()
        self.runners: dict[int, Runner] = {}
        self.accounts: dict[int, AccountView] = {}
        self.gateways: dict[int, ExchangeGateway] = {}
        self.pool = ThreadPoolExecutor(max_workers=settings.ENGINE_CYCLE_THREADS, thread_name_prefix="mm-cycle")
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.moved: deque[tuple[str, str, float]] = deque(maxlen=10_000)
        self.tops: dict[tuple[str, str], tuple[float, float, float, float, float]] = {}  # pushed best bid/ask
        self.streams: dict[str, Any] = {}
        self.stream_tasks: dict[str, Any] = {}
        self.stream_symbols: dict[str, tuple[str, ...]] = {}
        self._housekeeping_at = 0.0
        self._flush_at = 0.0
        self._pool_connections: dict[int, Any] = {}  # pool thread id -> its database connection
        self._connection_checked: dict[int, float] = {}  # pool thread id -> last close_old_connections()
        self._books: dict[tuple[str, str], tuple[float, BookData]] = {}  # in-process copy of shared books
        self.wanted_accounts: dict[int, tuple[ExchangeGateway, float]] = {}  # feeder: account -> (gateway, every)
        self.wanted_books: dict[tuple[str, str], ExchangeGateway] = {}  # feeder: (venue, pair) -> gateway
        self.feeder: threading.Thread | None = None
        self._urgent = 0  # urgent re-quotes in flight
        self._urgent_lock = threading.Lock()
        self.analyses: dict[Any, tuple[float, MarketAnalysis]] = {}
        self.stats: Counter[str] = Counter()  # cycles by verdict and full-cycle reason, since start

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
        for thread in (self.thread, self.feeder):
            if thread is not None:
                thread.join(timeout_secs)
        self.pool.shutdown(wait=True, cancel_futures=True)
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
        for task in self.stream_tasks.values():
            task.cancel()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("engine driver tick failed")
                close_old_connections()
                self.stopping.wait(0.5)

    def tick(self) -> None:
        now = time.time()
        if now >= self._housekeeping_at:
            self._housekeeping_at = now + HOUSEKEEPING_SECS
            self._housekeep(now)
        self._apply_moves(now)
        for pk in [pk for pk, r in self.runners.items() if r.dropped]:
            self.runners.pop(pk, None)
        for runner in self.runners.values():  # moves heard during a cycle (only this thread sets/clears the flag)
            if runner.wake_after and not runner.busy:
                runner.wake_after = False
                if runner.next_due > now:
                    runner.next_due, runner.woken = now, True
        due = [r for r in self.runners.values() if not r.busy and r.next_due <= now]
        if due:
            began = time.perf_counter()
            self._run_due(due, now)
            self.stats["run_due_ms"] += int(1000 * (time.perf_counter() - began))
            self.stats["run_due_calls"] += 1
        if time.time() >= self._flush_at:
            self._flush()
        idle = [r.next_due for r in self.runners.values() if not r.busy]
        wait = min(idle, default=now + 0.5) - time.time()
        self.wake.wait(timeout=min(max(wait, 0.001), 0.5))
        self.wake.clear()

    # --- shards and bots ---------------------------------------------------------------------------

    def _housekeep(self, now: float) -> None:
        close_old_connections()
        shards = settings.ENGINE_SHARDS
        r = get_redis()
        pipe = r.pipeline(transaction=False)
        pipe.zadd(DRIVERS_KEY, {self.token: now})
        pipe.zremrangebyscore(DRIVERS_KEY, 0, now - SHARD_TTL_SECS)
        pipe.zcard(DRIVERS_KEY)
        owned = sorted(self.owned)
        ttl_ms = int(SHARD_TTL_SECS * 1000)
        for shard in owned:
            pipe.eval(_EXTEND, 1, shard_key(shard), self.token, ttl_ms)
        results = pipe.execute()
        live = max(int(results[2]), 1)
        for shard, kept in zip(owned, results[3:], strict=True):
            if not kept:
                logger.warning("engine driver %s: lost shard %s", self.token, shard)
                self.owned.discard(shard)
        share = math.ceil(shards / live)
        while len(self.owned) > share:  # a new driver joined: give it room
            shard = max(self.owned)
            r.eval(_RELEASE, 1, shard_key(shard), self.token)
            self.owned.discard(shard)
        if len(self.owned) < share:
            start = random.randrange(shards)
            for offset in range(shards):
                shard = (start + offset) % shards
                if shard in self.owned:
                    continue
                if r.set(shard_key(shard), self.token, nx=True, px=ttl_ms):
                    self.owned.add(shard)
                    if len(self.owned) >= share:
                        break
        self._refresh_bots(now)
        accounts: dict[int, tuple[ExchangeGateway, float]] = {}
        books: dict[tuple[str, str], ExchangeGateway] = {}
        self.wanted_accounts, self.wanted_books = accounts, books  # rebuilt: bots that left drop out
        for runner in list(self.runners.values()):
            if runner.engine is not None:
                self._want(runner, runner.engine)
        self._ensure_streams()
        busy = sum(r.busy for r in self.runners.values())
        stats = {"bots": len(self.runners), "shards": len(self.owned), "busy": busy,
                 "pool_queue": self.pool._work_queue.qsize(), "due_now": sum(
                     1 for r in self.runners.values() if not r.busy and r.next_due <= now),
                 **self.stats}
        pipe = r.pipeline(transaction=False)
        pipe.hset(keys.driver_stats(self.token), mapping={k: str(v) for k, v in stats.items()})
        pipe.expire(keys.driver_stats(self.token), int(SHARD_TTL_SECS * 3))
        pipe.execute()

    def _refresh_bots(self, now: float) -> None:
        rows = Bot.objects.filter(status__in=(BotStatus.RUNNING, BotStatus.PAUSED)).values_list(
            "pk", "epoch", "status", "monitoring_interval_secs", "error_recovery_delay_secs", "updated_at",
            "kill_switch_engaged", "tenant__kill_switch_engaged", "daily_pnl_baseline_quote")
        first_account: dict[int, int] = {}
        for bot_id, account_id in Bot.exchange_accounts.through.objects.values_list("bot_id", "exchangeaccount_id"):
            if account_id < first_account.get(bot_id, account_id + 1):
                first_account[bot_id] = account_id
        seen = set()
        for pk, epoch, status, interval, error_delay, updated, kill, tenant_kill, baseline in rows:
            if shard_of(pk, first_account.get(pk)) not in self.owned:
                continue
            seen.add(pk)
            signature = (epoch, status, interval, error_delay, updated, kill, tenant_kill, baseline)
            runner = self.runners.get(pk)
            if runner is None or runner.epoch != epoch:
                if runner is not None:
                    runner.dropped = True
                # spread first cycles over one interval so a thousand bots do not all fire at once
                offset = (pk * 0.6180339887) % 1.0 * min(interval, 1.0)
                self.runners[pk] = Runner(pk, epoch, new_chain(pk), interval, error_delay, signature,
                                          next_due=now + offset)
            elif runner.signature != signature:
                runner.signature = signature
                runner.interval, runner.error_delay = interval, error_delay
                runner.engine = None  # the next cycle is a full one, on the bot as it is now
                runner.stale = runner.busy
        for pk in list(self.runners):
            if pk not in seen:
                self.runners.pop(pk).dropped = True

    # --- market data pushes ------------------------------------------------------------------------

    def _books_wanted(self) -> dict[str, tuple[Any, set[str]]]:
        """venue -> (an account of it, pairs quoted there by the bots this driver holds)."""
        wanted: dict[str, tuple[Any, set[str]]] = {}
        for runner in self.runners.values():
            engine = runner.engine
            if engine is None:
                continue
            for pair, position in engine.active_positions.items():
                account = engine.accounts.get(position.exchange_account_id)
                if account is None:
                    continue
                venue = exchange_key(account)
                wanted.setdefault(venue, (account, set()))[1].add(pair)
        return wanted

    def _ensure_streams(self) -> None:
        if not settings.ENGINE_BOOK_STREAMS:
            return
        try:
            from exchanges.streams import BookTickerStream
        except ImportError:
            return
        for venue, (account, pairs) in self._books_wanted().items():
            symbols = tuple(sorted(pairs))
            if self.stream_symbols.get(venue) == symbols:
                continue
            old = self.stream_tasks.pop(venue, None)
            if old is not None:
                old.cancel()  # the watcher closes its stream
            stream = BookTickerStream(account.exchange_id, account.api_base_url or None)
            self.stream_tasks[venue] = asyncio.run_coroutine_threadsafe(
                self._watch(venue, stream, symbols), aio.get_loop())
            self.streams[venue] = stream
            self.stream_symbols[venue] = symbols

    async def _watch(self, venue: str, stream: Any, symbols: tuple[str, ...]) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                updates = await stream.watch(list(symbols))
                backoff = 0.1
            except asyncio.CancelledError:
                await stream.close()
                raise
            except Exception as exc:
                logger.info("engine driver: book stream %s: %s", venue, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            woke = False
            for quote in updates:
                bid, ask = float(quote.bid), float(quote.ask)
                if bid > 0 and ask > 0:
                    self.tops[(venue, quote.symbol)] = (bid, float(quote.bid_size), ask, float(quote.ask_size),
                                                        quote.received_at)
                    self.moved.append((venue, quote.symbol, (bid + ask) / 2))
                    woke = True
            if woke:
                self.wake.set()

    def _apply_moves(self, now: float) -> None:
        """Pushed mids: bots whose quotes are a quarter of their tolerance off the new mid run now."""
        if not self.moved:
            return
        latest: dict[tuple[str, str], float] = {}
        while self.moved:
            venue, pair, mid = self.moved.popleft()
            latest[(venue, pair)] = mid
        for runner in self.runners.values():
            if runner.engine is None:
                continue
            tolerance = runner.engine.config.order_settings.order_refresh_tolerance_bps / 4e4
            for key, quoted in runner.quoted_mid.items():
                mid = latest.get(key)
                if mid is None:
                    continue
                if runner.busy:  # its running cycle may have decided on the book before this move
                    runner.wake_after = True
                    break
                if abs(mid - quoted) > tolerance * quoted:
                    if runner.next_due > now:
                        runner.next_due, runner.woken = now, True
                    break

    # --- cycles ------------------------------------------------------------------------------------

    def _run_due(self, due: list[Runner], now: float) -> None:
        r = get_redis()
        leases = {}
        pipe = r.pipeline(transaction=False)
        for runner in due:
            lease = BotLease(runner.bot_id, max(10.0, 3 * runner.interval))
            leases[runner.bot_id] = lease
            pipe.set(lease.key, lease.token, nx=True, px=lease.ttl_ms)
            pipe.get(chain_key(runner.bot_id))
            pipe.exists(daily_reset_key(runner.bot_id))
        results = pipe.execute()
        books: dict[tuple[str, str], BookData] = {}
        quiet: list[tuple[Runner, float, float, Verdict]] = []
        for index, runner in enumerate(due):
            got, chain, reset_pending = results[3 * index: 3 * index + 3]
            scheduled = runner.next_due
            woken, runner.woken = runner.woken, False
            lease = leases[runner.bot_id]
            if not got:  # a stop/kill/reconcile/rebalance task holds the bot: try again next interval
                runner.next_due = now + runner.interval
                continue
            lease.held = True
            if (chain.decode() if chain else None) != runner.chain:  # another driver took the bot
                lease.release()
                runner.dropped = True
                continue
            started = time.time()
            verdict = self._check(runner, started, books, bool(reset_pending))
            self.stats[verdict.kind if verdict.kind != "full" else "full: " + verdict.reason] += 1
            runner.last_verdict = f"{verdict.kind}: {verdict.reason} {verdict.detail}".strip()
            if verdict.kind == "quiet":
                quiet.append((runner, scheduled, started, verdict))
                runner.next_due = next_due(scheduled, runner.interval, started)
                continue
            if verdict.kind == "requote":  # the old quotes' cancels leave now, under this cycle's lease
                for pair, rows in verdict.cancels.items():
                    if rows:
                        verdict.sent[pair] = (rows, runner.engine.order_manager.cancel_requests(rows))
            runner.busy = True
            verdict.urgent = woken and verdict.kind == "requote"
            if verdict.urgent:
                with self._urgent_lock:
                    self._urgent += 1
            self.pool.submit(self._cycle, runner, lease, verdict, scheduled)
        if quiet:
            self._record_quiet(quiet, leases)

    def _record_quiet(self, quiet: list[tuple[Runner, float, float, Verdict]], leases: dict[int, BotLease]) -> None:
        finished = time.time()
        worker = worker_label()
        pipe = get_redis().pipeline(transaction=False)
        for runner, scheduled, started, verdict in quiet:
            key = keys.cycles(runner.bot_id)
            pipe.lpush(key, f"{scheduled:.6f} {started:.6f} {finished:.6f} {worker}")
            pipe.ltrim(key, 0, keys.CYCLE_RECORDS - 1)
            uptime = keys.uptime(runner.bot_id)
            for pair, both in verdict.uptime:
                pipe.hincrby(uptime, f"{pair}:cycles", 1)
                if both:
                    pipe.hincrby(uptime, f"{pair}:quoted", 1)
            lease = leases[runner.bot_id]
            pipe.eval(_RELEASE, 1, lease.key, lease.token)
            runner.quiet_cycles += 1
        pipe.execute()

    # --- the feeder: account views and depth reads, off the driver thread ------------------------------

    def _feed(self) -> None:
        """Keep every account view younger than ~0.9 interval of its fastest bot (right after a fill
        sync: at once) and every quoted pair's shared book younger than MARKET_DATA_CACHE_SECS, so the
        driver thread's checks never wait for the venue."""
        deferred = 0
        while not self.stopping.is_set():
            if self._urgent and deferred < FEED_MAX_DEFERRALS:
                deferred += 1  # a pushed move's re-quote is in flight: reads wait, they are not urgent
                self.stopping.wait(FEED_SECS)
                continue
            deferred = 0
            try:
                self._feed_once(time.time())
            except Exception:
                logger.exception("engine driver: feeder pass failed")
                self.stopping.wait(0.5)
            self.stopping.wait(FEED_SECS)

    def _feed_once(self, now: float) -> None:
        stale: dict[int, ExchangeGateway] = {}
        for account_id, (gateway, every) in list(self.wanted_accounts.items()):
            view = self.accounts.get(account_id)
            if view is None or view.outdated or now - view.taken_at >= every:
                stale[account_id] = gateway
        if stale:
            self._read_accounts(stale)
        due: list[tuple[str, str, ExchangeGateway]] = []
        for (venue, pair), gateway in list(self.wanted_books.items()):
            held = self._books.get((venue, pair))
            streaming = venue in self.stream_tasks and not self.stream_tasks[venue].done()
            # with the top of book pushed, the depth (for the liquidity estimate) is read less often
            max_age = DEPTH_WITH_STREAM_SECS if streaming else settings.MARKET_DATA_CACHE_SECS
            if held is None or time.time() - held[1].fetched_at >= max_age:
                due.append((venue, pair, gateway))
        if due:
            self._read_books(due)

    def _read_books(self, due: list[tuple[str, str, ExchangeGateway]]) -> None:
        """Depth reads of many pairs at once; shared through Redis like any other read."""
        async def read_all() -> list[Any]:
            return await asyncio.gather(*(g.fetch_order_book(p, ORDER_BOOK_DEPTH) for _, p, g in due),
                                        return_exceptions=True)

        read = []
        for (venue, pair, _), raw in zip(due, aio.run(read_all()), strict=True):
            if isinstance(raw, BaseException):
                logger.info("engine driver: depth read of %s on %s failed: %s", pair, venue, raw)
                continue
            book = book_from(raw)
            self._books[(venue, pair)] = (book.fetched_at, book)
            read.append((venue, pair, book))
        if read:
            store_books(read)

    def _read_accounts(self, stale: dict[int, ExchangeGateway]) -> None:
        """One open-orders read per account (all accounts concurrently); then a balance read for those
        whose orders changed (a fill moves balances), that a fill sync flagged, or whose balances are
        older than BALANCE_SECS (deposits, withdrawals, fees)."""
        async def gather(calls: list[Any]) -> list[Any]:
            return await asyncio.gather(*calls, return_exceptions=True)

        taken = time.time()
        listed = aio.run(gather([g.fetch_open_orders(None) for g in stale.values()]))
        views: dict[int, AccountView] = {}
        for account_id, result in zip(stale, listed, strict=True):
            if isinstance(result, BaseException):
                logger.info("engine driver: account %s read failed: %s", account_id, result)
                self.accounts.pop(account_id, None)  # its bots run full cycles until it reads again
                continue
            old = self.accounts.get(account_id)
            orders = {o.client_order_id: o for o in result if o.client_order_id}
            view = AccountView(taken_at=taken, orders=orders, balances=old.balances if old else {},
                               balances_at=old.balances_at if old else 0.0)
            if old is None or old.outdated or taken - old.balances_at >= BALANCE_SECS or _orders_moved(old, view):
                view.balances_at = -1.0  # to read
            views[account_id] = view
        wanted = [a for a, v in views.items() if v.balances_at < 0]
        read = aio.run(gather([stale[a].fetch_balance() for a in wanted])) if wanted else []
        for account_id, result in zip(wanted, read, strict=True):
            if isinstance(result, BaseException):
                logger.info("engine driver: account %s balance read failed: %s", account_id, result)
                views.pop(account_id)
                self.accounts.pop(account_id, None)
                continue
            views[account_id].balances = {asset: b.total for asset, b in result.assets.items()}
            views[account_id].balances_at = taken
        self.accounts.update(views)

    def _want(self, runner: Runner, engine: MarketMakingBot) -> None:
        """Tell the feeder what this bot needs read: its accounts and its pairs' books."""
        every = max(runner.interval * 0.9, ACCOUNT_READ_MIN_SECS)
        for account_id, gateway in engine.exchanges.items():
            held = self.wanted_accounts.get(account_id)
            if held is None or every < held[1]:
                self.wanted_accounts[account_id] = (gateway, every)
        for pair, position in engine.active_positions.items():
            gateway = engine.exchanges.get(position.exchange_account_id)
            if gateway is not None:
                self.wanted_books.setdefault((exchange_key(engine.accounts[position.exchange_account_id]), pair),
                                             gateway)

    def _book(self, engine: MarketMakingBot, account_id: int, pair: str,
              books: dict[tuple[str, str], BookData]) -> BookData:
        venue = exchange_key(engine.accounts[account_id])
        book = books.get((venue, pair))
        if book is None:
            held = self._books.get((venue, pair))
            top = self.tops.get((venue, pair))
            if held is not None and time.time() - held[1].fetched_at < settings.MARKET_DATA_CACHE_SECS + FEED_SECS:
                book = held[1]  # the feeder keeps it fresh: no read on the driver thread
            elif top is not None and held is not None and time.time() - held[1].fetched_at < DEPTH_REUSE_SECS:
                book = held[1]  # a fresher pushed top goes on a recent depth read
            else:  # nothing recent yet (a new pair, or the feeder is behind): read it here
                book = shared_book(venue, pair, book_reader(engine.exchanges[account_id], pair, ORDER_BOOK_DEPTH))
                self._books[(venue, pair)] = (time.time(), book)
            if top is not None and top[4] > book.fetched_at:
                # the pushed best bid/ask is newer than the last depth read: it replaces the top of
                # book (deeper levels that it crossed are dropped)
                bid, bid_size, ask, ask_size, received_at = top
                book = BookData([(bid, bid_size), *(level for level in book.bids if level[0] < bid)],
                                [(ask, ask_size), *(level for level in book.asks if level[0] > ask)], received_at)
            books[(venue, pair)] = book
        return book

    def _snapshot(self, runner: Runner, engine: MarketMakingBot, position: Any,
                  books: dict[tuple[str, str], BookData], now: float) -> Any:
        """The bot's strategy snapshot of a pair: the shared book (pushed top on the feeder's depth)
        less the bot's own resting orders. Records the book's time for the staleness check."""
        pair = position.trading_pair
        account_id = position.exchange_account_id
        book = self._book(engine, account_id, pair, books)
        own = [(o.side, float(o.price), float(o.amount - o.filled)) for o in runner.live.get(position.pk, [])]
        market = without_own(book, own)
        venue = exchange_key(engine.accounts[account_id])
        held = self._books.get((venue, pair))
        merged = held is not None and book.fetched_at > held[1].fetched_at  # a pushed top on older depth
        if merged and (market.bids[:1] != book.bids[:1] or market.asks[:1] != book.asks[:1]):
            # our own order was the pushed top: the levels behind it come from an older depth read and
            # may be from before a move, so read the depth now rather than quote off a stale level
            book = book_reader(engine.exchanges[account_id], pair, ORDER_BOOK_DEPTH)()
            store_books([(venue, pair, book)])
            self._books[(venue, pair)] = (book.fetched_at, book)
            books[(venue, pair)] = book
            market = without_own(book, own)
        rules = engine.exchanges[account_id].market_rules(pair)
        engine.book_fetched_at[pair] = book.fetched_at
        return to_snapshot(pair, market, tick_size=float(rules.tick_size),
                           lot_size=float(rules.lot_size), min_notional=float(rules.min_notional or 0), now=now)

    def _analysis(self, engine: MarketMakingBot, account_id: int, pair: str, snapshot: Any,
                  now: float) -> MarketAnalysis:
        """The spec's market analysis on the venue's shared mid history, computed at most once per
        ANALYSIS_SECS per (venue, pair, strategy settings) and shared by every bot with those settings."""
        venue = exchange_key(engine.accounts[account_id])
        config = engine.config.strategy_settings
        try:
            key: Any = (venue, pair, config)
            hit = self.analyses.get(key)
        except TypeError:  # unhashable settings: this bot's own entry
            key = (venue, pair, id(config))
            hit = self.analyses.get(key)
        if hit is not None and now - hit[0] < ANALYSIS_SECS:
            return hit[1]
        times, mids = mid_history(venue, pair)
        analysis = analyze_market(snapshot, config, times, mids)
        if len(self.analyses) > 10_000:
            self.analyses.clear()
        self.analyses[key] = (now, analysis)
        return analysis

    def _check(self, runner: Runner, now: float, books: dict[tuple[str, str], BookData],
               reset_pending: bool) -> Verdict:
        """Quiet, a re-quote only, or a full cycle (with the reason)."""
        engine = runner.engine
        if engine is None:
            return Verdict("full", "no engine state")
        if engine.bot.status != BotStatus.RUNNING:
            return Verdict("full", "not running")
        if now - runner.last_full_at >= settings.ENGINE_FULL_CYCLE_SECS:
            return Verdict("full", "periodic full cycle")
        if reset_pending:
            return Verdict("full", "daily reset")
        prefix = client_id_prefix(runner.bot_id)
        for account_id in engine.exchanges:
            view = self.accounts.get(account_id)
            if view is None or now - view.taken_at > view_limit(runner.interval):
                return Verdict("full", "no account view")
            for cid in view.orders:
                if cid.startswith(prefix) and cid not in runner.known and not (
                        runner.gone.get(cid, 0) > view.taken_at - SENT_MARGIN_SECS):
                    return Verdict("full", "stray order", detail=cid)
        filled: list[str] = []
        for pair, position in engine.active_positions.items():
            view = self.accounts.get(position.exchange_account_id)
            if view is None or position.exchange_account_id not in engine.exchanges:
                return Verdict("full", "account not connected")
            for row in runner.live.get(position.pk, []):
                remote = view.orders.get(row.client_order_id)
                if (remote is None and row.created_at.timestamp() < view.taken_at - SENT_MARGIN_SECS) or (
                        remote is not None and (remote.filled or 0) > row.filled):
                    filled.append(pair)  # filled, partly filled, or gone: sync this pair and re-quote it
                    break
        if filled:
            return Verdict("fills", "orders filled or left the book", pairs=filled)
        requote: list[str] = []
        cancels: dict[str, list[Order]] = {}
        uptime: list[tuple[str, bool]] = []
        try:
            for pair, position in engine.active_positions.items():
                view = self.accounts[position.exchange_account_id]
                snapshot = self._snapshot(runner, engine, position, books, now)
                engine.snapshots[pair] = snapshot
                if snapshot.problem() or engine._stale_book(pair):
                    return Verdict("full", "book problem")
                engine.inventory_manager.balances[position.exchange_account_id] = view.balances
                engine.inventory_manager.assess(position, snapshot.mid)
                analysis = self._analysis(engine, position.exchange_account_id, pair, snapshot, now)
                engine.analyses[pair] = analysis
                settings_ = engine.config.strategy_settings
                if settings_.adaptation_enabled:
                    strategy = engine.strategy_engine.restore(position)
                    if (select_strategy_type(analysis, settings_) != strategy.strategy_type
                            or strategy.should_adapt(analysis)):
                        return Verdict("full", "strategy adaptation")
            statuses, equity = engine.risk_in_memory(runner.high_water)
            if statuses:
                return Verdict("full", "risk status", detail=",".join(s.event_type for s in statuses))
            rebalance = engine.rebalancing_due(now)  # the spec checks the need every monitoring interval
            if rebalance:
                return Verdict("full", "rebalancing needed", detail=",".join(rebalance))
            if equity > runner.high_water:
                runner.high_water, runner.high_water_dirty = equity, True
            total_open = sum(runner.open_count.values())
            for pair, position in engine.active_positions.items():
                rows = runner.live.get(position.pk, [])
                others = total_open - runner.open_count.get(position.pk, 0)
                engine.clock = lambda: now
                decision = engine.decide_quotes(position, engine.snapshots[pair], rows, others)
                if decision.denied:
                    return Verdict("full", "denied orders")
                if decision.diff.cancel or decision.diff.place:
                    requote.append(pair)
                    by_client = {o.client_order_id: o for o in rows}
                    cancels[pair] = [by_client[o.order_id] for o in decision.diff.cancel]
                uptime.append((pair, decision.quotes_both_sides))
        finally:
            engine.clock = time.time
        if requote:
            return Verdict("requote", "quotes moved", pairs=requote, cancels=cancels)
        if now >= runner.perf_due_at and engine.config.performance_tracking:
            return Verdict("snapshot", "performance snapshot due", uptime=uptime)
        return Verdict("quiet", uptime=uptime)

    def _cycle(self, runner: Runner, lease: BotLease, verdict: Verdict, scheduled: float) -> None:
        """A pool thread: a re-quote on the kept engine, or a full cycle."""
        from bots.tasks import execute_cycle

        started = time.time()
        delay = runner.interval
        try:
            last = self._connection_checked.get(threading.get_ident(), 0.0)
            if started - last > 1.0:  # drop a connection past its age or broken, at most once a second
                close_old_connections()
                self._connection_checked[threading.get_ident()] = started
            if threading.get_ident() not in self._pool_connections:
                conn = connections[DEFAULT_DB_ALIAS]
                conn.inc_thread_sharing()  # so stop() may close it from the driver's thread
                self._pool_connections[threading.get_ident()] = conn
            if runner.high_water_dirty:
                self._write_high_water([runner])
            if verdict.kind in ("requote", "fills", "snapshot") and runner.engine is not None:
                outcome = self._on_kept_engine(runner, lease, verdict, scheduled, started)
            else:
                result = execute_cycle(runner.bot_id, runner.epoch, runner.chain, scheduled, lease=lease)
                outcome = result.outcome
                self._capture(runner, result.engine, full=True)
                if outcome in ("stale-chain", "fenced", "auth-error"):
                    runner.dropped = True  # the driver thread forgets it; a fenced bot comes back if cycling
                elif outcome == "error":
                    delay = runner.error_delay
        except Exception:
            logger.exception("bot %s: driver cycle failed", runner.bot_id)
            runner.engine = None
            delay = runner.error_delay
            lease.release()
        finally:
            if verdict.urgent:
                with self._urgent_lock:
                    self._urgent -= 1
            now = time.time()
            self.stats[f"{verdict.kind}_wall_ms"] += int(1000 * (now - started))
            self.stats[f"{verdict.kind}_queued_ms"] += int(1000 * max(started - scheduled, 0.0))
            runner.next_due = next_due(scheduled, runner.interval, now) if delay == runner.interval else now + delay
            runner.touched = True
            runner.busy = False
            self.wake.set()

    def _on_kept_engine(self, runner: Runner, lease: BotLease, verdict: Verdict, scheduled: float,
                        started: float) -> str:
        """A re-quote (``_adjust_orders`` of the pairs whose quotes moved, on the rows the quiet check saw) or
        a performance snapshot, on the engine kept from the last full cycle, under the bot's lease."""
        from bots.engine.core import CycleReport
        from bots.engine.lease import record_cycle
        from bots.tasks import worker_id

        engine = runner.engine
        assert engine is not None
        engine.lease = lease
        engine.report = CycleReport()
        outcome = "ok"
        try:
            if verdict.kind == "snapshot":
                engine._update_performance()
                runner.perf_due_at = time.time() + max(engine.config.metrics_interval_secs, runner.interval)
                return outcome
            engine.order_manager.stored = []  # the rows this cycle stores, for its in-memory capture
            numbered: list[int] = []

            def number_once() -> int:
                """This cycle's number, taken once (a re-quote's after its cancels left) and fenced in the
                same statement: a stop, kill or restart since the check sends nothing."""
                if not numbered:
                    cycle = begin_fenced_cycle(runner.bot_id, runner.epoch)
                    if cycle is None:
                        raise FencedError(f"bot {runner.bot_id}: stopped, killed or restarted; nothing is sent")
                    numbered.append(cycle)
                    engine.fenced_at_begin = True
                return numbered[0]

            if verdict.kind == "fills":
                engine.cycle = number_once()
                self._sync_and_requote(runner, engine, verdict.pairs)
                return outcome
            total_open = sum(runner.open_count.values())
            for pair in verdict.pairs:
                position = engine.active_positions[pair]
                engine._adjust_orders(position, initial=False, live_rows=runner.live.get(position.pk, []),
                              others_open=total_open - runner.open_count.get(position.pk, 0),
                              begin_cycle_now=number_once, sent_cancels=verdict.sent.get(pair))
            # the open rows, in memory: the cancelled ones were settled on these objects, the new ones
            # are as the venue answered them (no read back)
            self._capture(runner, engine, full=False, rows=runner.rows + engine.order_manager.stored)
        except (LeaseLostError, FencedError) as exc:
            logger.info("%s", exc)
            runner.engine = None
            outcome = "fenced"
        except Exception as exc:
            logger.exception("bot %s: re-quote failed", runner.bot_id)
            close_old_connections()
            Bot.objects.filter(pk=runner.bot_id, epoch=runner.epoch).update(
                last_error=f"{type(exc).__name__}: {exc}"[:2000])
            runner.engine = None
            outcome = "error"
        finally:
            engine.fenced_at_begin = False
            record_cycle(runner.bot_id, scheduled, started, time.time(), worker_id())
            lease.release()
        return outcome

    def _sync_and_requote(self, runner: Runner, engine: MarketMakingBot, pairs: list[str]) -> None:
        """Orders of these pairs were filled or left the book: reconcile each pair with the venue (its
        open orders, the fate of the missing ones, the trades -> Fill rows and accounting, OrderFilled
        events), reload that account's balances, and re-quote the pair. The rest of the bot is as the
        quiet check left it; the next check assesses risk on the new position."""
        accounts = {engine.active_positions[p].exchange_account_id for p in pairs}
        engine.inventory_manager.load_balances({a: engine.exchanges[a] for a in accounts})
        total_open = sum(runner.open_count.values())
        synced_positions: set[int] = set()
        rows: list[Order] = []
        for pair in pairs:
            position = engine.active_positions[pair]
            snapshot = self._snapshot(runner, engine, position, {}, time.time())  # the feeder's book
            engine.snapshots[pair] = snapshot
            mid = snapshot.mid if not snapshot.problem() else float("nan")
            engine.announce_fills(pair, engine.order_manager.sync_position(position, mid=mid))
            if mid == mid:
                engine.inventory_manager.assess(position, mid)
            # re-quoted on the rows the sync just reconciled with the venue (not read again)
            synced = engine.order_manager.synced_rows.pop(position.pk, [])
            synced_positions.add(position.pk)
            rows.extend(synced)
            live = [o for o in synced if o.status in OPEN_ORDER_STATUSES and o.purpose == OrderPurpose.QUOTE]
            engine._adjust_orders(position, initial=False, live_rows=live,
                          others_open=total_open - runner.open_count.get(position.pk, 0))
        # the open rows, in memory: other pairs' as they were, the synced pairs' as the venue answered
        # the sync and the re-quote, and the re-quote's new ones
        rows += [o for o in runner.rows if o.position_id not in synced_positions]
        self._capture(runner, engine, full=False, rows=rows + engine.order_manager.stored)
        for account_id in accounts:  # balances moved: the next due cycle reads the account again
            view = self.accounts.get(account_id)
            if view is not None:
                view.outdated = True

    def _capture(self, runner: Runner, engine: MarketMakingBot | None, *, full: bool,
                 rows: list[Order] | None = None) -> None:
        """Keep what the next quiet check compares against: the engine, the open rows (read, unless
        the caller holds them: a re-quote knows what it cancelled and stored), the mids."""
        now = time.time()
        if engine is None or engine.bot.status != BotStatus.RUNNING or runner.stale:
            runner.engine = None
            runner.stale = False
            return
        if rows is None:
            rows = list(Order.objects.filter(bot_id=runner.bot_id, status__in=OPEN_ORDER_STATUSES))
        else:
            rows = [o for o in rows if o.status in OPEN_ORDER_STATUSES]
        runner.rows = rows
        known = {o.client_order_id for o in rows}
        for cid in runner.known - known:
            runner.gone[cid] = now
        runner.gone = {cid: t for cid, t in runner.gone.items() if now - t < 30}
        runner.known = known
        runner.live, runner.open_count = {}, {}
        for order in rows:
            runner.open_count[order.position_id] = runner.open_count.get(order.position_id, 0) + 1
            if order.purpose == OrderPurpose.QUOTE:
                runner.live.setdefault(order.position_id, []).append(order)
        runner.quoted_mid = {}
        for pair, position in engine.active_positions.items():
            snapshot = engine.snapshots.get(pair)
            account = engine.accounts.get(position.exchange_account_id)
            if snapshot is not None and account is not None and not snapshot.problem():
                runner.quoted_mid[(exchange_key(account), pair)] = snapshot.mid
        runner.engine = engine
        self._want(runner, engine)
        if full:
            first = runner.last_full_at == 0.0
            period = max(engine.config.metrics_interval_secs, runner.interval)
            runner.last_full_at = now
            runner.perf_due_at = now + period
            if first:
                # bots that start together (a mass start, a worker restart) spread their periodic work
                # over its period instead of all snapshotting / fully cycling in the same second
                runner.perf_due_at = now + period * random.uniform(0.1, 1.0)
                runner.last_full_at = now - settings.ENGINE_FULL_CYCLE_SECS * random.uniform(0.0, 0.5)
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
        now = timezone.now()
        for n, ids in counts.items():
            Bot.objects.filter(pk__in=ids).update(cycle_count=F("cycle_count") + n, last_cycle_finished_at=now)
        if force:
            dirty = [r for r in self.runners.values() if r.high_water_dirty]
        self._write_high_water(dirty)

    @staticmethod
    def _write_high_water(runners: list[Runner]) -> None:
        for runner in runners:
            value = Decimal(repr(round(runner.high_water, 8)))
            Bot.objects.filter(pk=runner.bot_id, equity_high_water_quote__lt=value).update(
                equity_high_water_quote=value)
            runner.high_water_dirty = False


def _orders_moved(old: AccountView, new: AccountView) -> bool:
    """A resting order gained fills between two views (so balances moved). An order that left the book
    may just be cancelled (totals unchanged); a filled one is synced by its bot, which flags the view
    ``outdated`` and so has the balances read."""
    for cid, order in new.orders.items():
        before = old.orders.get(cid)
        if before is not None and (order.filled or 0) != (before.filled or 0):
            return True
    return False


def view_limit(interval: float) -> float:
    """An account view older than this is not trusted for a quiet check (a full cycle reads the venue)."""
    return 2 * interval + 1.0


def next_due(scheduled: float, interval: float, now: float) -> float:
    """Fixed rate (the lag of a late cycle does not shift the ones after it), but a bot more than an
    interval behind skips the cycles it missed instead of running them back to back."""
    due = scheduled + interval
    return due if due > now - interval else now


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
