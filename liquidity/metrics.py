"""Liquidity-agreement (SLA) figures from an order lifecycle: pure math, no Django, no ccxt.

Input: the orders that rested on one (venue, pair) -- each with the venue's times of its acceptance,
its fills and its end -- and the market's mid over time. Output: ``Figures``, sums over a time span
(milliseconds and quote x milliseconds) that add up across minutes, hours and days, from which
``Summary`` derives the figures an agreement is written in:

- uptime per side: time with at least one resting order on that side; two-sided: both at once;
- quoted spread: best ask - best bid in bps of the mid, time-weighted over two-sided time (mean, and
  p50 / p95 from a histogram of 0.5 bps buckets);
- each side's distance from the mid (histogram), so "uptime within a max spread" is exact to a bucket
  for any max spread an agreement asks later;
- depth within +-1 / +-2 / +-5 % of the mid per side, in quote (price x remaining base), time-weighted
  over the whole span (time without quotes counts as zero).

Floats inside (statistics, not balances); the service stores sums and reports rounded figures.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

BANDS_PCT = (1, 2, 5)
"""The depth bands (% of mid) recorded per side."""
BUCKETS_PER_BPS = 2
"""Histogram resolution: 0.5 bps buckets."""
MAX_BUCKET = 2000 * BUCKETS_PER_BPS
"""Spreads and distances above 2000 bps share the last bucket."""

BUY = "buy"
SELL = "sell"


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """One order's life on the venue. ``end_ms`` None: still resting. ``fills``: (ms, base filled)."""

    side: str
    price: float
    amount: float
    start_ms: int
    end_ms: int | None
    fills: tuple[tuple[int, float], ...] = ()


@dataclass(slots=True)
class Figures:
    """Sums over a span of ``duration_ms``: they add up (``add``) across spans and (venue, pair)s of one
    bot are kept apart by the caller."""

    duration_ms: int = 0
    bid_ms: int = 0
    ask_ms: int = 0
    two_sided_ms: int = 0
    spread_bps_ms: float = 0.0
    spread_histogram: dict[int, int] = field(default_factory=dict)
    bid_distance_histogram: dict[int, int] = field(default_factory=dict)
    ask_distance_histogram: dict[int, int] = field(default_factory=dict)
    depth_quote_ms: dict[str, float] = field(default_factory=dict)
    """``"bid_2"`` -> quote x ms of bid depth within +-2 % of the mid, etc."""

    def add(self, other: Figures) -> Figures:
        """``self`` plus ``other`` (in place; returns self)."""
        self.duration_ms += other.duration_ms
        self.bid_ms += other.bid_ms
        self.ask_ms += other.ask_ms
        self.two_sided_ms += other.two_sided_ms
        self.spread_bps_ms += other.spread_bps_ms
        for mine, theirs in ((self.spread_histogram, other.spread_histogram),
                             (self.bid_distance_histogram, other.bid_distance_histogram),
                             (self.ask_distance_histogram, other.ask_distance_histogram)):
            for bucket, ms in theirs.items():
                bucket = int(bucket)
                mine[bucket] = mine.get(bucket, 0) + int(ms)
        for key, value in other.depth_quote_ms.items():
            self.depth_quote_ms[key] = self.depth_quote_ms.get(key, 0.0) + value
        return self


def bucket_of(bps: float) -> int:
    """The histogram bucket of a spread or distance (negative distances count as 0)."""
    if not bps > 0:
        return 0
    return min(int(bps * BUCKETS_PER_BPS + 1e-9), MAX_BUCKET)  # 19.999999 bps (float noise) is 20


def _mid_at(times: Sequence[int], mids: Sequence[float], at_ms: int) -> float | None:
    if not times:
        return None
    index = bisect.bisect_right(times, at_ms) - 1
    return mids[max(index, 0)]


