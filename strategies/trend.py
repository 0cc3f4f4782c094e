"""TREND_FOLLOWING: quotes shifted along the trend; the against-trend side widened, or pulled."""

from __future__ import annotations

from strategies.base import BPS, MarketMakingStrategy, Plan
from strategies.types import InventoryState, MarketSnapshot, RiskContext


class TrendFollowingStrategy(MarketMakingStrategy):
    """With trend strength s (0..1) and direction d (+1 up, -1 down):

    * the centre moves by ``d * s * trend_skew_bps`` (buy higher in an uptrend, sell lower in a
      downtrend), on top of the inventory skew;
    * the side against the trend (asks in an uptrend, bids in a downtrend) is ``s *
      trend_against_widen_bps`` further out;
    * above ``trend_pull_threshold`` the against-trend side is not quoted (``pause_reason`` says so).
    """

    strategy_type = "TREND_FOLLOWING"
    adapts_to = ("trend",)

    def _prepare(self) -> None:
        super()._prepare()
        p = self._parameters
        c = self.config
        half = p.spread_bps / BPS * 0.5
        strength = p.trend_strength
        direction = p.trend_direction
        self._shift = direction * strength * c.trend_skew_bps / BPS
        widen = strength * c.trend_against_widen_bps / BPS if direction else 0.0
        pulled = direction != 0 and strength > c.trend_pull_threshold
        levels = self._levels
        self._bid_dist = half + (widen if direction < 0 else 0.0)
        self._ask_dist = half + (widen if direction > 0 else 0.0)
        self._bid_levels = 0 if pulled and direction < 0 else levels
        self._ask_levels = 0 if pulled and direction > 0 else levels
        self._pull_reason = (
            f"{'bids' if direction < 0 else 'asks'} pulled: trend strength {strength:.2f} is above "
            f"{c.trend_pull_threshold:.2f} ({'down' if direction < 0 else 'up'}trend)"
            if pulled
            else None
        )

    def _plan(self, snapshot: MarketSnapshot, inventory: InventoryState, risk: RiskContext) -> Plan | None:
        if self._pull_reason is not None:
            self.pause_reason = f"{snapshot.symbol}: {self._pull_reason}"
        centre = (snapshot.best_bid + snapshot.best_ask) * 0.5 * (1.0 + self._shift)
        return centre, self._bid_dist, self._ask_dist, self._bid_levels, self._ask_levels
