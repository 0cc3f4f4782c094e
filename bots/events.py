"""Bot events: a BotEvent row (the truth) and a push to the dashboards (at most once).

Pushes go to two Channels groups, the tenant's and the bot's, after the transaction commits, so a
browser never sees an event that was rolled back. A dashboard that missed pushes (reconnect)
catches up from the rows.

Every event also passes the alert matcher (``alerts.hooks.notice``: a dict lookup for most types; the
few that may be alerts are enqueued to Celery after commit, never waited for).

Routine events (``ROUTINE_EVENTS``: what a quoting bot does every few seconds) are stored as one
summary row per bot, event type, pair and minute, written by one upsert per event (as many statements as
a plain row on Postgres: the re-quote path stays as it was). The row's ``payload`` is the latest event's, plus
``totals`` (the counts of the minute summed), ``occurrences`` counts the events and ``created_at`` /
``last_at`` are the first and the latest. Each event still gets an id of its own from the table's
sequence and is pushed live with it; the summary row takes the latest event's id, so a browser's
catch-up (rows with an id above the last it saw) also brings a summary that grew while it was away.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from alerts import hooks as alert_hooks
from bots.engine import keys
from bots.engine.row_values import db_values
from bots.engine.rows import insert_rows, save_fields, save_fields_then
from bots.models import Bot, BotEvent, BotEventType
from bots.wire import ROUTINE_EVENTS as WIRE_ROUTINE_EVENTS
from bots.wire import event_json, jsonable
from mmplatform import aio
from mmplatform.channel_batch import group_send_batch
from mmplatform.redis_client import get_async_redis
from risk.models import RiskEvent

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_SECS = 2.0

ROUTINE_EVENTS: dict[str, tuple[str, ...]] = {
    "OrdersAdjusted": ("new_order_count", "cancelled", "kept"),
}
"""Event types aggregated in storage (one summary row per bot, pair and minute), with the payload keys
whose values are summed into the row's ``totals``. The same types the dashboard's logs group
(``bots.wire.ROUTINE_EVENTS``)."""
assert set(ROUTINE_EVENTS) == set(WIRE_ROUTINE_EVENTS), "bots.wire.ROUTINE_EVENTS and the stored roll-ups differ"


def tenant_group(tenant_id: int) -> str:
    return f"tenant.{tenant_id}"


def bot_group(bot_id: int) -> str:
    return f"bot.{bot_id}"


_incoming: deque[tuple[list[str], dict[str, Any]]] = deque()  # any thread appends; the sender takes
_pending: deque[tuple[list[str], dict[str, Any]]] = deque()  # the I/O loop's: taken from ``_incoming``, in order
_sender: asyncio.Task | None = None
_wake_lock = threading.Lock()
_wake_scheduled = False  # (under ``_wake_lock``) a push since the sender last took ``_incoming`` woke the loop
MAX_PENDING_PUSHES = 10_000
"""Beyond this many unsent pushes in one process the oldest are dropped (the rows stay the truth)."""
_held = threading.local()  # ``pushes_held``: this thread's pushes kept until the block ends (None: not holding)


@contextmanager
def pushes_held() -> Iterator[None]:
    """The pushes this thread sends inside the block are queued together when it ends (also when it raises): a
    cycle's pushes (its orders, its fills, their events) wake the I/O loop once and go in one batch, with one read of
    the listening marks and one Redis round trip, instead of one wake and one batch each (a fill sync's ~5 pushes
    were ~5 wakes and ~5 ``MGET``s). Dashboards see a cycle's pushes when it ends (a few ms). Nested: the outermost
    block sends."""
    if getattr(_held, "pushes", None) is not None:
        yield
        return
    _held.pushes = []
    try:
        yield
    finally:
        pushes, _held.pushes = _held.pushes, None
        if pushes:
            _queue(pushes)


def _send(tenant_id: int, bot_id: int | None, message: dict[str, Any]) -> None:
    """Queue the push for this process's sender on the I/O loop and return at once: a cycle never
    waits for the channel layer, and one sender keeps the process's pushes in order. Inside ``pushes_held`` it waits
    for the block's end."""
    groups = [tenant_group(tenant_id)] + ([bot_group(bot_id)] if bot_id is not None else [])
    held = getattr(_held, "pushes", None)
    if held is not None:
        held.append((groups, message))
        return
    _queue([(groups, message)])


