"""GRID_TRADING: ``grid_levels`` orders per side around the mid, a fixed spread and spacing."""

from __future__ import annotations

from strategies.base import BPS, MarketMakingStrategy, Plan
from strategies.types import InventoryState, MarketSnapshot, RiskContext


class GridStrategy(MarketMakingStrategy):
    """Symmetric ladder: level i sits ``spread_bps/2 + i*level_spacing_bps`` from the (skewed) mid.

    Its parameters do not depend on the measured market (it follows the mid every cycle), so
    ``should_adapt`` is always false; inventory skew and every common rule come from the base.
    """

    strategy_type = "GRID_TRADING"
    adapts_to = ()

    def _prepare(self) -> None:
        super()._prepare()
        self._half = self._parameters.spread_bps / BPS * 0.5

    def _plan(self, snapshot: MarketSnapshot, inventory: InventoryState, risk: RiskContext) -> Plan | None:
        levels = self._levels
        return (snapshot.best_bid + snapshot.best_ask) * 0.5, self._half, self._half, levels, levels
