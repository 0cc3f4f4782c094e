"""P&L, fees, volume, fills, spread capture, inventory value and quote uptime per bot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bots.engine import keys
from bots.events import push
from bots.models import (
    Bot,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
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
    """Store one performance snapshot (the quote uptime from Redis, the spread capture from the fills, a
    ``PerformanceSnapshot`` and the ``InventorySnapshot`` rows) and push it. ``only_if_due``: only if no
    snapshot of the bot was taken within its metrics interval, by any engine or path (SET NX on
    ``keys.performance_due``). Returns whether it was written."""
    if only_if_due and not claim_performance_due(figures.bot_id, figures.metrics_interval_secs):
        return False
    uptime = quote_uptime_of(figures.bot_id)
    capture = spread_capture_bps_of(figures.bot_id)
    summary = {**figures.totals, "quote_uptime_ratio": uptime, "spread_capture_bps": capture}  # (``summary``'s)
    PerformanceSnapshot.objects.create(
        tenant_id=figures.tenant_id, bot_id=figures.bot_id, taken_at=figures.taken_at,
        realised_pnl_quote=summary["realised_pnl_quote"], unrealised_pnl_quote=summary["unrealised_pnl_quote"],
        fees_paid_quote=summary["fees_paid_quote"], volume_quote=summary["volume_quote"],
        fill_count=summary["fill_count"], inventory_value_quote=figures.equity_quote, equity_quote=figures.equity_quote,
        spread_capture_bps=capture, quote_uptime_ratio=uptime,
    )
    rows = list(figures.inventory_rows)
    if len(rows) == 1:  # one plain INSERT (bulk_create wraps even one row in a transaction)
        rows[0].save(force_insert=True)
    elif rows:
        InventorySnapshot.objects.bulk_create(rows)
    push(tenant_id=figures.tenant_id, bot_id=figures.bot_id, kind="snapshot",
         data={**summary, "equity_quote": figures.equity_quote, "taken_at": figures.taken_at,
               "inventory": figures.inventory})
    return True


def claim_performance_due(bot_id: int, interval_secs: float) -> bool:
    """True for the one caller that may snapshot the bot now: none did within ``interval_secs`` (SET NX
    on ``keys.performance_due``, any engine, any path)."""
    return bool(get_redis().set(keys.performance_due(bot_id), "1", nx=True, px=int(interval_secs * 1000)))


def quote_uptime_of(bot_id: int) -> float:
    """The share of the bot's cycles that quoted both sides, over every pair (``keys.uptime``)."""
    raw = {text(k): int(v) for k, v in get_redis().hgetall(keys.uptime(bot_id)).items()}
    cycles = sum(v for k, v in raw.items() if k.endswith(":cycles"))
    quoted = sum(v for k, v in raw.items() if k.endswith(":quoted"))
    return quoted / cycles if cycles else 0.0


def spread_capture_bps_of(bot_id: int) -> float:
    """Mean distance of the last 500 maker fills from the mid at detection, in bps (positive = earned)."""
    fills = Fill.objects.filter(bot_id=bot_id, mid_at_fill__isnull=False).order_by("-executed_at").values_list(
        "side", "price", "mid_at_fill")[:500]
    captures = []
    for side, price, mid_at_fill in fills:
        mid = float(mid_at_fill)
        if mid > 0:
            edge = (mid - float(price)) if side == "buy" else (float(price) - mid)
            captures.append(edge / mid * 1e4)
    return sum(captures) / len(captures) if captures else 0.0


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
