"""The pure half of the spec's ``StrategyEngine``: strategy selection and the strategy factory."""

from __future__ import annotations

from mmplatform.errors import InvalidStrategyError
from strategies.analysis import MarketAnalysis
from strategies.base import MarketMakingStrategy
from strategies.config import OrderConfig, StrategyConfig
from strategies.grid import GridStrategy
from strategies.inventory import InventoryStrategy
from strategies.trend import TrendFollowingStrategy
from strategies.volatility import VolatilityAdaptiveStrategy

STRATEGY_CLASSES: dict[str, type[MarketMakingStrategy]] = {
    "GRID_TRADING": GridStrategy,
    "VOLATILITY_ADAPTIVE": VolatilityAdaptiveStrategy,
    "INVENTORY_BASED": InventoryStrategy,
    "TREND_FOLLOWING": TrendFollowingStrategy,
}


def select_strategy_type(analysis: MarketAnalysis, config: StrategyConfig) -> str:
    """The spec's ``_select_strategy_type``: the first matching rule, in the spec's order.

    volatility > high_volatility_threshold -> VOLATILITY_ADAPTIVE; else liquidity <
    low_liquidity_threshold -> INVENTORY_BASED; else trend_strength > strong_trend_threshold ->
    TREND_FOLLOWING; else GRID_TRADING. With adaptation disabled, ``default_strategy``.
    """
    if not config.adaptation_enabled:
        return config.default_strategy
    if analysis.volatility_daily > config.high_volatility_threshold:
        return "VOLATILITY_ADAPTIVE"
    if analysis.liquidity_quote < config.low_liquidity_threshold_quote:
        return "INVENTORY_BASED"
    if analysis.trend_strength > config.strong_trend_threshold:
        return "TREND_FOLLOWING"
    return "GRID_TRADING"


def create_strategy(
    strategy_type: str,
    trading_pair: str,
    analysis: MarketAnalysis | None,
    config: StrategyConfig,
    order_config: OrderConfig,
) -> MarketMakingStrategy:
    """Build a strategy tuned to ``analysis``; raise ``InvalidStrategyError`` (with every reason)
    when the type is unknown or ``validate_parameters()`` fails."""
    cls = STRATEGY_CLASSES.get(strategy_type)
    if cls is None:
        raise InvalidStrategyError(
            f"Unknown strategy type {strategy_type!r} for {trading_pair}; expected one of "
            f"{', '.join(STRATEGY_CLASSES)}"
        )
    strategy = cls(trading_pair, config, order_config, analysis=analysis)
    problems = strategy.parameter_problems()
    if problems:
        raise InvalidStrategyError(f"Invalid strategy parameters for {trading_pair}: {'; '.join(problems)}")
    return strategy
