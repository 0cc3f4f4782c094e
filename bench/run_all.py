"""Run every benchmark, then rewrite the README's performance table from ``bench/results/*.json``.

Each bench module runs in its own process (each also runs alone: ``python -m bench.bench_<name>``); a
bench that fails is reported and the others still run. The table lists, per figure, the command that
produced it, the target, and whether it is met (or by how much it is missed), under a line naming the
machine and the date. Nothing here fails on a time.

    python -m bench.run_all                     # everything (make bench)
    python -m bench.run_all --only engine,push  # some of them
    python -m bench.run_all --quick             # smaller N everywhere
    python -m bench.run_all --table-only        # just rewrite the table from the existing results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, machine  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    result: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()

    def command(self, quick: bool) -> list[str]:
        return [sys.executable, "-m", self.module, *(self.quick_args if quick else self.args)]

    def shown_command(self, quick: bool) -> str:
        return " ".join(["python -m", self.module, *(self.quick_args if quick else self.args)])


BENCHES = (
    Bench("exchange", "bench.bench_exchange", "exchange.json",
          quick_args=("--orders", "20000", "--ticks", "20000", "--placements", "300")),
    Bench("strategies", "bench.bench_strategies", "strategies.json",
          quick_args=("--quotes", "20000", "--ticks", "20000", "--repeat", "1")),
    Bench("push", "bench.bench_push", "push.json", quick_args=("--clients", "1,50", "--events", "100")),
    Bench("engine", "bench.bench_engine", "engine.json", quick_args=("--quick",)),
    Bench("requote gap", "bench.bench_requote_gap", "requote_gap.json", quick_args=("--window", "20")),
    Bench("kill", "bench.bench_kill", "kill.json", quick_args=("--quick",)),
    Bench("backtest data", "bench.bench_backtest_data", "backtest_data.json",
          quick_args=("--rows", "20000", "--ticks", "5000", "--repeat", "1")),
    Bench("storage", "bench.bench_storage", "storage.json", quick_args=("--bots", "1", "--window", "75")),
    Bench("alerts", "bench.bench_alerts", "alerts.json", quick_args=("--quick",)),
    Bench("sla", "bench.bench_sla", "sla.json", quick_args=("--minutes", "3")),
    Bench("multi-venue", "bench.bench_multi_venue", "multi_venue.json", quick_args=("--moves", "50")),
    Bench("failover", "bench.bench_failover", "failover.json", quick_args=("--quick",)),
    Bench("hedge", "bench.bench_hedge", "hedge.json", quick_args=("--fills", "10")),
    Bench("db binding", "bench.bench_db_binding", "db_binding.json", quick_args=("--statements", "1000")),
)


# --- rows of the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    bench: str
    figure: str
    value: float | None
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""
    measures: str = ""
    date: str = ""
    """When the row's part was measured, if not the result file's date (a partial run merges parts)."""

    def shown_value(self) -> str:
        if self.value is None:
            return "—"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f} {self.unit}".strip()
        return f"{self.value:,.3g} {self.unit}".strip()

    def shown_target(self) -> str:
        if self.target is None:
            return "—"
        sign = "≥" if self.higher_is_better else "≤"
        number = f"{self.target:,.0f}" if abs(self.target) >= 100 else f"{self.target:g}"
        return f"{sign} {number} {self.unit}".strip()

    def verdict(self) -> str:
        """yes / no with the size of the miss."""
        if self.target is None or self.value is None:
            return "—" if self.target is None else "not measured"
        if self.higher_is_better:
            if self.value >= self.target:
                return "yes"
            return f"**no**: {100 * (1 - self.value / self.target):.0f} % short" if self.target else "**no**"
        if self.value <= self.target:
            return "yes"
        if not self.target:
            return "**no**"
        ratio = self.value / self.target
        return f"**no**: {100 * (ratio - 1):.0f} % over" if ratio < 2 else f"**no**: {ratio:.1f}× the target"


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def rows_exchange(data: dict[str, Any]) -> list[Row]:
    rows = [
        Row("exchange", "matching engine, Decimal API mix", _get(data, "engine_decimal_api_mix", "ops_per_sec"),
            "ops/s", 50_000,
            measures="the emulator's order book in-process: a random mix of limit orders, cancels and crossing "
                     "IOC orders through its Decimal API"),
        Row("exchange", "matching engine alone, cancel + re-place 2 quotes a tick",
            _get(data, "engine_cancel_replace_ticks", "ticks_per_sec"), "ticks/s",
            measures="the bare matching engine (int fast path, no strategy, no backtester): each tick cancels a "
                     "bid and an ask and places new ones on a 20-level book"),
    ]
    limiter = {"gateway_local_limiter": "an in-process token bucket",
               "gateway_redis_limiter": "the Redis token bucket shared by processes, as the gateways use it (an "
                                        "account with budget to spare: requests go on tokens the process leased, "
                                        "one Redis round trip per lease)",
               "gateway_redis_limiter_no_lease": "the Redis token bucket shared by processes without a lease (one "
                                                 "more Redis round trip per request, as near an account's budget)"}
    for variant in limiter:
        summary = _get(data, "placement_latency", variant)
        if summary is None and variant == "gateway_redis_limiter_no_lease":
            continue  # (results from before the lease)
        summary = summary or {}
        label = variant.replace("gateway_", "gateway placement, ").replace("_", " ")
        measures = (f"one limit order through `CcxtGateway.place_order` (ccxt, signed HTTP) to the emulator in "
                    f"another process on loopback, rate-limited by {limiter[variant]}")
        rows.append(Row("exchange", f"{label}, p50", summary.get("p50_ms"), "ms", 1.0, higher_is_better=False,
                        measures=measures))
        rows.append(Row("exchange", f"{label}, p99", summary.get("p99_ms"), "ms", 3.0, higher_is_better=False,
                        measures=measures))
    for venue, summary in (data.get("placement_latency_by_venue") or {}).items():
        measures = (f"one limit order through `CcxtGateway.place_order` (ccxt's `{venue}` class, signed HTTP) to the "
                    f"emulator's {venue} dialect in another process on loopback, in-process token bucket")
        for stat, target in (("p50", 1.0), ("p99", 3.0)):
            rows.append(Row("exchange", f"gateway placement on {venue}, {stat}", summary.get(f"{stat}_ms"), "ms",
                            target, higher_is_better=False, measures=measures))
    return rows


def rows_strategies(data: dict[str, Any]) -> list[Row]:
    quotes = data.get("quotes_per_sec") or {}
    rows = [Row("strategies", f"quotes, {name.replace('_', ' ').lower()}", value, "quotes/s",
                measures="one `calculate_orders` call of the strategy (pure Python): a bid and an ask from a "
                         "market snapshot and an inventory off target, rounded to tick and lot")
            for name, value in quotes.items() if name.endswith("/1_level")]
    rows.append(Row("strategies", "A–S Monte Carlo 1000×200", _get(data, "simulator", "1000x200_secs"), "s",
                    measures="the Avellaneda–Stoikov simulation (`simulate_as`): 1,000 paths of 200 steps, the "
                             "inventory and the symmetric strategy"))
    rows.append(Row("strategies", "backtest, requote every L1 tick",
                    _get(data, "backtest", "requote_every_l1_tick_ticks_per_sec"), "ticks/s", 25_000,
                    measures="the backtester end to end: a grid strategy decides (through the live pipeline) on "
                             "every top-of-book tick and cancels / re-places its bid and ask on the book model"))
    return rows


def rows_push(data: dict[str, Any]) -> list[Row]:
    target = _get(data, "target", "p99_ms_at_200_clients")
    rows = []
    for run in data.get("runs") or []:
        clients = run.get("clients")
        rows.append(Row("push", f"event → {clients} websocket(s), p99", run.get("p99_ms"), "ms",
                        target if clients == 200 else None, higher_is_better=False,
                        measures=f"`publish_event` (a BotEvent row and a push through the Redis channel layer) "
                                 f"until each of {clients} signed-in websocket clients of a real daphne has it"))
    return rows


def rows_engine(data: dict[str, Any]) -> list[Row]:
    targets = data.get("targets") or {}
    rows = []
    tick = data.get("tick_to_quote") or {}
    if tick:
        note = f"interval {tick.get('monitoring_interval_secs')} s, {_get(tick, 'latency', 'count')} moves"
        if tick.get("command"):
            note += f"; `{tick['command']}`"
        measures = ("a mid move on the emulator until both of the bot's replacement orders are accepted there "
                    "(emulator clock), through a real Celery worker, Redis and the database")
        day = str(tick.get("date", ""))[:10]
        rows.append(Row("engine", "tick-to-quote, p50", _get(tick, "latency", "p50_ms"), "ms",
                        targets.get("tick_to_quote_p50_ms"), higher_is_better=False, note=note, measures=measures,
                        date=day))
        rows.append(Row("engine", "tick-to-quote, p99", _get(tick, "latency", "p99_ms"), "ms",
                        targets.get("tick_to_quote_p99_ms"), higher_is_better=False, note=note, measures=measures,
                        date=day))
    for key in ("scale", "scale_calm"):
        scale = data.get(key) or {}
        if not scale:
            continue
        steps = scale.get("steps") or []
        market = (steps[-1].get("market") or {}) if steps else {}
        label = scale.get("market", "active")
        day = str(scale.get("date", ""))[:10]
        where = (f"{label} market: {market.get('volatility_bps_per_sqrt_sec')} bps/√s, "
                 f"{market.get('noise_orders_per_sec_per_symbol')} noise orders/s/symbol")
        rows.append(Row("engine", f"bot-pairs per machine, {label} market (p99 cycle lag < 1 s)",
                        scale.get("largest_n_with_p99_lag_under_interval"), "",
                        targets.get(f"bot_pairs_per_machine_{label}") or targets.get("bot_pairs_per_machine"),
                        note=f"{where}; `{scale.get('command', '')}`",
                        measures="the most bots (one pair each, 1 s interval) one 2-process worker on this machine "
                                 "keeps with the p99 cycle lag under 1 s", date=day))
        for step in steps:
            activity = step.get("activity_per_bot_pair_per_sec") or {}
            busy = ", ".join(f"{k} {v}/s" for k, v in activity.items() if k != "quiet" and v)
            # a step whose bots did not all start within the window measured fewer bots than it says
            short = step.get("running_at_window") != step["bots"]
            rows.append(Row("engine", f"{label}: N={step['bots']} bots, p99 cycle lag",
                            None if short else step.get("lag_p99_secs"), "s", 1.0, higher_is_better=False,
                            note=(f"only {step.get('running_at_window')}/{step['bots']} running in the window (p99 "
                                  f"{step.get('lag_p99_secs')} s of those): not a figure for N={step['bots']}; "
                                  if short else "")
                                 + f"{step.get('cycles_per_sec')} cycles/s (pushed moves add cycles), lag p50 "
                                 f"{step.get('lag_p50_secs')} s, {step.get('running_at_window')}/{step['bots']} running"
                                 + (f" (start-up: every bot cycled {step['first_cycle_secs']} s after the starts)"
                                    if step.get("first_cycle_secs") is not None else "")
                                 + (f"; per bot-pair: {busy}" if busy else ""),
                            measures=f"how late the cycles of {step['bots']} running bots start after their "
                                     "scheduled time (1 s interval), 99th percentile", date=day))
        if steps:
            biggest = steps[-1]
            rows.append(Row("engine", f"memory per bot ({label}, N={biggest['bots']})",
                            biggest.get("memory_per_bot_mb"), "MB", targets.get("memory_per_bot_mb"),
                            higher_is_better=False,
                            measures="memory (USS) growth of worker, beat and emulator plus Redis since before the "
                                     "bots existed, divided by the bots (Postgres not included)", date=day))
    return rows


def rows_requote_gap(data: dict[str, Any]) -> list[Row]:
    """Empty time per side on the venue: the engine's default (place first) and the old order (cancel first)."""
    rows = []
    for mode, label in (("place_first", "new quotes placed first"), ("cancel_first", "cancel first (before)")):
        part = data.get(mode)
        if not isinstance(part, dict):
            continue
        sides = part.get("sides") or {}
        shares = [s.get("empty_share_of_window") for s in sides.values() if s.get("empty_share_of_window") is not None]
        gaps = [s.get("requote_gaps") or {} for s in sides.values()]
        count = sum(g.get("count", 0) for g in gaps)
        p50 = max((g.get("p50_ms", 0.0) for g in gaps), default=0.0)
        p90 = max((g.get("p90_ms", 0.0) for g in gaps), default=0.0)
        rows.append(Row(
            "engine", f"re-quote: side empty, {label}", 100 * max(shares) if shares else None, "%",
            higher_is_better=False,
            note=(f"{part.get('bots')} bots × {part.get('window_secs')} s, {part.get('requotes_per_bot_per_sec')} "
                  f"re-quotes/s per bot, grid 1 level, 2 bps tolerance, active market; {count} re-quote gaps"
                  + (f" (p50 {p50:g} ms, p90 {p90:g} ms, worse side)" if count else "")),
            measures="share of the window a bot's bid or ask side (the worse of the two) had no resting order on "
                     "the emulator, from its own matching thread (fills included; gaps split by cause in the json)"))
    return rows


