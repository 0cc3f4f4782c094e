"""Dashboard pushes in batches (``mmplatform.channel_batch``) on the real Redis pub/sub channel layer: a
backlog of pushes is one Redis round trip, and every subscriber of each group still receives its
messages, whole and in order, as ``group_send`` would deliver them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from bots import events
from bots.events import bot_group, flush_pushes, push, tenant_group
from mmplatform.channel_batch import group_send_batch

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


async def receive_all(layer: Any, channel: str, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(layer.receive(channel), TIMEOUT) for _ in range(count)]


async def test_a_batch_is_one_round_trip_and_each_group_gets_its_messages_in_order() -> None:
    layer = get_channel_layer()
    both, only_bot = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("tenant.901", both)
    await layer.group_add("bot.902", both)
    await layer.group_add("bot.902", only_bot)
    sends = [("tenant.901" if i % 3 == 0 else "bot.902", {"type": "bot.update", "n": i, "data": {"x": "1.5"}})
             for i in range(60)]
    sends.append(("bot.999", {"type": "bot.update", "n": 60}))  # a group nobody listens to

    assert await group_send_batch(layer, sends) == 1  # one shard, one pipeline

    got = await receive_all(layer, both, 60)
    assert [m["n"] for m in got] == list(range(60))
    assert got[1] == {"type": "bot.update", "n": 1, "data": {"x": "1.5"}}
    got = await receive_all(layer, only_bot, 40)
    assert [m["n"] for m in got] == [i for i in range(60) if i % 3]
    with pytest.raises(asyncio.TimeoutError):  # nothing else arrives: no message twice
        await asyncio.wait_for(layer.receive(only_bot), 0.3)


async def test_the_dashboard_sender_delivers_a_backlog_larger_than_a_batch_in_order() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(bot_group(77), channel)
    tenant_channel = await layer.new_channel()
    await layer.group_add(tenant_group(76), tenant_channel)
    count = events.PUSH_BATCH * 2 + 7

    def queue_pushes() -> None:
        for i in range(count):
            push(tenant_id=76, bot_id=77, kind="orders", data={"i": i})
        flush_pushes()
        connection.close()  # this thread's (push's on_commit asks the connection): not left open

    await sync_to_async(queue_pushes)()
    for listener in (channel, tenant_channel):
        got = await receive_all(layer, listener, count)
        assert [m["data"]["i"] for m in got] == list(range(count))
        assert got[0]["kind"] == "orders" and got[0]["bot_id"] == 77 and got[0]["tenant_id"] == 76


async def test_another_layer_gets_one_group_send_per_message() -> None:
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("tenant.5", channel)
    assert await group_send_batch(layer, [("tenant.5", {"type": "a", "n": n}) for n in range(3)]) == 3
    assert [(await layer.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]
