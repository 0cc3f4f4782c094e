"""What an engine ``Driver`` holds, declared once: every attribute, its type and the one thread that writes it.

``Driver`` (driver.py) is put together from ``ShardsMixin`` (shards.py), ``FeedMixin`` (feed.py),
``VerdictMixin`` (verdict.py) and ``RequoteMixin`` (requote.py); each derives from ``DriverState``, so mypy
checks every mixin against these declarations, and each call one part makes into another against the
real method (which overrides the ``if TYPE_CHECKING`` stub here).

The threads (docs/architecture.md, "Who owns what"): the *driver* thread (``mm-engine-driver``: tick,
housekeeping, checks, flush), the *feeder* thread (``mm-engine-feeder``: account views and depth reads),
the *pool* threads (``mm-cycle_N``: re-quotes, fill syncs and full cycles, the most urgent first) and
the *I/O loop* (pushed best bid/ask). A value another thread needs is handed over whole (a new
``AccountView``, a new ``BookData``) or through a queue its owner drains (``moved``, ``finished``,
``outdated``); a test checks that only the owner's module assigns each attribute.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bots.engine.bot import MarketMakingBot
from bots.engine.depth import DepthReads
from bots.engine.due import DueQueue
from bots.engine.loop_probe import LoopProbe
from bots.engine.market_data import AccountView, BookData, MidHistoryReader
from bots.engine.performance import PerformanceFigures
from bots.engine.pool import CyclePool
from bots.engine.runner import Runner
from bots.engine.shared_views import SharedViews
from bots.models import Order
from exchanges.gateway import ExchangeGateway
from strategies.analysis import MarketAnalysis
from strategies.types import MarketSnapshot


class DriverState:
    """The attributes of ``Driver`` (set in ``Driver.__init__``); the comment names the writer."""

    # --- fixed at construction / lifecycle (driver.py, the thread that starts and stops the driver) ---
    token: str
    pool: CyclePool  # the cycles the checks hand over, earliest deadline first (pool.py)
    wake: threading.Event  # set by anyone (a cycle ended, a pushed move); waited on and cleared by the driver
    stopping: threading.Event  # set by stop()
    thread: threading.Thread | None
    feeder: threading.Thread | None
    # --- the driver thread (shards.py, driver.py, verdict.py) ------------------------------------------
    owned: set[int]  # shard leases held (shards.py)
    runners: dict[int, Runner]  # bots of those shards; each Runner's fields: see runner.py
    due_queue: DueQueue  # when each runner is next looked at: the tick pops the due ones (due.py)
    stats: Counter[str]  # cycles by verdict, timings (pool timings arrive through ``finished``)
    analyses: dict[Any, tuple[float, MarketAnalysis]]  # shared market analyses (feed.py ``_analysis``)
    by_pair: dict[tuple[str, str], dict[int, Runner]]  # (venue, pair) -> the bots quoting it (driver.py, shards.py)
    shared: SharedViews  # what the bots of an account / a venue's pair share, per version (shared_views.py)
    wanted_accounts: dict[int, tuple[ExchangeGateway, float]]  # what the feeder reads: account -> (gateway, every)
    wanted_books: dict[tuple[str, str], ExchangeGateway]  # ... and (venue, pair) -> gateway (replaced whole)
    bots_read: tuple[str, frozenset[int]] | None  # (bots' fingerprint, owned shards) at the last read of the bots;
    # None: read them at the next housekeeping pass (a runner was dropped) (shards.py, driver.py)
    _housekeeping_at: float
    _flush_at: float
    snapshots_due: list[tuple[float, PerformanceFigures]]  # (deadline, figures) the checks took; handed to
    # a pool thread in one batch at the next flush (``_hand_snapshots``, driver.py)
    _urgent: int  # urgent re-quotes in flight (+1 on submit, -1 when taken back); the feeder reads it
    # --- the feeder thread (feed.py) ---------------------------------------------------------------
    accounts: dict[int, AccountView]  # views replaced whole; readers keep the one they got
    _books: dict[tuple[str, str], tuple[float, BookData]]  # in-process copy of the shared books
    feed_stats: Counter[str]  # REST account reads, pushed order updates (published with the driver's stats)
    mids: dict[tuple[str, str], tuple[float, list[float], list[float]]]  # (venue, pair) -> (read at, times, mids)
    mids_read_at: float  # when the feeder last read the wanted books' mid histories (``_read_mids``)
    mid_reader: MidHistoryReader  # the feeder's: each history held as last read, its tail read since
    depth: DepthReads  # the checks' depth reads on the loop and the bots waiting for them (depth.py; driver thread)
    loop_probe: LoopProbe  # how late the I/O loop runs what is handed to it (loop_probe.py; feeder's ``_probe_loop``)
    # --- the I/O loop's stream watchers (feed.py ``_watch``); the driver thread starts them ---------------
    tops: dict[tuple[str, str], tuple[float, float, float, float, float]]  # pushed best bid/ask
    _book_keys: dict[tuple[str, str], tuple[BookData, tuple]]  # (venue, pair) -> a book and its QuietInputs key
    moved: deque[tuple[str, str, float]]  # pushed mids: appended by the watchers, drained by the driver
    streams: dict[str, Any]  # driver thread (``_ensure_streams``)
    stream_tasks: dict[str, Any]  # driver thread
    stream_symbols: dict[str, tuple[str, ...]]  # driver thread
    # pushed order updates (feed.py ``_ensure_order_streams`` on the driver thread, ``_watch_orders`` on the loop)
    order_stream_tasks: dict[int, tuple[ExchangeGateway, Any]]  # driver thread: account -> (gateway, watcher)
    order_streams_live: set[int]  # the account's watcher (I/O loop): accounts whose order updates are pushed now
    pushed_orders: deque[tuple[int, Any]]  # watchers -> feeder: (account, PushedUpdates | None: read it by REST)
    feed_wake: threading.Event  # watchers -> feeder: set with each pushed batch (the feeder applies it at once)
    resync_wanted: set[int]  # feeder: accounts the pushes applied between passes said to read by REST
    traded_bots: deque[int]  # feeder -> driver (``_bring_traded``): bots whose orders the pushes showed trading
    # --- hand-overs: appended by other threads, drained by the owner alone ------------------------------
    # pool -> driver (``_take_back``): ended cycles (runner, verdict kind, urgent, drop it, wall ms, queued ms,
    # the engine's counts since its last cycle: how its fill syncs booked the trades)
    finished: deque[tuple[Runner, str, bool, bool, int, int, Counter[str] | None]]
    fresh_books: deque[tuple[tuple[str, str], tuple[float, BookData]]]  # driver/pool -> feeder: depth read off it
    outdated: deque[int]  # pool -> feeder: accounts whose balances a fill sync moved
    # pool -> feeder: balances a fill sync read after its fill (account, read at, totals, free)
    fresh_balances: deque[tuple[int, float, dict[str, Decimal], dict[str, Decimal]]]
    # --- each pool thread its own key (requote.py) ------------------------------------------------------
    _pool_connections: dict[int, Any]  # pool thread id -> its database connection (closed by stop())
    _connection_checked: dict[int, float]  # pool thread id -> last close_old_connections()

    if TYPE_CHECKING:  # provided by a sibling part (the real method overrides these)

        def _want(self, runner: Runner, engine: MarketMakingBot) -> None:
            raise NotImplementedError

        def _ensure_streams(self) -> None:
            raise NotImplementedError

        def _ensure_order_streams(self) -> None:
            raise NotImplementedError

        def _snapshot(self, runner: Runner, engine: MarketMakingBot, position: Any,
                      books: dict[tuple[str, str], BookData], now: float,
                      shared: SharedViews | None = None, seen: dict[Any, tuple] | None = None,
                      same: dict[Any, tuple] | None = None) -> MarketSnapshot:
            raise NotImplementedError

        def _analysis(self, engine: MarketMakingBot, account_id: int, pair: str, snapshot: MarketSnapshot,
                      now: float) -> MarketAnalysis:
            raise NotImplementedError

        def _capture(self, runner: Runner, engine: MarketMakingBot | None, *, full: bool,
                     rows: list[Order] | None = None) -> None:
            raise NotImplementedError

        @staticmethod
        def _write_high_water(runners: list[Runner]) -> None:
            raise NotImplementedError
