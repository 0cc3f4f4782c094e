"""The four strategies: properties every quote must have, and each strategy's own behaviour."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmplatform.errors import InvalidStrategyError
from strategies.analysis import MarketAnalysis
from strategies.base import diff_orders, parameters_from_config
from strategies.config import STRATEGY_TYPES, OrderConfig, StrategyConfig
from strategies.inventory import InventoryStrategy, optimal_spread_bps, reservation_offset_bps
from strategies.selection import create_strategy
from strategies.types import BUY, SELL, InventoryState, LiveOrder, MarketSnapshot, OrderIntent, RiskContext
from tests.strategies.conftest import inventory_for, snapshots

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RISK = RiskContext(min_order_size_quote=10.0, max_order_size_quote=5000.0, max_position_quote=1e9)


def build(strategy_type: str, *, trend: tuple[float, int] = (0.0, 0), volatility_daily: float = 0.02, **changes):
    """A strategy with 3 levels, tuned so every rule (skew, trend, fees) has a visible effect."""
    config = StrategyConfig(grid_levels=3, inventory_skew_bps=50.0, **changes)
    order = OrderConfig(maker_fee_bps=10.0, min_spread_bps=5.0, order_size_quote=100.0)
    strategy = create_strategy(strategy_type, "BTC/USDT", None, config, order)
    sigma = volatility_daily * 1e4 / math.sqrt(86400)
    strategy.parameters = dataclasses.replace(
        strategy.parameters,
        volatility_daily=volatility_daily,
        volatility_bps_per_sqrt_sec=sigma,
        trend_strength=trend[0],
        trend_direction=trend[1],
    )
    return strategy


def level0(intents: list[OrderIntent]) -> tuple[OrderIntent | None, OrderIntent | None]:
    bids = [i for i in intents if i.side == BUY]
    asks = [i for i in intents if i.side == SELL]
    return (max(bids, key=lambda i: i.price) if bids else None, min(asks, key=lambda i: i.price) if asks else None)


strategy_types = st.sampled_from(STRATEGY_TYPES)
trends = st.tuples(st.floats(0.0, 1.0), st.sampled_from([-1, 0, 1]))


@PROPERTY
@given(kind=strategy_types, snapshot=snapshots(), ratio=st.floats(0.05, 0.95), trend=trends)
def test_bids_below_asks_and_post_only_never_crosses(kind, snapshot, ratio, trend) -> None:
    intents = build(kind, trend=trend).calculate_orders(snapshot, inventory_for(snapshot, ratio), RISK)
    bid, ask = level0(intents)
    if bid is not None and ask is not None:
        assert bid.price < ask.price
    for intent in intents:
        assert intent.post_only is True and intent.order_type == "limit"
        if intent.side == BUY:
            assert 0 < intent.price < snapshot.best_ask
        else:
            assert intent.price > snapshot.best_bid


@PROPERTY
@given(kind=strategy_types, snapshot=snapshots(), ratio=st.floats(0.05, 0.95), size_multiplier=st.floats(0.01, 50))
def test_sizes_within_limits_and_on_the_lot(kind, snapshot, ratio, size_multiplier) -> None:
    risk = dataclasses.replace(RISK, size_multiplier=size_multiplier)
    intents = build(kind).calculate_orders(snapshot, inventory_for(snapshot, ratio), risk)
    for intent in intents:
        value = intent.price * intent.size
        assert intent.size > 0
        assert value >= risk.min_order_size_quote * (1 - 1e-9)
        assert value <= risk.max_order_size_quote * (1 + 1e-9)
        lots = intent.size / snapshot.lot_size
        assert abs(lots - round(lots)) < 1e-6 * max(1.0, lots)


@PROPERTY
@given(kind=strategy_types, snapshot=snapshots(), deviation=st.floats(0.05, 0.4), trend=trends)
def test_inventory_above_target_skews_quotes_down_below_target_up(kind, snapshot, deviation, trend) -> None:
    strategy = build(kind, trend=trend)
    neutral = level0(strategy.calculate_orders(snapshot, inventory_for(snapshot, 0.5), RISK))
    long = level0(strategy.calculate_orders(snapshot, inventory_for(snapshot, 0.5 + deviation), RISK))
    short = level0(strategy.calculate_orders(snapshot, inventory_for(snapshot, 0.5 - deviation), RISK))
    for side in (0, 1):
        if neutral[side] is not None and long[side] is not None:
            assert long[side].price <= neutral[side].price
        if neutral[side] is not None and short[side] is not None:
            assert short[side].price >= neutral[side].price


@pytest.mark.parametrize("kind", STRATEGY_TYPES)
def test_skew_direction_is_strict_on_a_fine_tick(kind) -> None:
    snapshot = MarketSnapshot("BTC/USDT", 49999.0, 50001.0, now=1000.0, tick_size=0.01, lot_size=1e-6)
    strategy = build(kind)
    prices = {}
    for ratio in (0.3, 0.5, 0.7):
        bid, ask = level0(strategy.calculate_orders(snapshot, inventory_for(snapshot, ratio), RISK))
        prices[ratio] = (bid.price, ask.price)
    assert prices[0.7][0] < prices[0.5][0] < prices[0.3][0]
    assert prices[0.7][1] < prices[0.5][1] < prices[0.3][1]


@PROPERTY
@given(kind=strategy_types, snapshot=snapshots(), ratio=st.floats(0.05, 0.95), trend=trends)
def test_intents_are_deterministic(kind, snapshot, ratio, trend) -> None:
    inventory = inventory_for(snapshot, ratio)
    first = build(kind, trend=trend).calculate_orders(snapshot, inventory, RISK)
    again = build(kind, trend=trend)
    assert again.calculate_orders(snapshot, inventory, RISK) == first
    assert again.calculate_orders(snapshot, inventory, RISK) == first


@PROPERTY
@given(kind=strategy_types, snapshot=snapshots(), ratio=st.floats(0.05, 0.95), fee_bps=st.floats(0, 50))
def test_level0_round_trip_never_loses_after_maker_fees(kind, snapshot, ratio, fee_bps) -> None:
    strategy = build(kind)
    strategy.order_config = OrderConfig(maker_fee_bps=fee_bps, min_spread_bps=0.0)
    strategy.parameters = strategy.parameters  # re-prepare with the new order config
    bid, ask = level0(strategy.calculate_orders(snapshot, inventory_for(snapshot, ratio), RISK))
    if bid is not None and ask is not None:
        fee = fee_bps / 1e4
        assert ask.price * (1 - fee) >= bid.price * (1 + fee) * (1 - 1e-12)


def test_min_spread_and_max_spread() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.0001, lot_size=1e-6)
    inventory = inventory_for(snapshot, 0.5)
    strategy = create_strategy(
        "GRID_TRADING", "X/Y", None, StrategyConfig(spread_bps=1.0, grid_levels=1, inventory_skew_bps=0.0),
        OrderConfig(min_spread_bps=40.0, maker_fee_bps=0.0),
    )
    bid, ask = level0(strategy.calculate_orders(snapshot, inventory, RISK))
    assert (ask.price - bid.price) / 100.0 * 1e4 == pytest.approx(40.0, abs=0.05)
    strategy = create_strategy(
        "GRID_TRADING", "X/Y", None, StrategyConfig(spread_bps=900.0, grid_levels=1, inventory_skew_bps=0.0),
        OrderConfig(max_spread_bps=100.0, maker_fee_bps=0.0),
    )
    bid, ask = level0(strategy.calculate_orders(snapshot, inventory, RISK))
    assert (ask.price - bid.price) / 100.0 * 1e4 == pytest.approx(100.0, abs=0.05)


def test_grid_levels_spacing_and_level_sizes() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.0001, lot_size=1e-6)
    config = StrategyConfig(grid_levels=4, spread_bps=20.0, level_spacing_bps=10.0, inventory_skew_bps=0.0)
    order = OrderConfig(order_size_quote=100.0, level_size_multiplier=2.0, maker_fee_bps=0.0)
    intents = create_strategy("GRID_TRADING", "X/Y", None, config, order).calculate_orders(
        snapshot, inventory_for(snapshot, 0.5), RISK
    )
    bids = [i for i in intents if i.side == BUY]
    asks = [i for i in intents if i.side == SELL]
    assert [i.level for i in bids] == [0, 1, 2, 3] == [i.level for i in asks]
    assert [i.price for i in bids] == [99.9, 99.8, 99.7, 99.6]
    assert [i.price for i in asks] == [100.1, 100.2, 100.3, 100.4]
    assert [round(i.size * i.price) for i in bids] == [100, 200, 400, 800]


def test_price_ceiling_drops_bids_above_and_floor_drops_asks_below() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.0001, lot_size=1e-6)
    config = StrategyConfig(grid_levels=4, spread_bps=20.0, level_spacing_bps=10.0, inventory_skew_bps=0.0)
    inventory = inventory_for(snapshot, 0.5)
    order = OrderConfig(maker_fee_bps=0.0, price_ceiling=99.75)
    intents = create_strategy("GRID_TRADING", "X/Y", None, config, order).calculate_orders(snapshot, inventory, RISK)
    assert [i.price for i in intents if i.side == BUY] == [99.7, 99.6]
    assert [i.price for i in intents if i.side == SELL] == [100.1, 100.2, 100.3, 100.4]
    order = OrderConfig(maker_fee_bps=0.0, price_floor=100.25)
    intents = create_strategy("GRID_TRADING", "X/Y", None, config, order).calculate_orders(snapshot, inventory, RISK)
    assert [i.price for i in intents if i.side == BUY] == [99.9, 99.8, 99.7, 99.6]
    assert [i.price for i in intents if i.side == SELL] == [100.3, 100.4]


def test_risk_multipliers_widen_spreads_and_shrink_sizes() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.0001, lot_size=1e-6)
    strategy = build("GRID_TRADING")
    inventory = inventory_for(snapshot, 0.5)
    normal = level0(strategy.calculate_orders(snapshot, inventory, RISK))
    risk = dataclasses.replace(RISK, spread_multiplier=2.0, size_multiplier=0.5)
    wide = level0(strategy.calculate_orders(snapshot, inventory, risk))
    assert wide[1].price - wide[0].price == pytest.approx(2 * (normal[1].price - normal[0].price), rel=1e-3)
    assert wide[0].size * wide[0].price == pytest.approx(normal[0].size * normal[0].price / 2, rel=1e-3)


def test_balances_and_position_limit_cap_sizes() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.01, lot_size=0.001)
    strategy = build("GRID_TRADING")
    inventory = InventoryState.from_balances(base_balance=1.5, quote_balance=250.0, price=100.0)
    intents = strategy.calculate_orders(snapshot, inventory, RISK)
    bids = [i for i in intents if i.side == BUY]
    asks = [i for i in intents if i.side == SELL]
    assert sum(i.size * i.price for i in bids) <= 250.0
    assert sum(i.size for i in asks) <= 1.5
    assert len(asks) == 2  # 1.0 + 0.5 base: the third level does not fit
    limited = dataclasses.replace(RISK, max_position_quote=150.0 + 120.0)
    bids = [i for i in strategy.calculate_orders(snapshot, inventory, limited) if i.side == BUY]
    assert sum(i.size * i.price for i in bids) <= 120.0 + 1e-9


def test_bad_snapshot_pauses_with_a_reason() -> None:
    strategy = build("GRID_TRADING")
    for bid, ask in ((100.0, 99.0), (math.nan, 100.0), (0.0, 1.0)):
        snapshot = MarketSnapshot("X/Y", bid, ask, now=0.0)
        assert strategy.calculate_orders(snapshot, inventory_for(MarketSnapshot("X/Y", 1, 2, 0), 0.5), RISK) == []
        assert strategy.pause_reason and "X/Y" in strategy.pause_reason


# --- each strategy's own behaviour --------------------------------------------------------------


def test_volatility_adaptive_widens_with_volatility_and_pauses_above_threshold() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.0001, lot_size=1e-6)
    inventory = inventory_for(snapshot, 0.5)
    calm = level0(build("VOLATILITY_ADAPTIVE", volatility_daily=0.01).calculate_orders(snapshot, inventory, RISK))
    wild = level0(build("VOLATILITY_ADAPTIVE", volatility_daily=0.08).calculate_orders(snapshot, inventory, RISK))
    assert wild[1].price - wild[0].price > calm[1].price - calm[0].price
    paused = build("VOLATILITY_ADAPTIVE", volatility_daily=0.12)
    assert paused.calculate_orders(snapshot, inventory, RISK) == []
    assert "above the pause threshold" in paused.pause_reason
    assert paused.calculate_orders(snapshot, inventory, dataclasses.replace(RISK, volatility_pause_threshold=0.2))


@PROPERTY
@given(snapshot=snapshots(), strength=st.floats(0.0, 1.0), direction=st.sampled_from([-1, 1]))
def test_trend_pulls_the_against_trend_side_above_threshold(snapshot, strength, direction) -> None:
    snapshot = dataclasses.replace(snapshot, lot_size=1e-6)  # every level's size fits the limits
    strategy = build("TREND_FOLLOWING", trend=(strength, direction))
    intents = strategy.calculate_orders(snapshot, inventory_for(snapshot, 0.5), RISK)
    against = SELL if direction > 0 else BUY
    with_trend = BUY if direction > 0 else SELL
    if strength > strategy.config.trend_pull_threshold:
        assert not [i for i in intents if i.side == against]
        assert "pulled" in strategy.pause_reason
    else:
        assert [i for i in intents if i.side == against]
        assert strategy.pause_reason is None
    assert [i for i in intents if i.side == with_trend]


def test_trend_shifts_along_and_widens_against_the_trend() -> None:
    snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=0.0, tick_size=0.0001, lot_size=1e-6)
    inventory = inventory_for(snapshot, 0.5)
    flat_bid, flat_ask = level0(build("TREND_FOLLOWING").calculate_orders(snapshot, inventory, RISK))
    up_bid, up_ask = level0(build("TREND_FOLLOWING", trend=(0.8, 1)).calculate_orders(snapshot, inventory, RISK))
    assert up_bid.price > flat_bid.price  # shifted up along the trend
    assert up_ask.price - up_bid.price > flat_ask.price - flat_bid.price  # ask side widened
    down_bid, down_ask = level0(build("TREND_FOLLOWING", trend=(0.8, -1)).calculate_orders(snapshot, inventory, RISK))
    assert down_ask.price < flat_ask.price and down_bid.price < flat_bid.price


def test_avellaneda_stoikov_quotes_match_the_formulas() -> None:
    config = StrategyConfig(grid_levels=1, risk_aversion=0.05, as_horizon_secs=600.0, as_horizon_mode="infinite")
    order = OrderConfig(order_size_quote=1000.0, maker_fee_bps=0.0, min_spread_bps=0.0)
    strategy = InventoryStrategy("X/Y", config, order)
    sigma, k = 0.5, 0.2
    strategy.parameters = dataclasses.replace(strategy.parameters, volatility_bps_per_sqrt_sec=sigma,
                                              order_arrival_k_per_bps=k)
    snapshot = MarketSnapshot("X/Y", 99.0, 101.0, now=0.0, tick_size=1e-6, lot_size=1e-9)
    # base value 7000, target 5000 of 10000 -> q = +2 lots of 1000 quote
    inventory = InventoryState(70.0, 3000.0, 7000.0, 0.7, 0.5)
    bid, ask = level0(strategy.calculate_orders(snapshot, inventory, RISK))
    centre = 100.0 * (1 + reservation_offset_bps(2.0, 0.05, sigma, 600.0) / 1e4)
    half = optimal_spread_bps(0.05, sigma, 600.0, k) / 2 / 1e4
    assert reservation_offset_bps(2.0, 0.05, sigma, 600.0) == pytest.approx(-2 * 0.05 * 0.25 * 600)
    assert bid.price == pytest.approx(centre * (1 - half), abs=2e-6)
    assert ask.price == pytest.approx(centre * (1 + half), abs=2e-6)


def test_avellaneda_stoikov_finite_horizon_narrows_towards_the_end() -> None:
    config = StrategyConfig(grid_levels=1, as_horizon_mode="finite", as_horizon_secs=1000.0, risk_aversion=0.05)
    strategy = InventoryStrategy("X/Y", config, OrderConfig(maker_fee_bps=0.0, min_spread_bps=0.0))
    inventory = InventoryState(60.0, 4000.0, 6000.0, 0.6, 0.5)
    spreads, centres = [], []
    for now in (10_000.0, 10_500.0, 10_990.0):  # start, middle, end of a session
        snapshot = MarketSnapshot("X/Y", 99.99, 100.01, now=now, tick_size=1e-6, lot_size=1e-9)
        bid, ask = level0(strategy.calculate_orders(snapshot, inventory, RISK))
        spreads.append(ask.price - bid.price)
        centres.append((ask.price + bid.price) / 2)
    assert spreads[0] > spreads[1] > spreads[2]
    assert centres[0] < centres[1] < centres[2] < 100.0  # long inventory: less urgency to shed it late
    assert strategy.time_left_secs(10_990.0) == pytest.approx(10.0)


# --- adaptation and validation ------------------------------------------------------------------


def analysis(**changes) -> MarketAnalysis:
    base = dict(mid=100.0, volatility_daily=0.02, volatility_bps_per_sqrt_sec=0.68, liquidity_quote=5e4,
                trend_strength=0.1, trend_direction=1, order_arrival_a_per_sec=1.0, order_arrival_k_per_bps=0.1)
    return MarketAnalysis(**{**base, **changes})


def test_should_adapt_and_adapt_to_conditions() -> None:
    config = StrategyConfig()
    start = analysis()
    strategy = create_strategy("VOLATILITY_ADAPTIVE", "X/Y", start, config, OrderConfig())
    assert not strategy.should_adapt(start)
    assert not strategy.should_adapt(analysis(volatility_bps_per_sqrt_sec=0.75))
    moved = analysis(volatility_bps_per_sqrt_sec=1.2, volatility_daily=0.035)
    assert strategy.should_adapt(moved)
    before = strategy.effective_spread_bps
    params = strategy.adapt_to_conditions(moved)
    assert params.volatility_bps_per_sqrt_sec == 1.2 and strategy.parameters == params
    assert strategy.effective_spread_bps > before
    assert not strategy.should_adapt(moved)
    grid = create_strategy("GRID_TRADING", "X/Y", start, config, OrderConfig())
    assert not grid.should_adapt(moved)
    trend = create_strategy("TREND_FOLLOWING", "X/Y", start, config, OrderConfig())
    assert trend.should_adapt(analysis(trend_direction=-1))
    inventory = create_strategy("INVENTORY_BASED", "X/Y", start, config, OrderConfig())
    assert inventory.should_adapt(analysis(order_arrival_k_per_bps=0.2))
    off = create_strategy("INVENTORY_BASED", "X/Y", start, StrategyConfig(adaptation_enabled=False), OrderConfig())
    assert not off.should_adapt(moved)


def test_parameters_start_from_the_analysis() -> None:
    params = parameters_from_config(StrategyConfig(), analysis(order_arrival_k_per_bps=0.3, trend_direction=-1))
    assert params.order_arrival_k_per_bps == 0.3 and params.trend_direction == -1


def test_create_strategy_rejects_invalid_parameters() -> None:
    with pytest.raises(InvalidStrategyError, match="Unknown strategy type 'MOON'"):
        create_strategy("MOON", "X/Y", None, StrategyConfig(), OrderConfig())
    with pytest.raises(InvalidStrategyError, match="Invalid strategy parameters for X/Y: spread_bps"):
        create_strategy("GRID_TRADING", "X/Y", None, StrategyConfig(spread_bps=-1.0), OrderConfig())
    with pytest.raises(InvalidStrategyError, match="order_arrival_k_per_bps"):
        create_strategy("INVENTORY_BASED", "X/Y", analysis(order_arrival_k_per_bps=math.nan), StrategyConfig(),
                        OrderConfig())
    strategy = create_strategy("INVENTORY_BASED", "X/Y", None, StrategyConfig(), OrderConfig())
    assert strategy.validate_parameters()
    strategy.parameters = dataclasses.replace(strategy.parameters, risk_aversion=0.0)
    assert not strategy.validate_parameters()
    assert any("risk_aversion" in p for p in strategy.parameter_problems())


# --- refresh tolerance diff ---------------------------------------------------------------------


def test_diff_orders_keeps_orders_within_tolerance_and_young_enough() -> None:
    intents = [OrderIntent(BUY, 99.9, 1.0, 0), OrderIntent(SELL, 100.1, 1.0, 0), OrderIntent(BUY, 99.8, 1.0, 1)]
    live = [
        LiveOrder("a", BUY, 99.91, 1.0, 0, placed_at=100.0),  # 1 bps away: kept
        LiveOrder("b", SELL, 100.2, 1.0, 0, placed_at=100.0),  # 10 bps away: cancelled
        LiveOrder("c", BUY, 99.8, 1.0, 1, placed_at=50.0),  # too old: cancelled
        LiveOrder("d", BUY, 99.91, 1.0, 0, placed_at=100.0),  # duplicate of a kept slot: cancelled
        LiveOrder("e", SELL, 100.3, 1.0, 2, placed_at=100.0),  # no intent at this level: cancelled
    ]
    diff = diff_orders(live, intents, tolerance_bps=5.0, refresh_secs=30.0, now=110.0)
    assert [o.order_id for o in diff.keep] == ["a"]
    assert [o.order_id for o in diff.cancel] == ["b", "c", "d", "e"]
    assert diff.place == intents[1:]
    everything = diff_orders(live, intents, tolerance_bps=0.0, refresh_secs=30.0, now=110.0)
    assert everything.keep == [] and everything.place == intents


def test_diff_orders_never_keeps_an_order_that_crosses_a_new_one() -> None:
    # the ask moved 4 bps (within tolerance) but the new bid is placed above the kept ask
    intents = [OrderIntent(BUY, 100.02, 1.0, 0), OrderIntent(SELL, 100.05, 1.0, 0)]
    live = [LiveOrder("ask", SELL, 100.01, 1.0, 0, placed_at=0.0), LiveOrder("bid", BUY, 99.90, 1.0, 0, 0.0)]
    diff = diff_orders(live, intents, tolerance_bps=5.0, refresh_secs=60.0, now=1.0)
    assert diff.keep == [] and {o.order_id for o in diff.cancel} == {"ask", "bid"}
    assert diff.place == intents
