"""One asyncio event loop per process, on a background thread, for all async I/O from sync code.

Celery tasks, Django views and management commands are synchronous; ccxt's async clients and the
Channels layer are not. Running every coroutine on one long-lived loop per process lets cached
exchange clients (bound to their loop) and channel-layer connections be reused across tasks. A
forked child (Celery prefork) gets its own loop on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_waits = threading.local()  # per thread: how many times it waited for the loop (``run``, ``wait``)
_loop: asyncio.AbstractEventLoop | None = None
_owner_pid: int | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's I/O loop, started on first use (and again after a fork)."""
    global _loop, _owner_pid
    if _loop is not None and _owner_pid == os.getpid():
        return _loop
    with _lock:
        if _loop is None or _owner_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="mmplatform-aio", daemon=True)
            thread.start()
            _loop, _owner_pid = loop, os.getpid()
    return _loop


def run(coroutine: Coroutine[Any, Any, T], timeout_secs: float | None = 60.0) -> T:
    """Run a coroutine on the process loop and wait for its result (or raise its exception)."""
    loop = get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("mmplatform.aio.run() called from the I/O loop itself; await instead")
    _waits.n = getattr(_waits, "n", 0) + 1
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    try:
        return future.result(timeout_secs)
    except TimeoutError:
        future.cancel()
        raise


def start(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start a coroutine on the process loop without waiting: ``wait`` takes its result later (the caller
    does other work meanwhile, e.g. a fill sync reads its trades while the balances are read)."""
    return asyncio.run_coroutine_threadsafe(coroutine, get_loop())


def wait(future: concurrent.futures.Future[T], timeout_secs: float | None = 60.0) -> T:
    """The result of a coroutine ``start`` began (or its exception); cancelled after ``timeout_secs``."""
    _waits.n = getattr(_waits, "n", 0) + 1
    try:
        return future.result(timeout_secs)
    except TimeoutError:
        future.cancel()
        raise


def waits() -> int:
    """How many times the calling thread has waited for the loop (``run``, ``wait``): each is a hand-over to the
    loop's thread and back (the engine's cycles count theirs: ``<kind>_loop_waits`` in the driver's stats)."""
    return getattr(_waits, "n", 0)


async def settled(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    """Each awaitable's result, or the exception it raised, in order (``asyncio.gather`` with
    ``return_exceptions``): one failed call never hides the others' answers. ``run(settled(...))``."""
    return await asyncio.gather(*awaitables, return_exceptions=True)