def rows_kill(data: dict[str, Any]) -> list[Row]:
    targets = data.get("targets") or {}
    kill = data.get("kill") or {}
    if not kill:
        return []
    note = (f"{kill.get('rounds')} rounds, bot re-quoting on a mid moved every 50 ms "
            f"({kill.get('rounds_killed_while_requoting')} killed while re-quoting)")
    zero = kill.get("kill_to_zero_open_orders") or {}
    measures = ("`bots.services.bot_kill` on a bot re-quoting every 50 ms against the emulator (real worker): "
                "from the call until the venue lists none of the bot's orders open")
    return [
        Row("kill", "kill switch -> zero open orders, p50", zero.get("p50_ms"), "ms", None, higher_is_better=False,
            note=note, measures=measures),
        Row("kill", "kill switch -> zero open orders, p99", zero.get("p99_ms"), "ms",
            targets.get("kill_to_zero_open_p99_ms"), higher_is_better=False, note=note, measures=measures),
        Row("kill", "orders accepted after the kill committed", kill.get("orders_accepted_after_kill_committed"),
            "", targets.get("orders_sent_after_kill"), higher_is_better=False,
            measures="orders of the killed bot the venue accepted after the kill's transaction committed "
                     "(the venue's own accept times), summed over the rounds",
            note=f"venue accept times; after the call returned: {kill.get('orders_accepted_after_kill_returned')}, "
                 f"open 1 s after: {kill.get('orders_open_1s_after_kill')}"),
    ]


