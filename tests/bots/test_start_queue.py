"""A start request queues one start task, and the watchdog sends a start again only when none is queued: a mass
start waits behind its own starts on the workers' task threads, and re-sent at every watchdog run (each start
older than a minute, every 10 s) its starts multiplied while they waited. Against the real broker (Redis, a queue
of this test's own): the messages are counted there; the start task's body runs in this process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from bots import services, tasks
from bots.engine import keys
from bots.models import Bot, BotStatus
from exchanges.registry import clear_gateway_cache
from mmplatform.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


def queued(queue: str) -> int:
    """Messages waiting in the broker's queue."""
    from mmplatform.celery import app

    with app.connection_for_write() as connection:
        return int(connection.default_channel.client.llen(queue))


def test_the_watchdog_sends_a_start_again_only_when_none_is_queued(world_a: Any, celery_queue: str) -> None:
    bot = services.bot_request_start(bot=world_a.bot, user=world_a.operator)
    assert bot.status == BotStatus.STARTING
    assert queued(celery_queue) == 1
    assert get_redis().get(keys.start_queued(bot.pk)) == str(bot.epoch).encode()

    # five minutes later the start still waits behind others (a mass start): not sent again
    Bot.objects.filter(pk=bot.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    assert tasks.watchdog()["restarted"] == 0
    assert queued(celery_queue) == 1

    # its mark lapsed (a message lost with a broker's restart): sent again, once
    get_redis().delete(keys.start_queued(bot.pk))
    assert tasks.watchdog()["restarted"] == 1
    assert tasks.watchdog()["restarted"] == 0
    assert queued(celery_queue) == 2

    # the start task begins: no longer marked queued (a start that then dies is sent again by the next run)
    try:
        assert tasks.start_bot(bot.pk, bot.epoch) == "error"  # (the account's URL refuses connections)
    finally:
        clear_gateway_cache()  # the gateway the start made (its sessions closed)
    assert not get_redis().exists(keys.start_queued(bot.pk))

    # a new request (a new epoch) is always sent, whatever is marked
    get_redis().set(keys.start_queued(bot.pk), "0")
    again = services.bot_request_start(bot=Bot.objects.get(pk=bot.pk), user=world_a.operator)
    assert queued(celery_queue) == 3
    assert get_redis().get(keys.start_queued(bot.pk)) == str(again.epoch).encode()
