"""Every beat schedule of the platform, in one place. Installed into django-celery-beat's tables
(so admins can edit intervals, disable or add entries in the admin); existing rows are left as the
admin set them."""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


def install_default_schedules() -> None:
    watchdog_every, _ = IntervalSchedule.objects.get_or_create(
        every=max(int(settings.BOT_WATCHDOG_INTERVAL_SECS), 1), period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.get_or_create(
        name="bot-watchdog", defaults={"task": "bots.tasks.watchdog", "interval": watchdog_every})
    hourly, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="*", day_of_week="*", day_of_month="*",
                                                      month_of_year="*", timezone="UTC")
    PeriodicTask.objects.get_or_create(
        name="scheduled-rebalance",
        defaults={"task": "bots.tasks.scheduled_rebalance", "crontab": hourly, "kwargs": '{"slot_minutes": 60}'},
    )
    midnight, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="0", day_of_week="*", day_of_month="*",
                                                        month_of_year="*", timezone="UTC")
    PeriodicTask.objects.get_or_create(
        name="daily-risk-reset", defaults={"task": "bots.tasks.daily_risk_reset", "crontab": midnight})
