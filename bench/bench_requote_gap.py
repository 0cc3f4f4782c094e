"""Re-quote gaps: how long each side of a running bot's quotes stands empty on the venue (issue 16 item 8).

Real stack: a Celery worker (the engine driver), Redis, the database, and the exchange emulator, which
here runs in this process (``EmulatorServer.start_in_thread``) so its matching engine can be watched:
after every call that changes an order (placements, cancels, cancel-replace, the synthetic market's
own orders and their fills) the bench counts each watched account's resting orders per side and notes,
on ``time.perf_counter`` (µs resolution, the emulator's own thread), when a side goes empty and when it
is covered again. The watch only reads the engine; it changes nothing.

Each bot has an account of its own; the market is the scale bench's active one (1.5 bps/√s, 0.5 noise
orders/s) and the bots quote one grid level with the demo's 2 bps refresh tolerance, so they re-quote
several times a second. Run once with the engine's default (``ENGINE_PLACE_FIRST=1``: new quotes
first, then the cancels) and once with cancel-first (the old order) for the comparison:

    python -m bench.bench_requote_gap [--bots 4] [--window 60] [--mode both|place-first|cancel-first]

Figures (printed, and ``bench/results/requote_gap.json``): per side, the share of the window it stood
empty, the number of gaps and their p50 / p90 / max; gaps a fill opened (a quote taken) are counted
apart from those a re-quote opened. Never fails on a time.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

from bench.bench_engine import (
    ORDER_SIZE_USDT,
    account_balances,
    fence_bots,
    make_account,
    make_bot,
    make_tenant,
    setup_django,
    use_queue,
    wait_for,
)
from bench.common import BenchDatabase, PrivateRedis, percentile, release, start_worker, write_result

WATCHED = ("place_order", "cancel_order", "cancel_all", "cancel_replace", "place_limit_fast", "place_market_fast",
           "cancel_fast")


class SideWatch:
    """Per (account, side): when it went empty, and every gap (seconds) with what opened it."""

    def __init__(self, engine: Any, accounts: list[str]):
        self.engine = engine
        self.accounts = accounts
        self.lock = threading.Lock()
        self.empty_since: dict[tuple[str, str], Any] = {}  # (empty since, cause) or None: covered
        self.gaps: dict[str, list[tuple[float, str]]] = {"BUY": [], "SELL": []}
        self.recording = False
        self.started = 0.0
        self.cancels = 0  # cancel requests the venue served while recording (the bots' re-quotes)
        for name in WATCHED:
            original = getattr(engine, name)
            setattr(engine, name, self._wrapped(original, name))

    def _wrapped(self, original: Any, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.recording and name in ("cancel_order", "cancel_replace", "cancel_all"):
                self.cancels += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.observe("fill" if name in ("place_market_fast", "place_limit_fast") else "requote")
        return call

    def observe(self, cause: str) -> None:
        now = time.perf_counter()
        with self.lock:
            for account in self.accounts:
                sides = {o.side for o in self.engine.open_orders(account)}
                for side in ("BUY", "SELL"):
                    key = (account, side)
                    held = self.empty_since.get(key, "unknown")
                    if side in sides:
                        if isinstance(held, tuple) and self.recording:
                            self.gaps[side].append((now - max(held[0], self.started), held[1]))
                        self.empty_since[key] = None
                    elif not isinstance(held, tuple):
                        self.empty_since[key] = (now, cause)

    def start(self) -> None:
        with self.lock:
            self.recording = True
            self.started = time.perf_counter()

    def stop(self) -> float:
        """Closes the open gaps at the window's end; returns the window (s)."""
        now = time.perf_counter()
        with self.lock:
            self.recording = False
            for (_, side), held in self.empty_since.items():
                if isinstance(held, tuple):
                    self.gaps[side].append((now - max(held[0], self.started), held[1] + " (open at end)"))
        return now - self.started


def summary(gaps: list[float]) -> dict[str, Any]:
    ordered = sorted(1000 * g for g in gaps)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered), "p50_ms": round(percentile(ordered, 50), 2),
            "p90_ms": round(percentile(ordered, 90), 2), "max_ms": round(ordered[-1], 2),
            "total_ms": round(sum(ordered), 1)}


