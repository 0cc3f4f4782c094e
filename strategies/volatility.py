"""VOLATILITY_ADAPTIVE: spreads (and level spacing) widen with measured volatility; pause above
the risk manager's ``volatility_pause_threshold``."""

from __future__ import annotations

import math

from strategies.base import BPS, MarketMakingStrategy, Plan
from strategies.types import InventoryState, MarketSnapshot, RiskContext


class VolatilityAdaptiveStrategy(MarketMakingStrategy):
    """Total spread = ``spread_bps + volatility_spread_multiplier * sigma * sqrt(horizon)``.

    sigma is the strategy's current volatility parameter (bps per sqrt(second)), refreshed from
    the market analysis by ``adapt_to_conditions``; the level spacing scales by the same factor
    as the spread. When the daily volatility exceeds ``risk.volatility_pause_threshold`` no
    intents are returned and ``pause_reason`` says so.
    """

    strategy_type = "VOLATILITY_ADAPTIVE"
    adapts_to = ("volatility",)

    def _prepare(self) -> None:
        super()._prepare()
        p = self._parameters
        c = self.config
        extra_bps = c.volatility_spread_multiplier * p.volatility_bps_per_sqrt_sec * math.sqrt(
            c.volatility_horizon_secs
        )
        total_bps = p.spread_bps + extra_bps
        self.effective_spread_bps = total_bps
        self._half = total_bps / BPS * 0.5
        if p.spread_bps > 0:
            self._spacing = self._spacing * total_bps / p.spread_bps

    def _plan(self, snapshot: MarketSnapshot, inventory: InventoryState, risk: RiskContext) -> Plan | None:
        volatility = self._parameters.volatility_daily
        if not volatility <= risk.volatility_pause_threshold:
            self.pause_reason = (
                f"{snapshot.symbol}: daily volatility {volatility:.1%} is above the pause threshold "
                f"{risk.volatility_pause_threshold:.1%}"
            )
            return None
        levels = self._levels
        return (snapshot.best_bid + snapshot.best_ask) * 0.5, self._half, self._half, levels, levels