def _queue(pushes: list[tuple[list[str], dict[str, Any]]]) -> None:
    """Append to the sender's queue; only the first push since the sender last took the queue wakes the loop (one
    ``call_soon_threadsafe`` for a burst of pushes from any threads)."""
    global _wake_scheduled
    _incoming.extend(pushes)
    with _wake_lock:
        if _wake_scheduled:
            return
        _wake_scheduled = True
    try:
        aio.get_loop().call_soon_threadsafe(_start_sender)
    except BaseException:  # (no loop to wake: the next push tries again)
        with _wake_lock:
            _wake_scheduled = False
        raise


def _after_fork_in_child() -> None:
    """A forked process (a prefork pool's child) starts with no pushes of its parent's and no wake pending."""
    global _wake_lock, _wake_scheduled, _sender, _held
    _wake_lock, _wake_scheduled, _sender, _held = threading.Lock(), False, None, threading.local()
    _incoming.clear()
    _pending.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _start_sender() -> None:
    """On the I/O loop: start the sender if it is not running (a running one takes what was queued)."""
    global _sender
    if _sender is None or _sender.done():
        _sender = asyncio.get_running_loop().create_task(_drain())


def _take_incoming() -> None:
    """On the I/O loop: what the threads queued joins the sender's queue, the oldest dropped past the bound; from
    here a new push wakes the loop again."""
    global _wake_scheduled
    with _wake_lock:
        _wake_scheduled = False
    dropped = 0
    while _incoming:
        if len(_pending) >= MAX_PENDING_PUSHES:
            _pending.popleft()
            dropped += 1
        _pending.append(_incoming.popleft())
    if dropped:
        logger.warning("dashboard pushes backed up; dropped the %d oldest", dropped)


PUSH_BATCH = 200
"""At most this many queued pushes go to the channel layer together (one Redis round trip)."""


async def _drain() -> None:
    """Send the queued pushes in order, each backlog (up to ``PUSH_BATCH``) in one Redis round trip
    (``mmplatform.channel_batch``): under load the loop publishes a burst at once instead of awaiting two
    ``PUBLISH`` per push."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    while True:
        _take_incoming()
        if not _pending:
            return
        batch = [_pending.popleft() for _ in range(min(len(_pending), PUSH_BATCH))]
        if layer is None:
            continue
        sends = [(group, message) for groups, message in batch for group in groups]
        try:
            sends = _made_jsonable(await asyncio.wait_for(_listened(sends), PUSH_TIMEOUT_SECS))
            await asyncio.wait_for(group_send_batch(layer, sends), PUSH_TIMEOUT_SECS)
        except Exception:  # the socket is at-most-once; the database row is the truth
            logger.warning("dashboard pushes to %s failed", sorted({g for g, _ in sends})[:10], exc_info=True)


def _made_jsonable(sends: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The sends with each message's ``data`` made JSON-ready (``bots.wire.jsonable``; a message pushed to two groups
    once): ``push`` leaves it to here, so a push to groups no dashboard listens to is never converted (the
    conversion was ~3 % of a re-quote's CPU on the pool thread). Every ``data`` a push carries is built for it
    (payload dicts of rows' values, decimals and datetimes): nothing changes it after the push."""
    done: set[int] = set()
    for _, message in sends:
        if id(message) not in done:
            done.add(id(message))
            message["data"] = jsonable(message["data"])
    return sends