def rows_multi_venue(data: dict[str, Any]) -> list[Row]:
    result = data.get("tick_to_quote_three_venues") or {}
    if not result:
        return []
    rows = []
    phases = (("own", "its own mid moves", "each venue centred on its own mid; one venue's mid jumps (the venues in "
               "turn) until the bot's replacement bid and ask are accepted on that venue"),
              ("follow", "follows Binance", "every venue centred on Binance's mid; Binance's mid jumps until the "
               "bot's replacement bid and ask are accepted on each venue"))
    for mode, label, how in phases:
        phase = result.get(mode) or {}
        if not phase:
            continue
        note = (f"{result.get('moves')} moves, {phase.get('timeouts')} timeouts, interval "
                f"{result.get('monitoring_interval_secs')} s; {phase.get('order_streams_live')}/3 order streams "
                f"live, {phase.get('order_pushes_per_sec')} orders pushed/s, {phase.get('account_reads_per_sec')} "
                "REST account reads/s")
        load = result.get("load_average_1m") or []
        if load:
            note += f"; load average {'-'.join(map(str, load))} (1 min, {data.get('machine', {}).get('nproc')} cores)"
        measures = ("a bot on BTC/USDT on three emulator processes (Binance, OKX, Bybit dialects), real worker, "
                    f"pushed best bid/ask and order updates: {how}")
        for venue, name in (("binance", "Binance"), ("okx", "OKX"), ("bybit", "Bybit")):
            if mode == "follow" and venue == "binance":
                name = "Binance (its own move)"
            lat = (phase.get("latency") or {}).get(venue) or {}
            for stat in ("p50", "p99"):
                rows.append(Row("multi-venue", f"tick-to-quote, {name}, {label}, {stat}", lat.get(f"{stat}_ms"), "ms",
                                None, higher_is_better=False, note=note, measures=measures))
        every = (phase.get("latency") or {}).get("all") or {}
        if every:
            rows.append(Row("multi-venue", "tick-to-quote, all three venues re-quoted (follow), p99",
                            every.get("p99_ms"), "ms", None, higher_is_better=False, note=note, measures=measures))
    return rows


