"""The Celery app. Schedules live in the database (django-celery-beat) so admins edit them;
``mmplatform.schedules`` installs the platform's default entries (one place for all schedules)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmplatform.settings")

app = Celery("mmplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
