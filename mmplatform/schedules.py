"""Every beat schedule of the platform, in one place. Installed into django-celery-beat's tables by a
data migration (``mmplatform/migrations``), so ``migrate`` plus one ``celery -A mmplatform beat`` runs
them in production; ``run_platform`` calls the same function. Admins can edit intervals, disable or
add entries in the admin; rows that exist are left as the admin set them, except the former
platform-wide hourly rebalance (its ``slot_minutes`` had to change with its crontab), which becomes the
every-minute tick of the per-bot schedules (``Bot.rebalance_crontab``, see bots/schedule.py).

- ``bot-watchdog``: ``bots.tasks.watchdog`` every ``BOT_WATCHDOG_INTERVAL_SECS``;
- ``scheduled-rebalance``: ``bots.tasks.scheduled_rebalance`` every minute (each bot's own crontab);
- ``daily-risk-reset``: ``bots.tasks.daily_risk_reset`` at 00:00 UTC;
- ``storage-retention``: ``bots.tasks.prune_storage`` every hour at :17 (bots/retention.py; added to
  existing deployments by migration 0002);
- ``alert-delivery-sweep``: ``alerts.tasks.sweep_deliveries`` every 30 s (re-enqueues alert deliveries whose
  retry task was lost; added by ``alerts/migrations/0002``).
- ``sla-figures``: ``liquidity.tasks.collect_sla_figures`` every minute (the closed minutes' SLA figures,
  agreement statuses); ``sla-reports``: ``liquidity.tasks.send_sla_reports`` daily at 00:10 UTC (added
  by ``liquidity/migrations/0002``).
"""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings
from django.utils import timezone

EVERY_MINUTE = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
HOURLY_AT_17 = {"minute": "17", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
TEN_PAST_MIDNIGHT = {"minute": "10", "hour": "0", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
MIDNIGHT = {"minute": "0", "hour": "0", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}


def _crontab(model: Any, fields: dict[str, str]) -> Any:
    found = model.objects.filter(timezone="UTC", **fields).order_by("pk").first()
    return found if found is not None else model.objects.create(timezone="UTC", **fields)


def install_default_schedules(apps: Any = None) -> None:
    """Create the platform's beat entries (idempotent). ``apps``: a migration's app registry."""
    registry = apps or global_apps
    interval_model = registry.get_model("django_celery_beat", "IntervalSchedule")
    crontab_model = registry.get_model("django_celery_beat", "CrontabSchedule")
    task_model = registry.get_model("django_celery_beat", "PeriodicTask")
    changed_model = registry.get_model("django_celery_beat", "PeriodicTasks")

    every = max(int(settings.BOT_WATCHDOG_INTERVAL_SECS), 1)
    watchdog_every = interval_model.objects.filter(every=every, period="seconds").order_by("pk").first() or \
        interval_model.objects.create(every=every, period="seconds")
    task_model.objects.get_or_create(
        name="bot-watchdog", defaults={"task": "bots.tasks.watchdog", "interval": watchdog_every})

    every_minute = _crontab(crontab_model, EVERY_MINUTE)
    rebalance = task_model.objects.filter(name="scheduled-rebalance").first()
    if rebalance is None:
        task_model.objects.create(name="scheduled-rebalance", task="bots.tasks.scheduled_rebalance",
                                  crontab=every_minute, kwargs="{}")
    elif "slot_minutes" in json.loads(rebalance.kwargs or "{}"):
        # the former platform-wide schedule: now the tick that runs each bot's own crontab
        rebalance.task, rebalance.crontab, rebalance.interval, rebalance.kwargs = (
            "bots.tasks.scheduled_rebalance", every_minute, None, "{}")
        rebalance.save()

    task_model.objects.get_or_create(
        name="daily-risk-reset",
        defaults={"task": "bots.tasks.daily_risk_reset", "crontab": _crontab(crontab_model, MIDNIGHT)})
    task_model.objects.get_or_create(
        name="storage-retention",
        defaults={"task": "bots.tasks.prune_storage", "crontab": _crontab(crontab_model, HOURLY_AT_17)})
    sweep_every = interval_model.objects.filter(every=30, period="seconds").order_by("pk").first() or \
        interval_model.objects.create(every=30, period="seconds")
    task_model.objects.get_or_create(
        name="alert-delivery-sweep", defaults={"task": "alerts.tasks.sweep_deliveries", "interval": sweep_every})
    task_model.objects.get_or_create(
        name="sla-figures", defaults={"task": "liquidity.tasks.collect_sla_figures", "crontab": every_minute})
    task_model.objects.get_or_create(
        name="sla-reports",
        defaults={"task": "liquidity.tasks.send_sla_reports", "crontab": _crontab(crontab_model, TEN_PAST_MIDNIGHT)})
    # a running beat re-reads its schedule when this changes (the signal that does it for admin edits does
    # not fire for a migration's models)
    changed_model.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
