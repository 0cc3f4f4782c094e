"""Alert delivery has a Celery queue of its own (``mmplatform.queues``): every ``alerts.tasks`` task is sent
there, everything else to the default queue. Sent through the real broker (Redis) and read back from it.
That the workers consume it: ``test_alerts_worker.py`` (the tests' workers, ``tests.processes``),
``test_process_lifetime.py`` (``run_platform``'s)."""

from __future__ import annotations

from django.conf import settings

from alerts.tasks import deliver_alert, sweep_deliveries
from bots.tasks import watchdog
from mmplatform.celery import app
from mmplatform.queues import alerts_queue_for


def waiting(queue: str) -> list[str]:
    """The task names waiting on ``queue`` in the broker (kombu's Redis transport keeps a list per queue)."""
    import json

    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]


def test_alert_tasks_go_to_the_alerts_queue_and_the_rest_to_the_default(celery_queue: str) -> None:
    alerts = settings.CELERY_ALERTS_QUEUE
    assert alerts == alerts_queue_for(celery_queue) != celery_queue
    try:
        deliver_alert.delay(1)
        sweep_deliveries.delay()
        watchdog.delay()
        assert sorted(waiting(alerts)) == ["alerts.tasks.deliver_alert", "alerts.tasks.sweep_deliveries"]
        assert waiting(celery_queue) == ["bots.tasks.watchdog"]
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.client.delete(alerts, celery_queue)

