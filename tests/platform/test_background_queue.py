"""The platform's periodic bookkeeping (SLA figures and reports, storage retention) goes to the background
queue, not the default one the engine's workers consume (mmplatform/queues.py): a worker told to consume
only the default queue never runs it, the suite's workers (like ``make run``'s) consume both. A real Celery
worker and the broker's own queues in Redis."""

from __future__ import annotations

from typing import Any

import pytest

from mmplatform.queues import BACKGROUND_TASKS, background_queue, worker_queues

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def routed_queue(name: str) -> str:
    from mmplatform.celery import app

    return app.amqp.router.route({}, name)["queue"].name


def test_the_bookkeeping_tasks_go_to_the_background_queue_and_the_bots_tasks_do_not(celery_queue: str) -> None:
    assert background_queue() == f"{celery_queue}-background"  # follows this process's default queue
    for name in BACKGROUND_TASKS:
        assert routed_queue(name) == f"{celery_queue}-background", name
    for name in ("bots.tasks.start_bot", "bots.tasks.stop_bot", "bots.tasks.watchdog", "bots.tasks.rebalance_bot",
                 "bots.tasks.daily_risk_reset", "bots.tasks.scheduled_rebalance"):
        assert routed_queue(name) == celery_queue, name
    assert routed_queue("alerts.tasks.deliver_alert") == f"{celery_queue}.alerts"  # alerts: a queue of their own
    assert worker_queues() == f"{celery_queue},{celery_queue}.alerts,{celery_queue}-background"


def test_a_named_background_queue_is_used_as_named(celery_queue: str, settings: Any) -> None:
    settings.CELERY_BACKGROUND_QUEUE = "bookkeeping"
    assert routed_queue("liquidity.tasks.collect_sla_figures") == "bookkeeping"


def test_the_sla_minute_task_waits_in_the_background_queue_for_a_worker_that_consumes_it(celery_queue: str) -> None:
    from liquidity.tasks import collect_sla_figures
    from mmplatform.redis_client import get_redis
    from tests.processes import start_worker

    broker = get_redis()  # the broker is the session's Redis (its queues are lists named after them)
    result = collect_sla_figures.delay()
    assert broker.llen(f"{celery_queue}-background") == 1 and broker.llen(celery_queue) == 0
    worker = start_worker("background")  # consumes both queues, as make run's worker does
    try:
        assert result.get(timeout=60)["bots"] == 0
    finally:
        worker.stop()
