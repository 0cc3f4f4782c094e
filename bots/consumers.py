"""Websocket consumers of the dashboard: ``ws/tenant/`` (the current tenant's group) and
``ws/bots/<id>/`` (one bot's group).

They only forward: ``bot.update`` messages from ``bots.events`` go to the browser as JSON. The
socket is at-most-once; after a reconnect the client sends ``{"type": "catch_up", "after": <id>}``
and gets the BotEvent rows it missed (bounded, tenant-scoped).

The user's session and membership are re-checked every ``RECHECK_SECS`` by one watcher per process
for all its sockets (a few queries, on the thread pool), so a socket whose user logged out or lost
the membership closes within seconds. Forwarding never waits on the database, except when the
last successful check is older than ``STALE_CHECK_SECS`` (the watcher is stuck): then it re-checks
first, so a lost membership never leaks updates.

Live counters: one ``CounterWatch`` per process reads, every ``COUNTER_SECS``, the cycle count, last
cycle time, status, open orders and current "not quoting" reasons of every bot a subscribed socket
(``{"type": "counters"}``) shows (one query and one Redis round trip for all sockets) and sends each
socket a ``counters`` frame when its bots changed (``bots.wire.counters_json``).

Each socket marks its group listened (``keys.listening``) before it joins it, and the membership watcher renews
the marks of a process's open sockets at each step: the dashboard sender publishes only to marked groups.

Close codes: 4401 not signed in (or signed out), 4403 membership lost, 4404 no such bot for you.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from types import SimpleNamespace
from typing import Any, TypeVar

from channels.db import DatabaseSyncToAsync, database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from bots import quoting, selectors, wire
from bots.engine import keys
from bots.events import bot_group, tenant_group
from bots.models import OPEN_ORDER_STATUSES, Bot, Order
from mmplatform.redis_client import get_async_redis
from mmplatform.tenancy.middleware import current_tenant
from mmplatform.tenancy.models import Membership, Tenant
from mmplatform.tenancy.scoping import tenants_for_user

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
RECHECK_SECS = 3.0
STALE_CHECK_SECS = 3 * RECHECK_SECS
MAX_MESSAGE_CHARS = 4096
COUNTER_SECS = 2.0


def _session_auth(keys: set[str]) -> dict[str, tuple[str, str]]:
    """session key -> (user id, auth hash) for the keys still stored and signed in; one query for
    database-backed sessions, one load per key for other engines."""
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
    found: dict[str, dict[str, Any]] = {}
    get_model_class = getattr(store_class, "get_model_class", None)
    if get_model_class is not None:
        rows = get_model_class()._default_manager.filter(session_key__in=keys, expire_date__gt=timezone.now())
        decoder = store_class()
        for key, data in rows.values_list("session_key", "session_data"):
            found[key] = decoder.decode(data)
    else:
        for key in keys:
            found[key] = store_class(session_key=key).load()
    return {key: (str(data[SESSION_KEY]), str(data.get(HASH_SESSION_KEY, "")))
            for key, data in found.items() if SESSION_KEY in data}


def verdicts(checks: list[tuple[str | None, int, int]]) -> list[str | None]:
    """For each socket's (session key, user id, tenant id): None while the session is signed in as
    that user and the user belongs to the active tenant, else "signed-out" or "forbidden".
    A fixed handful of queries however many sockets are checked."""
    if not checks:
        return []
    sessions = _session_auth({key for key, _, _ in checks if key})
    user_ids = {user_id for _, user_id, _ in checks}
    users = {u.pk: u for u in get_user_model()._default_manager.filter(pk__in=user_ids, is_active=True)}
    active = set(Tenant.objects.filter(pk__in={t for _, _, t in checks}, is_active=True).values_list("pk", flat=True))
    members = set(Membership.objects.filter(user_id__in=user_ids, tenant_id__in=active)
                  .values_list("user_id", "tenant_id"))
    results: list[str | None] = []
    for key, user_id, tenant_id in checks:
        stored, user = sessions.get(key or ""), users.get(user_id)
        if (stored is None or user is None or stored[0] != str(user_id)
                or not (stored[1] and constant_time_compare(stored[1], user.get_session_auth_hash()))):
            results.append("signed-out")
        elif tenant_id not in active or not (user.is_superuser or (user_id, tenant_id) in members):
            results.append("forbidden")
        else:
            results.append(None)
    return results


_check_in_pool = DatabaseSyncToAsync(verdicts, thread_sensitive=False)


class SocketWatch:
    """One periodic task per process (per event loop) over every open dashboard socket that joined it;
    it runs while any socket is in it. Subclasses say what one ``step`` does and how long to wait."""

    step_first = False  # step at once when started (else wait a period first)

    def __init__(self) -> None:
        self.sockets: set[DashboardConsumer] = set()
        self.task: asyncio.Task | None = None

    def add(self, consumer: DashboardConsumer) -> None:
        self.sockets.add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self.run())

    def discard(self, consumer: DashboardConsumer) -> None:
        self.sockets.discard(consumer)
        if not self.sockets and self.task is not None:
            self.task.cancel()
            self.task = None

    def period(self) -> float:
        raise NotImplementedError

    async def step(self, sockets: list[DashboardConsumer]) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            if not self.step_first:
                await asyncio.sleep(self.period())
            while self.sockets:
                try:
                    await self.step(list(self.sockets))
                except Exception:  # never let one bad socket end the watch of the others
                    logger.warning("%s step failed", type(self).__name__, exc_info=True)
                await asyncio.sleep(self.period())


W = TypeVar("W", bound=SocketWatch)
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[type, SocketWatch]] = weakref.WeakKeyDictionary()


def loop_watch(kind: type[W]) -> W:
    """The running event loop's one watch of ``kind``."""
    watches = _watches.setdefault(asyncio.get_running_loop(), {})
    if kind not in watches:
        watches[kind] = kind()
    return watches[kind]  # type: ignore[return-value]


