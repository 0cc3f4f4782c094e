"""Parameter sweeps: every combination of a grid, backtested on every core.

``python -m strategies.backtest sweep --data FILE [--data-format FMT] --grid spread_bps=10,20,40
--grid risk_aversion=0.01,0.1 [--strategy INVENTORY_BASED] [--set FIELD=VALUE ...] --out DIR
[--workers N] [--seed S] [--resume]``

* A grid key is a ``StrategyConfig`` or ``OrderConfig`` field, a backtest setting
  (``SETTING_KEYS``), a ``RiskContext`` limit (``RISK_KEYS``) or ``strategy`` (the strategy type).
  Every key and value is parsed and validated (the config's own ``validate()``) before anything
  runs; a bad one is an error naming it.
* Combinations run in a ``multiprocessing`` pool (``--workers``, default ``os.cpu_count()``); each
  worker loads the data once. A tqdm bar on stderr shows progress (``--quiet`` hides it).
* Each finished run is appended to ``DIR/runs.jsonl`` at once (flushed), so an interrupted sweep
  loses at most the runs in flight; ``--resume`` skips the combinations already there (the sweep's
  definition in ``DIR/sweep.json`` must match). Without ``--resume`` a DIR holding runs is refused.
* At the end ``DIR/results.csv`` and ``DIR/results.json`` hold one row per combination in grid
  order (the first ``--grid`` varies slowest), with no wall-clock figures: the same data, grid and
  seed give the same files byte for byte whatever ``--workers`` or resumption.
* ``DIR/heatmap.png``: net P&L over two grid keys (``--heatmap X,Y``, default the first two with
  several values; other keys at their best net P&L). ``DIR/pareto.png``: net P&L against max
  drawdown and against inventory risk, the Pareto-efficient runs joined.
* ``--seed``: seeds ``random`` and numpy in each run (from the seed and the combination, so the
  order runs happen in does not matter) and the synthetic data of ``--data synthetic:N``.

Columns: the grid's keys, then ``realised_pnl``, ``unrealised_pnl``, ``fees``, ``net_pnl`` (realised +
unrealised - fees), ``mtm_change`` (the simulated balances marked to market: final quote + final base x
last mid - (initial quote + initial base x first mid), from the engine's balances), ``max_drawdown``,
``inventory_risk`` (time-averaged |base - initial base| x mid), ``fills``, ``volume_base``,
``volume_quote``, ``spread_capture_bps``, ``quote_uptime``, ``orders_placed``, ``orders_cancelled``,
``orders_rejected``, ``final_base``, ``final_quote``, ``events``, ``seed``, ``key``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmplatform.errors import InvalidStrategyError
from strategies.backtest import (
    DEFAULT_RISK,
    BacktestSettings,
    _convert,
    _parse_overrides,
    load_data,
    run_backtest,
    settings_from_metadata,
)
from strategies.config import OrderConfig, StrategyConfig
from strategies.marketdata import MarketData, generate_market_data
from strategies.readers import FORMATS
from strategies.selection import STRATEGY_CLASSES, create_strategy
from strategies.types import RiskContext

SETTING_KEYS = ("requote_interval_secs", "analysis_interval_secs", "taker_fee_bps", "initial_base",
                "initial_quote")
RISK_KEYS = ("min_order_size_quote", "max_order_size_quote", "max_position_quote", "volatility_pause_threshold",
             "spread_multiplier", "size_multiplier")
METRICS = ("realised_pnl", "unrealised_pnl", "fees", "net_pnl", "mtm_change", "max_drawdown", "inventory_risk",
           "fills", "volume_base", "volume_quote", "spread_capture_bps", "quote_uptime", "orders_placed",
           "orders_cancelled", "orders_rejected", "final_base", "final_quote", "events")
RUNS = "runs.jsonl"
SPEC = "sweep.json"


class SweepError(ValueError):
    """A sweep cannot start: a bad grid, a bad option or an output directory in the way."""


# --- the grid ----------------------------------------------------------------------------------


def _field_kinds() -> dict[str, str]:
    kinds = {f.name: str(f.type) for f in dataclasses.fields(StrategyConfig)}
    kinds.update({f.name: str(f.type) for f in dataclasses.fields(OrderConfig)})
    kinds.update({name: "float" for name in (*SETTING_KEYS, *RISK_KEYS)})
    kinds["strategy"] = "str"
    return kinds


def parse_grid(pairs: list[str]) -> dict[str, list[object]]:
    """``key=v1,v2,...`` pairs -> {key: [values]} in the given order; ``SweepError`` naming a bad one."""
    kinds = _field_kinds()
    grid: dict[str, list[object]] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SweepError(f"--grid expects key=value[,value...], got {pair!r}")
        if name not in kinds:
            raise SweepError(f"--grid: unknown key {name!r} (a StrategyConfig/OrderConfig field, strategy, "
                             f"{', '.join(SETTING_KEYS)} or {', '.join(RISK_KEYS)})")
        if name in grid:
            raise SweepError(f"--grid: key {name!r} given twice")
        texts = [t.strip() for t in raw.split(",")]
        if not raw.strip() or any(not t for t in texts):
            raise SweepError(f"--grid {name}: empty value in {raw!r}")
        values: list[object] = []
        for text in texts:
            try:
                value = _convert(text, kinds[name], name)
            except ValueError:
                raise SweepError(f"--grid {name}: {text!r} is not a valid {kinds[name]}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise SweepError(f"--grid {name}: {text!r} is not a finite number")
            if value in values:
                raise SweepError(f"--grid {name}: value {text!r} given twice")
            values.append(value)
        grid[name] = values
    if not grid:
        raise SweepError("a sweep needs at least one --grid key=values")
    return grid


def combinations(grid: dict[str, list[object]]) -> list[dict[str, object]]:
    """Every combination, the first key varying slowest."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def combination_key(params: dict[str, object]) -> str:
    """A canonical text for a combination (the resume key)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def run_seed(seed: int, key: str) -> int:
    """The seed of one run: from the sweep's seed and the combination, not the run order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "big")


