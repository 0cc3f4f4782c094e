"""Backtest data and sweeps benchmark: rows per second of each dump reader (gzip input), of the
converter to the native format, and a sweep's wall time with 1 and with all workers (and whether
their results files are identical). Prints figures and writes ``bench/results/backtest_data.json``;
it never fails on a time.

    python -m bench.bench_backtest_data [--rows 300000] [--ticks 20000] [--repeat 2]

The dumps are generated (a random walk at Binance's / Tardis' column layouts) into a temporary
directory. Each figure is the best of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, machine  # noqa: E402
from strategies.readers import convert, open_reader  # noqa: E402
from strategies.sweep import Base, sweep  # noqa: E402


def write_dumps(directory: Path, rows: int, seed: int = 1) -> dict[str, Path]:
    """One gzip file per format, ``rows`` rows each (L2: messages of 1-3 level updates)."""
    rng = random.Random(seed)
    paths = {}
    t0_ms = 1_709_251_200_000

    def walk() -> list[float]:
        mid, out = 61750.0, []
        for _ in range(rows):
            mid += rng.choice((-0.1, 0.0, 0.0, 0.1))
            out.append(round(mid, 1))
        return out

    bids = walk()
    files = {
        "binance-bookticker": ("update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,"
                               "event_time\n",
                               lambda i, b: f"{i},{b:.1f},{rng.randint(1, 9000) / 1000},{b + 0.1:.1f},"
                                            f"{rng.randint(1, 9000) / 1000},{t0_ms + i},{t0_ms + i}\n"),
        "binance-trades": ("id,price,qty,quote_qty,time,is_buyer_maker\n",
                           lambda i, b: f"{i},{b:.1f},0.25,{b * 0.25:.5f},{t0_ms + i},"
                                        f"{'true' if i % 2 else 'false'}\n"),
        "tardis-quotes": ("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n",
                          lambda i, b: f"binance-futures,BTCUSDT,{(t0_ms + i) * 1000},{(t0_ms + i) * 1000 + 700},"
                                       f"{rng.randint(1, 9000) / 1000},{b + 0.1:.1f},{b:.1f},"
                                       f"{rng.randint(1, 9000) / 1000}\n"),
        "tardis-trades": ("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n",
                          lambda i, b: f"binance-futures,BTCUSDT,{(t0_ms + i) * 1000},{(t0_ms + i) * 1000 + 700},{i},"
                                       f"{'buy' if i % 2 else 'sell'},{b:.1f},0.25\n"),
    }
    for name, (header, line) in files.items():
        path = paths[name] = directory / f"{name}.csv.gz"
        with gzip.open(path, "wt", compresslevel=1) as out:
            out.write(header)
            for i, b in enumerate(bids):
                out.write(line(i, b))
    path = paths["tardis-l2"] = directory / "tardis-l2.csv.gz"
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write("exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n")
        us = t0_ms * 1000
        for j in range(50):
            out.write(f"binance-futures,BTCUSDT,{us},{us},true,bid,{61750.0 - j / 10:.1f},{1 + j % 7}\n")
            out.write(f"binance-futures,BTCUSDT,{us},{us},true,ask,{61750.1 + j / 10:.1f},{1 + j % 5}\n")
        written = 100
        while written < rows:
            us += rng.randint(100, 5000)
            for _ in range(rng.randint(1, 3)):
                side = rng.choice(("bid", "ask"))
                level = rng.randint(0, 49) / 10
                price = 61750.0 - level if side == "bid" else 61750.1 + level
                amount = 0 if rng.random() < 0.1 else rng.randint(1, 5000) / 1000
                out.write(f"binance-futures,BTCUSDT,{us},{us + 700},false,{side},{price:.1f},{amount}\n")
                written += 1
    return paths


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--ticks", type=int, default=20_000, help="events of the sweep's synthetic data")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, object] = {"machine": machine(), "date": datetime.now(UTC).date().isoformat(),
                                  "rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        paths = write_dumps(directory, args.rows)
        readers = {}
        for fmt, path in paths.items():
            count = sum(1 for _ in open_reader(fmt, path))
            secs = best_of(args.repeat, lambda fmt=fmt, path=path: sum(1 for _ in open_reader(fmt, path)))
            readers[fmt] = {"rows_per_sec": args.rows / secs, "events": count}
            print(f"read {fmt:>20}: {args.rows / secs:>10,.0f} rows/s ({count} events)")
        results["readers"] = readers
        secs = best_of(args.repeat, lambda: convert([("binance-bookticker", paths["binance-bookticker"]),
                                                     ("binance-trades", paths["binance-trades"])],
                                                    directory / "native.csv.gz"))
        results["convert_merge_rows_per_sec"] = 2 * args.rows / secs
        print(f"convert bookTicker + trades (merged, gzip out): {2 * args.rows / secs:,.0f} rows/s")

        grid = {"spread_bps": [4.0, 8.0, 16.0, 32.0], "level_spacing_bps": [1.0, 4.0]}
        base = Base(data=(f"synthetic:{args.ticks}",), formats=(), depth=10, seed=1, strategy="GRID_TRADING",
                    strategy_kwargs={"grid_levels": 2}, order_kwargs={"maker_fee_bps": 1.0},
                    settings_kwargs={}, risk_kwargs={"min_order_size_quote": 1.0})
        cpus = os.cpu_count() or 1
        sweep_secs = {}
        for workers in sorted({1, cpus}):
            out = directory / f"sweep-{workers}"
            started = time.perf_counter()
            sweep(base, grid, out, workers=workers, progress=False)
            sweep_secs[workers] = time.perf_counter() - started
            print(f"sweep 8 runs x {args.ticks} events, {workers} worker(s): {sweep_secs[workers]:.2f} s")
        identical = len({(directory / f"sweep-{w}" / "results.csv").read_bytes() for w in sweep_secs}) == 1
        results["sweep"] = {"runs": 8, "events_per_run": args.ticks,
                            "wall_secs_by_workers": {str(w): s for w, s in sweep_secs.items()},
                            "results_identical": identical}
        print(f"results.csv identical across worker counts: {identical}")
    results["command"] = "python -m bench.bench_backtest_data " + " ".join(argv or sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backtest_data.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
