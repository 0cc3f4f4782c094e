"""The spec's StrategyEngine: analyse a market, choose and restore a strategy for a pair."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from bots.config import MarketMakingConfig
from bots.engine.market_data import mid_history
from bots.models import (
    LiquidityPosition,
)
from strategies.analysis import MarketAnalysis, analyze_market
from strategies.base import MarketMakingStrategy
from strategies.selection import create_strategy, select_strategy_type
from strategies.types import MarketSnapshot, StrategyParameters

logger = logging.getLogger(__name__)

class StrategyEngine:
    """Strategy selection, creation and adaptation per pair (spec StrategyEngine)."""

    def __init__(self, config: MarketMakingConfig):
        self.config = config.strategy_settings
        self.order_config = config.order_settings
        self.strategies: dict[str, MarketMakingStrategy] = {}

    def _analyze_market_characteristics(self, snapshot: MarketSnapshot, venue: str) -> MarketAnalysis:
        """Spec _analyze_market_characteristics, on the venue's shared mid history."""
        times, mids = mid_history(venue, snapshot.symbol)
        return analyze_market(snapshot, self.config, times, mids)

    def _select_strategy_type(self, analysis: MarketAnalysis) -> str:
        """Spec _select_strategy_type: volatility, then liquidity, then trend, else the grid."""
        return select_strategy_type(analysis, self.config)

    def create_strategy(self, pair: str, analysis: MarketAnalysis | None) -> MarketMakingStrategy:
        """Spec create_strategy: select the type from the analysis, build it, validate it."""
        strategy_type = self._select_strategy_type(analysis) if analysis is not None else self.config.default_strategy
        strategy = create_strategy(strategy_type, pair, analysis, self.config, self.order_config)
        self.strategies[pair] = strategy
        return strategy

    def restore(self, position: LiquidityPosition) -> MarketMakingStrategy:
        """The position's strategy with the parameters it last quoted with."""
        strategy = self.strategies.get(position.trading_pair)
        if strategy is not None:
            return strategy
        strategy = create_strategy(
            position.strategy_type or self.config.default_strategy, position.trading_pair, None,
            self.config, self.order_config,
        )
        if position.strategy_params:
            try:
                strategy.parameters = StrategyParameters(**position.strategy_params)
            except TypeError:
                logger.warning("position %s: stored strategy parameters no longer fit; using config", position.pk)
        self.strategies[position.trading_pair] = strategy
        return strategy


def params_json(parameters: StrategyParameters) -> dict[str, Any]:
    return asdict(parameters)
