"""Market analysis: the spec's ``_analyze_market_characteristics`` as pure estimators.

Each estimator takes plain sequences (timestamps in seconds, prices in quote currency) and says
its formula and unit. ``analyze_market`` combines them into a ``MarketAnalysis``, which the
selection (``strategies.selection``) and every strategy's ``adapt_to_conditions`` read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from strategies.config import StrategyConfig
from strategies.types import MarketSnapshot, Trade

SECONDS_PER_DAY = 86400.0
BPS = 1e4
MIN_ARRIVAL_TRADES = 20
"""Fewer trades than this and the order-arrival fit falls back to the config's A and k."""
MIN_VOLATILITY_RETURNS = 5
"""Fewer price changes than this and volatility falls back to the config's sigma."""
VOLATILITY_SAMPLE_SECS = 10.0
"""The mid history is read every fraction of a second, and at that spacing the best bid/ask moving
between quotes (the bots' own among them: a market maker inside the spread moves the mid each time it
is filled or re-quotes) is measured as volatility. The demo market at 3 %/day measured 4.3 %/day with
the demo bot quoting in it at 0.5 s spacing, ~10 %/day on the running platform with a few bots (the
pause threshold); sampled at least 10 s apart it measures 3.0 %/day. So returns are taken over at
least this many seconds (sparse sampling, the usual remedy for microstructure noise)."""


@dataclass(frozen=True, slots=True)
class MarketAnalysis:
    """What the strategy engine knows about a market at one time."""

    mid: float
    """Mid price, quote currency."""
    volatility_daily: float
    """Realised volatility of the mid's log return as a daily fraction (0.05 = 5 %/day); the
    spec's ``market_analysis.volatility`` compared with ``high_volatility_threshold``."""
    volatility_bps_per_sqrt_sec: float
    """The same volatility in bps per sqrt(second) (what Avellaneda-Stoikov uses)."""
    liquidity_quote: float
    """Book depth on both sides within ``analysis_band_bps`` of the mid, quote currency; the spec's
    ``market_analysis.liquidity``."""
    trend_strength: float
    """0..1 (Kaufman efficiency ratio of the log mid series); the spec's ``trend_strength``."""
    trend_direction: int
    """+1 price rose over the window, -1 fell, 0 flat."""
    order_arrival_a_per_sec: float
    """A of lambda(delta) = A*exp(-k*delta): market orders per second reaching one side at the mid."""
    order_arrival_k_per_bps: float
    """k of the same law, per bps of distance from the mid."""
    volatility_measured: bool = True
    """False when too few prices were seen and sigma is the config's fallback."""
    arrival_measured: bool = True
    """False when too few trades were seen and A, k are the config's fallbacks."""


def realised_volatility_per_sec(
    times: Sequence[float], prices: Sequence[float], half_life_secs: float | None = None,
    min_interval_secs: float = 0.0,
) -> float | None:
    """Time-weighted EWMA estimate of sigma (fraction per sqrt(second)) of log prices.

    sigma^2 = sum_i w_i r_i^2 / sum_i w_i dt_i, with r_i = ln(p_i / p_(i-1)), dt_i = t_i - t_(i-1)
    and w_i = 2^(-(t_last - t_i) / half_life) (all w_i = 1 without a half-life). Dividing by the
    weighted elapsed time (not the count) makes it unbiased for a Brownian log price sampled at
    irregular times. With ``min_interval_secs`` a return spans at least that long (prices in between
    are skipped). Returns None with fewer than ``MIN_VOLATILITY_RETURNS`` usable returns.
    """
    n = len(prices)
    if n < 2 or len(times) != n:
        return None
    t_last = times[-1]
    decay = math.log(2.0) / half_life_secs if half_life_secs else 0.0
    num = 0.0
    den = 0.0
    used = 0
    prev_t = times[0]
    prev_p = prices[0]
    for i in range(1, n):
        t = times[i]
        p = prices[i]
        dt = t - prev_t
        if dt < min_interval_secs:
            continue
        if dt > 0 and p > 0 and prev_p > 0:
            r = math.log(p / prev_p)
            w = math.exp(-decay * (t_last - t)) if decay else 1.0
            num += w * r * r
            den += w * dt
            used += 1
        prev_t = t
        prev_p = p
    if used < MIN_VOLATILITY_RETURNS or den <= 0:
        return None
    return math.sqrt(num / den)


def book_depth_quote(snapshot: MarketSnapshot, band_bps: float) -> float:
    """Sum of price*size (quote currency) of L2 levels within ``band_bps`` of the mid, both sides."""
    mid = snapshot.mid
    low = mid * (1.0 - band_bps / BPS)
    high = mid * (1.0 + band_bps / BPS)
    depth = 0.0
    for price, size in snapshot.bids:
        if price >= low:
            depth += price * size
    for price, size in snapshot.asks:
        if price <= high:
            depth += price * size
    return depth


