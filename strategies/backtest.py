"""Backtester: the CLI, data loading and the report over ``strategies.replay``.

The replay (``strategies/replay.py``) is a book model: the market's quotes, books and trades update
the market state (no resting orders for the market's liquidity); only the strategy's own orders rest
and are matched by a stated fill model (crossed quotes, trades through and at the price with an
optional queue position). The strategy is consulted through ``strategies.pipeline.decide`` — the live
engine's decide -> check -> diff, pre-trade risk checks included — on a fill, a timer, or a market move
beyond what its refresh tolerance absorbs; runs of events between those are skipped with numpy.

Accounting (quote currency, average-cost method, start inventory valued at the first mid):
realised + unrealised - fees = equity change, with equity = quote + base * mid. A base-currency
fee (paid on buys) is valued at the fill price and treated as base sold at that price.

CLI: ``python -m strategies.backtest --data FILE [--data-format FMT] --strategy GRID_TRADING
--report out.png`` (``--help`` lists the options; ``--set field=value`` overrides any
StrategyConfig/OrderConfig field). Two subcommands: ``convert`` (exchange/vendor dumps to the native
format, ``strategies.readers``) and ``sweep`` (a parameter grid on every core, ``strategies.sweep``).
See docs/backtesting.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmplatform.errors import InvalidStrategyError
from strategies.config import OrderConfig, StrategyConfig
from strategies.marketdata import MarketData, MarketDataError, load_market_data
from strategies.readers import (
    FORMATS,
    INFER_EVENTS,
    Event,
    convert,
    export,
    infer_increments,
    load_events,
    merge_by_time,
    native_events,
    split_symbol,
    symbol_from_filename,
    to_market_data,
)
from strategies.replay import (  # noqa: F401  (the backtester's API, re-exported here)
    CONSULT_MODES,
    Backtest,
    BacktestResult,
    BacktestSettings,
    DecisionHook,
    run_backtest,
)
from strategies.selection import STRATEGY_CLASSES, create_strategy
from strategies.types import RiskContext

DEFAULT_RISK = RiskContext()


def settings_from_metadata(data: MarketData, **overrides: object) -> BacktestSettings:
    """Settings with the file's symbol/tick/lot/min_notional, then ``overrides`` (None values skipped)."""
    values: dict[str, object] = {}
    meta = data.metadata
    try:
        if "symbol" in meta:
            values["symbol"] = meta["symbol"]
        for name in ("tick_size", "lot_size", "min_notional"):
            if name in meta:
                values[name] = float(meta[name])
    except ValueError as exc:
        raise MarketDataError(f"bad metadata in the market-data file: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BacktestSettings(**values)  # type: ignore[arg-type]


def write_report(result: BacktestResult, path: str) -> None:
    """A PNG with price and the bot's best quotes, inventory, and P&L over time (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    s = result.series
    t0 = s["ts"][0] if s["ts"] else 0.0
    minutes = [(t - t0) / 60.0 for t in s["ts"]]
    fig, (ax_price, ax_inv, ax_pnl) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    ax_price.plot(minutes, s["mid"], color="black", linewidth=0.8, label="mid")
    ax_price.plot(minutes, s["bid"], color="tab:green", linewidth=0.6, label="bot best bid")
    ax_price.plot(minutes, s["ask"], color="tab:red", linewidth=0.6, label="bot best ask")
    ax_price.set_ylabel("price")
    ax_price.legend(loc="upper left")
    ax_price.set_title(
        f"{result.strategy}: P&L {result.total_pnl:.2f} (realised {result.realised_pnl:.2f}, unrealised "
        f"{result.unrealised_pnl:.2f}, fees {result.fees:.2f}), {result.fills} fills, "
        f"uptime {result.quote_uptime:.0%}"
    )
    ax_inv.plot(minutes, s["base"], color="tab:blue")
    ax_inv.set_ylabel("inventory (base)")
    ax_pnl.plot(minutes, s["pnl"], color="tab:purple")
    ax_pnl.set_ylabel("P&L (quote)")
    ax_pnl.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- CLI ---------------------------------------------------------------------------------------


def _parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``field=value`` pairs split into StrategyConfig and OrderConfig keyword arguments."""
    strategy_fields = {f.name: f for f in dataclasses.fields(StrategyConfig)}
    order_fields = {f.name: f for f in dataclasses.fields(OrderConfig)}
    strategy_kwargs: dict[str, Any] = {}
    order_kwargs: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects field=value, got {pair!r}")
        name, raw = (part.strip() for part in pair.split("=", 1))
        if name in strategy_fields:
            target, kind = strategy_kwargs, strategy_fields[name].type
        elif name in order_fields:
            target, kind = order_kwargs, order_fields[name].type
        else:
            raise ValueError(f"--set: unknown field {name!r} (not in StrategyConfig or OrderConfig)")
        target[name] = _convert(raw, str(kind), name)
    return strategy_kwargs, order_kwargs


def _convert(raw: str, kind: str, name: str) -> object:
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind.startswith("float"):
            return None if raw.lower() == "none" and "None" in kind else float(raw)
        return raw
    except ValueError:
        raise ValueError(f"--set {name}: {raw!r} is not a valid {kind}") from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI's options."""
    parser = argparse.ArgumentParser(
        prog="python -m strategies.backtest",
        description="Replay a market-data file through the emulator's matching engine with a strategy.",
    )
    parser.add_argument("--data", required=True, action="append",
                        help="market-data file (native CSV, plain or gzip, or .parquet with pyarrow; or a "
                             "--data-format dump); repeat to merge files by time")
    parser.add_argument("--data-format", action="append", default=[], metavar="FMT",
                        help=f"format of each --data (native, {', '.join(FORMATS)}); default native; one "
                             "value applies to every --data")
    parser.add_argument("--depth", type=int, default=10, help="levels kept from an L2 dump (tardis-l2)")
    parser.add_argument("--strategy", default="GRID_TRADING", choices=[*STRATEGY_CLASSES, "NONE"],
                        help="strategy to run; NONE replays the data only")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a StrategyConfig or OrderConfig field (repeatable)")
    parser.add_argument("--symbol", help="overrides the file's metadata")
    parser.add_argument("--tick-size", type=float, help="overrides the file's metadata")
    parser.add_argument("--lot-size", type=float, help="overrides the file's metadata")
    parser.add_argument("--min-notional", type=float, help="overrides the file's metadata")
    parser.add_argument("--initial-base", type=float, default=10.0)
    parser.add_argument("--initial-quote", type=float, default=1000.0)
    parser.add_argument("--taker-fee-bps", type=float, default=10.0)
    parser.add_argument("--requote-secs", type=float, default=0.0, help="min seconds between strategy runs")
    parser.add_argument("--analysis-secs", type=float, default=60.0, help="seconds between market analyses")
    parser.add_argument("--cycle-secs", type=float, default=5.0,
                        help="the strategy is consulted at least this often (the live monitoring interval; 0: never "
                             "by time alone)")
    parser.add_argument("--consult", choices=CONSULT_MODES, default="tolerance",
                        help="besides fills and timers, consult the strategy when the market moved past its refresh "
                             "tolerance (default), on any best bid/ask change, or on every quote event")
    parser.add_argument("--latency-secs", type=float, default=0.0,
                        help="placements and cancels reach the book this long after the decision")
    parser.add_argument("--no-queue", action="store_true",
                        help="a trade at a resting order's price fills it first (no displayed size ahead of it)")
    parser.add_argument("--min-order-size-quote", type=float, default=DEFAULT_RISK.min_order_size_quote)
    parser.add_argument("--max-order-size-quote", type=float, default=DEFAULT_RISK.max_order_size_quote)
    parser.add_argument("--max-position-quote", type=float, default=DEFAULT_RISK.max_position_quote)
    parser.add_argument("--report", metavar="FILE.png", help="write the price/quotes/inventory/P&L chart")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when not on a TTY")
    return parser


def load_data(paths: list[str], formats: list[str], depth: int = 10) -> MarketData:
    """Load ``paths`` (their formats: one per path, one for all, or none = native), merged by time."""
    if not formats:
        formats = ["native"] * len(paths)
    elif len(formats) == 1:
        formats = formats * len(paths)
    elif len(formats) != len(paths):
        raise ValueError(f"give one --data-format for all --data or one per --data ({len(paths)} files, "
                         f"{len(formats)} formats)")
    for fmt in formats:
        if fmt != "native" and fmt not in FORMATS:
            raise ValueError(f"unknown --data-format {fmt!r} (one of native, {', '.join(FORMATS)})")
    if formats == ["native"]:
        return load_market_data(paths[0])
    streams = []
    metadata: dict[str, str] = {}
    readers = []
    for fmt, path in zip(formats, paths, strict=True):
        events, meta, reader = load_events(fmt, path, depth=depth)
        streams.append(events)
        metadata = {**meta, **metadata}
        if reader is not None:
            readers.append((reader, path))
    data = to_market_data(merge_by_time(streams), metadata)
    if "symbol" not in metadata:
        names = [r.symbol or symbol_from_filename(p) for r, p in readers]
        found = next((n for n in names if n), None)
        if found:
            data.metadata["symbol"] = split_symbol(found)
    if "tick_size" not in metadata and len(data):
        tick, lot = infer_increments(list(native_events_head(data, INFER_EVENTS)))
        data.metadata["tick_size"] = repr(tick)
        data.metadata["lot_size"] = repr(lot)
    return data


def native_events_head(data: MarketData, n: int) -> Iterator[Event]:
    """The first ``n`` events of ``data``."""
    for i, event in enumerate(native_events(data)):
        if i >= n:
            return
        yield event


def build_convert_parser() -> argparse.ArgumentParser:
    """``convert``'s options."""
    parser = argparse.ArgumentParser(
        prog="python -m strategies.backtest convert",
        description="Convert an exchange or vendor dump (plain, gzip or zip) to the native market-data CSV, "
                    "streaming (bounded memory); --merge adds more files merged by time.",
    )
    parser.add_argument("--from", dest="source", required=True, choices=[*FORMATS, "native"])
    parser.add_argument("--to", dest="target", default="native", choices=["native", *FORMATS],
                        help="output format (default native; a vendor format writes what it can hold)")
    parser.add_argument("--exchange", default="native", help="exchange column of Tardis output")
    parser.add_argument("input", help="input file")
    parser.add_argument("output", help="output native CSV (.gz: gzip-compressed)")
    parser.add_argument("--merge", action="append", default=[], metavar="FMT:FILE",
                        help="another input (e.g. binance-trades:trades.csv), merged by time; repeatable")
    parser.add_argument("--symbol", help="BASE/QUOTE for the metadata (default: from the file)")
    parser.add_argument("--tick-size", type=float, help="default: inferred from the prices' decimals")
    parser.add_argument("--lot-size", type=float, help="default: inferred from the sizes' decimals")
    parser.add_argument("--time", choices=["local", "exchange", "event", "transaction"],
                        help="which timestamp column to use (Tardis: local|exchange, Binance bookTicker: "
                             "event|transaction)")
    parser.add_argument("--depth", type=int, default=10, help="levels kept from an L2 dump (1: quotes)")
    parser.add_argument("--only-symbol", help="keep only this symbol's rows of a multi-symbol Tardis file")
    return parser


def convert_main(argv: list[str]) -> int:
    """``convert``: bad input prints one line to stderr and returns 2."""
    args = build_convert_parser().parse_args(argv)
    inputs: list[tuple[str, str | Path]] = [(args.source, args.input)]
    try:
        for item in args.merge:
            fmt, sep, path = item.partition(":")
            if not sep or (fmt not in FORMATS and fmt != "native"):
                raise ValueError(f"--merge expects FMT:FILE with FMT one of native, {', '.join(FORMATS)}; "
                                 f"got {item!r}")
            inputs.append((fmt, path))
        if args.depth < 1:
            raise ValueError(f"--depth must be at least 1, got {args.depth}")
        for name in ("tick_size", "lot_size"):
            value = getattr(args, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be greater than 0, got {value!r}")
        time_option = args.time
        if time_option in ("event", "transaction") and any(f.startswith("tardis") for f, _ in inputs):
            raise ValueError(f"--time {time_option} is for binance-bookticker; Tardis files take local|exchange")
        if time_option in ("local", "exchange") and any(f == "binance-bookticker" for f, _ in inputs):
            raise ValueError(f"--time {time_option} is for Tardis files; binance-bookticker takes event|transaction")
        if args.target != "native":
            rows, dropped = export(inputs, args.output, args.target, exchange=args.exchange, symbol=args.symbol,
                                   time=time_option, depth=args.depth)
            print(f"wrote {rows} rows to {args.output} ({dropped} events {args.target} cannot hold dropped)",
                  file=sys.stderr)
            return 0
        rows, readers = convert(inputs, args.output, symbol=args.symbol, tick_size=args.tick_size,
                                lot_size=args.lot_size, time=time_option, depth=args.depth,
                                only_symbol=args.only_symbol)
    except (ValueError, OSError) as exc:  # DataFormatError is a MarketDataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for reader in readers:
        st = reader.stats
        print(f"{reader.path}: {st.rows} rows, {st.events} events, {st.skipped} skipped (empty side), "
              f"{st.crossed} crossed/locked dropped, {st.clamped} times held back", file=sys.stderr)
    print(f"wrote {rows} events to {args.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input prints one line to stderr and returns 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "convert":
        return convert_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.report and not args.report.lower().endswith(".png"):
            raise ValueError(f"--report must name a .png file, got {args.report!r}")
        data = load_data(args.data, args.data_format, depth=args.depth)
        settings = settings_from_metadata(
            data, symbol=args.symbol, tick_size=args.tick_size, lot_size=args.lot_size,
            min_notional=args.min_notional, initial_base=args.initial_base, initial_quote=args.initial_quote,
            taker_fee_bps=args.taker_fee_bps, requote_interval_secs=args.requote_secs,
            analysis_interval_secs=args.analysis_secs, cycle_secs=args.cycle_secs, consult=args.consult,
            latency_secs=args.latency_secs, queue_position=not args.no_queue,
        )
        strategy_kwargs, order_kwargs = _parse_overrides(args.overrides)
        risk = RiskContext(
            min_order_size_quote=args.min_order_size_quote, max_order_size_quote=args.max_order_size_quote,
            max_position_quote=args.max_position_quote,
        )
        strategy = None
        if args.strategy != "NONE":
            strategy = create_strategy(args.strategy, settings.symbol, None, StrategyConfig(**strategy_kwargs),
                                       OrderConfig(**order_kwargs))
        result = run_backtest(data, strategy, settings, risk, progress=True if args.progress else None)
        if args.report:
            write_report(result, args.report)
    except (ValueError, OSError, InvalidStrategyError) as exc:  # MarketDataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value:.6g}" if isinstance(value, float) else f"{key:>22}: {value}")
        if args.report:
            print(f"{'report':>22}: {args.report}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"]:
        # the sweep is built on this module, so only the script (``__main__``, not ``strategies.backtest``)
        # hands over to it: no import cycle (``strategies.sweep.main`` is the sweep's own entry)
        from strategies.sweep import main as sweep_main

        raise SystemExit(sweep_main(sys.argv[2:]))
    raise SystemExit(main())