class MembershipWatch(SocketWatch):
    """Every ``RECHECK_SECS``, the session and membership of every open socket: a few queries instead
    of a check per socket, off Django's sync thread."""

    def period(self) -> float:
        return RECHECK_SECS

    async def step(self, sockets: list[DashboardConsumer]) -> None:
        try:
            await mark_listening({s.group for s in sockets if not s.closing})
        except Exception:  # a Redis hiccup: the marks live LISTENING_SECS, ten steps
            logger.warning("dashboard listening marks not renewed", exc_info=True)
        await self.check(sockets)

    async def check(self, sockets: list[DashboardConsumer]) -> None:
        sockets = [s for s in sockets if not s.closing]
        try:
            results = await _check_in_pool([s.check_key() for s in sockets])
        except Exception:  # a database hiccup: forwards re-check on their own once STALE_CHECK_SECS pass
            logger.warning("membership re-check failed", exc_info=True)
            return
        now = time.monotonic()
        for consumer, reason in zip(sockets, results, strict=True):
            if reason is None:
                consumer.checked_at = now
            else:
                await consumer.close_for(reason)


async def mark_listening(groups: set[str]) -> None:
    """Mark the channel groups dashboard sockets listen to (``keys.listening``, one pipeline): the dashboard sender
    publishes only to marked groups (``bots.events._drain``)."""
    if not groups:
        return
    pipe = get_async_redis().pipeline(transaction=False)
    for group in groups:
        pipe.set(keys.listening(group), 1, ex=keys.LISTENING_SECS)
    await pipe.execute()


def membership_watch() -> MembershipWatch:
    return loop_watch(MembershipWatch)


def bot_counters(bot_ids: set[int], tenant_ids: set[int]) -> list[dict[str, Any]]:
    """The live counters of the given bots and of every bot of the given tenants: one query (the open
    order counts are a subquery) and one Redis round trip."""
    from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
    from django.db.models.functions import Coalesce

    if not bot_ids and not tenant_ids:
        return []
    open_orders = (Order.objects.filter(bot=OuterRef("pk"), status__in=OPEN_ORDER_STATUSES)
                   .order_by().values("bot").annotate(n=Count("pk")).values("n"))
    bots = list(Bot.objects.filter(Q(pk__in=bot_ids) | Q(tenant_id__in=tenant_ids))
                .annotate(open_orders_count=Coalesce(Subquery(open_orders, output_field=IntegerField()), Value(0)))
                .only("pk", "tenant_id", "status", "cycle_count", "last_cycle_started_at", "last_cycle_finished_at",
                      "monitoring_interval_secs", "trading_pairs"))
    reasons = quoting.current(b.pk for b in bots if b.status == "running")
    return [wire.counters_json(bot, open_orders=bot.open_orders_count, reasons=reasons.get(bot.pk, {}))
            for bot in sorted(bots, key=lambda b: b.pk)]