def trend_strength(prices: Sequence[float]) -> tuple[float, int]:
    """Kaufman efficiency ratio of the log prices and the trend's direction.

    ER = |ln p_n - ln p_0| / sum_i |ln p_i - ln p_(i-1)|, in 0..1: 1 for a monotone (linear)
    move, about 1/sqrt(n) for a random walk and near 0 for noise around a level. Direction is
    the sign of ln p_n - ln p_0. (0.0, 0) with fewer than 3 prices or no movement.
    """
    if len(prices) < 3:
        return 0.0, 0
    logs = [math.log(p) for p in prices if p > 0]
    if len(logs) < 3:
        return 0.0, 0
    path = 0.0
    for i in range(1, len(logs)):
        path += abs(logs[i] - logs[i - 1])
    if path <= 0:
        return 0.0, 0
    net = logs[-1] - logs[0]
    direction = 1 if net > 0 else -1 if net < 0 else 0
    return min(1.0, abs(net) / path), direction


def order_arrival_intensity(
    trades: Sequence[Trade],
    mid_times: Sequence[float],
    mids: Sequence[float],
    window_secs: float,
) -> tuple[float, float] | None:
    """Fit lambda(delta) = A*exp(-k*delta) (delta in bps from the mid) from observed trades.

    Each trade's distance from the mid prevailing just before it, delta_i in bps, is a draw of
    how deep a market order reached; under the model the number of orders per second reaching at
    least delta on one side is A*exp(-k*delta), i.e. delta_i ~ Exponential(k). The maximum
    likelihood estimates are k = n / sum(delta_i) (per bps) and A = n / (2 * window_secs) (per
    second per side, trades of both sides pooled). Returns (A, k) or None with fewer than
    ``MIN_ARRIVAL_TRADES`` trades, a zero window or all trades at the mid.
    """
    if len(trades) < MIN_ARRIVAL_TRADES or window_secs <= 0 or not mids:
        return None
    n_mids = len(mids)
    j = 0
    total = 0.0
    n = 0
    for ts, price, _size, _side in trades:
        while j + 1 < n_mids and mid_times[j + 1] <= ts:
            j += 1
        mid = mids[j]
        if mid <= 0 or price <= 0:
            continue
        total += abs(price - mid) / mid * BPS
        n += 1
    if n < MIN_ARRIVAL_TRADES or total <= 0:
        return None
    return n / (2.0 * window_secs), n / total


def analyze_market(
    snapshot: MarketSnapshot,
    config: StrategyConfig,
    mid_times: Sequence[float] = (),
    mids: Sequence[float] = (),
) -> MarketAnalysis:
    """Combine the estimators on a snapshot and the mid history the engine kept (oldest first).

    Without a mid history the snapshot's trade prices stand in for it. Too little data falls
    back to the config's sigma, A and k (flagged in ``volatility_measured``/``arrival_measured``).
    """
    if not mids:
        mid_times = [t[0] for t in snapshot.trades]
        mids = [t[1] for t in snapshot.trades]
    sigma = realised_volatility_per_sec(mid_times, mids, config.volatility_half_life_secs, VOLATILITY_SAMPLE_SECS)
    # a mid that never moved (a wide tick, a quiet pair) measures zero: no information, not "no risk"
    volatility_measured = sigma is not None and sigma > 0
    if sigma is None or not volatility_measured:
        sigma_bps = config.volatility_fallback_bps_per_sqrt_sec
    else:
        sigma_bps = sigma * BPS
    strength, direction = trend_strength(mids)

    trades = snapshot.trades
    fitted = None
    if trades:
        start = min(trades[0][0], mid_times[0]) if mid_times else trades[0][0]
        window = snapshot.now - start
        if mid_times:
            fitted = order_arrival_intensity(trades, mid_times, mids, window)
        else:
            mid = snapshot.mid
            fitted = order_arrival_intensity(trades, (start,), (mid,), window)
    if fitted is None:
        a_per_sec, k_per_bps = config.order_arrival_a_per_sec, config.order_arrival_k_per_bps
    else:
        a_per_sec, k_per_bps = fitted
    return MarketAnalysis(
        mid=snapshot.mid,
        volatility_daily=sigma_bps / BPS * math.sqrt(SECONDS_PER_DAY),
        volatility_bps_per_sqrt_sec=sigma_bps,
        liquidity_quote=book_depth_quote(snapshot, config.analysis_band_bps),
        trend_strength=strength,
        trend_direction=direction,
        order_arrival_a_per_sec=a_per_sec,
        order_arrival_k_per_bps=k_per_bps,
        volatility_measured=volatility_measured,
        arrival_measured=fitted is not None,
    )