def rows_hedge(data: dict[str, Any]) -> list[Row]:
    result = data.get("fill_to_hedge") or {}
    if not result:
        return []
    note = (f"{result.get('fills')} fills, {result.get('timeouts')} timeouts, {result.get('not_hedged')} not hedged, "
            f"interval {result.get('monitoring_interval_secs')} s; quotes centred on the hedge venue's mid")
    measures = ("a bot quoting BTC/USDT on a Binance-dialect emulator process, hedging on an OKX-dialect one, real "
                "worker: the maker venue's mid jumps through its quote (a fill) until the hedge IOC is accepted on the "
                "hedge venue (the venues' ms clocks)")
    rows = []
    for name, label in (("fill_to_hedge_accepted", "fill → hedge IOC accepted"),
                        ("fill_to_hedge_row_stored", "fill → hedge owed (stored with the fill)")):
        lat = result.get(name) or {}
        for q in ("p50", "p99"):
            rows.append(Row("hedge", f"{label}, {q}", lat.get(f"{q}_ms"), "ms", None, higher_is_better=False,
                            note=note, measures=measures))
    return rows


def rows_backtest_data(data: dict[str, Any]) -> list[Row]:
    rows = [
        Row("backtest data", f"read {name} (gzip)", figures.get("rows_per_sec"), "rows/s", None,
            measures="`strategies.readers` streaming a generated gzip dump of that vendor format into the "
                     "backtester's events (one core)")
        for name, figures in (data.get("readers") or {}).items()
    ]
    rows.append(Row("backtest data", "convert bookTicker + trades, merged, gzip out",
                    data.get("convert_merge_rows_per_sec"), "rows/s", None,
                    measures="`python -m strategies.backtest convert` merging two dumps by time into the native "
                             "format"))
    sweep = data.get("sweep") or {}
    for workers, secs in (sweep.get("wall_secs_by_workers") or {}).items():
        rows.append(Row("backtest data", f"sweep of {sweep.get('runs')} runs, {workers} worker(s)", secs, "s", None,
                        higher_is_better=False,
                        measures=f"`strategies.sweep`: {sweep.get('runs')} backtests of {sweep.get('events_per_run')} "
                                 "events each on a process pool (results identical for any worker count: "
                                 f"{sweep.get('results_identical')})",
                        note="measured while other work held the second core: it shows equal results, "
                             "not the speed-up of a free core"))
    return rows


