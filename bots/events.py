"""Bot events: a BotEvent row (the truth) and a push to the dashboards (at most once).

Pushes go to two Channels groups, the tenant's and the bot's, after the transaction commits, so a
browser never sees an event that was rolled back. A dashboard that missed pushes (reconnect)
catches up from the rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from bots.models import Bot, BotEvent
from bots.wire import event_json, jsonable
from mmplatform import aio

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_SECS = 2.0


def tenant_group(tenant_id: int) -> str:
    return f"tenant.{tenant_id}"


def bot_group(bot_id: int) -> str:
    return f"bot.{bot_id}"


_pending: deque[tuple[list[str], dict[str, Any]]] = deque()
_sender: asyncio.Task | None = None
MAX_PENDING_PUSHES = 10_000
"""Beyond this many unsent pushes in one process the oldest are dropped (the rows stay the truth)."""


def _send(tenant_id: int, bot_id: int | None, message: dict[str, Any]) -> None:
    """Queue the push for this process's sender on the I/O loop and return at once: a cycle never
    waits for the channel layer, and one sender keeps the process's pushes in order."""
    groups = [tenant_group(tenant_id)] + ([bot_group(bot_id)] if bot_id is not None else [])
    aio.get_loop().call_soon_threadsafe(_enqueue, groups, message)


def _enqueue(groups: list[str], message: dict[str, Any]) -> None:
    """On the I/O loop: append, and start the sender if it is not running."""
    global _sender
    if len(_pending) >= MAX_PENDING_PUSHES:
        _pending.popleft()
        logger.warning("dashboard pushes backed up; dropped the oldest")
    _pending.append((groups, message))
    if _sender is None or _sender.done():
        _sender = asyncio.get_running_loop().create_task(_drain())


async def _drain() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    while _pending:
        groups, message = _pending.popleft()
        if layer is None:
            continue
        for group in groups:
            try:
                await asyncio.wait_for(layer.group_send(group, message), PUSH_TIMEOUT_SECS)
            except Exception:  # the socket is at-most-once; the database row is the truth
                logger.warning("dashboard push to %s failed", group, exc_info=True)


def flush_pushes(timeout_secs: float = 5.0) -> None:
    """Wait until this process's queued pushes are sent (tests, and before a process exits)."""
    async def wait() -> None:
        while _pending or (_sender is not None and not _sender.done()):
            await asyncio.sleep(0.005)

    aio.run(wait(), timeout_secs=timeout_secs)


def push(*, tenant_id: int, bot_id: int | None, kind: str, data: dict[str, Any], event_id: int | None = None) -> None:
    """Push a live update (order change, fill, snapshot, status, risk, event) after commit."""
    message = {
        "type": "bot.update",
        "kind": kind,
        "tenant_id": tenant_id,
        "bot_id": bot_id,
        "event_id": event_id,
        "data": jsonable(data),
    }
    transaction.on_commit(lambda: _send(tenant_id, bot_id, message))


def publish_event(*, bot: Bot, event_type: str, payload: dict[str, Any] | None = None) -> BotEvent:
    """Record a spec event (BotEvent row) and push it to the tenant's and the bot's dashboards, as
    ``bots.wire.event_json`` (the same dict the pages render and the catch-up sends)."""
    data = jsonable(payload or {})
    DjangoJSONEncoder().encode(data)  # fail here, not in the socket, on a non-JSON payload
    event = BotEvent.objects.create(tenant_id=bot.tenant_id, bot=bot, event_type=event_type, payload=data)
    push(
        tenant_id=bot.tenant_id,
        bot_id=bot.pk,
        kind="event",
        event_id=event.pk,
        data=event_json(event_id=event.pk, bot_id=bot.pk, bot_name=bot.name, event_type=event_type,
                        payload=data, created_at=event.created_at),
    )
    return event
