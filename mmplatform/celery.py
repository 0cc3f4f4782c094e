"""The Celery app. Schedules live in the database (django-celery-beat) so admins edit them;
``mmplatform.schedules`` installs the platform's default entries (one place for all schedules).

The bot engine is part of the worker: ``bots.engine.bootstep.EngineStep`` starts and stops it with the
worker for each pool, and registers the ``celery -A mmplatform inspect engine`` command."""

from __future__ import annotations

import os

from celery import Celery

from bots.engine.bootstep import EngineStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmplatform.settings")

app = Celery("mmplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(EngineStep)