PEER_WORKLOADS = {  # workload: (figure, target ratio, what it measures)
    "data": ("data only", 1.5, "the same generated L1 quotes replayed with no strategy"),
    "join": ("join best bid/ask, re-place after a fill", 1.5,
             "a post-only bid at the best bid and ask at the best ask, each placed again only once it filled "
             "(Nautilus' SimpleQuoter-like)"),
    "requote": ("cancel + re-place bid and ask every quote", 10.0,
                "both orders cancelled and placed again at the best prices on every quote"),
}


def rows_peers(data: dict[str, Any]) -> list[Row]:
    """``make bench-peers``: our backtester / Nautilus Trader events per second, one row per workload."""
    version = data.get("nautilus_trader", "?")
    rows = []
    for row in data.get("rows") or []:
        figure, target, measures = PEER_WORKLOADS.get(row.get("workload"), (row.get("workload"), None, ""))
        ours, theirs = row.get("ours") or {}, row.get("theirs") or {}
        counts = f"{ours.get('orders', 0):,} / {ours.get('cancels', 0):,} / {ours.get('fills', 0):,}"
        same = "the same" if row.get("counts_equal") else f"**differ** (Nautilus {theirs.get('orders', 0):,} / " \
            f"{theirs.get('cancels', 0):,} / {theirs.get('fills', 0):,})"
        rows.append(Row("backtest vs peers", f"vs Nautilus Trader {version}: {figure}, {row.get('events'):,} quotes",
                        row.get("ratio"), "×", target,
                        note=f"{row.get('ours_eps', 0):,.0f} vs {row.get('theirs_eps', 0):,.0f} events/s; orders / "
                             f"cancels / fills {counts}, {same} on both; machine load {row.get('load')} "
                             "(both sides interleaved run by run)",
                        measures=f"`strategies.replay` (decisions through the live pipeline) against Nautilus' "
                                 f"BacktestEngine (L1, its own venv): {measures}"))
    return rows


