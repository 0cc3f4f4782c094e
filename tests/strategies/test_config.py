"""StrategyConfig / OrderConfig: spec defaults and field-by-field validation messages."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from strategies.config import STRATEGY_TYPES, OrderConfig, StrategyConfig


def test_spec_defaults() -> None:
    config = StrategyConfig()
    assert config.default_strategy == "GRID_TRADING"
    assert config.adaptation_enabled is True
    assert config.high_volatility_threshold == 0.05
    assert config.low_liquidity_threshold_quote == 1000.0
    assert config.strong_trend_threshold == 0.7
    assert config.grid_levels == 10
    assert config.spread_bps == 20.0  # spec spread_percentage 0.002
    assert config.inventory_target_ratio == 0.5
    order = OrderConfig()
    assert order.order_size_quote == 100.0 and order.level_size_multiplier == 1.0
    assert order.order_refresh_secs == 30.0
    assert (order.order_refresh_tolerance_bps, order.min_spread_bps, order.maker_fee_bps) == (5.0, 5.0, 10.0)
    assert order.price_ceiling is None and order.price_floor is None and order.post_only is True


def test_defaults_are_valid_and_frozen() -> None:
    assert StrategyConfig().validate() == {}
    assert OrderConfig().validate() == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        StrategyConfig().spread_bps = 1.0  # type: ignore[misc]


def test_decimals_from_the_database_become_floats() -> None:
    config = StrategyConfig(spread_bps=Decimal("12.5"), inventory_target_ratio=Decimal("0.4"))
    assert isinstance(config.spread_bps, float) and config.spread_bps == 12.5
    order = OrderConfig(price_floor=Decimal("10"), order_size_quote=50)
    assert isinstance(order.price_floor, float) and isinstance(order.order_size_quote, float)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"default_strategy": "MOON"}, "default_strategy", "must be one of"),
        ({"grid_levels": 0}, "grid_levels", "between 1 and 100"),
        ({"grid_levels": 2.5}, "grid_levels", "whole number"),
        ({"spread_bps": -1.0}, "spread_bps", "greater than 0"),
        ({"spread_bps": float("nan")}, "spread_bps", "finite"),
        ({"spread_bps": float("inf")}, "spread_bps", "finite"),
        ({"inventory_target_ratio": 1.5}, "inventory_target_ratio", "between 0 and 1"),
        ({"strong_trend_threshold": -0.1}, "strong_trend_threshold", "between 0 and 1"),
        ({"high_volatility_threshold": 0.0}, "high_volatility_threshold", "greater than 0"),
        ({"low_liquidity_threshold_quote": -5.0}, "low_liquidity_threshold_quote", "negative"),
        ({"risk_aversion": 0.0}, "risk_aversion", "greater than 0"),
        ({"as_horizon_mode": "forever"}, "as_horizon_mode", "finite, infinite"),
        ({"trend_pull_threshold": 0.5}, "trend_pull_threshold", "strong_trend_threshold"),
        ({"adaptation_enabled": "yes"}, "adaptation_enabled", "true or false"),
        ({"level_spacing_bps": "10"}, "level_spacing_bps", "must be a number"),
    ],
)
def test_strategy_config_errors(changes: dict, field: str, fragment: str) -> None:
    errors = StrategyConfig(**changes).validate()
    assert list(errors) == [field]
    assert any(fragment in message for message in errors[field]), errors


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"order_size_quote": 0.0}, "order_size_quote", "greater than 0"),
        ({"order_size_quote": -10.0}, "order_size_quote", "greater than 0"),
        ({"level_size_multiplier": 0.0}, "level_size_multiplier", "greater than 0"),
        ({"order_refresh_secs": float("nan")}, "order_refresh_secs", "finite"),
        ({"min_spread_bps": 50.0, "max_spread_bps": 40.0}, "min_spread_bps", "must not exceed"),
        ({"price_floor": 10.0, "price_ceiling": 10.0}, "price_floor", "below price_ceiling"),
        ({"price_ceiling": -1.0}, "price_ceiling", "greater than 0"),
        ({"maker_fee_bps": 600.0}, "maker_fee_bps", "between -100 and 100"),
        ({"maker_fee_bps": 30.0, "max_spread_bps": 50.0}, "maker_fee_bps", "every quote would lose"),
        ({"post_only": None}, "post_only", "true or false"),
    ],
)
def test_order_config_errors(changes: dict, field: str, fragment: str) -> None:
    errors = OrderConfig(**changes).validate()
    assert list(errors) == [field]
    assert any(fragment in message for message in errors[field]), errors


def test_every_strategy_type_is_a_valid_default() -> None:
    for name in STRATEGY_TYPES:
        assert StrategyConfig(default_strategy=name).validate() == {}


def test_several_errors_are_all_reported() -> None:
    errors = OrderConfig(order_size_quote=-1.0, price_floor=5.0, price_ceiling=1.0).validate()
    assert set(errors) == {"order_size_quote", "price_floor"}
