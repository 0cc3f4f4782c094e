"""Depth reads the driver thread starts on the I/O loop instead of waiting for them.

A check whose bot's own order is the pushed best price cannot quote off the levels behind it: they come
from an older depth read (``FeedMixin._snapshot``). A pool thread's fill sync reads the depth there and
then; the driver thread must not wait on a venue (every bot of the process waits with it), so it starts the
read here and the check answers ``wait`` (``DepthPending``). The loop hands the answer back (``arrived``);
the driver takes it on its next tick (``take``): the book goes to the feeder (the one writer of the shared
copy) and, until the feeder's copy is as new, to the driver's own checks (``fresh``); the bots that waited
are checked again at once, at their original due time.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any

from bots.engine.market_data import BookData, book_from
from mmplatform import aio

WAIT_LIMIT_SECS = 2.0
"""A bot waits at most this long for a depth read (a read that never answers releases it)."""


class DepthPending(Exception):
    """The check needs a depth read of (venue, pair) that is under way: check the bot again when it lands."""


class DepthReads:
    """The driver thread's depth reads in flight (one per book), their answers, and the bots waiting."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.flying: dict[tuple[str, str], Future[Any]] = {}  # driver thread
        self.waiters: dict[tuple[str, str], set[int]] = {}  # driver thread: book -> bots waiting for it
        self.fresh: dict[tuple[str, str], BookData] = {}  # driver thread: the newest read per book
        self.arrived: deque[tuple[tuple[str, str], Future[Any]]] = deque()  # I/O loop -> driver thread

    def start(self, key: tuple[str, str], gateway: Any, depth: int, bot_id: int) -> None:
        """Read the depth of ``key`` (venue, pair) unless a read is under way; ``bot_id`` waits for it."""
        self.waiters.setdefault(key, set()).add(bot_id)
        if key in self.flying:
            return
        future = aio.start(gateway.fetch_order_book(key[1], depth))
        self.flying[key] = future
        future.add_done_callback(lambda done: self._arrived(key, done))

    def _arrived(self, key: tuple[str, str], done: Future[Any]) -> None:  # (on the I/O loop's thread)
        self.arrived.append((key, done))
        self.wake.set()

    def take(self) -> list[tuple[tuple[str, str], BookData | None, set[int]]]:
        """The reads that answered since the last call: (book, its depth or None if the read failed, the bots
        that waited for it)."""
        out = []
        while self.arrived:
            key, done = self.arrived.popleft()
            self.flying.pop(key, None)
            book = None
            if not done.cancelled() and done.exception() is None:
                book = self.fresh[key] = book_from(done.result())
            out.append((key, book, self.waiters.pop(key, set())))
        return out
