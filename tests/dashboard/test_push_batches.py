"""Dashboard pushes in batches (``mmplatform.channel_batch``) on the real Redis pub/sub channel layer: a
backlog of pushes is one Redis round trip, and every subscriber of each group still receives its
messages, whole and in order, as ``group_send`` would deliver them."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from bots import events
from bots.consumers import mark_listening
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
    await mark_listening({bot_group(77), tenant_group(76)})  # as a dashboard socket does before it joins
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


async def one_bot_heard() -> tuple[int, int, int, Any, str]:
    """A tenant and two bots of ids no other test marks (the marks live LISTENING_SECS), a channel of the layer in
    the first bot's group with the group marked listened: (tenant, heard bot, unheard bot, layer, that channel)."""
    base = random.randrange(10**6, 10**9)
    layer = get_channel_layer()
    heard = await layer.new_channel()
    await layer.group_add(bot_group(base + 1), heard)
    await mark_listening({bot_group(base + 1)})
    return base, base + 1, base + 2, layer, heard


async def test_pushes_go_only_to_the_groups_a_dashboard_socket_listens_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A push to a group no dashboard socket listens to is not published (``events._listened``: the sockets' marks,
    ``keys.listening``); one to a marked group is, and a group marked later gets the pushes sent after that."""
    tenant, heard_bot, unheard_bot, layer, heard = await one_bot_heard()
    published: list[str] = []
    real = events.group_send_batch

    async def counting(layer: Any, sends: list[tuple[str, dict[str, Any]]]) -> int:
        published.extend(group for group, _ in sends)
        return await real(layer, sends)

    monkeypatch.setattr(events, "group_send_batch", counting)

    def queue(n: int) -> None:
        push(tenant_id=tenant, bot_id=heard_bot, kind="orders", data={"n": n})
        push(tenant_id=tenant, bot_id=unheard_bot, kind="orders", data={"n": n})
        flush_pushes()
        connection.close()

    await sync_to_async(queue)(0)
    assert published == [bot_group(heard_bot)]  # not the tenant's group, not the other bot's: nobody listens
    assert (await receive_all(layer, heard, 1))[0]["data"] == {"n": 0}
    tenant_channel = await layer.new_channel()
    await mark_listening({tenant_group(tenant)})  # a tenant dashboard opens
    await layer.group_add(tenant_group(tenant), tenant_channel)
    published.clear()
    await sync_to_async(queue)(1)
    assert sorted(published) == sorted([tenant_group(tenant), bot_group(heard_bot), tenant_group(tenant)])
    assert [m["data"]["n"] for m in await receive_all(layer, tenant_channel, 2)] == [1, 1]


async def test_another_layer_gets_one_group_send_per_message() -> None:
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("tenant.5", channel)
    assert await group_send_batch(layer, [("tenant.5", {"type": "a", "n": n}) for n in range(3)]) == 3
    assert [(await layer.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]


async def test_a_push_is_made_json_ready_on_the_loop_and_only_for_a_group_someone_listens_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``push`` leaves its data as built (decimals, datetimes); the sender converts a message once it knows a
    dashboard listens (``events._made_jsonable``): a heard push arrives with exact decimal strings and ISO times,
    one to nobody is never converted."""
    tenant, heard_bot, unheard_bot, layer, heard = await one_bot_heard()
    converted: list[Any] = []
    real = events.jsonable

    def counting(value: Any) -> Any:
        converted.append(value)
        return real(value)

    monkeypatch.setattr(events, "jsonable", counting)
    at = datetime(2026, 12, 7, 13, 30, tzinfo=UTC)
    heard_data = {"placed": [{"price": Decimal("100.50"), "filled": Decimal("0E-12"), "at": at}]}
    unheard_data = {"placed": [{"price": Decimal("7")}]}

    def queue() -> None:
        push(tenant_id=tenant, bot_id=heard_bot, kind="orders", data=heard_data)
        push(tenant_id=tenant, bot_id=unheard_bot, kind="orders", data=unheard_data)
        flush_pushes()
        connection.close()

    await sync_to_async(queue)()
    message = (await receive_all(layer, heard, 1))[0]
    assert message["data"] == {"placed": [{"price": "100.50", "filled": "0", "at": "2026-12-07T13:30:00+00:00"}]}
    assert converted == [heard_data]  # once, though pushed to two groups; the unheard push never


async def test_a_cycles_pushes_wake_the_loop_once_and_go_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pushes a cycle sends (its orders, fills and events, on a pool thread: ``events.pushes_held``) are held
    until it ends, then wake the I/O loop once and go in one batch: one read of the listening marks and one round
    trip, in order. A push outside such a block goes at once, as before."""
    tenant, heard_bot, unheard_bot, layer, heard = await one_bot_heard()
    reads: list[int] = []
    wakes: list[int] = []
    real_listened, real_start = events._listened, events._start_sender

    async def counted_listened(sends: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        reads.append(len(sends))
        return await real_listened(sends)

    def counted_start() -> None:
        wakes.append(1)
        real_start()

    monkeypatch.setattr(events, "_listened", counted_listened)
    monkeypatch.setattr(events, "_start_sender", counted_start)

    def queue() -> None:
        woken = len(wakes)
        with events.pushes_held():
            for n in range(5):
                push(tenant_id=tenant, bot_id=heard_bot if n % 2 == 0 else unheard_bot, kind="orders",
                     data={"n": n})
                time.sleep(0.01)  # (a cycle's pushes come milliseconds apart)
            assert len(wakes) == woken and not events._incoming  # held: nothing queued yet
        flush_pushes()
        connection.close()

    await sync_to_async(queue)()
    assert wakes == [1] and reads == [10]  # one wake, one batch of five pushes to two groups each
    assert [m["data"]["n"] for m in await receive_all(layer, heard, 3)] == [0, 2, 4]
    # the next cycle wakes the loop again; a push outside a cycle goes on its own
    await sync_to_async(queue)()
    assert wakes == [1, 1] and reads == [10, 10]

    def one() -> None:
        push(tenant_id=tenant, bot_id=heard_bot, kind="orders", data={"n": 5})
        flush_pushes()
        connection.close()

    await sync_to_async(one)()
    assert wakes == [1, 1, 1] and reads == [10, 10, 2]
    assert [m["data"]["n"] for m in await receive_all(layer, heard, 4)] == [0, 2, 4, 5]
