"""Peer bench: the backtester against Nautilus Trader on the same quotes, three workloads, one run.

    make bench-peers            # installs Nautilus into var/bench-peers/venv, then runs this
    python -m bench.bench_peers [--ticks 100000] [--requote-ticks 20000] [--repeat 2] [--no-readme]

Data: one L1 random walk (tick 0.01 around 100.00, the bid moves -1/0/0/+1 tick per quote, spread
1-3 ticks, displayed sizes 5-90, a quote every 100 ms), written as ``.npz`` and read by both sides.
Workloads (post-only GTC limits of 0.2, far below the displayed sizes, so every fill is whole):

* ``data``: the quotes replayed with no strategy;
* ``join``: join the best bid and ask, place an order again only once it filled (SimpleQuoter-like);
* ``requote``: cancel both orders and place a bid and an ask at the best prices on every quote.

Our side runs ``strategies.replay.Backtest`` (decisions through ``strategies.pipeline.decide``, risk
checks included) with ``JoinBest`` below; Nautilus runs ``bench/peers/nautilus_driver.py`` (its own
venv, its public API). Each figure is the best of ``--repeat`` runs, the two sides interleaved run by
run (same machine load). Orders, cancels and fills are printed side by side and must agree. Writes
``bench/results/peers.json`` and rewrites the README's perf table with its rows (``bench.run_all``'s
``rows_peers``; unless ``--no-readme``); never fails on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, machine  # noqa: E402
from bench.run_all import render_table, rewrite_readme  # noqa: E402
from risk.limits import RiskLimits  # noqa: E402
from strategies.base import MarketMakingStrategy  # noqa: E402
from strategies.config import OrderConfig, StrategyConfig  # noqa: E402
from strategies.marketdata import MarketData  # noqa: E402
from strategies.pipeline import QuotingRules  # noqa: E402
from strategies.replay import Backtest, BacktestSettings  # noqa: E402
from strategies.types import BUY, SELL, InventoryState, MarketSnapshot, OrderIntent, RiskContext  # noqa: E402

PEER_PYTHON = ROOT / "var" / "bench-peers" / "venv" / "bin" / "python"
DRIVER = ROOT / "bench" / "peers" / "nautilus_driver.py"
ORDER_SIZE = 0.2
WORKLOADS = ("data", "join", "requote")


class JoinBest(MarketMakingStrategy):
    """One bid at the best bid and one ask at the best ask, ``ORDER_SIZE`` each."""

    strategy_type = "JOIN_BEST"

    def calculate_orders(self, snapshot: MarketSnapshot, inventory: InventoryState,
                         risk: RiskContext) -> list[OrderIntent]:
        return [OrderIntent(BUY, snapshot.best_bid, ORDER_SIZE, 0), OrderIntent(SELL, snapshot.best_ask, ORDER_SIZE, 0)]


def generate(ticks: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    bid_t = 10_000 + np.cumsum(rng.choice(np.array([-1, 0, 0, 1]), size=ticks))
    spread = rng.integers(1, 4, size=ticks)
    return {
        "ts_ns": (1_700_000_000_000_000_000 + np.arange(ticks, dtype=np.int64) * 100_000_000),
        "bid": bid_t / 100.0,
        "ask": (bid_t + spread) / 100.0,
        "bid_size": rng.integers(5_000, 90_000, size=ticks) / 1000.0,
        "ask_size": rng.integers(5_000, 90_000, size=ticks) / 1000.0,
    }


def market_data(arrays: dict[str, np.ndarray]) -> MarketData:
    data = MarketData(metadata={"symbol": "BTC/USDT", "tick_size": "0.01", "lot_size": "0.000001"})
    for t, b, a, bs, az in zip((arrays["ts_ns"] / 1e9).tolist(), arrays["bid"].tolist(), arrays["ask"].tolist(),
                               arrays["bid_size"].tolist(), arrays["ask_size"].tolist(), strict=True):
        data.add_quote(t, b, bs, a, az)
    return data


def ours(data: MarketData, workload: str) -> dict[str, float]:
    """One run of our backtester; the same figures the driver prints."""
    settings = BacktestSettings(symbol="BTC/USDT", tick_size=0.01, lot_size=0.000001, min_notional=10.0,
                                initial_base=100_000.0, initial_quote=10_000_000.0, analysis_interval_secs=0.0,
                                cycle_secs=0.0)
    strategy = None
    rules = None
    if workload != "data":
        hold = workload == "join"
        order = OrderConfig(maker_fee_bps=0.0, min_spread_bps=0.0, order_size_quote=20.0,
                            order_refresh_tolerance_bps=1e9 if hold else 0.0,
                            order_refresh_secs=1e18 if hold else 0.0)
        strategy = JoinBest("BTC/USDT", StrategyConfig(), order)
        rules = QuotingRules(1.0, 1e9, order.order_refresh_tolerance_bps, order.order_refresh_secs)
    risk = RiskContext(min_order_size_quote=1.0, max_order_size_quote=1e9, max_position_quote=1e12)
    limits = RiskLimits(max_position_quote=1e12)
    result = Backtest(data, strategy, settings, risk, limits=limits, rules=rules).run()
    return {"events": result.events, "wall_secs": result.wall_secs, "orders": result.orders_placed,
            "cancels": result.orders_cancelled, "fills": result.fills, "rejected": result.orders_rejected,
            "decisions": result.decisions}


def theirs(path: Path, workload: str) -> dict[str, float]:
    out = subprocess.run([str(PEER_PYTHON), str(DRIVER), str(path), workload], capture_output=True, text=True,
                         timeout=3600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"nautilus driver failed ({workload}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=100_000, help="quotes for data and join (default %(default)s)")
    parser.add_argument("--requote-ticks", type=int, default=20_000, help="quotes for requote (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per side, the best kept (default %(default)s)")
    parser.add_argument("--no-readme", action="store_true", help="do not write the README's rows")
    parser.add_argument("--date", help="date written in the README row (default: today)")
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        print(f"error: {PEER_PYTHON} missing; run `make bench-peers` (it installs Nautilus Trader there)",
              file=sys.stderr)
        return 2
    rows = []
    date = args.date or datetime.now(tz=UTC).date().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        for workload in WORKLOADS:
            ticks = args.requote_ticks if workload == "requote" else args.ticks
            arrays = generate(ticks)
            path = Path(tmp) / f"quotes-{ticks}.npz"
            if not path.exists():
                np.savez(path, ts_ns=arrays["ts_ns"], bid=arrays["bid"], ask=arrays["ask"], bid_size=arrays["bid_size"],
                         ask_size=arrays["ask_size"])
            data = market_data(arrays)
            best_ours = best_theirs = None
            for _ in range(args.repeat):
                mine = ours(data, workload)
                peer = theirs(path, workload)
                if best_ours is None or mine["wall_secs"] < best_ours["wall_secs"]:
                    best_ours = mine
                if best_theirs is None or peer["wall_secs"] < best_theirs["wall_secs"]:
                    best_theirs = peer
            assert best_ours is not None and best_theirs is not None
            counts = ("orders", "cancels", "fills")
            row = {
                "workload": workload, "events": ticks, "date": date, "load": f"{os.getloadavg()[0]:.1f}",
                "ours": best_ours, "theirs": best_theirs,
                "ours_eps": ticks / best_ours["wall_secs"], "theirs_eps": ticks / best_theirs["wall_secs"],
                "counts_equal": all(best_ours[c] == best_theirs[c] for c in counts),
            }
            row["ratio"] = row["ours_eps"] / row["theirs_eps"]
            rows.append(row)
            print(f"{workload:>8}: ours {row['ours_eps']:>10,.0f} ev/s  nautilus {row['theirs_eps']:>10,.0f} ev/s  "
                  f"ratio {row['ratio']:5.2f}x  counts ours {[best_ours[c] for c in counts]} "
                  f"nautilus {[best_theirs[c] for c in counts]}  {'same' if row['counts_equal'] else 'DIFFER'}",
                  flush=True)
    version = rows[0]["theirs"].get("version", "?")
    shown = " ".join(sys.argv[1:])
    report = {"machine": machine(), "date": date, "nautilus_trader": version, "rows": rows,
              "command": "make bench-peers" + (f" BENCH_PEERS_ARGS='{shown}'" if shown else "")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_readme and rewrite_readme(render_table()):
        print("README.md performance table rewritten (the peer rows included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