@dataclasses.dataclass(frozen=True)
class Base:
    """Everything a run needs besides its grid values (picklable, sent to each worker once)."""

    data: tuple[str, ...]
    formats: tuple[str, ...]
    depth: int
    seed: int
    strategy: str
    strategy_kwargs: dict[str, object]
    order_kwargs: dict[str, object]
    settings_kwargs: dict[str, object]
    risk_kwargs: dict[str, object]


def build_run(base: Base, params: dict[str, object], data: MarketData) -> tuple[object, BacktestSettings, RiskContext]:
    """(strategy, settings, risk) of one combination; ``SweepError`` when the combination is invalid."""
    strategy_fields = {f.name for f in dataclasses.fields(StrategyConfig)}
    order_fields = {f.name for f in dataclasses.fields(OrderConfig)}
    # values checked by the dataclasses they build (SweepError below), so typed Any here
    strategy_kwargs: dict[str, Any] = {**base.strategy_kwargs, **{k: v for k, v in params.items()
                                                                    if k in strategy_fields}}
    order_kwargs: dict[str, Any] = {**base.order_kwargs, **{k: v for k, v in params.items() if k in order_fields}}
    settings_kwargs: dict[str, Any] = {**base.settings_kwargs, **{k: v for k, v in params.items()
                                                                    if k in SETTING_KEYS}}
    risk_kwargs: dict[str, Any] = {**base.risk_kwargs, **{k: v for k, v in params.items() if k in RISK_KEYS}}
    risk = RiskContext(**risk_kwargs)
    kind = str(params.get("strategy", base.strategy))
    settings = settings_from_metadata(data, **settings_kwargs)
    problems = settings.problems()
    if problems:
        raise SweepError(f"{combination_key(params)}: {'; '.join(problems)}")
    try:
        strategy = create_strategy(kind, settings.symbol, None, StrategyConfig(**strategy_kwargs),
                                   OrderConfig(**order_kwargs))
    except InvalidStrategyError as exc:
        raise SweepError(f"{combination_key(params)}: {exc}") from None
    return strategy, settings, risk


def validate_grid(base: Base, grid: dict[str, list[object]], data: MarketData) -> None:
    """Check each grid value on its own against the base config (naming the key and value), then
    every combination (values valid alone can clash, e.g. min_spread_bps above max_spread_bps)."""
    for name, values in grid.items():
        for value in values:
            try:
                build_run(base, {name: value}, data)
            except SweepError as exc:
                raise SweepError(f"--grid {name}={value!r}: {str(exc).split(': ', 1)[-1]}") from None
    for params in combinations(grid):
        build_run(base, params, data)


# --- running -----------------------------------------------------------------------------------

