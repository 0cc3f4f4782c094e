"""The old import path of the spec's MarketMakingBot and its managers (kept for code outside the engine).

The engine lives in one module per job (see docs/architecture.md, "The engine's modules"):
``bot`` (MarketMakingBot: exchanges, lifecycle), ``cycle`` (a full monitoring iteration),
``quotes`` (one pair's decide -> check -> act), ``risk_actions`` (risk events, rebalancing),
``strategy_engine``, ``inventory_manager``, ``risk_manager``, ``performance``, ``venues``.
New code imports from those modules.
"""

from __future__ import annotations

from bots.engine.bot import MarketMakingBot
from bots.engine.bot_state import CycleReport
from bots.engine.cycle import begin_cycle, begin_fenced_cycle, daily_reset_key, request_daily_reset
from bots.engine.inventory_manager import InventoryManager
from bots.engine.performance import PerformanceTracker
from bots.engine.risk_manager import MarketMakingRiskManager, PairRiskAdjustments
from bots.engine.strategy_engine import StrategyEngine
from bots.engine.venues import GatewayFactory, default_gateway_factory, exchange_key

__all__ = [
    "CycleReport", "GatewayFactory", "InventoryManager", "MarketMakingBot", "MarketMakingRiskManager",
    "PairRiskAdjustments", "PerformanceTracker", "StrategyEngine", "begin_cycle", "begin_fenced_cycle",
    "daily_reset_key", "default_gateway_factory", "exchange_key", "request_daily_reset",
]
