"""The reference price of a pair quoted on several venues (pure: strategies.reference), and the centre
a strategy quotes around when a snapshot carries one."""

from __future__ import annotations

import math

import pytest

from strategies.config import OrderConfig, StrategyConfig
from strategies.grid import GridStrategy
from strategies.reference import (
    REFERENCE_DEPTH_WEIGHTED,
    REFERENCE_MEDIAN,
    REFERENCE_OWN,
    REFERENCE_VENUE,
    depth_near_mid_quote,
    reference_mid,
    with_reference,
)
from strategies.types import InventoryState, MarketSnapshot, RiskContext


def book(mid: float, size: float) -> MarketSnapshot:
    return MarketSnapshot("BTC/USDT", mid - 1, mid + 1, 0.0, bids=((mid - 1, size),), asks=((mid + 1, size),))


DEEP, THIN, MIDDLE = book(100_000, 10.0), book(101_000, 0.01), book(100_400, 1.0)


@pytest.mark.parametrize(("mode", "healthy", "chosen", "expected"), [
    (REFERENCE_OWN, {"okx": THIN, "binance": DEEP}, "", 101_000),
    (REFERENCE_VENUE, {"okx": THIN, "binance": DEEP}, "binance", 100_000),
    (REFERENCE_MEDIAN, {"okx": THIN, "binance": DEEP, "bybit": MIDDLE}, "", 100_400),
    (REFERENCE_MEDIAN, {"okx": THIN, "binance": DEEP}, "", 100_500),
])
def test_reference_modes(mode: str, healthy: dict, chosen: str, expected: float) -> None:
    reference = reference_mid(mode, "okx", healthy, chosen_venue=chosen)
    assert reference.problem is None
    assert reference.mid == pytest.approx(expected)


def test_the_depth_weighted_mid_follows_the_deep_venue() -> None:
    reference = reference_mid(REFERENCE_DEPTH_WEIGHTED, "okx", {"okx": THIN, "binance": DEEP})
    weights = depth_near_mid_quote(THIN), depth_near_mid_quote(DEEP)
    assert reference.mid == pytest.approx((101_000 * weights[0] + 100_000 * weights[1]) / sum(weights))
    assert abs(reference.mid - 100_000) < 2.0, "a thin venue 1,000 away moves it by about 1"


def test_an_unhealthy_chosen_venue_is_a_problem_not_a_fallback() -> None:
    reference = reference_mid(REFERENCE_VENUE, "okx", {"okx": THIN}, chosen_venue="binance")
    assert math.isnan(reference.mid) and reference.problem == "reference venue binance has no healthy book"
    assert reference_mid(REFERENCE_OWN, "okx", {}).problem == "okx: no healthy book"


def test_a_strategy_centres_on_the_reference_and_stays_post_only_on_its_own_book() -> None:
    strategy = GridStrategy("BTC/USDT", StrategyConfig(spread_bps=20.0, grid_levels=1), OrderConfig())
    thin = MarketSnapshot("BTC/USDT", 99_999.0, 100_001.0, 0.0, tick_size=0.01, lot_size=1e-5)
    inventory = InventoryState.from_balances(1.0, 100_000.0, 100_000.0)
    risk = RiskContext(min_order_size_quote=10, max_order_size_quote=1e9, max_position_quote=1e9)
    own = {i.side: i.price for i in strategy.calculate_orders(thin, inventory, risk)}
    up = {i.side: i.price for i in strategy.calculate_orders(with_reference(thin, 100_100.0), inventory, risk)}
    assert own["buy"] < 100_000 < own["sell"]
    assert up["sell"] == pytest.approx(own["sell"] * 1.001, rel=1e-6)
    assert up["buy"] <= 100_001.0 - 0.01, "never crosses the venue's own best ask"