_WORKER: dict[str, object] = {}


def load_sweep_data(base: Base) -> MarketData:
    """The sweep's data: files (merged by time) or ``synthetic:N`` generated from the seed."""
    if len(base.data) == 1 and base.data[0].startswith("synthetic:"):
        count = base.data[0].split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise SweepError(f"--data synthetic:N needs a positive event count, got {base.data[0]!r}")
        return generate_market_data(int(count), seed=base.seed)
    return load_data(list(base.data), list(base.formats), depth=base.depth)


def _init_worker(base: Base) -> None:
    if _WORKER.get("base") != base:  # spawned (not forked from the parent that loaded it): load it
        _WORKER["base"] = base
        _WORKER["data"] = load_sweep_data(base)


def run_one(base: Base, data: MarketData, index: int, params: dict[str, object]) -> dict[str, object]:
    """Backtest one combination; the row of results (no wall-clock figures)."""
    key = combination_key(params)
    seed = run_seed(base.seed, key)
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    strategy, settings, risk = build_run(base, params, data)
    result = run_backtest(data, strategy, settings, risk)  # type: ignore[arg-type]
    mtm_change = (result.final_quote + result.final_base * result.last_mid) - (
        settings.initial_quote + settings.initial_base * result.first_mid
    )
    row: dict[str, object] = {"index": index, **params}
    row.update({
        "realised_pnl": result.realised_pnl,
        "unrealised_pnl": result.unrealised_pnl,
        "fees": result.fees,
        "net_pnl": result.total_pnl,
        "mtm_change": mtm_change,
        "max_drawdown": result.max_drawdown,
        "inventory_risk": result.inventory_risk,
        "fills": result.fills,
        "volume_base": result.volume_base,
        "volume_quote": result.volume_quote,
        "spread_capture_bps": result.spread_capture_bps,
        "quote_uptime": result.quote_uptime,
        "orders_placed": result.orders_placed,
        "orders_cancelled": result.orders_cancelled,
        "orders_rejected": result.orders_rejected,
        "final_base": result.final_base,
        "final_quote": result.final_quote,
        "events": result.events,
        "seed": seed,
        "key": key,
    })
    return row


def _run_in_worker(job: tuple[int, dict[str, object]]) -> dict[str, object]:
    return run_one(_WORKER["base"], _WORKER["data"], *job)  # type: ignore[arg-type]


def read_runs(path: Path) -> dict[str, dict[str, object]]:
    """Finished runs by key; a torn last line (an interrupted write) is dropped from the file."""
    done: dict[str, dict[str, object]] = {}
    if not path.exists():
        return done
    good = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            done[row["key"]] = row
            good += len(line)
    if good != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good)
    return done


def sweep(
    base: Base,
    grid: dict[str, list[object]],
    out: str | Path,
    *,
    workers: int | None = None,
    resume: bool = False,
    progress: bool = True,
    heatmap: tuple[str, str] | None = None,
) -> list[dict[str, object]]:
    """Run every combination of ``grid`` (see the module doc); the rows in grid order."""
    out = Path(out)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    if heatmap is not None:
        for name in heatmap:
            if name not in grid:
                raise SweepError(f"--heatmap {name!r} is not a --grid key ({', '.join(grid)})")
    data = load_sweep_data(base)
    validate_grid(base, grid, data)
    spec = {"data": list(base.data), "formats": list(base.formats), "depth": base.depth, "seed": base.seed,
            "strategy": base.strategy, "strategy_kwargs": base.strategy_kwargs, "order_kwargs": base.order_kwargs,
            "settings_kwargs": base.settings_kwargs, "risk_kwargs": base.risk_kwargs, "grid": grid}
    spec_text = json.dumps(spec, sort_keys=True, indent=1) + "\n"
    runs_path = out / RUNS
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if runs_path.exists() and runs_path.stat().st_size and not resume:
        raise SweepError(f"{runs_path} already holds runs: pass --resume to continue it, or another --out")
    if resume and (out / SPEC).exists() and (out / SPEC).read_text() != spec_text:
        raise SweepError(f"--resume: {out / SPEC} describes a different sweep (data, grid, seed or options)")
    (out / SPEC).write_text(spec_text)
    done = read_runs(runs_path) if resume else {}
    combos = combinations(grid)
    jobs = [(i, params) for i, params in enumerate(combos) if combination_key(params) not in done]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(combos), initial=len(combos) - len(jobs), unit="run", desc="sweep", file=sys.stderr)
    with runs_path.open("a" if resume else "w") as log:
        for row in _execute(base, data, jobs, workers):
            log.write(json.dumps(row) + "\n")
            log.flush()
            done[str(row["key"])] = row
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    rows = [dict(done[combination_key(params)], index=i) for i, params in enumerate(combos)]
    write_tables(rows, list(grid), out)
    write_heatmap(rows, grid, out / "heatmap.png", heatmap)
    write_pareto(rows, list(grid), out / "pareto.png")
    return rows


