"""The engine driver's cycle pool: ``ENGINE_CYCLE_THREADS`` threads (``mm-cycle_N``) running the cycles the
driver's checks hand over, the most urgent first.

A thread pool with a FIFO queue runs a performance snapshot queued a moment earlier before a re-quote
whose book moved, or a fill sync whose side of the book is bare; under load (N=500 active: fill syncs
queued ~2.7 s on average) that order is what the bots' quotes wait on. Here each cycle carries a
deadline, the time its bot was due plus the patience of its kind (``PATIENCE_SECS``), and the
earliest deadline runs first: re-quotes, fill syncs and protective full cycles (a risk status, a bot no
longer running) at once; other full cycles after half a second; the periodic full cycle and the first
cycle of a bot after two; performance snapshots after five. A cycle that waited past its patience runs
before newer urgent ones, so nothing starves.

No coalescing is needed: the driver submits a bot only when it is not ``busy`` and marks it busy until
the cycle is handed back (``Driver._take_back``), so a bot is never queued twice.

``shutdown`` cancels what is still queued (each cycle's ``on_cancel`` runs: the driver releases the bot's
lease, so the driver that takes the shard over does not wait for it to expire) and joins the threads.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

PATIENCE_SECS = {
    "urgent": 0.0,  # a re-quote brought forward by a pushed move, a risk status, a bot no longer running
    "requote": 0.0,
    "fills": 0.0,
    "full": 0.5,
    "routine": 2.0,  # the periodic full cycle, a bot's first cycle (no engine state yet)
    "reset": 2.0,  # the daily reset's new P&L baseline (``Verdict("reset")``)
    "snapshot": 5.0,
}
"""How long a cycle of each kind may wait behind more urgent ones (seconds past its bot's due time)."""

PROTECTIVE_REASONS = frozenset({"risk status", "not running"})
ROUTINE_REASONS = frozenset({"periodic full cycle", "no engine state"})


def patience(kind: str, reason: str, urgent: bool) -> float:
    """The patience of a verdict (``verdict.Verdict``: its kind, reason and urgency)."""
    if urgent or (kind == "full" and reason in PROTECTIVE_REASONS):
        return PATIENCE_SECS["urgent"]
    if kind == "full" and reason in ROUTINE_REASONS:
        return PATIENCE_SECS["routine"]
    return PATIENCE_SECS.get(kind, PATIENCE_SECS["full"])


class CyclePool:
    """Threads taking the queued work with the earliest deadline first (started as work arrives, up to
    ``threads``)."""

    def __init__(self, threads: int, name: str = "mm-cycle"):
        self.max_threads = max(int(threads), 1)
        self.name = name
        self._queue: list[tuple[float, int, Callable[..., Any], tuple[Any, ...], Callable[[], Any] | None]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, deadline: float,
               on_cancel: Callable[[], Any] | None = None) -> None:
        """Queue ``fn(*args)`` to run by ``deadline`` (earliest first; equal deadlines in arrival order);
        ``on_cancel`` runs instead if the pool shuts down before it starts."""
        with self._condition:
            if self._closed:
                raise RuntimeError("the cycle pool is shut down")
            heapq.heappush(self._queue, (deadline, next(self._order), fn, args, on_cancel))
            if self._idle == 0 and len(self._threads) < self.max_threads:
                thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._condition.notify()

    def qsize(self) -> int:
        """Cycles queued, not started yet."""
        return len(self._queue)

    def _work(self) -> None:
        while True:
            with self._condition:
                self._idle += 1
                while not self._queue and not self._closed:
                    self._condition.wait()
                self._idle -= 1
                if not self._queue:  # closed and drained
                    return
                _, _, fn, args, _ = heapq.heappop(self._queue)
            try:
                fn(*args)
            except Exception:
                logger.exception("engine driver: a pool cycle raised")

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        """No more work; the queued cycles are cancelled (``on_cancel``) unless ``cancel_futures`` is False,
        then the threads end once the running cycles are done (joined when ``wait``)."""
        with self._condition:
            self._closed = True
            cancelled = sorted(self._queue) if cancel_futures else []  # (deadline, order): never the callables
            if cancel_futures:
                self._queue.clear()
            self._condition.notify_all()
        for _, _, _, _, on_cancel in cancelled:
            if on_cancel is not None:
                try:
                    on_cancel()
                except Exception:
                    logger.exception("engine driver: cancelling a queued cycle failed")
        if wait:
            for thread in self._threads:
                thread.join()
