"""P&L, fees, volume, fills, spread capture, inventory value and quote uptime per bot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from bots.engine import keys
from bots.engine.rows import insert_rows
from bots.events import push
from bots.models import (
    Bot,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
    OrderSide,
    PerformanceSnapshot,
)
from mmplatform.redis_client import WriteBatch, get_redis, text


@dataclass(frozen=True)
class PerformanceFigures:
    """A bot's performance at one moment, taken from its engine in memory (``performance_figures``: no I/O,
    so the driver thread takes it at a check); ``write_performance`` stores and pushes it."""

    bot_id: int
    tenant_id: int
    taken_at: datetime
    metrics_interval_secs: float
    totals: dict[str, Any]  # PerformanceTracker.totals: the P&L, the volume and the fill count
    equity_quote: Decimal
    inventory_rows: tuple[InventorySnapshot, ...]  # one unsaved row per pair, all venues
    inventory: dict[str, dict[str, Any]]  # the push's: InventoryManager.get_final_inventory


def write_performance(figures: PerformanceFigures, *, only_if_due: bool) -> bool:
    """Store and push one performance snapshot (``write_performances`` of one)."""
    return write_performances([figures], only_if_due=only_if_due) == 1


def write_performances(batch: Sequence[PerformanceFigures], *, only_if_due: bool) -> int:
    """Store the performance snapshots of several bots (each: the quote uptime from Redis, the spread capture
    from the fills, a ``PerformanceSnapshot`` and the ``InventorySnapshot`` rows) and push each. Every
    bot's figures were taken from its engine in memory; the batch costs one Redis round trip (claims and
    uptime counters, ``claim_performances``), one statement for the spread captures and one transaction of
    one INSERT per table (``store_performances``), whatever its size (the driver hands the snapshots its
    checks took over in batches: ``Driver._hand_snapshots``). Returns how many were written."""
    return store_performances(claim_performances(batch, only_if_due=only_if_due))


def claim_performances(batch: Sequence[PerformanceFigures], *, only_if_due: bool
                       ) -> list[tuple[PerformanceFigures, float]]:
    """The snapshots of ``batch`` to write, each with its bot's quote uptime, in one Redis round trip.
    ``only_if_due``: only the bots none snapshotted within their metrics interval, by any engine or path
    (SET NX on ``keys.performance_due``, claimed here)."""
    if not batch:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for figures in batch:
        if only_if_due:
            pipe.set(keys.performance_due(figures.bot_id), "1", nx=True,
                     px=int(figures.metrics_interval_secs * 1000))
        pipe.hgetall(keys.uptime(figures.bot_id))
    answers = pipe.execute()
    step = 2 if only_if_due else 1
    return [(f, uptime_ratio(answers[i * step + step - 1])) for i, f in enumerate(batch)
            if not only_if_due or answers[i * step]]


def store_performances(claimed: Sequence[tuple[PerformanceFigures, float]]) -> int:
    """Store and push the snapshots ``claim_performances`` handed out (figures, uptime): one statement for the
    spread captures, one transaction of one INSERT per table. Returns how many were written."""
    if not claimed:
        return 0
    captures = spread_captures_bps_of([f.bot_id for f, _ in claimed])
    summaries: list[tuple[PerformanceFigures, dict[str, Any]]] = []
    snapshots: list[PerformanceSnapshot] = []
    inventory_rows: list[InventorySnapshot] = []
    for figures, uptime in claimed:
        capture = captures[figures.bot_id]
        summary = {**figures.totals, "quote_uptime_ratio": uptime, "spread_capture_bps": capture}  # (``summary``'s)
        summaries.append((figures, summary))
        snapshots.append(PerformanceSnapshot(
            tenant_id=figures.tenant_id, bot_id=figures.bot_id, taken_at=figures.taken_at,
            realised_pnl_quote=summary["realised_pnl_quote"], unrealised_pnl_quote=summary["unrealised_pnl_quote"],
            fees_paid_quote=summary["fees_paid_quote"], volume_quote=summary["volume_quote"],
            fill_count=summary["fill_count"], inventory_value_quote=figures.equity_quote,
            equity_quote=figures.equity_quote, spread_capture_bps=capture, quote_uptime_ratio=uptime,
        ))
        inventory_rows.extend(figures.inventory_rows)
    with transaction.atomic():  # both tables or neither (a failed batch is stored again one bot at a time)
        insert_rows(snapshots)
        insert_rows(inventory_rows)
    for figures, summary in summaries:
        push(tenant_id=figures.tenant_id, bot_id=figures.bot_id, kind="snapshot",
             data={**summary, "equity_quote": figures.equity_quote, "taken_at": figures.taken_at,
                   "inventory": figures.inventory})
    return len(summaries)


def claim_performance_due(bot_id: int, interval_secs: float) -> bool:
    """True for the one caller that may snapshot the bot now: none did within ``interval_secs`` (SET NX
    on ``keys.performance_due``, any engine, any path)."""
    return bool(get_redis().set(keys.performance_due(bot_id), "1", nx=True, px=int(interval_secs * 1000)))


def quote_uptime_of(bot_id: int) -> float:
    """The share of the bot's cycles that quoted both sides, over every pair (``keys.uptime``)."""
    return uptime_ratio(get_redis().hgetall(keys.uptime(bot_id)))


def uptime_ratio(counters: dict[Any, Any]) -> float:
    """The quoted share of a bot's ``keys.uptime`` counters (``<pair>:cycles`` / ``<pair>:quoted``)."""
    raw = {text(k): int(v) for k, v in counters.items()}
    cycles = sum(v for k, v in raw.items() if k.endswith(":cycles"))
    quoted = sum(v for k, v in raw.items() if k.endswith(":quoted"))
    return quoted / cycles if cycles else 0.0