def _execute(base: Base, data: MarketData, jobs: list[tuple[int, dict[str, object]]],
             workers: int) -> Iterator[dict[str, object]]:
    if not jobs:
        return
    if workers == 1 or len(jobs) == 1:
        for index, params in jobs:
            yield run_one(base, data, index, params)
        return
    import multiprocessing

    _WORKER["base"], _WORKER["data"] = base, data  # forked workers inherit it
    with multiprocessing.get_context().Pool(min(workers, len(jobs)), _init_worker, (base,)) as pool:
        yield from pool.imap_unordered(_run_in_worker, jobs, chunksize=1)


# --- outputs -----------------------------------------------------------------------------------


def _columns(names: list[str]) -> list[str]:
    return ["index", *names, *METRICS, "seed", "key"]


def write_tables(rows: list[dict[str, object]], names: list[str], out: Path) -> None:
    """results.csv and results.json, rows in grid order (floats as their shortest repr)."""
    columns = _columns(names)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([repr(v) if isinstance(v, float) else v for v in (row[c] for c in columns)])
    table = [{c: row[c] for c in columns} for row in rows]
    (out / "results.json").write_text(json.dumps(table, indent=1) + "\n")


def _pyplot():  # matplotlib.pyplot, imported late (Agg)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def write_heatmap(rows: list[dict[str, object]], grid: dict[str, list[object]], path: Path,
                  axes: tuple[str, str] | None = None) -> None:
    """Net P&L over two grid keys (best over the other keys), annotated."""
    names = list(grid)
    if axes is None:
        several = [n for n in names if len(grid[n]) > 1] or names
        axes = (several[0], several[1] if len(several) > 1 else several[0])
    x_name, y_name = axes
    xs, ys = grid[x_name], grid[y_name]
    best: dict[tuple[int, int], float] = {}
    for row in rows:
        cell = (xs.index(row[x_name]), ys.index(row[y_name]))
        value = float(row["net_pnl"])  # type: ignore[arg-type]
        if cell not in best or value > best[cell]:
            best[cell] = value
    matrix = [[best.get((i, j), math.nan) for i in range(len(xs))] for j in range(len(ys))]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(xs) + 3), max(4, 0.8 * len(ys) + 2.5)))
    finite = [v for line in matrix for v in line if math.isfinite(v)]
    limit = max((abs(v) for v in finite), default=1.0) or 1.0
    image = ax.imshow(matrix, cmap="RdYlGn", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    for j, line in enumerate(matrix):
        for i, value in enumerate(line):
            ax.text(i, j, f"{value:.4g}", ha="center", va="center", fontsize=8)
    others = [n for n in names if n not in axes]
    ax.set_title("net P&L" + (f" (best over {', '.join(others)})" if others else ""))
    fig.colorbar(image, ax=ax, label="net P&L (quote)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats (lower risk x and higher P&L y), by ascending x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def write_pareto(rows: list[dict[str, object]], names: list[str], path: Path) -> None:
    """Net P&L against max drawdown and against inventory risk; the efficient runs joined."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    net = [float(r["net_pnl"]) for r in rows]  # type: ignore[arg-type]
    for ax, risk_name in zip(axes, ("max_drawdown", "inventory_risk"), strict=True):
        risk = [float(r[risk_name]) for r in rows]  # type: ignore[arg-type]
        ax.scatter(risk, net, s=18, color="tab:blue", alpha=0.6, label="run")
        front = pareto_front(list(zip(risk, net, strict=True)))
        ax.plot([risk[i] for i in front], [net[i] for i in front], "o-", color="tab:red", label="Pareto front")
        if len(rows) <= 40:
            for i in front:
                ax.annotate(" ".join(f"{n}={rows[i][n]}" for n in names), (risk[i], net[i]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{risk_name} (quote)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("net P&L (quote)")
    axes[0].legend(loc="best")
    fig.suptitle(f"{len(rows)} runs: P&L against risk")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- CLI ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """``sweep``'s options."""
    parser = argparse.ArgumentParser(
        prog="python -m strategies.backtest sweep",
        description="Backtest every combination of a parameter grid on every core; results table, heat map "
                    "and Pareto charts in --out.",
    )
    parser.add_argument("--data", required=True, action="append",
                        help="market-data file (repeat to merge), or synthetic:N for N generated events")
    parser.add_argument("--data-format", action="append", default=[], metavar="FMT",
                        help=f"native (default) or {', '.join(FORMATS)}; one for all --data or one each")
    parser.add_argument("--depth", type=int, default=10, help="levels kept from an L2 dump")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", required=True,
                        help="a parameter and its values (repeatable)")
    parser.add_argument("--strategy", default="GRID_TRADING", choices=list(STRATEGY_CLASSES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="fixed StrategyConfig/OrderConfig value for every run (repeatable)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: os.cpu_count())")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="skip the combinations already in --out")
    parser.add_argument("--heatmap", metavar="X,Y", help="the two grid keys of the heat map")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--symbol")
    parser.add_argument("--tick-size", type=float)
    parser.add_argument("--lot-size", type=float)
    parser.add_argument("--min-notional", type=float)
    parser.add_argument("--initial-base", type=float, default=10.0)
    parser.add_argument("--initial-quote", type=float, default=1000.0)
    parser.add_argument("--taker-fee-bps", type=float, default=10.0)
    parser.add_argument("--requote-secs", type=float, default=0.0)
    parser.add_argument("--analysis-secs", type=float, default=60.0)
    parser.add_argument("--min-order-size-quote", type=float, default=DEFAULT_RISK.min_order_size_quote)
    parser.add_argument("--max-order-size-quote", type=float, default=DEFAULT_RISK.max_order_size_quote)
    parser.add_argument("--max-position-quote", type=float, default=DEFAULT_RISK.max_position_quote)
    return parser


def main(argv: list[str]) -> int:
    """Run the sweep CLI; bad input prints one line to stderr and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        strategy_kwargs, order_kwargs = _parse_overrides(args.overrides)
        clash = [k for k in grid if k in strategy_kwargs or k in order_kwargs]
        if clash:
            raise SweepError(f"{clash[0]!r} is both in --grid and --set")
        heatmap = None
        if args.heatmap:
            parts = [p.strip() for p in args.heatmap.split(",")]
            if len(parts) != 2:
                raise SweepError(f"--heatmap expects X,Y (two grid keys), got {args.heatmap!r}")
            heatmap = (parts[0], parts[1])
        if args.workers is not None and args.workers < 1:
            raise SweepError(f"--workers must be at least 1, got {args.workers}")
        settings_kwargs = {
            "symbol": args.symbol, "tick_size": args.tick_size, "lot_size": args.lot_size,
            "min_notional": args.min_notional, "initial_base": args.initial_base,
            "initial_quote": args.initial_quote, "taker_fee_bps": args.taker_fee_bps,
            "requote_interval_secs": args.requote_secs, "analysis_interval_secs": args.analysis_secs,
        }
        base = Base(
            data=tuple(args.data), formats=tuple(args.data_format), depth=args.depth, seed=args.seed,
            strategy=args.strategy, strategy_kwargs=strategy_kwargs, order_kwargs=order_kwargs,
            settings_kwargs={k: v for k, v in settings_kwargs.items() if v is not None},
            risk_kwargs={"min_order_size_quote": args.min_order_size_quote,
                         "max_order_size_quote": args.max_order_size_quote,
                         "max_position_quote": args.max_position_quote},
        )
        rows = sweep(base, grid, args.out, workers=args.workers, resume=args.resume, progress=not args.quiet,
                     heatmap=heatmap)
    except (ValueError, OSError, InvalidStrategyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best = max(rows, key=lambda r: float(r["net_pnl"]))  # type: ignore[arg-type]
    print(f"{len(rows)} runs in {args.out}: results.csv, results.json, heatmap.png, pareto.png", file=sys.stderr)
    print(f"best net P&L {float(best['net_pnl']):.6g}: " + " ".join(f"{k}={best[k]}" for k in grid))  # type: ignore[arg-type]
    return 0
