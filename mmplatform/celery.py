"""The Celery app. Schedules live in the database (django-celery-beat) so admins edit them;
``mmplatform.schedules`` installs the platform's default entries (one place for all schedules)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmplatform.settings")

app = Celery("mmplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up_worker_process(**kwargs: object) -> None:
    """Each worker process imports ccxt once at start, not inside its first bot cycle."""
    import gc

    from bots.engine.gateways import warm_up

    warm_up()
    gc.freeze()  # the imported code lives as long as the process: keep it out of GC passes mid-cycle

    from bots.engine.driver import start_driver

    start_driver()  # this process runs the cycles of the bots in the shards it claims


@worker_process_shutdown.connect
def _stop_driver(**kwargs: object) -> None:
    """A warm shutdown hands this process's shards to the other drivers at once."""
    from bots.engine.driver import stop_driver

    stop_driver()
