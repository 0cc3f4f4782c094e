"""Market-analysis estimators against series with known answers, and the spec's selection order."""

from __future__ import annotations

import math
import random

import pytest

from strategies.analysis import (
    MarketAnalysis,
    analyze_market,
    book_depth_quote,
    order_arrival_intensity,
    realised_volatility_per_sec,
    trend_strength,
)
from strategies.config import StrategyConfig
from strategies.selection import select_strategy_type
from strategies.types import MarketSnapshot


def random_walk(n: int, sigma_per_sec: float, seed: int, irregular: bool = True) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    times, prices = [0.0], [100.0]
    for _ in range(n):
        dt = rng.expovariate(1.0) if irregular else 1.0
        times.append(times[-1] + dt)
        prices.append(prices[-1] * math.exp(rng.gauss(0.0, sigma_per_sec * math.sqrt(dt))))
    return times, prices


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_constant_volatility_random_walk_recovers_sigma(seed: int) -> None:
    sigma = 2e-4  # per sqrt(second)
    times, prices = random_walk(20_000, sigma, seed)
    estimate = realised_volatility_per_sec(times, prices)
    # std error of a variance estimate from n returns is ~ sqrt(2/n): 1 % here, sigma within ~3 %
    assert estimate == pytest.approx(sigma, rel=0.03)
    weighted = realised_volatility_per_sec(times, prices, half_life_secs=5000.0)
    assert weighted == pytest.approx(sigma, rel=0.06)


def test_ewma_follows_a_volatility_change() -> None:
    t1, p1 = random_walk(5000, 1e-4, 7, irregular=False)
    t2, p2 = random_walk(5000, 4e-4, 8, irregular=False)
    times = t1 + [t1[-1] + t for t in t2[1:]]
    prices = p1 + [p1[-1] * p / p2[0] for p in p2[1:]]
    assert realised_volatility_per_sec(times, prices, half_life_secs=300.0) == pytest.approx(4e-4, rel=0.1)
    assert realised_volatility_per_sec(times, prices) < 3.2e-4


def test_too_few_prices_give_no_volatility() -> None:
    assert realised_volatility_per_sec([0, 1, 2], [1.0, 1.1, 1.0]) is None
    assert realised_volatility_per_sec([], []) is None


def test_linear_trend_scores_near_one_and_noise_near_zero() -> None:
    strength, direction = trend_strength([100.0 + 0.1 * i for i in range(500)])
    assert strength > 0.99 and direction == 1
    strength, direction = trend_strength([100.0 - 0.05 * i for i in range(500)])
    assert strength > 0.99 and direction == -1
    rng = random.Random(5)
    noise = [100.0 + rng.gauss(0.0, 0.5) for _ in range(2000)]
    assert trend_strength(noise)[0] < 0.02
    _, walk = random_walk(2000, 1e-3, 11)
    assert trend_strength(walk)[0] < 0.15
    assert trend_strength([100.0] * 10) == (0.0, 0)


@pytest.mark.parametrize(("a_per_sec", "k_per_bps", "seed"), [(2.0, 0.1, 1), (0.5, 0.4, 2), (5.0, 0.05, 3)])
def test_fills_generated_with_known_a_and_k_are_recovered(a_per_sec: float, k_per_bps: float, seed: int) -> None:
    rng = random.Random(seed)
    window = 4000.0
    mid = 100.0
    trades = []
    for side, sign in (("buy", 1), ("sell", -1)):
        t = rng.expovariate(a_per_sec)
        while t < window:
            delta_bps = rng.expovariate(k_per_bps)
            trades.append((t, mid * (1 + sign * delta_bps / 1e4), 1.0, side))
            t += rng.expovariate(a_per_sec)
    trades.sort()
    a_hat, k_hat = order_arrival_intensity(trades, [0.0], [mid], window)
    n = len(trades)
    assert a_hat == pytest.approx(a_per_sec, rel=4 / math.sqrt(n))
    assert k_hat == pytest.approx(k_per_bps, rel=4 / math.sqrt(n))


def test_order_arrival_needs_enough_trades() -> None:
    trades = [(float(i), 100.01, 1.0, "buy") for i in range(5)]
    assert order_arrival_intensity(trades, [0.0], [100.0], 10.0) is None