def rows_storage(data: dict[str, Any]) -> list[Row]:
    bots, secs = data.get("bots"), data.get("window_secs")
    note = f"{bots} demo bot(s) × {data.get('pairs_per_bot')} pairs, {secs} s, {data.get('market')} market"
    measures = {
        "without_aggregation": "rows and bytes a bot-day would write with every routine event a row of its own "
                               "(as before issue 14)",
        "as_written": "what the tables gained (orders, fills, events, snapshots, risk events; Postgres bytes "
                      "with indexes), extrapolated from the window to one bot-day",
        "kept_for_good": "what stays after the retention policy (bots/retention.py) pruned the window's rows: "
                         "fills, orders with fills, non-routine events, hourly snapshots",
    }
    rows = []
    for key, label in (("without_aggregation", "without event aggregation"), ("as_written", "as written"),
                       ("kept_for_good", "kept after retention")):
        per_day = _get(data, "rows_per_bot_day", key) or {}
        detail = ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in per_day.items() if v)
        rows.append(Row("storage", f"per bot-day, {label}", _get(data, "mb_per_bot_day", key), "MB",
                        higher_is_better=False, note=f"rows: {detail}; {note}", measures=measures[key]))
    rows.append(Row("storage", "steady state per running bot (retained windows)",
                    data.get("steady_state_mb_per_bot"), "MB", higher_is_better=False, note=note,
                    measures="the rows retention removes, held for their RETENTION_*_DAYS (unfilled orders 7 d, "
                             "routine event summaries 30 d, full-resolution snapshots 7 d)"))
    return rows


def rows_alerts(data: dict[str, Any]) -> list[Row]:
    target = _get(data, "target", "p99_ms")
    measures = ("`publish_event` of an SLA breach in one process until a real Celery worker (prefork, no engine) has "
                "matched the rules, logged the alert and its signed webhook was received by an HTTP server on "
                "loopback")
    rows = []
    for key, label in (("steady", "steady"), ("burst", "burst")):
        run = data.get(key) or {}
        if not run:
            continue
        pace = f"{run.get('rate_per_sec'):g} events/s" if run.get("rate_per_sec") else "back to back"
        note = (f"{run.get('events')} events, {pace}, {data.get('worker_concurrency')} worker processes; "
                f"delivered {run.get('delivered')}/{run.get('events')}")
        rows.append(Row("alerts", f"event → webhook delivered, {label}, p50", _get(run, "latency", "p50_ms"), "ms",
                        None, higher_is_better=False, note=note, measures=measures))
        rows.append(Row("alerts", f"event → webhook delivered, {label}, p99", _get(run, "latency", "p99_ms"), "ms",
                        target, higher_is_better=False, note=note, measures=measures))
    rows.append(Row("alerts", "matcher cost per routine event", _get(data, "matcher", "routine_notice_ns"), "ns",
                    None, higher_is_better=False,
                    measures="`alerts.hooks.notice` on an `OrdersAdjusted` event (what each re-quote pays for the "
                             "alert matcher)"))
    return rows
def rows_sla(data: dict[str, Any]) -> list[Row]:
    note = (f"demo bot, {data.get('pairs')} pairs x {data.get('levels')} levels a side, "
            f"{data.get('cycles_per_minute', 0):.0f} re-quote cycles and {data.get('orders_per_minute', 0):.0f} "
            f"orders a minute, {data.get('minutes')} minutes ({data.get('database')})")
    return [
        Row("sla", "figures per engine cycle, CPU", data.get("cpu_us_per_cycle"), "µs", higher_is_better=False,
            note=f"{data.get('cpu_ms_per_minute')} ms CPU, {data.get('wall_ms_per_minute')} ms wall a minute; {note}",
            measures="beat's `sla-figures` minute task (liquidity/services.py, off the engine's path): one minute "
                     "of a bot's uptime, spread and depth from its order rows, stored in one upsert (an hour row "
                     "is summed when its hour closes), divided by that minute's re-quote cycles"),
        Row("sla", "figures per fill, CPU", data.get("cpu_us_per_fill"), "µs", higher_is_better=False,
            note=f"{data.get('fills_per_minute')} fills a minute against none; {note}",
            measures="the same minute task's extra CPU when the minute has fills, divided by the fills"),
        Row("sla", "live status of a day agreement", data.get("status_ms"), "ms", higher_is_better=False,
            note=note, measures="`liquidity.services.evaluate`: a day window read from the stored minutes plus the "
                                "minutes not stored yet, computed on the spot (the SLA pages and status.json)"),
        Row("sla", "venue time on an order row (engine side)", data.get("venue_time_ns"), "ns",
            higher_is_better=False, note=f"`timezone.now()`, which it replaced: {data.get('timezone_now_ns')} ns",
            measures="`bots.engine.orders.venue_time`: the only SLA work on the engine's path, once per venue answer"),
    ]


