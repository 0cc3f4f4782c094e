"""Bounded storage: what a quoting bot writes that nobody needs for long is pruned, in batches.

Run by beat's ``storage-retention`` entry (``bots.tasks.prune_storage``, hourly, one pass at a time, a
pass that hit its batch limit enqueues the next; mmplatform/schedules.py)
or ``python manage.py shell -c "from bots.retention import prune; print(prune())"``. Each kind is
deleted ``RETENTION_BATCH_SIZE`` rows per statement (``DELETE ... WHERE id IN (SELECT id ... LIMIT n)``,
its own short transaction: no long lock, every batch re-checks its conditions), at most
``RETENTION_MAX_BATCHES`` batches per kind per run (the rest waits for the next run).

Pruned (each after its own number of days, 0 = never; settings ``RETENTION_*``):

- orders that ended with nothing filled (cancelled, rejected, expired, lost) and have no fill row;
- routine event summaries (``bots.events.ROUTINE_EVENTS``, e.g. ``OrdersAdjusted``);
- performance and inventory snapshots: kept as taken for ``RETENTION_SNAPSHOTS_FULL_DAYS``, then one
  per bot (and pair) per hour (the hour's first), deleted after ``RETENTION_SNAPSHOTS_DAYS``.

Never pruned: fills, orders with a fill or still open, positions (the P&L and its cost basis live there
and in the fills), non-routine events (fills, risk, status, errors, kill switch), risk events, scheduled
rebalancing runs.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import Exists, F, OuterRef, Q, Window
from django.db.models.functions import RowNumber, TruncHour
from django.utils import timezone

from bots.engine import keys
from bots.models import BotEvent, Fill, InventorySnapshot, Order, OrderStatus, PerformanceSnapshot

logger = logging.getLogger(__name__)

UNFILLED_ENDS = (OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.LOST)
"""Order statuses that end an order; with nothing filled such an order is only history."""

PASS_SECS = 60.0
"""A pass starts no batch after this long (the rest is for the next pass; Celery's task time limit is
120 s)."""

DOWNSAMPLE_LOOKBACK_DAYS = 3
"""Snapshots are downsampled in a window this long before the full-resolution cutoff (an hourly task
passes over each hour many times; a full scan of all old snapshots would grow without bound)."""


@dataclass(frozen=True)
class Policy:
    orders_days: int
    routine_events_days: int
    snapshots_full_days: int
    snapshots_days: int
    batch_size: int
    max_batches: int

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            orders_days=settings.RETENTION_ORDERS_DAYS,
            routine_events_days=settings.RETENTION_ROUTINE_EVENTS_DAYS,
            snapshots_full_days=settings.RETENTION_SNAPSHOTS_FULL_DAYS,
            snapshots_days=settings.RETENTION_SNAPSHOTS_DAYS,
            batch_size=settings.RETENTION_BATCH_SIZE,
            max_batches=settings.RETENTION_MAX_BATCHES,
        )


def unfilled_orders(cutoff: datetime) -> models.QuerySet[Order]:
    """Orders ended with nothing filled before ``cutoff`` (no fill row points at them)."""
    ended_before = Q(closed_at__lt=cutoff) | Q(closed_at__isnull=True, updated_at__lt=cutoff)
    return (Order.objects.filter(ended_before, status__in=UNFILLED_ENDS, filled=0)
            .exclude(Exists(Fill.objects.filter(order_id=OuterRef("pk")))))


def routine_events(cutoff: datetime) -> models.QuerySet[BotEvent]:
    from bots.events import ROUTINE_EVENTS

    return BotEvent.objects.filter(event_type__in=list(ROUTINE_EVENTS), created_at__lt=cutoff)


def surplus_snapshots(model: type[models.Model], since: datetime, cutoff: datetime) -> models.QuerySet[Any]:
    """Snapshots taken in [since, cutoff) that are not the first of their bot's (and pair's) hour."""
    partition: list[Any] = [F("bot_id"), TruncHour("taken_at")]
    if model is InventorySnapshot:
        partition.insert(1, F("trading_pair"))
    return (model.objects.filter(taken_at__gte=since, taken_at__lt=cutoff)
            .annotate(nth=Window(RowNumber(), partition_by=partition, order_by=[F("taken_at").asc(), F("id").asc()]))
            .filter(nth__gt=1))


def delete_in_batches(queryset: models.QuerySet[Any], policy: Policy,
                      deadline: float = float("inf")) -> tuple[int, bool]:
    """Delete the rows of ``queryset`` ``batch_size`` per statement, at most ``max_batches`` statements
    and none begun after ``deadline`` (``time.monotonic``); returns (deleted, more may be left)."""
    model = queryset.model
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    select, params = queryset.order_by().values("pk")[: policy.batch_size].query.sql_with_params()
    # the subquery's own alias keeps a windowed select (snapshots) a plain list of ids
    sql = f"DELETE FROM {table} WHERE {pk} IN (SELECT pk FROM ({select}) AS batch)"
    deleted = 0
    for _ in range(policy.max_batches):
        if time.monotonic() > deadline:
            return deleted, True
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            count = cursor.rowcount
        deleted += count
        if count < policy.batch_size:
            return deleted, False
    return deleted, True


def prune(now: datetime | None = None, policy: Policy | None = None) -> dict[str, int]:
    """One pass of the retention policy; returns the rows deleted per kind (``more``: 1 when some
    kind hit ``RETENTION_MAX_BATCHES`` and has rows left for the next run)."""
    now = now or timezone.now()
    policy = policy or Policy.from_settings()
    counts: dict[str, int] = {}
    more = False
    deadline = time.monotonic() + PASS_SECS

    def run(name: str, queryset: models.QuerySet[Any]) -> None:
        nonlocal more
        counts[name], left = delete_in_batches(queryset, policy, deadline)
        more = more or left

    if policy.orders_days:
        run("unfilled_orders", unfilled_orders(now - timedelta(days=policy.orders_days)))
    if policy.routine_events_days:
        run("routine_events", routine_events(now - timedelta(days=policy.routine_events_days)))
    for name, model in (("performance_snapshots", PerformanceSnapshot), ("inventory_snapshots", InventorySnapshot)):
        if policy.snapshots_full_days:
            cutoff = now - timedelta(days=policy.snapshots_full_days)
            run(f"{name}_downsampled",
                surplus_snapshots(model, cutoff - timedelta(days=DOWNSAMPLE_LOOKBACK_DAYS), cutoff))
        if policy.snapshots_days:
            run(f"{name}_pruned", model.objects.filter(taken_at__lt=now - timedelta(days=policy.snapshots_days)))
    counts["more"] = int(more)
    logger.info("storage retention: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


LOCK_KEY = keys.RETENTION_LOCK
LOCK_SECS = 3600


def prune_once() -> dict[str, int]:
    """``prune`` unless another process runs it (a Redis lock, ``skipped``: 1 then): two passes
    would only wait on each other's row locks."""
    from mmplatform.redis_client import get_redis

    token = uuid.uuid4().hex
    client = get_redis()
    if not client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECS):
        logger.info("storage retention: a pass is already running")
        return {"skipped": 1}
    try:
        return prune()
    finally:
        if client.get(LOCK_KEY) in (token, token.encode()):
            client.delete(LOCK_KEY)
