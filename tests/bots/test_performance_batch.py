"""Performance snapshots stored in batches (``bots.engine.performance.write_performances``): the driver hands
the snapshots its checks took to one pool thread together; a batch costs the same few round trips whatever its
size, and gives each bot what a snapshot of its own gave (Postgres and SQLite: CI runs both)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots.engine import keys
from bots.engine.performance import (
    SPREAD_CAPTURE_FILLS,
    PerformanceFigures,
    spread_capture_bps_of,
    spread_captures_bps_of,
    write_performances,
)
from bots.models import Bot, Fill, InventorySnapshot, LiquidityPosition, PerformanceSnapshot
from mmplatform.redis_client import get_redis
from tests.conftest import TenantWorld, make_bot

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
_trades = itertools.count(1)


def add_fills(world: TenantWorld, bot: Bot, fills: list[tuple[str, str, str | None]]) -> None:
    """(side, price, mid at fill or None) each, one second apart, the last the latest."""
    position, _ = LiquidityPosition.objects.get_or_create(
        tenant=world.tenant, bot=bot, exchange_account=world.account, trading_pair="BTC/USDT")
    Fill.objects.bulk_create([
        Fill(tenant=world.tenant, bot=bot, position=position, exchange_account=world.account,
             exchange_trade_id=f"perf-{next(_trades)}", trading_pair="BTC/USDT", side=side, price=Decimal(price),
             amount=Decimal("0.01"), fee=Decimal("0"), fee_currency="USDT", fee_quote=Decimal("0"), is_maker=True,
             mid_at_fill=None if mid is None else Decimal(mid), executed_at=AT + timedelta(seconds=i))
        for i, (side, price, mid) in enumerate(fills)])


def recomputed_capture(bot: Bot) -> float:
    """The spread capture as the single-bot Python loop computed it before the batch: the latest fills with a
    mid, each (mid - price) for a buy or (price - mid) for a sell over the mid, in bps, averaged."""
    edges = []
    for fill in Fill.objects.filter(bot=bot, mid_at_fill__isnull=False).order_by("-executed_at")[:SPREAD_CAPTURE_FILLS]:
        mid = float(fill.mid_at_fill)
        if mid > 0:
            edge = (mid - float(fill.price)) if fill.side == "buy" else (float(fill.price) - mid)
            edges.append(edge / mid * 1e4)
    return sum(edges) / len(edges) if edges else 0.0


def figures(bot: Bot, equity: str = "1000") -> PerformanceFigures:
    row = InventorySnapshot(tenant_id=bot.tenant_id, bot_id=bot.pk, trading_pair="BTC/USDT", taken_at=AT,
                            base_balance=Decimal("0.5"), quote_balance=Decimal("500"), mid_price=Decimal("1000"),
                            base_value_quote=Decimal("500"), ratio=0.5, target_ratio=0.5)
    totals = {"realised_pnl_quote": Decimal("1.5"), "unrealised_pnl_quote": Decimal("-0.25"),
              "fees_paid_quote": Decimal("0.1"), "net_pnl_quote": Decimal("1.15"), "volume_quote": Decimal("300"),
              "fill_count": 3}
    return PerformanceFigures(bot_id=bot.pk, tenant_id=bot.tenant_id, taken_at=AT, metrics_interval_secs=60.0,
                              totals=totals, equity_quote=Decimal(equity), inventory_rows=(row,), inventory={})


def test_spread_captures_of_several_bots_equal_each_bots_recomputation(world_a: TenantWorld) -> None:
    """One statement for the batch; each bot's figure is the recomputation from its own fills: buys and sells,
    fills without a mid and with a zero mid left out, only the latest SPREAD_CAPTURE_FILLS counted, another
    bot's fills not mixed in, a bot without fills 0."""
    quiet = make_bot(world_a.tenant, world_a.account, name="no-fills")
    busy = make_bot(world_a.tenant, world_a.account, name="many-fills")
    add_fills(world_a, world_a.bot, [("buy", "99.9", "100"), ("sell", "100.2", "100.05"), ("buy", "100", None),
                                     ("sell", "101", "0"), ("buy", "100.5", "100.4")])
    # the oldest 10 fills earn 1,000 bps each and fall out of the window; the latest 500 earn 1 bps
    add_fills(world_a, busy, [("sell", "110", "100")] * 10 + [("sell", "100.01", "100")] * SPREAD_CAPTURE_FILLS)

    with CaptureQueriesContext(connection) as queries:
        captures = spread_captures_bps_of([world_a.bot.pk, quiet.pk, busy.pk])
    assert len(queries) == 1
    assert captures[quiet.pk] == 0.0
    assert captures[world_a.bot.pk] == pytest.approx(recomputed_capture(world_a.bot), rel=1e-9)
    assert captures[world_a.bot.pk] == pytest.approx((10 + 0.15 / 100.05 * 1e4 - 0.1 / 100.4 * 1e4) / 3, rel=1e-9)
    assert captures[busy.pk] == pytest.approx(1.0, rel=1e-9) == pytest.approx(recomputed_capture(busy), rel=1e-9)
    assert spread_capture_bps_of(busy.pk) == captures[busy.pk]