def test_book_depth_counts_levels_within_the_band() -> None:
    snapshot = MarketSnapshot(
        "X/Y", 99.0, 101.0, now=0.0,
        bids=((99.0, 2.0), (98.5, 1.0), (90.0, 100.0)),
        asks=((101.0, 1.0), (101.4, 1.0), (120.0, 100.0)),
    )
    assert book_depth_quote(snapshot, band_bps=200.0) == pytest.approx(99 * 2 + 98.5 + 101 + 101.4)


def test_analyze_market_uses_history_and_falls_back_to_config() -> None:
    config = StrategyConfig()
    bare = analyze_market(MarketSnapshot("X/Y", 99.0, 101.0, now=10.0), config)
    assert not bare.volatility_measured and not bare.arrival_measured
    assert bare.volatility_bps_per_sqrt_sec == config.volatility_fallback_bps_per_sqrt_sec
    assert bare.order_arrival_k_per_bps == config.order_arrival_k_per_bps
    assert bare.volatility_daily == pytest.approx(0.7 / 1e4 * math.sqrt(86400))
    times, mids = random_walk(3000, 3e-4, 4)
    trades = tuple((t, m * 1.0005, 1.0, "buy") for t, m in zip(times[::10], mids[::10], strict=True))
    snapshot = MarketSnapshot("X/Y", mids[-1] - 0.01, mids[-1] + 0.01, now=times[-1], trades=trades)
    measured = analyze_market(snapshot, config, times, mids)
    assert measured.volatility_measured and measured.arrival_measured
    assert measured.volatility_bps_per_sqrt_sec == pytest.approx(3.0, rel=0.15)
    assert measured.order_arrival_k_per_bps == pytest.approx(1 / 5.0, rel=0.05)  # every trade 5 bps out


def analysis(volatility: float, liquidity: float, trend: float) -> MarketAnalysis:
    return MarketAnalysis(
        mid=100.0, volatility_daily=volatility, volatility_bps_per_sqrt_sec=volatility * 1e4 / math.sqrt(86400),
        liquidity_quote=liquidity, trend_strength=trend, trend_direction=1,
        order_arrival_a_per_sec=1.0, order_arrival_k_per_bps=0.1,
    )


@pytest.mark.parametrize(
    ("volatility", "liquidity", "trend", "expected"),
    [
        (0.06, 500.0, 0.9, "VOLATILITY_ADAPTIVE"),  # volatility is checked first
        (0.05, 500.0, 0.9, "INVENTORY_BASED"),  # threshold is strict (>), liquidity next
        (0.01, 999.99, 0.9, "INVENTORY_BASED"),
        (0.01, 1000.0, 0.9, "TREND_FOLLOWING"),  # liquidity threshold strict (<), trend next
        (0.01, 1000.0, 0.7, "GRID_TRADING"),  # trend threshold strict (>)
        (0.01, 5e6, 0.71, "TREND_FOLLOWING"),
        (0.0, 5e6, 0.0, "GRID_TRADING"),
    ],
)
def test_selection_follows_the_spec_order_and_thresholds(volatility, liquidity, trend, expected) -> None:
    assert select_strategy_type(analysis(volatility, liquidity, trend), StrategyConfig()) == expected


def test_selection_without_adaptation_uses_the_default() -> None:
    config = StrategyConfig(adaptation_enabled=False, default_strategy="TREND_FOLLOWING")
    assert select_strategy_type(analysis(0.5, 0.0, 0.0), config) == "TREND_FOLLOWING"


def test_a_mid_that_never_moved_falls_back_to_the_configured_volatility() -> None:
    """A wide-tick or quiet pair (e.g. ETH/BTC in a calm hour) measures exactly zero volatility; that is
    no information, and a zero sigma would make the strategies' parameters invalid (the bot could not
    start), so the configured fallback is used and the analysis says it was not measured."""
    config = StrategyConfig()
    times = [float(t) for t in range(120)]
    analysis = analyze_market(MarketSnapshot("ETH/BTC", 0.05, 0.0501, now=120.0), config, times, [0.05005] * 120)
    assert not analysis.volatility_measured
    assert analysis.volatility_bps_per_sqrt_sec == config.volatility_fallback_bps_per_sqrt_sec
    from strategies.config import OrderConfig
    from strategies.selection import create_strategy

    strategy = create_strategy(select_strategy_type(analysis, config), "ETH/BTC", analysis, config, OrderConfig())
    assert strategy.parameters.volatility_bps_per_sqrt_sec > 0  # it was InvalidStrategyError before
