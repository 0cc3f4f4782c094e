"""Production's recipe: ``migrate`` and one ``celery beat`` (plus workers) run the platform's schedules —
nothing else installs them. Real beat and worker processes; the watchdog re-runs a start that never ran,
and the per-minute rebalancing tick claims a bot's scheduled run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from bots.models import Bot, BotStatus, RebalanceRun
from tests.conftest import TenantWorld, make_bot
from tests.processes import start_beat, start_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_migrate_and_one_beat_run_the_watchdog_and_the_rebalancing_tick(world_a: TenantWorld, celery_queue: str,
                                                                       settings: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    settings.BOT_WATCHDOG_INTERVAL_SECS = 1.0
    PeriodicTask.objects.all().delete()
    call_command("migrate", "mmplatform", "zero", verbosity=0)
    call_command("migrate", verbosity=0)  # what a deployment runs; no other set-up below
    assert set(PeriodicTask.objects.values_list("name", flat=True)) == {
        "bot-watchdog", "scheduled-rebalance", "daily-risk-reset", "storage-retention", "alert-delivery-sweep",
        "sla-figures", "sla-reports"}

    account = world_a.account  # on tests.conftest.CLOSED_PORT_URL: a connection fails at once
    stuck = world_a.bot  # a start whose task was lost: the watchdog enqueues it again
    Bot.objects.filter(pk=stuck.pk).update(status=BotStatus.STARTING, epoch=1,
                                           started_at=timezone.now() - timedelta(minutes=5))
    scheduled = make_bot(world_a.tenant, account, name="scheduled")
    Bot.objects.filter(pk=scheduled.pk).update(status=BotStatus.RUNNING, rebalance_schedule_enabled=True,
                                               rebalance_crontab="* * * * *")
    worker = start_worker(BOT_WATCHDOG_INTERVAL_SECS="1")
    beat = start_beat(BOT_WATCHDOG_INTERVAL_SECS="1")
    try:
        wait_until(lambda: Bot.objects.get(pk=stuck.pk).status == BotStatus.ERROR, 90,
                   message="the watchdog never re-ran the lost start")
        assert "no exchange could be connected" in Bot.objects.get(pk=stuck.pk).status_reason
        wait_until(lambda: RebalanceRun.objects.filter(bot=scheduled, trigger="schedule").exists(), 90,
                   interval_secs=0.5, message="the rebalancing tick never claimed the bot's scheduled run")
    finally:
        beat.stop()
        worker.stop()
    run = RebalanceRun.objects.filter(bot=scheduled).first()
    assert run is not None and run.slot_start.second == 0  # the crontab's fire time is the slot
