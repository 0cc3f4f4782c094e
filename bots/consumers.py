"""Websocket consumers of the dashboard: ``ws/tenant/`` (the current tenant's group) and
``ws/bots/<id>/`` (one bot's group).

They only forward: ``bot.update`` messages from ``bots.events`` go to the browser as JSON. The
socket is at-most-once; after a reconnect the client sends ``{"type": "catch_up", "after": <id>}``
and gets the BotEvent rows it missed (bounded, tenant-scoped). The user's session and membership
are re-checked periodically and before forwarding once the last check is older than
``RECHECK_SECS``, so a socket whose user logged out or lost the membership closes within seconds.

Close codes: 4401 not signed in (or signed out), 4403 membership lost, 4404 no such bot for you.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from bots import selectors
from bots.events import bot_group, tenant_group
from bots.models import Bot
from mmplatform.tenancy.middleware import current_tenant
from mmplatform.tenancy.scoping import tenants_for_user

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
RECHECK_SECS = 3.0
MAX_MESSAGE_CHARS = 4096


def stored_session_auth(session_key: str | None) -> tuple[str, str] | None:
    """(user id, auth hash) a stored session still holds; None once logged out or expired."""
    if not session_key:
        return None
    data = import_string(settings.SESSION_ENGINE + ".SessionStore")(session_key=session_key).load()
    if SESSION_KEY not in data:
        return None
    return str(data[SESSION_KEY]), str(data.get(HASH_SESSION_KEY, ""))


def _still_allowed(user: Any, session_key: str | None, tenant_id: int) -> str | None:
    """None while the user's session is alive and they belong to the tenant, else the close reason."""
    stored = stored_session_auth(session_key)
    if stored is None:
        return "signed-out"
    user_id, session_hash = stored
    if user_id != str(user.pk):
        return "signed-out"
    fresh = get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()
    if fresh is None or not (session_hash and constant_time_compare(session_hash, fresh.get_session_auth_hash())):
        return "signed-out"
    if not tenants_for_user(fresh).filter(pk=tenant_id).exists():
        return "forbidden"
    return None


class DashboardConsumer(AsyncWebsocketConsumer):
    """Shared behaviour: authentication, group membership, forwarding, catch-up, bad input."""

    tenant_id: int
    bot_id: int | None = None
    group: str

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        target = await self.resolve_target(user)
        if target is None:
            return
        self.tenant_id, self.group = target
        self.checked_at = time.monotonic()
        self.closing = False
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.watchdog = asyncio.ensure_future(self.recheck_periodically())
        await self.send_json({"type": "hello", "tenant_id": self.tenant_id, "bot_id": self.bot_id,
                              "last_event_id": await self.last_event_id()})

    async def resolve_target(self, user: Any) -> tuple[int, str] | None:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- membership ----------------------------------------------------------------------------

    async def recheck(self) -> bool:
        """Re-validate session and membership; close the socket when either is gone."""
        session = self.scope.get("session")
        reason = await database_sync_to_async(_still_allowed)(
            self.scope["user"], getattr(session, "session_key", None), self.tenant_id)
        self.checked_at = time.monotonic()
        if reason is None:
            return True
        if not self.closing:
            self.closing = True
            await self.close(code=CLOSE_UNAUTHENTICATED if reason == "signed-out" else CLOSE_FORBIDDEN)
        return False

    async def recheck_periodically(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(RECHECK_SECS)
                try:
                    if not await self.recheck():
                        return
                except Exception:  # a database hiccup must not kill the socket task silently
                    logger.warning("membership re-check failed", exc_info=True)

    # --- forwarding ----------------------------------------------------------------------------

    async def bot_update(self, message: dict[str, Any]) -> None:
        """Forward one push from bots.events to the browser (after a due membership check)."""
        if getattr(self, "closing", True):
            return
        if message.get("tenant_id") != self.tenant_id:
            return
        if self.bot_id is not None and message.get("bot_id") != self.bot_id:
            return
        if time.monotonic() - self.checked_at > RECHECK_SECS and not await self.recheck():
            return
        await self.send_json({key: message.get(key) for key in ("kind", "tenant_id", "bot_id", "event_id", "data")}
                             | {"type": "update"})

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # --- messages from the browser -------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Accept ``ping`` and ``catch_up``; anything else gets an error frame, never a crash."""
        if getattr(self, "closing", True):
            return
        if text_data is None:
            await self.send_error("binary frames are not accepted")
            return
        if len(text_data) > MAX_MESSAGE_CHARS:
            await self.send_error(f"message too large (limit {MAX_MESSAGE_CHARS} characters)")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed JSON")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error('expected an object with a "type" string')
            return
        if content["type"] == "ping":
            await self.send_json({"type": "pong", "ts": content.get("ts") if isinstance(content.get("ts"),
                                                                                     (int, float)) else None})
        elif content["type"] == "catch_up":
            after = content.get("after")
            if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                await self.send_error('catch_up needs "after": a non-negative integer event id')
                return
            await self.catch_up(after)
        else:
            await self.send_error(f"unknown message type {content['type'][:40]!r}")

    async def send_error(self, text: str) -> None:
        await self.send_json({"type": "error", "error": text})

    async def catch_up(self, after: int) -> None:
        if not await self.recheck():
            return
        rows, more = await database_sync_to_async(selectors.events_after)(
            tenant_id=self.tenant_id, after_id=after, bot_id=self.bot_id)
        await self.send_json({"type": "catch_up", "events": [selectors.event_json(e) for e in rows],
                              "more": more})

    async def last_event_id(self) -> int:
        return await database_sync_to_async(selectors.last_event_id)(tenant_id=self.tenant_id, bot_id=self.bot_id)


class TenantConsumer(DashboardConsumer):
    """Every push of the session's current tenant (the bots table and the overview)."""

    async def resolve_target(self, user: Any) -> tuple[int, str] | None:
        request = SimpleNamespace(user=user, session=self.scope.get("session") or {})
        tenant = await database_sync_to_async(current_tenant)(request)
        if tenant is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return None
        return tenant.pk, tenant_group(tenant.pk)


class BotConsumer(DashboardConsumer):
    """Every push of one bot; the bot must belong to one of the user's tenants."""

    async def resolve_target(self, user: Any) -> tuple[int, str] | None:
        try:
            bot_id = int(self.scope["url_route"]["kwargs"]["bot_id"])
        except (KeyError, TypeError, ValueError):
            bot_id = -1

        def lookup() -> int | None:
            return (Bot.objects.filter(pk=bot_id, tenant__in=tenants_for_user(user))
                    .values_list("tenant_id", flat=True).first())

        tenant_id = await database_sync_to_async(lookup)()
        if tenant_id is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return None
        self.bot_id = bot_id
        return tenant_id, bot_group(bot_id)
