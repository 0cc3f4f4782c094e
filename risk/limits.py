"""Risk limits of one bot (spec ``RiskLimits``), with units in names. Pure: no Django, no ccxt."""

from __future__ import annotations

from dataclasses import dataclass

from strategies.config import FieldChecker, coerce_numbers


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Spec defaults, renamed with units; plus the pre-trade limits every order is checked against."""

    max_position_quote: float = 100000.0
    """Largest base inventory value per pair (quote currency) before sizes are reduced (spec max_position_size)."""
    max_daily_loss_quote: float = 1000.0
    """Loss since the daily reset (quote currency) at which quoting pauses (spec max_daily_loss)."""
    max_drawdown_ratio: float = 0.1
    """Largest fall of equity from its high-water mark, as a fraction (spec max_drawdown 0.1 = 10 %)."""
    inventory_deviation_limit: float = 0.3
    """Largest |base ratio - target ratio| before a forced rebalance (spec inventory_deviation_limit)."""
    volatility_pause_threshold: float = 0.1
    """Daily realised volatility (fraction) above which spreads widen / quoting pauses (spec)."""
    max_open_orders: int = 50
    """Open orders per bot across pairs; placements beyond it are denied."""
    price_collar_bps: float = 500.0
    """An order priced further than this from the mid is denied (fat-finger guard)."""
    volatility_spread_widen_factor: float = 2.0
    """MARKET_VOLATILITY risk event: spreads are multiplied by this factor."""
    position_size_reduction_factor: float = 0.5
    """POSITION_LIMIT_EXCEEDED risk event: order sizes on the growing side are multiplied by this."""

    def __post_init__(self) -> None:
        coerce_numbers(self)

    def validate(self) -> dict[str, list[str]]:
        """Field name -> problems; empty when valid."""
        c = FieldChecker(self)
        c.positive("max_position_quote")
        c.positive("max_daily_loss_quote")
        drawdown = c.positive("max_drawdown_ratio")
        if drawdown is not None and drawdown > 1:
            c.add("max_drawdown_ratio", f"must be between 0 and 1, got {drawdown!r}")
        c.ratio("inventory_deviation_limit")
        c.positive("volatility_pause_threshold")
        c.integer("max_open_orders", 1, 10000)
        c.positive("price_collar_bps")
        factor = c.positive("volatility_spread_widen_factor")
        if factor is not None and factor < 1:
            c.add("volatility_spread_widen_factor", f"must be at least 1 (it widens), got {factor!r}")
        reduction = c.positive("position_size_reduction_factor")
        if reduction is not None and reduction > 1:
            c.add("position_size_reduction_factor", f"must be between 0 and 1 (it reduces), got {reduction!r}")
        return c.errors