SPREAD_CAPTURE_FILLS = 500
"""The spread capture is the mean over this many of a bot's latest fills with a mid at detection."""


def spread_capture_bps_of(bot_id: int) -> float:
    """Mean distance of the last ``SPREAD_CAPTURE_FILLS`` maker fills from the mid at detection, in bps
    (positive = earned)."""
    return spread_captures_bps_of([bot_id])[bot_id]


def spread_captures_bps_of(bot_ids: Sequence[int]) -> dict[int, float]:
    """``spread_capture_bps_of`` of several bots in one statement, averaged by the database: per bot, a
    subquery reads its latest fills through the (bot, executed_at) index, as one bot's read did."""
    ids = sorted({int(b) for b in bot_ids})  # (integers, written into the statement)
    if not ids:
        return {}
    table = connection.ops.quote_name(Fill._meta.db_table)
    edge = (f"CASE WHEN mid_at_fill > 0 THEN (CASE WHEN side = '{OrderSide.BUY.value}' THEN mid_at_fill - price "
            "ELSE price - mid_at_fill END) * 10000.0 / mid_at_fill END")
    sql = " UNION ALL ".join(
        f"SELECT {b}, AVG({edge}) FROM (SELECT side, price, mid_at_fill FROM {table} WHERE bot_id = {b} "
        f"AND mid_at_fill IS NOT NULL ORDER BY executed_at DESC LIMIT {SPREAD_CAPTURE_FILLS}) AS f{b}"
        for b in ids)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        found = {int(b): float(avg) for b, avg in cursor.fetchall() if avg is not None}
    return {b: found.get(b, 0.0) for b in ids}


def count_quoting(pipe: Any, bot_id: int, pair: str, quoted_both_sides: bool) -> None:
    """The one writer of ``keys.uptime``: a cycle of ``pair`` (quoted on both sides or not), on ``pipe``
    (the engine's cycles through ``record_quoting``, the driver's quiet cycles in one pipeline)."""
    key = keys.uptime(bot_id)
    pipe.hincrby(key, f"{pair}:cycles", 1)
    if quoted_both_sides:
        pipe.hincrby(key, f"{pair}:quoted", 1)


class PerformanceTracker:
    """P&L, fees, volume, fills, spread capture, inventory value and quote uptime per bot."""

    def __init__(self, bot: Bot):
        self.bot = bot
        self.batch: WriteBatch | None = None  # a kept cycle's (begin_kept_cycle): sent with the cycle's record

    def uptime_key(self) -> str:
        return keys.uptime(self.bot.pk)

    def begin_batch(self) -> None:
        """A cycle on the kept engine starts: its uptime counts wait for its end (``take_batch``)."""
        self.batch = WriteBatch()

    def take_batch(self) -> WriteBatch:
        """The counts since ``begin_batch`` (empty without one); from now on they are written at once."""
        batch, self.batch = self.batch, None
        return batch if batch is not None else WriteBatch()

    def record_quoting(self, pair: str, quoted_both_sides: bool) -> None:
        if self.batch is not None:  # a cycle on the kept engine: one round trip at its end
            count_quoting(self.batch, self.bot.pk, pair, quoted_both_sides)
            return
        pipe = get_redis().pipeline()
        count_quoting(pipe, self.bot.pk, pair, quoted_both_sides)
        pipe.execute()

    def quote_uptime(self) -> float:
        return quote_uptime_of(self.bot.pk)

    @staticmethod
    def pnl(positions: list[LiquidityPosition], mids: dict[Any, float]) -> dict[str, Decimal]:
        """Realised, unrealised (marked to the mid), fees and net P&L across pairs and venues: exact
        decimals. ``mids`` by slot (account, pair), else by pair (every venue at one mid)."""
        realised = sum((p.realised_pnl_quote for p in positions), Decimal(0))
        fees = sum((p.fees_paid_quote for p in positions), Decimal(0))
        unrealised = Decimal(0)
        for p in positions:
            mid = mids.get((p.exchange_account_id, p.trading_pair), mids.get(p.trading_pair))
            if mid is not None and mid == mid:
                unrealised += p.unrealised_pnl_quote(Decimal(repr(mid)))
        return {
            "realised_pnl_quote": realised,
            "unrealised_pnl_quote": unrealised,
            "fees_paid_quote": fees,
            "net_pnl_quote": realised + unrealised - fees,
        }

    def summary(self, positions: list[LiquidityPosition], mids: dict[Any, float]) -> dict[str, Any]:
        """Spec generate_summary: P&L, volume, fills, quote uptime and spread capture."""
        return {
            **self.totals(positions, mids),
            "quote_uptime_ratio": self.quote_uptime(),
            "spread_capture_bps": self.spread_capture_bps(),
        }

    @staticmethod
    def totals(positions: list[LiquidityPosition], mids: dict[Any, float]) -> dict[str, Any]:
        """The part of ``summary`` held in memory (no I/O): P&L (``pnl``), volume and fill count."""
        return {
            **PerformanceTracker.pnl(positions, mids),
            "volume_quote": sum((p.volume_quote for p in positions), Decimal(0)),
            "fill_count": sum(p.fill_count for p in positions),
        }

    def spread_capture_bps(self) -> float:
        """Mean distance of maker fills from the mid at detection, in bps (positive = earned)."""
        return spread_capture_bps_of(self.bot.pk)
