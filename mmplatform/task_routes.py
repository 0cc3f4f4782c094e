"""Which Celery queue a task goes to, beyond the default one (``CELERY_TASK_DEFAULT_QUEUE``).

The default queue carries the bots' work (start, stop, kill, reconcile, rebalance and the engine's own
periodic control: watchdog, scheduled rebalancing, daily risk reset): every worker consumes it, and each
worker process runs the bot engine. The platform's periodic bookkeeping, which no bot waits on, goes to
the *background* queue instead (``BACKGROUND_TASKS``: the SLA minute figures and the daily SLA reports,
storage retention), so it never takes an engine worker process's time unless that worker is told to
consume it:

* ``make run`` (``run_platform``) and the test suite's workers consume both queues
  (``-Q <default>,<default>-background``), so a single worker runs everything;
* a deployment that keeps its engine workers for the engine runs them with ``-Q <default>`` and one small
  worker with ``-Q <default>-background ENGINE_DRIVER_ENABLED=false`` (no engine in it);
* the engine benchmark's worker consumes only its own default queue: it measures the engine alone.

``CELERY_BACKGROUND_QUEUE`` names the queue; empty (the default) means ``<default queue>-background``, read
when a task is sent, so a process whose default queue changes (a test's own queue) routes to its match.
"""

from __future__ import annotations

from typing import Any

BACKGROUND_TASKS = frozenset({
    "liquidity.tasks.collect_sla_figures",
    "liquidity.tasks.send_sla_reports",
    "bots.tasks.prune_storage",
})


def background_queue() -> str:
    """The background queue's name in this process."""
    from django.conf import settings

    from mmplatform.celery import app

    return settings.CELERY_BACKGROUND_QUEUE or f"{app.conf.task_default_queue}-background"


def worker_queues() -> str:
    """``-Q`` for a worker that runs everything: the default queue and the background one."""
    from mmplatform.celery import app

    return f"{app.conf.task_default_queue},{background_queue()}"


def route_background(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict | None:
    """A Celery router (``CELERY_TASK_ROUTES``): the background tasks to the background queue; None for the
    others (the next router, else the default queue)."""
    return {"queue": background_queue()} if name in BACKGROUND_TASKS else None
