"""The Celery queues: the default one (the bots' tasks: start, stop, kill backstop, reconcile, rebalancing,
cycles, beat's housekeeping) and alert delivery's own (every ``alerts.tasks`` task: raising, delivering and
sweeping alerts), so a backlog of bot tasks never holds up a page to the desk, and a deployment may give
alerts workers of their own.

``CELERY_QUEUE`` names the default queue (``mmplatform``), ``CELERY_ALERTS_QUEUE`` the alerts queue (by
default the default queue's name + ``.alerts``). A worker started without ``-Q`` consumes both
(``CELERY_TASK_QUEUES``); one started with ``-Q`` must name both unless other workers consume the rest
(``worker_queues``)."""

from __future__ import annotations

from typing import Any

ALERT_TASKS_PREFIX = "alerts.tasks."


def alerts_queue_for(default_queue: str) -> str:
    """The alerts queue that goes with ``default_queue`` when ``CELERY_ALERTS_QUEUE`` is not set."""
    return f"{default_queue}.alerts"


def worker_queues(default_queue: str | None = None, alerts_queue: str | None = None) -> str:
    """A worker's ``-Q``: the default queue and the alerts queue (the settings' unless given)."""
    from django.conf import settings

    default_queue = default_queue or settings.CELERY_TASK_DEFAULT_QUEUE
    alerts_queue = alerts_queue or (settings.CELERY_ALERTS_QUEUE if default_queue ==
                                    settings.CELERY_TASK_DEFAULT_QUEUE else alerts_queue_for(default_queue))
    return f"{default_queue},{alerts_queue}"


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str] | None:
    """Celery's router (``CELERY_TASK_ROUTES``): the alerts app's tasks go to the alerts queue, read from the
    settings when the task is sent (tests give each test queues of its own); the rest to the default."""
    if name.startswith(ALERT_TASKS_PREFIX):
        from django.conf import settings

        return {"queue": settings.CELERY_ALERTS_QUEUE}
    return None
