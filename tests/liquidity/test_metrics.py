"""liquidity/metrics.py: the pure SLA math (no database). Hand-computed cases, and the property that
figures of adjacent spans add up to the figures of the whole."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidity import metrics
from liquidity.metrics import RestingOrder, figures, summarize

BID = "buy"
ASK = "sell"


def test_pure_module_imports_neither_django_nor_ccxt() -> None:
    code = "import sys, liquidity.metrics; print(any(m.split('.')[0] in ('django', 'ccxt') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_uptime_spread_and_depth_by_hand() -> None:
    # mid 100 all along; a bid at 99.9 (10 bps) for the first 600 ms, an ask at 100.1 from 200 ms to the
    # end (1000 ms) whose 1 unit is half filled at 500 ms; a far bid at 97 (3 %) from 0 to 1000 ms
    orders = [RestingOrder(BID, 99.9, 1.0, 0, 600), RestingOrder(ASK, 100.1, 1.0, 200, None, ((500, 0.5),)),
              RestingOrder(BID, 97.0, 2.0, 0, 1000)]
    f = figures(orders, [(0, 100.0)], 0, 1000)
    assert (f.bid_ms, f.ask_ms, f.two_sided_ms) == (1000, 800, 800)
    s = summarize(f)
    assert (s.uptime_bid, s.uptime_ask, s.uptime_two_sided) == (1.0, 0.8, 0.8)
    # two-sided 200-600 at 20 bps (99.9 / 100.1), 600-1000 at 310 bps (97 / 100.1)
    assert s.avg_spread_bps == pytest.approx((400 * 20 + 400 * 310) / 800)
    assert s.p50_spread_bps == pytest.approx(20.25) and s.p95_spread_bps == pytest.approx(310.25)
    # bid within 1 %: 99.9 x 1 for 600 ms; within 5 %: plus 97 x 2 all along
    assert s.depth_quote["bid_1"] == pytest.approx(99.9 * 600 / 1000)
    assert s.depth_quote["bid_5"] == pytest.approx((99.9 * 600 + 194 * 1000) / 1000)
    # ask: 1 unit 200-500, 0.5 after
    assert s.depth_quote["ask_1"] == pytest.approx(100.1 * (300 + 0.5 * 500) / 1000)
    # within a 25 bps max spread: two-sided 400 ms, the bid side 600 ms (10 bps <= 12.5), the ask 800 ms
    assert metrics.uptime_within(f, 1000, 25.0) == (0.6, 0.8, 0.4)


def test_without_a_mid_the_quotes_midpoint_and_an_excluded_span() -> None:
    f = figures([RestingOrder(BID, 99.0, 1.0, 0, None), RestingOrder(ASK, 101.0, 1.0, 0, None)], [], 0, 100)
    assert summarize(f).avg_spread_bps == pytest.approx(200.0)
    assert summarize(f, counted_ms=200).uptime_bid == 0.5
    assert summarize(metrics.Figures()).uptime_bid == 0.0 and summarize(metrics.Figures()).avg_spread_bps is None


@pytest.mark.parametrize(("figure", "counted", "window", "status"), [
    (1.0, 3_600_000, 86_400_000, metrics.GREEN),
    (0.5, 3_600_000, 86_400_000, metrics.AMBER),      # below target now, recoverable
    (0.0, 43_200_000, 86_400_000, metrics.RED),       # half the day without quotes: 90 % unreachable
    (0.92, 86_000_000, 86_400_000, metrics.AMBER),    # above target, little allowance left
])
def test_uptime_status(figure: float, counted: int, window: int, status: str) -> None:
    assert metrics.uptime_check("u", figure, 0.9, counted_ms=counted, window_ms=window).status == status


def test_ceiling_and_floor() -> None:
    assert metrics.ceiling_check("s", 120.0, 100.0, "bps").status == metrics.RED
    assert metrics.ceiling_check("s", 95.0, 100.0, "bps").status == metrics.AMBER
    assert metrics.ceiling_check("s", 50.0, 100.0, "bps").status == metrics.GREEN
    assert metrics.floor_check("d", 40.0, 50.0, "USDT").status == metrics.RED
    assert metrics.worst([metrics.GREEN, metrics.AMBER]) == metrics.AMBER


orders_strategy = st.lists(st.builds(
    RestingOrder, side=st.sampled_from([BID, ASK]), price=st.floats(90, 110), amount=st.floats(0.1, 5),
    start_ms=st.integers(0, 900), end_ms=st.one_of(st.none(), st.integers(0, 1000)),
    fills=st.lists(st.tuples(st.integers(0, 1000), st.floats(0.01, 0.1)), max_size=2).map(tuple)), max_size=8)


@settings(max_examples=80, deadline=None)
@given(orders=orders_strategy, cut=st.integers(1, 999),
       mids=st.lists(st.tuples(st.integers(0, 1000), st.floats(95, 105)), max_size=4).map(sorted))
def test_adjacent_spans_add_up(orders: list[RestingOrder], cut: int, mids: list[tuple[int, float]]) -> None:
    whole = figures(orders, mids, 0, 1000)
    parts = figures(orders, mids, 0, cut).add(figures(orders, mids, cut, 1000))
    assert (parts.bid_ms, parts.ask_ms, parts.two_sided_ms, parts.duration_ms) == (
        whole.bid_ms, whole.ask_ms, whole.two_sided_ms, whole.duration_ms)
    assert parts.spread_bps_ms == pytest.approx(whole.spread_bps_ms, rel=1e-9, abs=1e-6)
    for key in set(whole.depth_quote_ms) | set(parts.depth_quote_ms):
        assert parts.depth_quote_ms.get(key, 0) == pytest.approx(whole.depth_quote_ms.get(key, 0), rel=1e-9, abs=1e-6)
    assert parts.spread_histogram == whole.spread_histogram