def test_a_batch_stores_every_due_bot_in_a_few_statements_and_skips_one_snapshotted_meanwhile(
        world_a: TenantWorld) -> None:
    """Five bots: four snapshots stored and pushed in three statements (the captures, the two INSERTs in one
    transaction; the claims and uptime counters are one Redis round trip), the fifth skipped because another
    path snapshotted it within its interval; each row carries its own bot's figures and uptime."""
    bots = [world_a.bot] + [make_bot(world_a.tenant, world_a.account, name=f"batch-{i}") for i in range(4)]
    add_fills(world_a, bots[1], [("buy", "99", "100")])
    redis = get_redis()
    redis.hset(keys.uptime(bots[2].pk), mapping={"BTC/USDT:cycles": 4, "BTC/USDT:quoted": 3})
    redis.set(keys.performance_due(bots[4].pk), "1", px=60_000)  # snapshotted elsewhere this interval

    with CaptureQueriesContext(connection) as queries:
        written = write_performances([figures(b, equity=str(1000 + i)) for i, b in enumerate(bots)], only_if_due=True)
    assert written == 4
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    assert len(statements) == 3, [sql[:80] for sql in statements]
    stored = {s.bot_id: s for s in PerformanceSnapshot.objects.all()}
    assert sorted(stored) == sorted(b.pk for b in bots[:4])
    assert [stored[b.pk].equity_quote for b in bots[:4]] == [Decimal(1000 + i) for i in range(4)]
    assert stored[bots[1].pk].spread_capture_bps == pytest.approx(100.0)
    assert stored[bots[2].pk].quote_uptime_ratio == pytest.approx(0.75)
    assert stored[bots[0].pk].quote_uptime_ratio == 0.0
    assert all(s.tenant_id == world_a.tenant.pk and s.realised_pnl_quote == Decimal("1.5") for s in stored.values())
    assert sorted(InventorySnapshot.objects.values_list("bot_id", flat=True)) == sorted(b.pk for b in bots[:4])
    assert all(redis.exists(keys.performance_due(b.pk)) for b in bots)

    # due again only after the interval: the same batch now writes nothing
    assert write_performances([figures(b) for b in bots], only_if_due=True) == 0
    assert PerformanceSnapshot.objects.count() == 4


@pytest.mark.django_db(transaction=True)  # autocommit, as the engine runs: the foreign key is checked at once
def test_the_driver_stores_a_batch_that_failed_one_bot_at_a_time(world_a: TenantWorld) -> None:
    """A bot deleted between its check and the store fails the batch's INSERT; the pool thread then stores the
    others it claimed one at a time, so only the deleted bot's snapshot is lost, and a bot another path
    snapshotted within its interval is not written by the retry either."""
    from bots.engine.driver import Driver

    kept = make_bot(world_a.tenant, world_a.account, name="kept")
    gone = make_bot(world_a.tenant, world_a.account, name="gone")
    elsewhere = make_bot(world_a.tenant, world_a.account, name="snapshotted-elsewhere")
    get_redis().set(keys.performance_due(elsewhere.pk), "1", px=60_000)  # another path took its snapshot
    batch = [figures(world_a.bot), figures(gone), figures(kept), figures(elsewhere)]
    Bot.objects.filter(pk=gone.pk).delete()
    driver = Driver("perf-batch-test")  # not started: its pool thread's method is called here
    try:
        driver._store_snapshots(batch)
    finally:
        driver.pool.shutdown()
    assert sorted(PerformanceSnapshot.objects.values_list("bot_id", flat=True)) == sorted([world_a.bot.pk, kept.pk])
