"""Exactly one scheduled rebalance per (bot, fire time of its crontab): two beats racing, and a beat restarted
mid-slot."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from bots import tasks
from bots.models import Bot, BotStatus, RebalanceRun
from tests.conftest import make_bot
from tests.processes import start_beat, start_worker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running_bots(world_a: Any, world_b: Any) -> list[Bot]:
    bots = [world_a.bot, world_b.bot] + [make_bot(world_a.tenant, world_a.account, name=f"extra-{i}")
                                         for i in range(3)]
    Bot.objects.filter(pk__in=[b.pk for b in bots]).update(
        status=BotStatus.RUNNING, rebalance_schedule_enabled=True, rebalance_crontab="* * * * *")
    return bots


def runs_per_slot() -> Counter[tuple[int, Any]]:
    return Counter(RebalanceRun.objects.values_list("bot_id", "slot_start"))


def test_concurrent_scheduled_rebalances_claim_each_slot_once(running_bots: list[Bot], celery_queue: str) -> None:
    barrier = threading.Barrier(6)
    results: list[int] = []
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            barrier.wait()
            results.append(tasks.scheduled_rebalance(slot_minutes=60))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    counts = runs_per_slot()
    assert sum(results) == len(counts), "a claimed run was not enqueued exactly once"
    assert len({bot for bot, _ in counts}) == len(running_bots)
    assert set(counts.values()) == {1}
    # a beat restarted later in the same slot claims nothing new
    assert tasks.scheduled_rebalance(slot_minutes=60) == 0 or len({slot for _, slot in runs_per_slot()}) == 2
    assert set(runs_per_slot().values()) == {1}


@pytest.mark.integration
def test_two_real_beats_and_a_restart_give_one_run_per_bot_and_slot(running_bots: list[Bot],
                                                                       celery_queue: str) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    PeriodicTask.objects.update(enabled=False)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="rebalance-every-second", task="bots.tasks.scheduled_rebalance",
                                interval=every_second, kwargs='{"slot_minutes": 60}')
    worker = start_worker()
    beats = [start_beat(), start_beat()]
    try:
        wait_until(lambda: RebalanceRun.objects.count() >= len(running_bots), 60,
                   message="no scheduled rebalance ran")
        time.sleep(3)  # both beats keep firing every second
        beats[0].kill9()  # a beat dies mid-slot and comes back
        beats[0] = start_beat()
        time.sleep(4)
    finally:
        for beat in beats:
            beat.stop()
        worker.stop()
    counts = runs_per_slot()
    assert set(counts.values()) == {1}, counts
    assert len({bot for bot, _ in counts}) == len(running_bots)
    assert len({slot for _, slot in counts}) <= 2  # 2 only if the run crossed an hour
    print(f"\nscheduled rebalance: {len(counts)} run(s) for {len(running_bots)} bots from two beats and a restart")
