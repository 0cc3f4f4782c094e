"""The engine inside the Celery worker: a worker bootstep starts and stops the engine driver with the
worker, and ``celery -A mmplatform inspect engine`` reports it.

Where the driver runs depends on the pool (``-P``):

* ``prefork`` (the default): one driver in each pool process, started by ``worker_process_init`` in the
  child (a driver's threads do not survive a fork, so the parent runs none) and stopped by
  ``worker_process_shutdown`` (a warm shutdown hands its shards to the other drivers at once). The
  bootstep arms both handlers before the pool forks; nothing else starts a driver.
* ``threads`` and ``solo``: one driver in the worker process itself, started after the pool and
  stopped with the worker (warm shutdown: shards given back at once).
* any other pool (``eventlet``, ``gevent``, a custom one): the worker refuses to start, saying why: the
  driver's threads and blocking I/O would stall a green pool's hub.

``ENGINE_DRIVER_ENABLED=false`` turns the engine off (any pool is then accepted).

The ``engine`` inspect command answers from the main process of each worker; it reads what its
drivers publish in Redis (``bots.engine.health``), so a prefork parent reports its children's.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from celery import bootsteps
from celery.exceptions import ImproperlyConfigured
from celery.signals import worker_process_init, worker_process_shutdown
from celery.worker.control import inspect_command

logger = logging.getLogger(__name__)

IN_CHILDREN = "children"
IN_WORKER = "worker"
POOLS = {
    "celery.concurrency.prefork:TaskPool": IN_CHILDREN,
    "celery.concurrency.thread:TaskPool": IN_WORKER,
    "celery.concurrency.solo:TaskPool": IN_WORKER,
}
"""Pool implementation -> where its worker runs the engine driver."""
REFUSED_EXIT_CODE = 78  # EX_CONFIG: a supervisor should not restart the worker in a loop

_mode: str | None = None
"""Set by the bootstep in the worker's main process before the pool starts (prefork children inherit
it); None in any process that is not a Celery worker with the engine on."""
_pool_name = ""


def pool_path(pool_cls: Any) -> str:
    return f"{pool_cls.__module__}:{pool_cls.__name__}" if isinstance(pool_cls, type) else str(pool_cls)


def engine_mode(pool_cls: Any) -> str:
    """Where a worker with this pool runs the driver, or ``ImproperlyConfigured`` saying why it cannot."""
    path = pool_path(pool_cls)
    mode = POOLS.get(path)
    if mode is None:
        raise ImproperlyConfigured(
            f"mmplatform: the bot engine cannot run in a worker with pool {path}: its driver runs OS "
            "threads with blocking I/O, which would stall a green (eventlet/gevent) or unknown pool. "
            "Start the worker with -P prefork (default), -P threads or -P solo, or set "
            "ENGINE_DRIVER_ENABLED=false for a worker that only runs tasks.")
    return mode


def prepare_process() -> None:
    """What a process that runs a driver does before it starts one (the worker here; ``bench_quiet_tick`` too)."""
    import gc

    from django.conf import settings

    from bots.engine import gc_timer
    from bots.engine.gateways import warm_up

    warm_up()  # import ccxt once at start, not inside the first bot cycle
    gc.freeze()  # the imported code lives as long as the process: keep it out of GC passes mid-cycle
    gc_timer.install(settings.ENGINE_GC_THRESHOLDS, settings.ENGINE_GC_THAW_PASSES)  # (and the costs: driver stats)


def _start_here() -> None:
    from django.conf import settings

    from bots.engine import starts
    from bots.engine.driver import start_driver

    prepare_process()
    starts.enable(settings.BOT_START_THREADS)  # this process's start tasks start their bots on its start pool
    driver = start_driver()
    if driver is not None:
        logger.info("engine driver %s started (pool %s)", driver.token, _pool_name)


def _stop_here() -> None:
    from bots.engine import starts
    from bots.engine.driver import stop_driver

    starts.stop()  # starts not begun go back to the broker; running ones finish (before the driver stops)
    stop_driver()  # finishes running cycles, gives the shards back at once


class EngineStep(bootsteps.StartStopStep):
    """Starts and stops the bot engine with the worker (see the module docstring for each pool)."""

    label = "Engine"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        global _mode, _pool_name
        super().__init__(parent, **kwargs)
        from django.conf import settings

        self.mode: str | None = None
        if settings.ENGINE_DRIVER_ENABLED:
            try:
                self.mode = engine_mode(parent.pool_cls)
            except ImproperlyConfigured as exc:  # refused before anything starts: the reason, no traceback
                sys.stderr.write(f"{exc}\n")
                raise SystemExit(REFUSED_EXIT_CODE) from exc
        _mode, _pool_name = self.mode, pool_path(parent.pool_cls)
        self.running = False

    def include_if(self, parent: Any) -> bool:
        return True

    def create(self, parent: Any) -> EngineStep:
        return self

    def start(self, parent: Any) -> None:
        if self.mode == IN_WORKER and not self.running:
            self.running = True
            _start_here()

    def stop(self, parent: Any) -> None:
        if self.running:
            self.running = False
            _stop_here()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


@worker_process_init.connect
def _start_in_pool_process(**kwargs: Any) -> None:
    """A prefork pool process runs its own driver (armed by ``EngineStep`` in the parent)."""
    if _mode == IN_CHILDREN:
        _start_here()


@worker_process_shutdown.connect
def _stop_in_pool_process(**kwargs: Any) -> None:
    """A warm shutdown hands this pool process's shards to the other drivers at once."""
    if _mode == IN_CHILDREN:
        _stop_here()


def worker_processes(pool: Any) -> list[int]:
    """The pids whose drivers belong to this worker: its pool processes (prefork), else itself."""
    if _mode == IN_CHILDREN:
        try:
            return sorted(int(pid) for pid in pool.info.get("processes", []))
        except Exception:  # a pool between restarts
            logger.exception("engine inspect: listing the pool processes failed")
            return []
    return [os.getpid()]


def engine_report(pids: list[int]) -> dict[str, Any]:
    """What ``inspect engine`` answers for one worker: its drivers and their totals."""
    from django.db import connection

    from bots.engine.health import drivers_health, fleet_totals

    hostname = socket.gethostname()
    try:
        drivers = drivers_health(workers=[f"{hostname}:{pid}" for pid in pids])
    finally:
        connection.close()  # the main process keeps no database session between inspections
    totals = fleet_totals(drivers)
    del totals["shards_orphaned"], totals["shards_total"]  # fleet-wide, not this worker's
    return {
        "pool": _pool_name,
        "engine": _mode or "off",
        "processes": pids,
        "drivers": [d.as_json() for d in drivers],
        "totals": totals,
    }


@inspect_command()
def engine(state: Any, **kwargs: Any) -> dict[str, Any]:
    """The bot engine of this worker: per driver its shards, bots, cycles by verdict since it started,
    p50/p99 cycle lag of the last minute (``celery -A mmplatform inspect engine``)."""
    return engine_report(worker_processes(state.consumer.pool))
