"""The retention policy (bots/retention.py): old unfilled orders, routine event summaries and surplus
snapshots are pruned in bounded batches; fills, orders with fills, open orders, positions, non-routine
events and risk events are kept, so the P&L shown is the same after a pass. Beat's entry is installed
by ``migrate`` (mmplatform/migrations/0002)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bots import retention
from bots.events import record_routine
from bots.models import (
    BotEvent,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    OrderStatus,
    PerformanceSnapshot,
)
from bots.selectors import bot_summaries
from bots.tasks import prune_storage
from risk.models import RiskEvent
from tests.conftest import TenantWorld

NOW = timezone.now()
_ids = count()


def policy(**overrides: Any) -> retention.Policy:
    values = {"orders_days": 7, "routine_events_days": 30, "snapshots_full_days": 7, "snapshots_days": 365,
              "batch_size": 3, "max_batches": 100}
    return retention.Policy(**{**values, **overrides})


def order(world: TenantWorld, position: LiquidityPosition, status: str, *, days_ago: float, filled: str = "0",
          closed: bool = True) -> Order:
    at = NOW - timedelta(days=days_ago)
    row = Order.objects.create(
        tenant=world.tenant, bot=world.bot, position=position, exchange_account=world.account,
        trading_pair="BTC/USDT", client_order_id=f"mm-t-{next(_ids)}", side="buy", price=Decimal("100"),
        amount=Decimal("1"), filled=Decimal(filled), status=status)
    Order.objects.filter(pk=row.pk).update(created_at=at, updated_at=at, closed_at=at if closed else None)
    return row


def fill(world: TenantWorld, position: LiquidityPosition, of: Order | None, *, days_ago: float) -> Fill:
    return Fill.objects.create(
        tenant=world.tenant, bot=world.bot, order=of, position=position, exchange_account=world.account,
        exchange_trade_id=f"T-{next(_ids)}", trading_pair="BTC/USDT", side="buy", price=Decimal("100.5"),
        amount=Decimal("0.3"), fee=Decimal("0.03"), fee_quote=Decimal("0.03"),
        executed_at=NOW - timedelta(days=days_ago))


def event(world: TenantWorld, event_type: str, *, days_ago: float) -> BotEvent:
    row = BotEvent.objects.create(tenant=world.tenant, bot=world.bot, event_type=event_type, payload={"x": 1})
    BotEvent.objects.filter(pk=row.pk).update(created_at=NOW - timedelta(days=days_ago))
    return row


def routine(world: TenantWorld, *, days_ago: float) -> BotEvent:
    return record_routine(bot=world.bot, event_type="OrdersAdjusted", at=NOW - timedelta(days=days_ago),
                          payload={"trading_pair": "BTC/USDT", "new_order_count": 2, "cancelled": 2, "kept": 0})


def pnl_view(world: TenantWorld) -> Any:
    summary = bot_summaries(tenant=world.tenant, bot_id=world.bot.pk)[0]
    return (summary.realised_pnl_quote, summary.fees_paid_quote, summary.pnl_total_quote,
            sorted(Fill.objects.filter(bot=world.bot).values_list("exchange_trade_id", "order_id", "amount", "price")),
            list(LiquidityPosition.objects.filter(bot=world.bot).values()))


@pytest.fixture
def position(world_a: TenantWorld) -> LiquidityPosition:
    return LiquidityPosition.objects.create(
        tenant=world_a.tenant, bot=world_a.bot, exchange_account=world_a.account, trading_pair="BTC/USDT",
        base_position=Decimal("0.6"), cost_basis_quote=Decimal("60.3"), realised_pnl_quote=Decimal("1.25"),
        fees_paid_quote=Decimal("0.06"), volume_quote=Decimal("60.3"), fill_count=2)


def test_a_pass_prunes_old_unfilled_orders_and_routine_summaries_and_keeps_what_the_pnl_needs(
        world_a: TenantWorld, position: LiquidityPosition) -> None:
    gone = [order(world_a, position, status, days_ago=10)
            for status in (OrderStatus.CANCELED,) * 5 + (OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.LOST)]
    gone.append(order(world_a, position, OrderStatus.REJECTED, days_ago=10, closed=False))  # never closed: updated_at
    partly = order(world_a, position, OrderStatus.CANCELED, days_ago=10, filled="0.3")
    filled = order(world_a, position, OrderStatus.FILLED, days_ago=10, filled="1")
    odd = order(world_a, position, OrderStatus.CANCELED, days_ago=10)  # filled 0 but a fill points at it
    resting = order(world_a, position, OrderStatus.OPEN, days_ago=10, closed=False)
    recent = order(world_a, position, OrderStatus.CANCELED, days_ago=6)
    fill(world_a, position, partly, days_ago=10)
    fill(world_a, position, filled, days_ago=10)
    fill(world_a, position, odd, days_ago=10)
    old_summary, new_summary = routine(world_a, days_ago=31), routine(world_a, days_ago=29)
    kept_events = [event(world_a, t, days_ago=400) for t in (
        "OrderFilled", "RiskEventHandled", "BotError", "KillSwitchEngaged", "MarketMakingStarted", "StrategyAdapted")]
    risk = RiskEvent.objects.create(tenant=world_a.tenant, bot=world_a.bot, event_type="MAX_DRAWDOWN", message="dd")
    RiskEvent.objects.filter(pk=risk.pk).update(created_at=NOW - timedelta(days=400))
    before = pnl_view(world_a)

    with CaptureQueriesContext(connection) as queries:
        counts = retention.prune(now=NOW, policy=policy())
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert counts["unfilled_orders"] == 9 and counts["routine_events"] == 1 and counts["more"] == 0
    assert sum(1 for sql in deletes if Order._meta.db_table in sql) == 4, "9 rows, 3 per statement: 3 + a last empty"
    assert all("LIMIT 3" in sql for sql in deletes), deletes

    assert not Order.objects.filter(pk__in=[o.pk for o in gone]).exists()
    assert set(Order.objects.values_list("pk", flat=True)) == {partly.pk, filled.pk, odd.pk, resting.pk, recent.pk}
    assert set(BotEvent.objects.values_list("pk", flat=True)) == {new_summary.pk, *(e.pk for e in kept_events)}
    assert old_summary.pk not in set(BotEvent.objects.values_list("pk", flat=True))
    assert RiskEvent.objects.filter(pk=risk.pk).exists()
    assert pnl_view(world_a) == before, "fills, positions and the P&L shown are unchanged"
    assert retention.prune(now=NOW, policy=policy())["unfilled_orders"] == 0


def test_a_pass_stops_after_its_batches_and_the_next_one_goes_on(world_a: TenantWorld,
                                                                  position: LiquidityPosition) -> None:
    for _ in range(8):
        order(world_a, position, OrderStatus.CANCELED, days_ago=8)
    first = retention.prune(now=NOW, policy=policy(batch_size=3, max_batches=2))
    assert first["unfilled_orders"] == 6 and first["more"] == 1
    assert Order.objects.count() == 2
    second = retention.prune(now=NOW, policy=policy(batch_size=3, max_batches=2))
    assert second["unfilled_orders"] == 2 and second["more"] == 0
    assert retention.prune(now=NOW, policy=policy(orders_days=0))["more"] == 0  # 0 days: never pruned


def snapshot_times(start: datetime, minutes: int, every: int) -> list[datetime]:
    return [start + timedelta(minutes=m) for m in range(0, minutes, every)]


def test_snapshots_are_downsampled_to_one_per_hour_then_pruned(world_a: TenantWorld) -> None:
    hour = (NOW - timedelta(days=8)).replace(minute=0, second=0, microsecond=0)
    old = snapshot_times(hour + timedelta(minutes=5), 120, 10)  # 12 snapshots over 2 hours, 8 days ago
    fresh = snapshot_times(NOW - timedelta(hours=2), 120, 10)
    ancient = [NOW - timedelta(days=400)]
    for at in old + fresh + ancient:
        PerformanceSnapshot.objects.create(tenant=world_a.tenant, bot=world_a.bot, taken_at=at)
        for pair in ("BTC/USDT", "ETH/USDT"):
            InventorySnapshot.objects.create(tenant=world_a.tenant, bot=world_a.bot, trading_pair=pair, taken_at=at)
    counts = retention.prune(now=NOW, policy=policy())
    assert counts["performance_snapshots_downsampled"] == 10 and counts["performance_snapshots_pruned"] == 1
    assert counts["inventory_snapshots_downsampled"] == 20 and counts["inventory_snapshots_pruned"] == 2
    first_of_each_hour = [old[0], old[6]]
    assert sorted(PerformanceSnapshot.objects.values_list("taken_at", flat=True)) == first_of_each_hour + fresh
    for pair in ("BTC/USDT", "ETH/USDT"):
        assert sorted(InventorySnapshot.objects.filter(trading_pair=pair).values_list("taken_at", flat=True)) == \
            first_of_each_hour + fresh
    assert retention.prune(now=NOW, policy=policy())["performance_snapshots_downsampled"] == 0


def test_the_beat_task_returns_and_logs_its_counts(world_a: TenantWorld, position: LiquidityPosition,
                                                  caplog: Any) -> None:
    order(world_a, position, OrderStatus.CANCELED, days_ago=30)
    with caplog.at_level(logging.INFO, logger="bots.retention"):
        result = prune_storage.apply().get()
    assert result["unfilled_orders"] == 1
    assert "storage retention: unfilled_orders 1" in caplog.text


def test_a_beat_pass_that_hit_its_limit_enqueues_the_next_and_passes_never_overlap(
        world_a: TenantWorld, position: LiquidityPosition, settings: Any, celery_queue: str) -> None:
    from mmplatform.redis_client import get_redis

    settings.RETENTION_BATCH_SIZE, settings.RETENTION_MAX_BATCHES = 2, 1
    for _ in range(3):
        order(world_a, position, OrderStatus.CANCELED, days_ago=30)
    try:
        assert prune_storage.apply().get()["more"] == 1
        # the next pass is enqueued, on the background queue (mmplatform/queues.py), not the engine's
        assert get_redis().llen(f"{celery_queue}-background") == 1 and get_redis().llen(celery_queue) == 0
        assert Order.objects.count() == 1
        get_redis().set(retention.LOCK_KEY, "another pass", ex=60)
        assert prune_storage.apply().get() == {"skipped": 1}
        assert Order.objects.count() == 1
    finally:
        get_redis().delete(celery_queue, f"{celery_queue}-background", retention.LOCK_KEY)


@pytest.mark.django_db(transaction=True)
def test_migrate_installs_the_retention_schedule_on_a_deployment_that_predates_it() -> None:
    from django_celery_beat.models import PeriodicTask

    call_command("migrate", "mmplatform", "0001", verbosity=0)
    PeriodicTask.objects.filter(name="storage-retention").delete()  # as migrated before it existed
    call_command("migrate", verbosity=0)  # every app (rolling mmplatform back unapplied its dependents)
    entry = PeriodicTask.objects.get(name="storage-retention")
    assert entry.task == "bots.tasks.prune_storage" and entry.enabled
    assert (entry.crontab.minute, entry.crontab.hour) == ("17", "*")