async def _listened(sends: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The sends whose group a dashboard socket listens to (``keys.listening``, one ``MGET`` for the batch's groups):
    a push to nobody costs its serialisation and a ``PUBLISH`` packed by the client, which at active N=1,000 bots was
    ~4 % of an engine worker's GIL (``group_send_batch``), with no dashboard open. A socket marks its group before it
    joins it, so every push sent after its ``hello`` reaches it; what was sent before is what the socket has always
    missed (the page's own read and the catch-up cover it). A failed read sends them all."""
    groups = list(dict.fromkeys(group for group, _ in sends))
    if not groups:
        return sends
    try:
        marks = await get_async_redis().mget([keys.listening(group) for group in groups])
    except Exception:
        logger.warning("dashboard listening marks unread; pushing to every group", exc_info=True)
        return sends
    heard = {group for group, mark in zip(groups, marks, strict=True) if mark is not None}
    return [(group, message) for group, message in sends if group in heard]


def flush_pushes(timeout_secs: float = 5.0) -> None:
    """Wait until this process's queued pushes are sent (tests, and before a process exits)."""
    async def wait() -> None:
        while _incoming or _pending or (_sender is not None and not _sender.done()):
            await asyncio.sleep(0.005)

    aio.run(wait(), timeout_secs=timeout_secs)


def push(*, tenant_id: int, bot_id: int | None, kind: str, data: dict[str, Any], event_id: int | None = None) -> None:
    """Push a live update (order change, fill, snapshot, status, risk, event) after commit. ``data`` is made
    JSON-ready on the I/O loop, only if a dashboard listens (``_made_jsonable``): it must not change after this."""
    message = {
        "type": "bot.update",
        "kind": kind,
        "tenant_id": tenant_id,
        "bot_id": bot_id,
        "event_id": event_id,
        "data": data,
    }
    transaction.on_commit(lambda: _send(tenant_id, bot_id, message))


def publish_event(*, bot: Bot, event_type: str, payload: dict[str, Any] | None = None) -> BotEvent:
    """Record a spec event and push it to the tenant's and the bot's dashboards, as
    ``bots.wire.event_json`` (the same dict the pages render and the catch-up sends). A routine event
    (``ROUTINE_EVENTS``) is added to its minute's summary row; the row returned then has this event's
    id (``pk``, which the summary row now carries), payload and time, and the minute's ``occurrences``."""
    if event_type in ROUTINE_EVENTS:
        data = _checked(payload)
        event = record_routine(bot=bot, event_type=event_type, payload=data)
    else:
        event = event_row(bot=bot, event_type=event_type, payload=payload)
        insert_rows([event])  # the ORM's create without its query building
    announce(bot, event)
    return event


def event_row(*, bot: Bot, event_type: str, payload: dict[str, Any] | None = None) -> BotEvent:
    """A (not routine) event's row, not stored yet: a fill sync stores its ``OrderFilled`` rows in the statement
    that books the fills (``bots.engine.booking.book_fills_if_unchanged``), then calls ``announce`` for each."""
    return BotEvent(tenant_id=bot.tenant_id, bot=bot, event_type=event_type, payload=_checked(payload))


def announce(bot: Bot, event: BotEvent) -> None:
    """A stored event to the dashboards and the alert matcher (the second half of ``publish_event``)."""
    push(
        tenant_id=bot.tenant_id,
        bot_id=bot.pk,
        kind="event",
        event_id=event.pk,
        data=event_json(event_id=event.pk, bot_id=bot.pk, bot_name=bot.name, event_type=event.event_type,
                        payload=event.payload, created_at=event.created_at),
    )
    # every event passes the alert matcher; one that may alert is enqueued after commit (never waited for)
    alert_hooks.notice(tenant_id=bot.tenant_id, bot_id=bot.pk, event_type=event.event_type, payload=event.payload,
                       event_id=event.pk, occurred_at=event.created_at)


def _checked(payload: dict[str, Any] | None) -> dict[str, Any]:
    data = jsonable(payload or {})
    DjangoJSONEncoder().encode(data)  # fail here, not in the socket, on a non-JSON payload
    return data


def record_risk_event(*, bot: Bot, event_type: str, trading_pair: str, message: str, action_taken: str,
                      details: dict[str, Any] | None = None) -> RiskEvent:
    """A risk event of a bot's engine (a breach and its action, orders denied by the pre-trade checks or
    refused by the venue): its ``RiskEvent`` row and a ``RiskEventHandled`` bot event, which pushes it to
    the dashboards and passes it to the alert matcher (each rule's dedup window and throttle apply). The
    one way the engine records a risk event, so none is stored without reaching the alerts."""
    row = RiskEvent.objects.create(tenant_id=bot.tenant_id, bot=bot, event_type=event_type,
                                   trading_pair=trading_pair, message=message, action_taken=action_taken,
                                   details=details or {})
    publish_event(bot=bot, event_type=BotEventType.RISK_EVENT_HANDLED, payload={
        "event_type": event_type, "action_taken": action_taken, "trading_pair": trading_pair, "message": message,
    })
    return row


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def record_routine(*, bot: Bot, event_type: str, payload: dict[str, Any], at: datetime | None = None) -> BotEvent:
    """Add one routine event to its summary row (bot, type, pair, minute) in one statement (Postgres;
    two on SQLite, which has no sequence to draw the event's id from in the same statement)."""
    now = at or timezone.now()
    if connection.vendor == "postgresql":
        return _upsert_routine(bot, event_type, payload, now)
    params = _routine_params(bot, event_type, payload, now)
    table, columns, conflict, placeholders = _routine_sql_parts(connection.vendor)
    meta = BotEvent._meta
    sums = ", ".join(
        f"'$.totals.{key}', COALESCE(json_extract({table}.payload, '$.totals.{key}'), 0) "
        f"+ COALESCE(json_extract(EXCLUDED.payload, '$.totals.{key}'), 0)" for key in ROUTINE_EVENTS[event_type])
    with connection.cursor() as cursor:
        # the event's own id: the next of the table's AUTOINCREMENT sequence (none yet: a first row)
        cursor.execute("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = %s RETURNING seq",
                       [meta.db_table])
        reserved = cursor.fetchone()
        cursor.execute(
            f"INSERT INTO {table} ({connection.ops.quote_name('id')}, {columns}) VALUES (%s, {placeholders}) "
            f"{conflict}payload = json_set(EXCLUDED.payload, {sums}) "
            f"RETURNING {connection.ops.quote_name('id')}, {connection.ops.quote_name('occurrences')}",
            [reserved[0] if reserved else None, *params])
        pk, occurrences = cursor.fetchone()
    return _routine_row(bot, event_type, payload, now, pk, occurrences)


def publish_routine_with_saved(*, bot: Bot, event_type: str, payload: dict[str, Any], rows: Sequence[Model],
                               fields: Sequence[str]) -> BotEvent:
    """``publish_event`` of a routine event whose summary upsert goes in the statement that first saves ``fields``
    of ``rows`` (``rows.save_fields``): a re-quote's venue answers and its ``OrdersAdjusted``, one round trip on
    Postgres (two statements elsewhere)."""
    data = _checked(payload)
    if connection.vendor == "postgresql":
        event = _upsert_routine(bot, event_type, data, timezone.now(), rows, fields)
    else:
        save_fields(rows, fields)
        event = record_routine(bot=bot, event_type=event_type, payload=data)
    announce(bot, event)
    return event


_ROUTINE_NAMES = ("tenant", "bot", "event_type", "payload", "created_at", "trading_pair", "bucket_start", "occurrences",
                  "last_at")
"""The columns of a routine event's summary row its upsert writes (``_routine_params``)."""


def _routine_params(bot: Bot, event_type: str, payload: dict[str, Any], now: datetime) -> list[Any]:
    """A routine event's values for its summary row's upsert (``_ROUTINE_NAMES``, as the ORM binds them): its
    payload with the summed keys' ``totals``; both databases' upserts take them."""
    summed = ROUTINE_EVENTS[event_type]
    totals = {key: payload[key] for key in summed if isinstance(payload.get(key), (int, float))}
    stored = {**payload, "totals": totals}
    pair = str(payload.get("trading_pair") or "")[:40]
    values = [bot.tenant_id, bot.pk, event_type, stored, now, pair, minute_of(now), 1, now]
    return db_values(BotEvent, _ROUTINE_NAMES, values)


@functools.lru_cache(maxsize=4)
def _routine_sql_parts(vendor: str) -> tuple[str, str, str, str]:
    """The table, its columns, the ON CONFLICT head and the placeholders of a routine event's upsert (the same for
    every event of a database: built once)."""
    meta = BotEvent._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(meta.get_field(name).column) for name in _ROUTINE_NAMES)
    conflict = (f"ON CONFLICT ({quote('bot_id')}, {quote('event_type')}, {quote('trading_pair')}, "
                f"{quote('bucket_start')}) WHERE {quote('bucket_start')} IS NOT NULL DO UPDATE SET "
                f"{quote('id')} = EXCLUDED.{quote('id')}, "
                f"{quote('occurrences')} = {table}.{quote('occurrences')} + 1, "
                f"{quote('last_at')} = EXCLUDED.{quote('last_at')}, ")
    return table, columns, conflict, ", ".join(["%s"] * len(_ROUTINE_NAMES))


def _upsert_routine(bot: Bot, event_type: str, payload: dict[str, Any], now: datetime,
                    rows: Sequence[Model] = (), fields: Sequence[str] = ()) -> BotEvent:
    """Postgres: a routine event's summary upsert, one statement drawing the event's id from the table's sequence
    (``fields`` of ``rows`` saved in it first: ``rows.save_fields_then``); the summary row as it left it."""
    pk, occurrences = save_fields_then(rows, fields, _postgres_upsert_sql(event_type),
                                       _routine_params(bot, event_type, payload, now))
    return _routine_row(bot, event_type, payload, now, pk, occurrences)


@functools.lru_cache(maxsize=16)
def _postgres_upsert_sql(event_type: str) -> str:
    """``_upsert_routine``'s statement for ``event_type`` (its summed keys), built once."""
    table, columns, conflict, placeholders = _routine_sql_parts("postgresql")
    quote = connection.ops.quote_name
    sums = ", ".join(
        f"'{key}', COALESCE(({table}.payload->'totals'->>'{key}')::numeric, 0) "
        f"+ COALESCE((EXCLUDED.payload->'totals'->>'{key}')::numeric, 0)" for key in ROUTINE_EVENTS[event_type])
    return (f"INSERT INTO {table} ({quote('id')}, {columns}) "
            f"VALUES (nextval(pg_get_serial_sequence('{BotEvent._meta.db_table}', 'id')), {placeholders}) "
            f"{conflict}payload = EXCLUDED.payload || jsonb_build_object('totals', jsonb_build_object({sums})) "
            f"RETURNING {quote('id')}, {quote('occurrences')}")


def _routine_row(bot: Bot, event_type: str, payload: dict[str, Any], now: datetime, pk: int,
                 occurrences: int) -> BotEvent:
    """The summary row as the upsert left it, carrying this event's id, payload and time."""
    event = BotEvent(pk=pk, tenant_id=bot.tenant_id, bot=bot, event_type=event_type, payload=payload,
                     created_at=now, trading_pair=str(payload.get("trading_pair") or "")[:40],
                     bucket_start=minute_of(now), occurrences=occurrences, last_at=now)
    event._state.adding = False
    event._state.db = connection.alias
    return event


def push_status(bot: Bot) -> None:
    """Push the bot's status (status, reason, epoch) to its tenant's and its own dashboard groups."""
    push(tenant_id=bot.tenant_id, bot_id=bot.pk, kind="status",
         data={"status": bot.status, "reason": bot.status_reason, "epoch": bot.epoch})
