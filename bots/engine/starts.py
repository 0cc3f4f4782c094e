"""Bot starts run on a pool of threads in the worker process, not one at a time on the task's own thread.

A start (``bots.tasks.run_start``: connect, reconcile, the first quotes, RUNNING) costs ~25 ms of CPU and waits
~0.2 s on the venue, the database and the I/O loop it shares with the running bots. A prefork pool process runs
one task at a time, so a mass start went two at a time on a 2-process worker: 2,500 bots took 300-460 s to be
RUNNING, 800 s for 3,000, and the backlog ran into the running bots' cycles. The ``start_bot`` task now hands its
start to this process's start pool (``BOT_START_THREADS`` threads, oldest first) and returns, and the process
takes the next task at once; ``BOT_START_THREADS=0`` runs each start on the task's thread as before. Only a
process that runs an engine driver has a pool (``bootstep`` calls ``enable`` where it starts one); elsewhere (a
test calling the task's body, the eager mode) the start runs in the task.

What a start hands over is kept safe as before: the start-queued mark (``keys.start_queued``) stays until a pool
thread begins the start (``run_start`` clears it then), so the watchdog does not send a second start while one
waits here; a worker that stops with starts still waiting sends each back to the broker (``queue_start``) for a
live worker, and one killed outright leaves the mark to expire, after which the watchdog sends the start again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from bots.engine.pool import CyclePool

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: list[Any] = [None, 0]  # [the process's CyclePool or None, the pid that made it]
_enabled: list[int] = [0, 0]  # [threads, the pid that enabled them]: ``enable``


def enable(threads: int) -> None:
    """This process runs an engine driver (``bootstep``): its start tasks hand their starts to a pool of ``threads``
    threads (0: none; each start runs on its task's thread)."""
    _enabled[0], _enabled[1] = max(0, int(threads)), os.getpid()


def hand_over(bot_id: int, epoch: int, run: Callable[[int, int], Any], *, requeue: Callable[[int, int], Any]) -> bool:
    """Queue ``run(bot_id, epoch)`` on this process's start pool (made on first use); False when this process has
    none (``enable``; the caller runs the start itself). ``requeue(bot_id, epoch)`` runs instead if the pool stops
    before the start begins (``stop``)."""
    threads, enabled_in = _enabled
    if threads < 1 or enabled_in != os.getpid():  # (a forked child enables its own: threads do not survive a fork)
        return False
    with _lock:
        pool, pid = _pool
        if pool is None or pid != os.getpid():
            pool = CyclePool(threads, name="mm-start")
            _pool[0], _pool[1] = pool, os.getpid()
        pool.submit(_run, run, bot_id, epoch, deadline=time.monotonic(), on_cancel=lambda: requeue(bot_id, epoch))
    return True


def _run(run: Callable[[int, int], Any], bot_id: int, epoch: int) -> None:
    from django.db import close_old_connections, connection

    try:
        outcome = run(bot_id, epoch)
        logger.info("bot %s: start (epoch %s): %s", bot_id, epoch, outcome)
    finally:
        if queued():
            close_old_connections()  # (a mass start: the thread's next start reuses its connection)
        else:
            connection.close()  # the burst is over: no idle session per pool thread


def queued() -> int:
    """Starts waiting in this process's pool (not begun)."""
    pool, pid = _pool
    return pool.qsize() if pool is not None and pid == os.getpid() else 0


def stop() -> None:
    """The worker is stopping: no more starts here; those that have not begun are handed back (``requeue``),
    running ones finish."""
    with _lock:
        pool, pid = _pool
        _pool[0] = None
        _enabled[0] = 0
    if pool is not None and pid == os.getpid():
        pool.shutdown(wait=True, cancel_futures=True)