def figures(orders: Iterable[RestingOrder], mid_points: Sequence[tuple[int, float]], start_ms: int,
            end_ms: int) -> Figures:
    """The figures of ``[start_ms, end_ms)`` from the orders resting in it and the mid (a step function of
    ``(ms, mid)`` points, oldest first; before the first point its value; without any point the middle of
    the bot's own best quotes, or a lone side's best price)."""
    result = Figures(duration_ms=max(end_ms - start_ms, 0))
    if end_ms <= start_ms:
        return result
    # remaining-quantity changes: (ms, order index, remaining after)
    changes: list[tuple[int, int, float]] = []
    live: list[RestingOrder] = []
    for order in orders:
        stop = end_ms if order.end_ms is None else min(order.end_ms, end_ms)
        begin = max(order.start_ms, start_ms)
        if stop <= begin or order.price <= 0:
            continue
        index = len(live)
        live.append(order)
        remaining = order.amount
        for at_ms, quantity in sorted(order.fills):
            remaining -= quantity
            if at_ms <= begin:
                continue
            if at_ms < stop:
                changes.append((at_ms, index, max(remaining, 0.0)))
        # remaining at the span's start: fills at or before it already taken
        initial = order.amount - sum(q for at, q in order.fills if at <= begin)
        changes.append((begin, index, max(initial, 0.0)))
        changes.append((stop, index, 0.0))
    times = [t for t, _ in mid_points]
    mids = [m for _, m in mid_points]
    boundaries = {start_ms, end_ms, *(t for t, _, _ in changes)}
    boundaries.update(t for t in times if start_ms < t < end_ms)
    ordered = sorted(b for b in boundaries if start_ms <= b <= end_ms)
    changes.sort(key=lambda c: c[0])
    remaining_of: dict[int, float] = {}
    cursor = 0
    spread_hist, bid_hist = result.spread_histogram, result.bid_distance_histogram
    ask_hist = result.ask_distance_histogram
    depth = result.depth_quote_ms
    for position, moment in enumerate(ordered[:-1]):
        while cursor < len(changes) and changes[cursor][0] <= moment:
            _, index, remaining = changes[cursor]
            if remaining > 0:
                remaining_of[index] = remaining
            else:
                remaining_of.pop(index, None)
            cursor += 1
        span = ordered[position + 1] - moment
        if span <= 0 or not remaining_of:
            continue
        best_bid = max((live[i].price for i in remaining_of if live[i].side == BUY), default=None)
        best_ask = min((live[i].price for i in remaining_of if live[i].side == SELL), default=None)
        mid = _mid_at(times, mids, moment)
        if mid is None or mid <= 0:
            if best_bid is not None and best_ask is not None:
                mid = (best_bid + best_ask) / 2
            else:
                mid = best_bid if best_bid is not None else best_ask
        assert mid is not None
        if best_bid is not None:
            result.bid_ms += span
            distance = (mid - best_bid) / mid * 10_000
            bucket = bucket_of(distance)
            bid_hist[bucket] = bid_hist.get(bucket, 0) + span
        if best_ask is not None:
            result.ask_ms += span
            distance = (best_ask - mid) / mid * 10_000
            bucket = bucket_of(distance)
            ask_hist[bucket] = ask_hist.get(bucket, 0) + span
        if best_bid is not None and best_ask is not None:
            result.two_sided_ms += span
            spread_bps = (best_ask - best_bid) / mid * 10_000
            result.spread_bps_ms += spread_bps * span
            bucket = bucket_of(spread_bps)
            spread_hist[bucket] = spread_hist.get(bucket, 0) + span
        for index, remaining in remaining_of.items():
            order = live[index]
            away_pct = abs(order.price - mid) / mid * 100
            notional_ms = order.price * remaining * span
            side = "bid" if order.side == BUY else "ask"
            for band in BANDS_PCT:
                if away_pct <= band:
                    key = f"{side}_{band}"
                    depth[key] = depth.get(key, 0.0) + notional_ms
    return result