def rows_failover(data: dict[str, Any]) -> list[Row]:
    run = data.get("failover") or {}
    summary = run.get("summary") or {}
    if not summary:
        return []
    loads = run.get("load_average_1m") or []
    setup = (f"{run.get('rounds')} rounds, {run.get('bots')} bots ({run.get('market')} market, "
             f"{run.get('monitoring_interval_secs'):g} s interval), {run.get('hosts')} hosts × "
             f"{run.get('worker_concurrency')} driver, {run.get('shards')} shards, shard lease TTL "
             f"{run.get('shard_ttl_secs'):g} s, housekeeping every {run.get('housekeeping_secs'):g} s; machine shared "
             f"and loaded (1-min load {min(loads, default=0):.1f}–{max(loads, default=0):.1f} on 2 cores)")
    hosts = ("prefork Celery workers standing for hosts (own node names and process groups, one kernel) sharing "
             "the bots' shards")
    kill, warm, joined = summary.get("kill") or {}, summary.get("warm") or {}, summary.get("join") or {}
    correct = run.get("correctness") or {}
    signalled = "process group" if run.get("warm_stop_signal") == "group" else "main process"

    def p50(figures: dict[str, Any]) -> str:
        return f"p50 {figures.get('p50')} s over {figures.get('count', 0)} hand-overs"

    return [
        Row("failover", "kill -9 of a host → all its shards held by survivors, max",
            _get(kill, "shards_moved_secs", "max"), "s", TARGET_FAILOVER_SECS, higher_is_better=False,
            note=f"{p50(kill.get('shards_moved_secs') or {})}; {setup}",
            measures=f"{hosts}: one host's process group killed with -9, until every shard it held is leased by a "
                     "survivor (`health.shard_owners`, polled every 0.1 s)"),
        Row("failover", "kill -9 of a host → every one of its bots cycled on a survivor, max",
            _get(kill, "bots_cycled_secs", "max"), "s", TARGET_FAILOVER_SECS, higher_is_better=False,
            note=f"{p50(kill.get('bots_cycled_secs') or {})}; half of a host's bots within "
                 f"{_get(kill, 'bot_p50_secs', 'p50')} s (median over the hand-overs)",
            measures="as the row above, until each of the host's bots started a cycle on a survivor (the survivor's "
                     "own start time in the bot's cycle records)"),
        Row("failover", "warm shutdown of a host → every one of its bots cycled on a survivor, max",
            _get(warm, "bots_cycled_secs", "max"), "s", higher_is_better=False,
            note=f"{p50(warm.get('bots_cycled_secs') or {})}; shards on survivors p50 "
                 f"{_get(warm, 'shards_moved_secs', 'p50')} s, max {_get(warm, 'shards_moved_secs', 'max')} s "
                 f"(SIGTERM to the worker's {signalled}; its driver gives the shard leases back, no TTL waited)",
            measures=f"{hosts}: SIGTERM (Celery's warm shutdown), until each of the host's bots started a cycle on "
                     "a survivor"),
        Row("failover", "joining host → holds its fair share, max",
            _get(joined, "fair_share_after_heartbeat_secs", "max"), "s", higher_is_better=False,
            note=f"p50 {_get(joined, 'fair_share_after_heartbeat_secs', 'p50')} s; its bots cycled there "
                 f"{_get(joined, 'all_bots_cycled_after_heartbeat_secs', 'max')} s after its first heartbeat (max); "
                 f"process start → first heartbeat p50 {_get(joined, 'boot_secs', 'p50')} s",
            measures="a new worker joins (after each kill or stop): from its driver's first heartbeat until every "
                     "shard is held and no host holds more than ceil(shards / hosts) nor it less than its floor"),
        Row("failover", "client order ids accepted twice", correct.get("duplicate_client_order_ids"), "", 0,
            higher_is_better=False,
            note=f"{correct.get('orders_accepted')} orders accepted over the run",
            measures="the emulator's order journals (`GET /admin/journal`) over every round: accepts per client "
                     "order id"),
        Row("failover", "orphan orders after a hand-over", correct.get("orphan_orders"), "", 0,
            higher_is_better=False,
            note=f"pending rows left {correct.get('pending_left')}, overlapping cycles of one bot "
                 f"{correct.get('overlapping_cycles')}",
            measures="after each hand-over settled: the bots' orders open on the emulator that no engine manages "
                     "(not open in the database, or beyond one a side) and present at every poll for 10 s"),
    ]


TARGET_FAILOVER_SECS = 15.0
"""Issue 14: a killed host's shards move to the survivors within 15 s."""


