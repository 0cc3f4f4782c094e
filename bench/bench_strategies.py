"""Strategies benchmark: quotes per second per strategy, the Avellaneda-Stoikov Monte Carlo, and
the backtester (requoting every L1 tick, and data-only replay). Prints figures and writes
``bench/results/strategies.json``; it never fails on a time.

    python bench/bench_strategies.py [--quotes 200000] [--ticks 200000] [--repeat 3]

Each figure is the best of ``--repeat`` runs (the machine is shared; the best run is the one
least disturbed by other work).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from strategies.backtest import run_backtest, settings_from_metadata  # noqa: E402
from strategies.base import MarketMakingStrategy  # noqa: E402
from strategies.config import STRATEGY_TYPES, OrderConfig, StrategyConfig  # noqa: E402
from strategies.marketdata import QUOTE, generate_market_data  # noqa: E402
from strategies.selection import create_strategy  # noqa: E402
from strategies.simulation import simulate_avellaneda_stoikov  # noqa: E402
from strategies.types import InventoryState, MarketSnapshot, RiskContext  # noqa: E402


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The smallest wall time of ``repeat`` calls of ``run()``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_quotes(quotes: int, repeat: int) -> dict:
    """calculate_orders per second: one level a side, tick and lot rounding, inventory off target."""
    snapshot = MarketSnapshot("BTC/USDT", 49999.0, 50001.0, now=1_700_000_000.0, tick_size=0.01, lot_size=1e-5)
    inventory = InventoryState.from_balances(1.05, 47500.0, 50000.0)
    risk = RiskContext()
    results = {}
    for kind in STRATEGY_TYPES:
        for levels in (1, 10):
            strategy = create_strategy(kind, "BTC/USDT", None, StrategyConfig(grid_levels=levels), OrderConfig())
            calculate = strategy.calculate_orders
            assert calculate(snapshot, inventory, risk), kind
            count = quotes if levels == 1 else quotes // 5

            def run(calculate: Callable = calculate, count: int = count) -> None:
                for _ in range(count):
                    calculate(snapshot, inventory, risk)

            results[f"{kind}/{levels}_level"] = count / best_of(repeat, run)
    return results


def bench_simulator(repeat: int) -> dict:
    """Avellaneda-Stoikov Monte Carlo: 1000 paths x 200 steps (both strategies), and 10000 paths."""
    out = {}
    for paths in (1000, 10000):
        secs = best_of(repeat, lambda paths=paths: simulate_avellaneda_stoikov(gamma=0.1, paths=paths, seed=1))
        out[f"{paths}x200_secs"] = secs
        out[f"{paths}x200_path_steps_per_sec"] = paths * 200 * 2 / secs  # two strategies per run
    return out


def requote_strategy() -> MarketMakingStrategy:
    """One bid and one ask, cancelled and re-placed on every L1 tick (refresh age ~0, tolerance 0)."""
    config = StrategyConfig(grid_levels=1, spread_bps=4.0, inventory_skew_bps=2.0)
    order = OrderConfig(maker_fee_bps=0.0, min_spread_bps=1.0, order_refresh_secs=1e-9,
                        order_refresh_tolerance_bps=0.0, order_size_quote=50.0)
    return create_strategy("GRID_TRADING", "SYN/USDT", None, config, order)


def bench_backtest(ticks: int, repeat: int) -> dict:
    """Backtest throughput (the book model, decisions through the live pipeline)."""
    l1 = generate_market_data(ticks, seed=3, trade_probability=0.0)
    mixed = generate_market_data(ticks, seed=4)  # 20 % trades
    risk = RiskContext(min_order_size_quote=1.0)
    out: dict = {}
    l1_settings = dataclasses.replace(settings_from_metadata(l1), analysis_interval_secs=0.0)
    last = {}

    def requote() -> None:
        last["r"] = run_backtest(l1, requote_strategy(), l1_settings, risk)

    secs = best_of(repeat, requote)
    result = last["r"]
    out["requote_every_l1_tick_ticks_per_sec"] = ticks / secs
    out["requote_orders_placed_per_tick"] = result.orders_placed / ticks
    out["requote_orders_cancelled_per_tick"] = result.orders_cancelled / ticks
    out["requote_fills"] = result.fills

    mixed_settings = dataclasses.replace(settings_from_metadata(mixed), analysis_interval_secs=0.0)
    secs = best_of(repeat, lambda: run_backtest(mixed, requote_strategy(), mixed_settings, risk))
    out["requote_with_20pct_trades_events_per_sec"] = ticks / secs

    secs = best_of(repeat, lambda: run_backtest(l1, None, l1_settings))
    out["data_only_l1_ticks_per_sec"] = ticks / secs
    changes = sum(
        1 for i in range(1, ticks) if (l1.bid[i], l1.ask[i]) != (l1.bid[i - 1], l1.ask[i - 1])
    )
    out["data_only_l1_price_change_fraction"] = changes / ticks
    secs = best_of(repeat, lambda: run_backtest(mixed, None, mixed_settings))
    out["data_only_with_20pct_trades_events_per_sec"] = ticks / secs
    quote_rows = sum(1 for k in mixed.kind if k == QUOTE)
    out["mixed_quote_rows"] = quote_rows

    # cost must not grow with order history: the second half of a long run is as fast as the first
    half = ticks // 2
    first = dataclasses.replace(l1, ts=l1.ts[:half], kind=l1.kind[:half], bid=l1.bid[:half],
                                bid_size=l1.bid_size[:half], ask=l1.ask[:half], ask_size=l1.ask_size[:half],
                                price=l1.price[:half], size=l1.size[:half], side=l1.side[:half], books={})
    secs_half = best_of(repeat, lambda: run_backtest(first, requote_strategy(), l1_settings, risk))
    out["requote_half_run_ticks_per_sec"] = half / secs_half
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quotes", type=int, default=200_000, help="quotes per strategy (default %(default)s)")
    parser.add_argument("--ticks", type=int, default=200_000, help="backtest ticks (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, the best kept (default %(default)s)")
    args = parser.parse_args()
    report = {
        "machine": machine(),
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "quotes_per_sec": bench_quotes(args.quotes, args.repeat),
        "simulator": bench_simulator(args.repeat),
        "backtest": bench_backtest(args.ticks, args.repeat),
        "command": "python -m bench.bench_strategies " + " ".join(sys.argv[1:]),
    }
    for section in ("quotes_per_sec", "simulator", "backtest"):
        print(f"[{section}]")
        for key, value in report[section].items():
            print(f"  {key:<48} {value:>14,.4f}" if isinstance(value, float) and value < 10 else
                  f"  {key:<48} {value:>14,.0f}")
    out = ROOT / "bench" / "results" / "strategies.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