def percentile_bps(histogram: dict[int, int], fraction: float) -> float | None:
    """The spread (bps, a bucket's middle) below which ``fraction`` of the histogram's time lies."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    target = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= target:
            return (bucket + 0.5) / BUCKETS_PER_BPS
    return (max(histogram) + 0.5) / BUCKETS_PER_BPS


def time_within_bps(histogram: dict[int, int], max_bps: float) -> int:
    """Milliseconds of the histogram at or below ``max_bps`` (to the bucket: 0.5 bps)."""
    limit = max_bps * BUCKETS_PER_BPS
    return sum(ms for bucket, ms in histogram.items() if bucket < limit or math.isclose(bucket, limit))


@dataclass(frozen=True, slots=True)
class Summary:
    """What an agreement reads: fractions of the counted time, bps, quote."""

    counted_ms: int
    uptime_bid: float
    uptime_ask: float
    uptime_two_sided: float
    avg_spread_bps: float | None
    p50_spread_bps: float | None
    p95_spread_bps: float | None
    depth_quote: dict[str, float]
    """``"bid_2"`` -> time-weighted bid depth within +-2 % of the mid (quote), etc."""


def summarize(totals: Figures, counted_ms: int | None = None) -> Summary:
    """The agreement's figures of ``totals`` over ``counted_ms`` (default its duration; a window minus its
    excluded time)."""
    counted = totals.duration_ms if counted_ms is None else counted_ms
    share = (lambda ms: min(ms / counted, 1.0)) if counted > 0 else (lambda ms: 0.0)
    return Summary(
        counted_ms=counted,
        uptime_bid=share(totals.bid_ms),
        uptime_ask=share(totals.ask_ms),
        uptime_two_sided=share(totals.two_sided_ms),
        avg_spread_bps=totals.spread_bps_ms / totals.two_sided_ms if totals.two_sided_ms else None,
        p50_spread_bps=percentile_bps(totals.spread_histogram, 0.5),
        p95_spread_bps=percentile_bps(totals.spread_histogram, 0.95),
        depth_quote={f"{side}_{band}": (totals.depth_quote_ms.get(f"{side}_{band}", 0.0) / counted if counted else 0.0)
                     for side in ("bid", "ask") for band in BANDS_PCT},
    )


def uptime_within(totals: Figures, counted_ms: int, max_spread_bps: float) -> tuple[float, float, float]:
    """(bid, ask, two-sided) uptime counting only time within ``max_spread_bps``: two-sided when the
    spread is at most that, a side when its best quote is at most half of it from the mid."""
    if counted_ms <= 0:
        return 0.0, 0.0, 0.0
    half = max_spread_bps / 2
    return (min(time_within_bps(totals.bid_distance_histogram, half) / counted_ms, 1.0),
            min(time_within_bps(totals.ask_distance_histogram, half) / counted_ms, 1.0),
            min(time_within_bps(totals.spread_histogram, max_spread_bps) / counted_ms, 1.0))


# --- agreement status ------------------------------------------------------------------------------

GREEN = "green"
AMBER = "amber"
RED = "red"
_RANK = {GREEN: 0, AMBER: 1, RED: 2}


@dataclass(frozen=True, slots=True)
class Check:
    """One term of an agreement against the current window: the figure, the target and what it needs."""

    name: str
    status: str
    figure: float | None
    target: float
    needs: str


def worst(statuses: Iterable[str]) -> str:
    """The worst of green / amber / red (green when empty)."""
    return max(statuses, key=_RANK.__getitem__, default=GREEN)


def uptime_check(name: str, figure: float, target: float, *, counted_ms: int, window_ms: int,
                 at_risk_share: float = 0.25) -> Check:
    """An uptime term (fractions). Red: the window can no longer meet the target even quoting all of its
    rest. Amber: below target now but recoverable, or less than ``at_risk_share`` of the window's downtime
    allowance left. ``needs``: the downtime it may still have."""
    rest_ms = max(window_ms - counted_ms, 0)
    best_final = (figure * counted_ms + rest_ms) / window_ms if window_ms else figure
    allowance_ms = (1 - target) * window_ms
    left_ms = best_final * window_ms - target * window_ms
    if best_final < target:
        status = RED
    elif figure < target or (allowance_ms > 0 and left_ms < at_risk_share * allowance_ms):
        status = AMBER
    else:
        status = GREEN
    needs = (f"window lost: at most {best_final * 100:.2f} % reachable" if status == RED
             else f"at most {left_ms / 60_000:.1f} min more without quotes this window")
    return Check(name, status, figure, target, needs)


def ceiling_check(name: str, figure: float | None, ceiling: float, unit: str, *, margin: float = 0.9) -> Check:
    """A figure that must stay at or below ``ceiling`` (spread). Amber above ``margin`` of it."""
    if figure is None:
        return Check(name, AMBER, None, ceiling, f"no two-sided quotes yet; needs <= {ceiling:g} {unit}")
    status = RED if figure > ceiling else AMBER if figure > margin * ceiling else GREEN
    return Check(name, status, figure, ceiling, f"average <= {ceiling:g} {unit}")


def floor_check(name: str, figure: float, floor: float, unit: str, *, margin: float = 1.1) -> Check:
    """A figure that must stay at or above ``floor`` (depth). Amber below ``margin`` of it."""
    status = RED if figure < floor else AMBER if figure < margin * floor else GREEN
    return Check(name, status, figure, floor, f"time-weighted >= {floor:g} {unit}")
