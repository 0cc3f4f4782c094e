"""The Celery queues and which task goes to which.

* the **default** queue (``CELERY_QUEUE``, ``mmplatform``): the bots' work (start, stop, kill backstop,
  reconcile, rebalancing, cycles on demand) and the engine's periodic control (watchdog, scheduled
  rebalancing, daily risk reset). Every worker consumes it and each worker process runs the bot engine;
* the **alerts** queue (``CELERY_ALERTS_QUEUE``, default ``<default>.alerts``): every ``alerts.tasks`` task
  (raising, delivering, sweeping alerts), so a backlog of bot tasks never holds up a page to the desk and
  a deployment may give alerts workers of their own;
* the **background** queue (``CELERY_BACKGROUND_QUEUE``, default ``<default>-background``): the platform's
  periodic bookkeeping no bot waits on (``BACKGROUND_TASKS``: the SLA minute figures and daily reports,
  storage retention), so it never takes an engine worker process's time unless that worker consumes it.

A worker started without ``-Q`` consumes all three (``CELERY_TASK_QUEUES``). ``make run`` (``run_platform``)
and the test suite's workers name all three (``worker_queues``); a deployment that keeps its engine workers
for the engine runs them with ``-Q <default>,<alerts>`` and one small worker with
``-Q <background> ENGINE_DRIVER_ENABLED=false``; the engine benchmark's worker consumes its default and
alerts queues only: it measures the engine alone. The routers read the settings when a task is sent, so a
process whose default queue changes (a test's own queue) routes to its match.
"""

from __future__ import annotations

from typing import Any

ALERT_TASKS_PREFIX = "alerts.tasks."

BACKGROUND_TASKS = frozenset({
    "liquidity.tasks.collect_sla_figures",
    "liquidity.tasks.send_sla_reports",
    "bots.tasks.prune_storage",
})


def alerts_queue_for(default_queue: str) -> str:
    """The alerts queue that goes with ``default_queue`` when ``CELERY_ALERTS_QUEUE`` is not set."""
    return f"{default_queue}.alerts"


def background_queue_for(default_queue: str) -> str:
    """The background queue that goes with ``default_queue`` when ``CELERY_BACKGROUND_QUEUE`` is not set."""
    return f"{default_queue}-background"


def background_queue() -> str:
    """The background queue's name in this process."""
    from django.conf import settings

    from mmplatform.celery import app

    return settings.CELERY_BACKGROUND_QUEUE or background_queue_for(app.conf.task_default_queue)


def worker_queues(default_queue: str | None = None, alerts_queue: str | None = None) -> str:
    """A worker's ``-Q`` that runs everything: the default queue, the alerts queue and the background one
    (the settings' unless given)."""
    from django.conf import settings

    default_queue = default_queue or settings.CELERY_TASK_DEFAULT_QUEUE
    alerts_queue = alerts_queue or (settings.CELERY_ALERTS_QUEUE if default_queue ==
                                    settings.CELERY_TASK_DEFAULT_QUEUE else alerts_queue_for(default_queue))
    background = settings.CELERY_BACKGROUND_QUEUE or background_queue_for(default_queue)
    return f"{default_queue},{alerts_queue},{background}"


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str] | None:
    """Celery's router (``CELERY_TASK_ROUTES``): the alerts app's tasks to the alerts queue, the bookkeeping
    to the background queue; None for the rest (the default queue)."""
    if name.startswith(ALERT_TASKS_PREFIX):
        from django.conf import settings

        return {"queue": settings.CELERY_ALERTS_QUEUE}
    if name in BACKGROUND_TASKS:
        return {"queue": background_queue()}
    return None
