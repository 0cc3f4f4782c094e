"""Every spec method and event of MarketMakingBot, each with a test that fails if it is removed:
exchange initialisation, pair and order validation, start-up errors, reconciliation after a
restart, order adjustment, strategy adaptation, shared market data."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

import bots.inventory
from bots.engine import driver
from bots.engine.client_ids import client_order_id
from bots.engine.core import (
    InventoryManager,
    MarketMakingBot,
    MarketMakingRiskManager,
    PerformanceTracker,
    StrategyEngine,
    begin_cycle,
)
from bots.models import Bot, BotEvent, BotStatus, Fill, LiquidityPosition, Order, OrderStatus
from exchanges.gateway import OrderRequest
from mmplatform import aio
from mmplatform.errors import InvalidTradingPairsError, RiskLimitViolationError
from strategies.base import MarketMakingStrategy
from strategies.types import OrderIntent
from tests.bots.conftest import emulator_bot, emulator_open_orders

# Every method the spec (../shared/spec/market-making-bot.md) defines, under the spec's own name.
SPEC_METHODS: dict[type, list[str]] = {
    MarketMakingBot: [
        "initialize_exchanges", "start_market_making", "stop_market_making", "_place_initial_orders",
        "_adjust_position_strategy", "_adjust_orders", "_rebalance_inventory", "_handle_risk_event",
        "_validate_trading_pair", "_validate_order_parameters", "_place_order",
        # called by the spec's methods
        "_update_market_data", "_select_exchange_for_pair", "_reduce_position_sizes", "_pause_trading",
        "_force_rebalance", "_adjust_spreads_for_volatility",
    ],
    StrategyEngine: ["create_strategy", "_analyze_market_characteristics", "_select_strategy_type"],
    InventoryManager: ["needs_rebalancing", "get_final_inventory", "update_inventory"],
    MarketMakingRiskManager: ["validate_startup_conditions", "get_pair_limits"],
    MarketMakingStrategy: ["calculate_orders", "should_adapt", "adapt_to_conditions", "validate_parameters"],
}

# Where the platform's shape differs from the spec's single-process object, the spec's name -> what does
# its work here (each must exist): the loop is the engine driver's, exchange clients come from a factory,
# fills and cancels go through the OrderManager.
SPEC_ELSEWHERE: dict[str, Any] = {
    "MarketMakingBot._monitoring_loop": (driver.Driver, "tick"),  # each due cycle: monitoring_iteration
    "MarketMakingBot._monitoring_loop body": (MarketMakingBot, "monitoring_iteration"),
    "MarketMakingBot._create_exchange_client": (MarketMakingBot, "gateway_factory"),
    "MarketMakingBot._get_market_data": (MarketMakingBot, "_market_snapshot"),
    "MarketMakingBot._cancel_position_orders": (MarketMakingBot, "stop_market_making"),
    "MarketMakingBot._check_filled_orders": (MarketMakingBot, "_sync_fills"),
    "MarketMakingBot._execute_rebalancing_trade": (MarketMakingBot, "_execute_rebalancing"),
    "risk_manager.assess_current_risk": (MarketMakingBot, "assess_current_risk"),
    "performance_tracker.generate_summary": (PerformanceTracker, "summary"),
    "performance_tracker.update_metrics": (MarketMakingBot, "_update_performance"),
    "InventoryManager.assess_initial_inventory": (InventoryManager, "assess"),
    "InventoryManager.calculate_rebalancing_trades": (bots.inventory, "calculate_rebalancing_trades"),
}


@pytest.mark.parametrize(("owner", "name"), [(cls, name) for cls, names in SPEC_METHODS.items() for name in names],
                         ids=lambda v: getattr(v, "__name__", v))
def test_spec_method_exists_under_its_spec_name(owner: type, name: str) -> None:
    assert callable(getattr(owner, name, None)), f"{owner.__name__}.{name} (the spec's name) is missing"


@pytest.mark.parametrize("spec_name", list(SPEC_ELSEWHERE))
def test_spec_method_done_elsewhere_exists(spec_name: str) -> None:
    owner, name = SPEC_ELSEWHERE[spec_name]
    if name == "gateway_factory":  # an instance attribute: the constructor's keyword
        import inspect
        assert name in inspect.signature(owner.__init__).parameters
        return
    assert callable(getattr(owner, name, None)), f"{spec_name} is done by {name}, which is missing"


def new_engine(bot: Bot) -> MarketMakingBot:
    bot.refresh_from_db()
    return MarketMakingBot(bot)


def events(bot: Bot, event_type: str) -> list[BotEvent]:
    return list(BotEvent.objects.filter(bot=bot, event_type=event_type))


def test_initialize_exchanges_is_false_and_warns_when_none_connect(world_a: Any, caplog: Any) -> None:
    account = world_a.account
    account.api_base_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    account.save()
    engine = MarketMakingBot(world_a.bot)
    with caplog.at_level(logging.WARNING):
        assert engine.initialize_exchanges() is False
    assert "failed to connect to exchange" in caplog.text
    assert events(world_a.bot, "ExchangeConnected") == []


def test_validate_trading_pair_checks_format_and_support(world_a: Any, frozen_emulator: Any) -> None:
    engine = MarketMakingBot(emulator_bot(world_a, frozen_emulator))
    engine.initialize_exchanges()
    assert engine._validate_trading_pair("BTC/USDT")
    assert not engine._validate_trading_pair("btc/usdt")
    assert not engine._validate_trading_pair("BTC-USDT")
    assert not engine._validate_trading_pair("DOGE/USDT")  # well formed, not listed


def test_start_with_no_valid_pair_raises_invalid_trading_pairs(world_a: Any, frozen_emulator: Any) -> None:
    engine = MarketMakingBot(emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING))
    engine.initialize_exchanges()
    with pytest.raises(InvalidTradingPairsError):
        engine.start_market_making(["DOGE/USDT", "nope"])
    assert not LiquidityPosition.objects.filter(bot=world_a.bot).exists()


def test_start_refused_by_risk_when_kill_switch_engaged(world_a: Any, frozen_emulator: Any) -> None:
    bot = emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING, kill_switch_engaged=True)
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges()
    with pytest.raises(RiskLimitViolationError, match="kill switch"):
        engine.start_market_making(bot.pairs)
    assert emulator_open_orders(frozen_emulator) == []


def test_validate_order_parameters(world_a: Any, frozen_emulator: Any) -> None:
    engine = MarketMakingBot(emulator_bot(world_a, frozen_emulator, min_order_size_quote=Decimal("100"),
                                          max_order_size_quote=Decimal("5000"), order_size_quote=Decimal("1000")))
    assert engine._validate_order_parameters(OrderIntent("buy", 100.0, 10.0, 0))
    assert not engine._validate_order_parameters(OrderIntent("buy", 100.0, 0.0, 0))
    assert not engine._validate_order_parameters(OrderIntent("buy", -1.0, 10.0, 0))
    assert not engine._validate_order_parameters(OrderIntent("buy", 100.0, 0.5, 0))  # 50 < min 100
    assert not engine._validate_order_parameters(OrderIntent("buy", 100.0, 60.0, 0))  # 6000 > max 5000


def test_orders_adjusted_only_when_price_moves_beyond_tolerance(world_a: Any, frozen_emulator: Any,
                                                                settings: Any) -> None:
    settings.MARKET_DATA_CACHE_SECS = 0
    bot = emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING, trading_pairs="BTC/USDT",
                       order_refresh_tolerance_bps=5.0, order_refresh_secs=3600.0)
    engine = new_engine(bot)
    engine.initialize_exchanges()
    engine.start_market_making(bot.pairs)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    before = set(Order.objects.filter(bot=bot, status="open").values_list("client_order_id", flat=True))
    engine = new_engine(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    assert set(Order.objects.filter(bot=bot, status="open").values_list("client_order_id", flat=True)) == before
    assert events(bot, "OrdersAdjusted") == [], "nothing moved: every order is kept"

    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", Decimal("61200")))  # +2 %
    engine = new_engine(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    after = set(Order.objects.filter(bot=bot, status="open").values_list("client_order_id", flat=True))
    assert after and not (after & before), "every order was re-quoted at the new mid"
    adjusted = events(bot, "OrdersAdjusted")
    assert len(adjusted) == 1 and adjusted[0].payload["new_order_count"] == len(after)


def test_strategy_adapts_to_a_trending_market(world_a: Any, frozen_emulator: Any, settings: Any) -> None:
    settings.MARKET_DATA_CACHE_SECS = 0
    bot = emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING, trading_pairs="BTC/USDT",
                       adaptation_enabled=True, low_liquidity_threshold_quote=Decimal("0"),
                       high_volatility_threshold=1e9, volatility_pause_threshold=1e9)
    engine = new_engine(bot)
    engine.initialize_exchanges()
    engine.start_market_making(bot.pairs)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    for step in range(12):  # a steady climb: trend strength near 1
        mid = Decimal("60000") + Decimal(60 * (step + 1))
        frozen_emulator.call(lambda m=mid: frozen_emulator.market.set_mid("BTC/USDT", m))
        engine = new_engine(bot)
        engine.initialize_exchanges(emit_events=False, validate=False)
        engine.monitoring_iteration(begin_cycle(bot.pk))
    adapted = events(bot, "StrategyAdapted")
    assert adapted, "a strong trend must re-tune the strategy"
    assert adapted[-1].payload["to"] == "TREND_FOLLOWING"
    assert LiquidityPosition.objects.get(bot=bot, is_active=True).strategy_type == "TREND_FOLLOWING"


def test_reconcile_adopts_known_cancels_unknown_and_records_missed_fills(world_a: Any, frozen_emulator: Any) -> None:
    bot = emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING, trading_pairs="BTC/USDT")
    engine = new_engine(bot)
    engine.initialize_exchanges()
    engine.start_market_making(bot.pairs)
    position = LiquidityPosition.objects.get(bot=bot, is_active=True)
    gateway = engine.exchanges[position.exchange_account_id]
    # while "down": an order of ours the database never stored (lost row) ...
    stray_id = client_order_id(bot.pk, 99, 1, position.pk, "b9")
    aio.run(gateway.place_order(OrderRequest("BTC/USDT", "buy", Decimal("50000"), Decimal("0.01"), stray_id)))
    # ... and one of our resting asks is filled by someone else
    ask = Order.objects.filter(bot=bot, side="sell", status="open").order_by("price").first()
    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", ask.price * Decimal("1.01")))

    restarted = new_engine(bot)
    restarted.initialize_exchanges(emit_events=False)
    recovered = restarted.reconcile()
    assert recovered >= 1
    assert Fill.objects.filter(bot=bot, order=ask).exists(), "the fill made while down was recorded"
    assert Order.objects.get(pk=ask.pk).status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)
    remote = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    assert stray_id not in remote, "an unknown order with the bot's prefix is cancelled"
    known = set(Order.objects.filter(bot=bot, status="open").values_list("client_order_id", flat=True))
    assert known <= remote, "known orders are adopted, not cancelled"
    assert events(bot, "Reconciled")


def test_market_data_is_fetched_once_per_interval_for_all_bots(world_a: Any, world_b: Any,
                                                              frozen_emulator: Any) -> None:
    a = emulator_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT")
    b = emulator_bot(world_b, frozen_emulator, trading_pairs="BTC/USDT")
    engines = []
    for bot in (a, b):
        engine = MarketMakingBot(bot)
        engine.initialize_exchanges(emit_events=False)
        engines.append(engine)
    before = frozen_emulator.request_count
    snapshots = [e._market_snapshot("BTC/USDT", next(iter(e.exchanges))) for e in engines]
    assert frozen_emulator.request_count - before == 1, "two tenants' bots on one venue share one book fetch"
    assert snapshots[0].best_bid == snapshots[1].best_bid
