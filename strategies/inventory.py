"""INVENTORY_BASED: Avellaneda & Stoikov (2008), "High-frequency trading in a limit order book".

Quotes centre on the reservation price and are spread by the optimal total spread:

    r = s - q * gamma * sigma^2 * (T - t)
    spread = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k)

in this package's units (see ``strategies.config``): prices as bps of the mid s, sigma in bps per
sqrt(second), k per bps, gamma per (bps*lot) and q in lots = (base value - target share of the
pair's value) / ``order_size_quote``. So inventory above target moves both quotes down.

``as_horizon_mode``: "finite" counts T - t down to the end of the current ``as_horizon_secs``
session (sessions start at multiples of the horizon since the epoch); "infinite" is a rolling
window where T - t is always ``as_horizon_secs``.

The reservation price is kept within ``max_spread_bps`` of the mid: an inventory far beyond the
model's range (thousands of lots) would otherwise put it at or below zero.
"""

from __future__ import annotations

import math

from strategies.base import BPS, MarketMakingStrategy, Plan
from strategies.types import InventoryState, MarketSnapshot, RiskContext


def reservation_offset_bps(q_lots: float, gamma: float, sigma_bps: float, tau_secs: float) -> float:
    """r - s in bps: -q * gamma * sigma^2 * (T - t)."""
    return -q_lots * gamma * sigma_bps * sigma_bps * tau_secs


def optimal_spread_bps(gamma: float, sigma_bps: float, tau_secs: float, k_per_bps: float) -> float:
    """Total bid-ask spread in bps: gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k)."""
    return gamma * sigma_bps * sigma_bps * tau_secs + 2.0 / gamma * math.log1p(gamma / k_per_bps)


class InventoryStrategy(MarketMakingStrategy):
    """Avellaneda-Stoikov market maker; sigma and k come from the market analysis (config fallbacks)."""

    strategy_type = "INVENTORY_BASED"
    adapts_to = ("volatility", "arrival")
    own_inventory_skew = True

    def _prepare(self) -> None:
        super()._prepare()
        p = self._parameters
        c = self.config
        gamma = p.risk_aversion
        sigma = p.volatility_bps_per_sqrt_sec
        self._finite = c.as_horizon_mode == "finite"
        self._horizon = c.as_horizon_secs
        # gamma*sigma^2 as a fraction of the price, per lot per second
        self._inventory_per_sec = gamma * sigma * sigma / BPS
        k = p.order_arrival_k_per_bps
        self._liquidity_half = (math.log1p(gamma / k) / gamma / BPS) if gamma > 0 and k > 0 else math.nan
        self._lot_quote = 1.0 / self.order_config.order_size_quote
        self._inventory_coef = self._inventory_per_sec * self._horizon
        self._half = self._liquidity_half + self._inventory_coef * 0.5
        self._max_shift = self.order_config.max_spread_bps / BPS

    @property
    def decides_on_clock(self) -> bool:
        return self._finite  # the finite horizon's inventory term shrinks as the session runs out

    def time_left_secs(self, now: float) -> float:
        """T - t: the rest of the current session (finite) or the whole window (infinite)."""
        if self._finite:
            return self._horizon - math.fmod(now, self._horizon)
        return self._horizon

    def _plan(self, snapshot: MarketSnapshot, inventory: InventoryState, risk: RiskContext) -> Plan | None:
        mid = (snapshot.best_bid + snapshot.best_ask) * 0.5
        total = inventory.base_value_quote + inventory.quote_balance
        q = (inventory.base_value_quote - inventory.target_ratio * total) * self._lot_quote
        if self._finite:
            coef = self._inventory_per_sec * (self._horizon - math.fmod(snapshot.now, self._horizon))
            half = self._liquidity_half + coef * 0.5
        else:
            coef = self._inventory_coef
            half = self._half
        shift = q * coef
        if shift > self._max_shift:
            shift = self._max_shift
        elif shift < -self._max_shift:
            shift = -self._max_shift
        levels = self._levels
        return mid * (1.0 - shift), half, half, levels, levels
