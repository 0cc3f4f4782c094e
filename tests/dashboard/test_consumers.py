"""Websocket consumers through the real ASGI stack (origin check, session auth, URL router) and the
real Redis channel layer: forwarding, tenant isolation, close codes, catch-up, bad input, and
closing a socket whose user signed out or lost the membership."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from bots import consumers
from bots.events import publish_event, push
from bots.models import Bot, BotEvent
from mmplatform.tenancy.models import Membership
from tests.conftest import PASSWORD, TenantWorld

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


def session_for(username: str) -> tuple[Client, str]:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client, client.cookies["sessionid"].value


async def connect(path: str, session_key: str | None = None) -> tuple[WebsocketCommunicator, dict | int]:
    """Open a socket like a browser of the dashboard's origin would; return it and its hello (or close code)."""
    from mmplatform.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if session_key:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    first = await communicator.receive_output(timeout=TIMEOUT)
    if first["type"] == "websocket.close":
        return communicator, first.get("code")
    return communicator, json.loads(first["text"])


async def next_json(communicator: WebsocketCommunicator) -> dict[str, Any]:
    return await communicator.receive_json_from(timeout=TIMEOUT)


async def next_catch_up(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The catch-up reply, past any live update: an event published before the socket connected may still be
    on its way through the process's push sender (queued, sent in batches) and arrive after it."""
    while True:
        message = await next_json(communicator)
        if message.get("type") != "update":
            return message


async def expect_close(communicator: WebsocketCommunicator, timeout: float = TIMEOUT) -> int:
    """Skip data frames until the server closes; return the close code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await communicator.receive_output(timeout=max(0.1, deadline - loop.time()))
        if message["type"] == "websocket.close":
            return message.get("code")


def publish(bot: Bot, event_type: str = "OrdersPlaced", **payload: Any) -> BotEvent:
    return publish_event(bot=bot, event_type=event_type, payload=payload)


apublish = sync_to_async(publish)


@pytest.fixture
async def sockets() -> AsyncIterator[list[WebsocketCommunicator]]:
    opened: list[WebsocketCommunicator] = []
    yield opened
    for communicator in opened:
        await communicator.disconnect()


async def test_own_bot_receives_pushed_updates(world_a: TenantWorld, sockets: list) -> None:
    _, key = await sync_to_async(session_for)("a-viewer")
    socket, hello = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    sockets.append(socket)
    assert hello == {"type": "hello", "tenant_id": world_a.tenant.pk, "bot_id": world_a.bot.pk, "last_event_id": 0}

    event = await apublish(world_a.bot, order_count=4)
    update = await next_json(socket)
    assert update["type"] == "update" and update["kind"] == "event"
    assert update["event_id"] == event.pk and update["bot_id"] == world_a.bot.pk
    assert update["data"]["event_type"] == "OrdersPlaced" and update["data"]["payload"] == {"order_count": 4}

    await sync_to_async(push)(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk, kind="orders",
                              data={"cancelled": ["mm-1-x"]})
    update = await next_json(socket)
    assert update["kind"] == "orders" and update["data"] == {"cancelled": ["mm-1-x"]}


async def test_tenant_socket_gets_its_tenant_only(world_a: TenantWorld, world_b: TenantWorld, sockets: list) -> None:
    _, key_a = await sync_to_async(session_for)("a-operator")
    socket, hello = await connect("/ws/tenant/", key_a)
    sockets.append(socket)
    assert hello["tenant_id"] == world_a.tenant.pk and hello["bot_id"] is None

    await apublish(world_b.bot, secret="of B")
    mine = await apublish(world_a.bot)
    update = await next_json(socket)
    assert update["event_id"] == mine.pk, "the first frame must be A's event: B's never arrives"
    assert await socket.receive_nothing(timeout=0.3)


@pytest.mark.parametrize("username", ["b-owner", "b-viewer"])
async def test_another_tenants_bot_is_closed_4404(world_a: TenantWorld, world_b: TenantWorld, username: str) -> None:
    _, key = await sync_to_async(session_for)(username)
    _, code = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    assert code == consumers.CLOSE_NOT_FOUND
    _, code = await connect("/ws/bots/999999/", key)
    assert code == consumers.CLOSE_NOT_FOUND


@pytest.mark.parametrize("path", ["/ws/tenant/", "/ws/bots/1/"])
async def test_anonymous_is_closed_4401(world_a: TenantWorld, path: str) -> None:
    _, code = await connect(path)
    assert code == consumers.CLOSE_UNAUTHENTICATED


async def test_foreign_origin_is_rejected(world_a: TenantWorld) -> None:
    from mmplatform.asgi import application

    _, key = await sync_to_async(session_for)("a-owner")
    communicator = WebsocketCommunicator(application, "/ws/tenant/", headers=[
        (b"origin", b"http://evil.example"), (b"cookie", f"sessionid={key}".encode())])
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert not connected


async def test_catch_up_after_reconnect_is_bounded_and_scoped(world_a: TenantWorld, world_b: TenantWorld,
                                                              sockets: list) -> None:
    _, key = await sync_to_async(session_for)("a-viewer")
    first, hello = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    seen = (await apublish(world_a.bot, n=0)).pk
    assert (await next_json(first))["event_id"] == seen
    await first.disconnect()

    missed = [(await apublish(world_a.bot, n=i)).pk for i in range(1, 4)]  # while no socket listens
    await apublish(world_b.bot, n=99)
    second, hello = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    sockets.append(second)
    assert hello["last_event_id"] == missed[-1]
    await second.send_json_to({"type": "catch_up", "after": seen})
    reply = await next_catch_up(second)
    assert reply["type"] == "catch_up" and reply["more"] is False
    assert [e["event_id"] for e in reply["events"]] == missed
    assert [e["payload"]["n"] for e in reply["events"]] == [1, 2, 3]

    def many() -> None:
        BotEvent.objects.bulk_create([BotEvent(tenant=world_a.tenant, bot=world_a.bot, event_type="OrdersAdjusted")
                                      for _ in range(consumers.selectors.CATCH_UP_LIMIT + 5)])

    await sync_to_async(many)()
    await second.send_json_to({"type": "catch_up", "after": 0})
    reply = await next_catch_up(second)
    assert len(reply["events"]) == consumers.selectors.CATCH_UP_LIMIT and reply["more"] is True
    assert all(e["bot_id"] == world_a.bot.pk for e in reply["events"])


async def test_tenant_catch_up_never_returns_another_tenant(world_a: TenantWorld, world_b: TenantWorld,
                                                            sockets: list) -> None:
    await apublish(world_b.bot)
    mine = await apublish(world_a.bot)
    _, key = await sync_to_async(session_for)("a-owner")
    socket, _ = await connect("/ws/tenant/", key)
    sockets.append(socket)
    await socket.send_json_to({"type": "catch_up", "after": 0})
    reply = await next_catch_up(socket)
    assert [e["event_id"] for e in reply["events"]] == [mine.pk]


@pytest.mark.parametrize(("frame", "error"), [
    ("not json{", "malformed JSON"),
    ("[1, 2]", 'expected an object with a "type" string'),
    ('{"type": 5}', 'expected an object with a "type" string'),
    ('{"type": "catch_up", "after": "7"}', "non-negative integer"),
    ('{"type": "catch_up", "after": -1}', "non-negative integer"),
    ('{"type": "catch_up", "after": true}', "non-negative integer"),
    ('{"type": "drop_tables"}', "unknown message type"),
    ('{"type": "ping", "pad": "' + "x" * 10_000 + '"}', "message too large"),
    (b"\x00\x01binary", "binary frames are not accepted"),
])
async def test_bad_messages_get_an_error_frame_and_the_socket_lives(world_a: TenantWorld, sockets: list,
                                                                    frame: str | bytes, error: str) -> None:
    _, key = await sync_to_async(session_for)("a-viewer")
    socket, _ = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    sockets.append(socket)
    if isinstance(frame, bytes):
        await socket.send_to(bytes_data=frame)
    else:
        await socket.send_to(text_data=frame)
    reply = await next_json(socket)
    assert reply["type"] == "error" and error in reply["error"]
    await socket.send_json_to({"type": "ping", "ts": 1})
    assert await next_json(socket) == {"type": "pong", "ts": 1}


async def test_logout_closes_the_socket_within_seconds(world_a: TenantWorld, monkeypatch: Any) -> None:
    monkeypatch.setattr(consumers, "RECHECK_SECS", 0.3)
    client, key = await sync_to_async(session_for)("a-operator")
    socket, hello = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    assert hello["type"] == "hello"
    await sync_to_async(client.logout)()
    assert await expect_close(socket, timeout=3) == consumers.CLOSE_UNAUTHENTICATED


async def test_losing_the_membership_closes_the_socket(world_a: TenantWorld, monkeypatch: Any) -> None:
    monkeypatch.setattr(consumers, "RECHECK_SECS", 0.3)
    _, key = await sync_to_async(session_for)("a-viewer")
    bot_socket, _ = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    tenant_socket, _ = await connect("/ws/tenant/", key)
    await sync_to_async(lambda: Membership.objects.filter(user=world_a.viewer).delete())()
    assert await expect_close(bot_socket, timeout=3) == consumers.CLOSE_FORBIDDEN
    assert await expect_close(tenant_socket, timeout=3) == consumers.CLOSE_FORBIDDEN


async def test_no_forward_after_membership_loss_even_before_the_periodic_check(world_a: TenantWorld,
                                                                             monkeypatch: Any) -> None:
    monkeypatch.setattr(consumers, "RECHECK_SECS", 3600)  # the periodic watcher never runs here
    monkeypatch.setattr(consumers, "STALE_CHECK_SECS", 0.2)
    _, key = await sync_to_async(session_for)("a-viewer")
    socket, _ = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    await sync_to_async(lambda: Membership.objects.filter(user=world_a.viewer).delete())()
    await asyncio.sleep(0.3)  # the last check is now older than STALE_CHECK_SECS
    await apublish(world_a.bot, secret="must not arrive")
    message = await socket.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close" and message["code"] == consumers.CLOSE_FORBIDDEN


def test_batched_verdicts_cover_every_case_in_a_fixed_number_of_queries(
        world_a: TenantWorld, world_b: TenantWorld, superuser: Any, django_assert_max_num_queries: Any) -> None:
    _, viewer_key = session_for("a-viewer")
    client_b, b_key = session_for("b-owner")
    root = Client()
    root.force_login(superuser)
    root_key = root.cookies["sessionid"].value
    checks = [
        (viewer_key, world_a.viewer.pk, world_a.tenant.pk),   # member: allowed
        (viewer_key, world_a.viewer.pk, world_b.tenant.pk),   # not a member of B
        (b_key, world_a.viewer.pk, world_a.tenant.pk),        # a session of another user
        ("no-such-session", world_a.viewer.pk, world_a.tenant.pk),
        (None, world_a.viewer.pk, world_a.tenant.pk),
        (root_key, superuser.pk, world_b.tenant.pk),          # superuser: every active tenant
    ]
    with django_assert_max_num_queries(4):
        assert consumers.verdicts(checks) == [None, "forbidden", "signed-out", "signed-out", "signed-out", None]
    client_b.logout()
    world_a.viewer.set_password("a-new-password-123")  # a password change signs other sessions out
    world_a.viewer.save()
    world_b.tenant.is_active = False
    world_b.tenant.save()
    assert consumers.verdicts(checks[:1] + checks[5:]) == ["signed-out", "forbidden"]


async def test_subscribed_sockets_get_live_counters_of_their_bots_only(world_a: TenantWorld, world_b: TenantWorld,
                                                                       sockets: list, monkeypatch: Any) -> None:
    from django.db.models import F

    from bots import quoting

    monkeypatch.setattr(consumers, "COUNTER_SECS", 0.2)
    _, key = await sync_to_async(session_for)("a-viewer")
    bot_socket, _ = await connect(f"/ws/bots/{world_a.bot.pk}/", key)
    tenant_socket, _ = await connect("/ws/tenant/", key)
    sockets.extend([bot_socket, tenant_socket])
    for socket in (bot_socket, tenant_socket):
        await socket.send_json_to({"type": "counters"})
    first = await next_json(bot_socket)
    assert first["type"] == "counters" and [b["id"] for b in first["bots"]] == [world_a.bot.pk]
    table = await next_json(tenant_socket)
    assert table["type"] == "counters" and {b["tenant_id"] for b in table["bots"]} == {world_a.tenant.pk}
    count = first["bots"][0]["cycle_count"]

    await sync_to_async(lambda: Bot.objects.filter(pk=world_a.bot.pk).update(
        cycle_count=F("cycle_count") + 3, status="running"))()
    await sync_to_async(quoting.note)(world_a.bot, world_a.bot.pairs[0], "too volatile")
    try:
        seen: dict[str, Any] = {}
        while not seen.get("not_quoting"):  # the "quoting" push may come first; counters follow within a tick
            frame = await next_json(bot_socket)
            if frame["type"] == "counters":
                seen = frame["bots"][0]
        assert seen["cycle_count"] == count + 3 and seen["status"] == "running"
        assert seen["not_quoting_text"] == "Running — not quoting: too volatile"
    finally:
        await sync_to_async(quoting.forget)(world_a.bot)