def run(*, bots: int, window_secs: float, place_first: bool, concurrency: int) -> dict[str, Any]:
    from bots import services
    from bots.models import Bot, BotStatus
    from exchanges.emulator.server import AccountConfig, EmulatorConfig, EmulatorServer

    accounts = [AccountConfig(f"gap{i}key", f"gap{i}secret",
                              {k: Decimal(v) for k, v in account_balances("BTC/USDT").items()}, account_id=f"gap{i}")
                for i in range(bots)]
    server = EmulatorServer(EmulatorConfig(
        symbols=("BTC/USDT",), accounts=tuple(accounts), market_step_ms=100,
        dynamics={"BTC/USDT": {"volatility_bps_per_sqrt_sec": 1.5, "noise_arrival_rate_per_sec": 0.5}}))
    base_url = server.start_in_thread()
    watch = SideWatch(server.engine, [a.account_id for a in accounts if a.account_id])
    queue = f"bench-gap-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    import os

    env = {k: v for k, v in os.environ.items()}
    env.update({"CELERY_QUEUE": queue, "ENGINE_PLACE_FIRST": "1" if place_first else "0"})
    worker = start_worker(env, queue, concurrency, name="gap-worker")
    bot_ids: list[int] = []
    try:
        tenant = make_tenant(f"gap-{uuid.uuid4().hex[:4]}")
        for i, account in enumerate(accounts):
            row = make_account(tenant, f"gap-{i}", base_url, account.api_key, account.secret)
            bot = make_bot(tenant, row, f"gap-{i}", "BTC/USDT", 1.0)
            Bot.objects.filter(pk=bot.pk).update(order_refresh_tolerance_bps=2.0)
            bot_ids.append(bot.pk)
            services.bot_request_start(bot=Bot.objects.get(pk=bot.pk), user=None)
        if not wait_for(lambda: Bot.objects.filter(pk__in=bot_ids, status=BotStatus.RUNNING).count() == bots, 90):
            raise RuntimeError(f"the bots never ran; see {worker.log_path}")
        time.sleep(5)  # first quotes rest
        server.call(lambda: watch.observe("start"))
        watch.start()
        time.sleep(window_secs)
        window = watch.stop()
        sides: dict[str, Any] = {}
        for side, gaps in watch.gaps.items():
            requote = [g for g, cause in gaps if cause.startswith("requote")]
            fill = [g for g, cause in gaps if cause.startswith("fill")]
            sides[side.lower()] = {
                "empty_share_of_window": round(sum(g for g, _ in gaps) / (window * bots), 5),
                "requote_gaps": summary(requote), "fill_gaps": summary(fill),
            }
        return {"bots": bots, "window_secs": round(window, 1), "place_first": place_first,
                "order_size_usdt": float(ORDER_SIZE_USDT), "refresh_tolerance_bps": 2.0, "grid_levels": 1,
                "market": {"volatility_bps_per_sqrt_sec": 1.5, "noise_orders_per_sec": 0.5},
                "sides": sides, "cancels_served": watch.cancels,
                "requotes_per_bot_per_sec": round(watch.cancels / 2 / bots / window, 2),
                "measured": "per bot and side, time with no resting order on the emulator (its own thread, "
                            "perf_counter), split by what emptied the side: a re-quote's cancel or a fill"}
    finally:
        fence_bots(bot_ids)
        worker.stop(20)
        server.stop_thread()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=4)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--mode", choices=["both", "place-first", "cancel-first"], default="both",
                        help="place-first: the engine's default (ENGINE_PLACE_FIRST=1); cancel-first: the old order")
    options = parser.parse_args(argv)
    database = BenchDatabase("mmbench")
    redis: PrivateRedis | None = None
    figures: dict[str, Any] = {}
    try:
        redis = PrivateRedis()
        setup_django(database.url, redis.url)
        for mode in ("place-first", "cancel-first"):
            if options.mode in ("both", mode):
                figures[mode.replace("-", "_")] = run(bots=options.bots, window_secs=options.window,
                                                      place_first=mode == "place-first",
                                                      concurrency=options.concurrency)
        figures["command"] = "python -m bench.bench_requote_gap " + " ".join(argv if argv is not None
                                                                             else sys.argv[1:])
        figures["database"] = database.kind
    finally:
        release(database, redis)
    for mode in ("place_first", "cancel_first"):
        result = figures.get(mode)
        if result is None:
            continue
        print(f"{mode}: {result['cancels_served']} cancels served ({result['requotes_per_bot_per_sec']} "
              "re-quotes/s per bot)")
        for side, side_figures in result["sides"].items():
            print(f"  {side}: empty {100 * side_figures['empty_share_of_window']:.3f} % of the window; "
                  f"re-quote gaps {side_figures['requote_gaps']}; fill gaps {side_figures['fill_gaps']}")
    path = write_result("requote_gap", figures)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