_counters_in_pool = DatabaseSyncToAsync(bot_counters, thread_sensitive=False)


class CounterWatch(SocketWatch):
    """Every ``COUNTER_SECS``, one read of the counters every open socket shows."""

    step_first = True

    def period(self) -> float:
        return COUNTER_SECS

    async def step(self, sockets: list[DashboardConsumer]) -> None:
        await self.tick(sockets)

    async def tick(self, sockets: list[DashboardConsumer]) -> None:
        sockets = [s for s in sockets if not s.closing]
        bot_ids = {s.bot_id for s in sockets if s.bot_id is not None}
        tenant_ids = {s.tenant_id for s in sockets if s.bot_id is None}
        try:
            rows = await _counters_in_pool(bot_ids, tenant_ids)
        except Exception:  # a database hiccup: the next tick tries again
            logger.warning("live counters read failed", exc_info=True)
            return
        for consumer in sockets:
            mine = [r for r in rows if (r["id"] == consumer.bot_id if consumer.bot_id is not None
                                        else r["tenant_id"] == consumer.tenant_id)]
            try:
                await consumer.send_counters(mine)
            except Exception:  # a socket closing under us: its disconnect removes it
                logger.info("live counters to a closing socket failed", exc_info=True)


def counter_watch() -> CounterWatch:
    return loop_watch(CounterWatch)


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
        await mark_listening({self.group})  # before it joins: every push sent after its hello reaches it
        await self.channel_layer.group_add(self.group, self.channel_name)
        membership_watch().add(self)
        self.counters_sent: list[dict[str, Any]] | None = None
        await self.send_json({"type": "hello", "tenant_id": self.tenant_id, "bot_id": self.bot_id,
                              "last_event_id": await self.last_event_id()})

    async def resolve_target(self, user: Any) -> tuple[int, str] | None:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        membership_watch().discard(self)
        counter_watch().discard(self)
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- membership ----------------------------------------------------------------------------

    def check_key(self) -> tuple[str | None, int, int]:
        session = self.scope.get("session")
        return getattr(session, "session_key", None), self.scope["user"].pk, self.tenant_id

    async def recheck(self) -> bool:
        """Re-validate this socket's session and membership now; close it when either is gone."""
        reason = (await _check_in_pool([self.check_key()]))[0]
        self.checked_at = time.monotonic()
        if reason is None:
            return True
        await self.close_for(reason)
        return False

    async def close_for(self, reason: str) -> None:
        if not self.closing:
            self.closing = True
            await self.close(code=CLOSE_UNAUTHENTICATED if reason == "signed-out" else CLOSE_FORBIDDEN)

    # --- forwarding ----------------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Forwards skip Channels' per-message ``close_old_connections()`` hop to the sync thread:
        they touch no database (a due re-check opens and closes its own connection), and with
        hundreds of sockets that hop was most of the server's time."""
        if message.get("type") == "bot.update":
            await self.bot_update(message)
        else:
            await super().dispatch(message)

    async def bot_update(self, message: dict[str, Any]) -> None:
        """Forward one push from bots.events to the browser (after a due membership check)."""
        if getattr(self, "closing", True):
            return
        if message.get("tenant_id") != self.tenant_id:
            return
        if self.bot_id is not None and message.get("bot_id") != self.bot_id:
            return
        if time.monotonic() - self.checked_at > STALE_CHECK_SECS and not await self.recheck():
            return
        await self.send_json({key: message.get(key) for key in ("kind", "tenant_id", "bot_id", "event_id", "data")}
                             | {"type": "update"})

    async def send_counters(self, rows: list[dict[str, Any]]) -> None:
        """A ``counters`` frame when this socket's bots changed since the last one it got (the cycle
        age alone moves every second: it is rounded to the counter interval)."""
        if getattr(self, "closing", True) or rows == self.counters_sent:
            return
        if time.monotonic() - self.checked_at > STALE_CHECK_SECS and not await self.recheck():
            return
        self.counters_sent = rows
        await self.send_json({"type": "counters", "bots": rows, "server_time": time.time()})

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # --- messages from the browser -------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Accept ``ping``, ``counters`` (subscribe to the live counters) and ``catch_up``; anything
        else gets an error frame, never a crash."""
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
        elif content["type"] == "counters":
            counter_watch().add(self)  # from now on: a "counters" frame whenever this socket's bots move
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
