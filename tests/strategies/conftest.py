"""Shared hypothesis strategies for the strategies suite (pure: no Django, no database)."""

from __future__ import annotations

from hypothesis import strategies as st

from strategies.types import InventoryState, MarketSnapshot


@st.composite
def snapshots(draw: st.DrawFn) -> MarketSnapshot:
    """A sane book: positive bid < ask on the tick grid, with a few L2 levels."""
    tick = draw(st.sampled_from([0.01, 0.5, 1.0, 0.0001]))
    mid_ticks = draw(st.integers(min_value=200, max_value=10_000_000))
    spread_ticks = draw(st.integers(min_value=1, max_value=min(400, mid_ticks // 4)))  # keeps the bid > 0
    bid = round((mid_ticks - spread_ticks // 2 - 1) * tick, 10)
    ask = round((mid_ticks + (spread_ticks + 1) // 2) * tick, 10)
    lot = draw(st.sampled_from([1e-8, 1e-5, 0.001, 1.0]))
    return MarketSnapshot(
        symbol="BTC/USDT",
        best_bid=bid,
        best_ask=ask,
        now=draw(st.floats(min_value=0, max_value=2e9)),
        bids=((bid, 1.0),),
        asks=((ask, 1.0),),
        tick_size=tick,
        lot_size=lot,
        min_notional=0.0,
    )


def inventory_for(snapshot: MarketSnapshot, ratio: float, total_quote: float = 1e7, target: float = 0.5):
    """An inventory with ``ratio`` of ``total_quote`` held in base at the snapshot's mid."""
    mid = snapshot.mid
    base_value = total_quote * ratio
    return InventoryState(base_value / mid, total_quote - base_value, base_value, ratio, target)