def rows_db_binding(data: dict[str, Any]) -> list[Row]:
    rows = []
    for label, how in (("client_side", "parameters quoted into the SQL by the client (Django's default for psycopg "
                                        "3)"),
                       ("server_side_prepared", "parameters bound by the server and the statement prepared there "
                                                "after 5 runs on the connection (`DB_PREPARED_STATEMENTS`, on)")):
        mean = _get(data, label, "mean") or {}
        each = ", ".join(f"{name} {figures.get('server_us')} µs" for name, figures in (data.get(label) or {}).items()
                         if name != "mean")
        rows.append(Row("db binding", f"{how.split(' (')[0]}: server CPU per statement", mean.get("server_us"), "µs",
                        higher_is_better=False, note=f"client {mean.get('client_us')} µs a statement; {each}",
                        measures=f"Postgres backend CPU for an engine-shaped statement (a fill sync's answer UPDATE, "
                                 f"the open-rows read, a fill's INSERT; mean of the three), {how}"))
    return rows


EXTRACTORS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "exchange.json": rows_exchange,
    "strategies.json": rows_strategies,
    "push.json": rows_push,
    "engine.json": rows_engine,
    "requote_gap.json": rows_requote_gap,
    "kill.json": rows_kill,
    "backtest_data.json": rows_backtest_data,
    "peers.json": rows_peers,
    "storage.json": rows_storage,
    "alerts.json": rows_alerts,
    "sla.json": rows_sla,
    "multi_venue.json": rows_multi_venue,
    "failover.json": rows_failover,
    "hedge.json": rows_hedge,
    "db_binding.json": rows_db_binding,
}


def measured_on() -> dict[str, Any]:
    """The machine the results were measured on, not this one: the first description with a CPU model, naming
    every model among them (rows of different days may come from different machines)."""
    described = []
    for result in EXTRACTORS:
        try:
            described.append(json.loads((RESULTS / result).read_text()).get("machine") or {})
        except (OSError, ValueError):
            continue
    with_model = [m for m in described if m.get("cpu_model")]
    if not with_model:
        return described[0] if described else machine()
    models = list(dict.fromkeys(m["cpu_model"] for m in with_model))  # rows of other days: other machines
    return {**with_model[0], "cpu_model": " or ".join(models)}


def render_table() -> str:
    """The markdown between the README markers, from every known result file present."""
    info = measured_on()
    lines = [
        f"Machine: {info.get('cpu_model') or 'unknown CPU'}, {info.get('nproc') or info.get('cpus')} cores, "
        f"{info.get('memory_gb') or '?'} GB RAM, Python {info.get('python')} (shared with other work while measured). "
        "Each row names its command and date; `make bench` (`python -m bench.run_all`) rewrites this table.",
        "",
        "| bench | figure | what it measures | measured | target | met | command | date | notes |",
        "| --- | --- | --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    benches = {b.result: b for b in BENCHES}
    for result, extract in EXTRACTORS.items():
        path = RESULTS / result
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        date = str(data.get("date") or time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime)))[:10]
        command = (data.get("command") or benches[result].shown_command(bool(data.get("quick", False)))).strip()
        if data.get("database"):
            command = f"{command} ({data['database']})"
        previous = ""
        for row in extract(data):
            measures = "as above" if row.measures and row.measures == previous else row.measures
            previous = row.measures
            lines.append(f"| {row.bench} | {row.figure} | {measures} | {row.shown_value()} | "
                         f"{row.shown_target()} | {row.verdict()} | `{command}` | {row.date or date} | {row.note} |")
    return "\n".join(lines)


def rewrite_readme(table: str, readme: Path = README) -> bool:
    """Replace the text between the perf-table markers; False if the markers are missing."""
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme.name}: perf-table markers not found; table not written")
        return False
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(b.name for b in BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="smaller N in every bench")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the README table")
    options = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not options.only or b.name in options.only.split(",")]
    unknown = set(options.only.split(",")) - {b.name for b in BENCHES} if options.only else set()
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    failed = []
    if not options.table_only:
        for bench in chosen:
            if not (ROOT / (bench.module.replace(".", "/") + ".py")).exists():
                print(f"== {bench.name}: {bench.module} does not exist yet; skipped")
                continue
            print(f"== {bench.name}: {bench.shown_command(options.quick)}", flush=True)
            started = time.monotonic()
            code = subprocess.call(bench.command(options.quick), cwd=ROOT)
            print(f"== {bench.name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
            if code != 0:
                failed.append(bench.name)
    table = render_table()
    if rewrite_readme(table):
        print("README.md performance table rewritten")
    if failed:
        print(f"benches that did not finish: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
