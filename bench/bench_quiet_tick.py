"""The engine driver's quiet tick per bot, in process (no Celery worker): what one check of one bot costs
the driver thread when only the mid moved.

N bots (one-level grid, 20 bps spread, 5 bps tolerance; ``--bots-per-symbol`` per symbol,
``--bots-per-account`` per exchange account, as ``bench_engine --only scale`` lays them out) are started
against the exchange emulator (its own process, a frozen market: no timer, no noise traders), a
``Driver`` is built in this process and ticked by hand until every bot ran its first full cycle. Then,
``--ticks`` times, every bot is made due and the driver's ``_run_due`` runs them all (the leases, the
check of each bot, the quiet cycles' record): its wall time and the driver thread's CPU time
(``time.thread_time``, which the other load of a shared machine does not inflate) divided by the bots are
the figures. Modes:

* ``moving`` (default): before each tick the pushed best bid/ask of every pair moves by a few hundredths
  of a bps (a new top, as the venue's bookTicker stream hands it over): the quotes stay within tolerance,
  so every check is quiet, but the book each check reads is new;
* ``static``: nothing moved between two ticks (the account views and books are the same objects);
* ``requote``: before each tick the pushed best bid/ask of every pair jumps by ``REQUOTE_JUMP`` (8 bps, one tick up,
  the next back), past the bots' 5 bps refresh tolerance: every check's verdict is a re-quote on the kept engine,
  and the cycles the driver hands to its pool run on the ticking thread, so the figures are the check plus one
  re-quote (the quote guard, the fenced read of the account's other bots' rows, the decision, the orders stored,
  sent by cancel-replace or placed first and answered, the event): its wall time includes the emulator's answers,
  its CPU time does not include the I/O loop's (ccxt's requests);
* ``fills``: before each tick a taker account sweeps one side of every symbol's book (bids on even ticks, asks on
  odd ones) down to the bots' quotes with an IOC limit order, and the pushed updates (the order stream is on in this
  mode) are applied to the account views; every check whose bot was filled hands a fill sync to the pool, run on the
  ticking thread, so the figures are the check plus one fill sync (the fence, the reconcile on the pushed view, the
  re-quote placing the filled side again, the booking of the pushed trades, the events). ``per_fill_cpu_us``: the
  tick's CPU of the ticking thread (and of the whole process, the I/O loop's ccxt requests and pushes included)
  divided by the fill syncs it ran;
* ``full``: every bot's check finds its periodic full cycle due (``ENGINE_FULL_CYCLE_SECS``), and the cycles
  the driver hands to its pool run on the ticking thread instead, so the figures are what one full cycle
  (a new engine from the rows, the venue reads, the decision, the rows and pushes) costs: its wall time
  includes the emulator's answers, its CPU time does not.

The feeder's pass (account views, depth reads) runs between ticks, outside the timing. ``--profile``
prints cProfile's top functions of the timed ticks (timed by the thread's CPU) and keeps the stats in
``var/quiet_tick-<mode>.prof``. A database of the run's own (``DATABASE_URL``'s
server, else SQLite) and a private redis-server, both gone at the end. Prints figures and writes
``bench/results/quiet_tick.json`` (``full``: ``bench/results/full_cycle.json``); it never fails on a time.

    python -m bench.bench_quiet_tick [--bots 200] [--ticks 40] [--mode moving|static|requote|fills|full] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import (  # noqa: E402
    ADMIN_TOKEN,
    account_balances,
    account_plan,
    make_account,
    make_bot,
    make_tenant,
    scale_symbols,
    setup_django,
)
from bench.common import (  # noqa: E402
    BenchDatabase,
    PrivateRedis,
    admin_post,
    free_port,
    percentile,
    release,
    start_emulator,
    write_result,
)


def start_bots(n_bots: int, base_url: str, bots_per_symbol: int, bots_per_account: int) -> list[int]:
    """The scale bench's layout, each bot started in this process (the start task, run eagerly)."""
    from bots import services

    symbols = scale_symbols(n_bots, bots_per_symbol)
    plan = account_plan(n_bots, symbols, bots_per_account)
    account_symbols = {index: symbol for symbol, index in plan}
    tenant = make_tenant(f"quiet-{uuid.uuid4().hex[:6]}")
    accounts = []
    for index in range(len(account_symbols)):
        key, secret = f"quiet{index}key", f"quiet{index}secret"
        admin_post(base_url, "/admin/accounts", {"api_key": key, "secret": secret,
                                                 "balances": account_balances(account_symbols[index])}, ADMIN_TOKEN)
        accounts.append(make_account(tenant, f"acct-{index}", base_url, key, secret))
    bots = [make_bot(tenant, accounts[index], f"quiet-{i}", symbol, 1.0) for i, (symbol, index) in enumerate(plan)]
    for bot in bots:
        services.bot_request_start(bot=bot, user=None)  # CELERY_TASK_ALWAYS_EAGER: started here and now
    return [b.pk for b in bots]


def settle(driver: Any, bot_ids: list[int], timeout_secs: float) -> int:
    """Tick the driver (and its feeder's pass) until every bot has a kept engine from a full cycle."""
    deadline = time.monotonic() + timeout_secs
    ready = 0
    while time.monotonic() < deadline:
        driver._feed_once(time.time())
        driver.tick()
        ready = sum(1 for pk in bot_ids if (r := driver.runners.get(pk)) is not None and r.engine is not None
                    and not r.busy)
        if ready == len(bot_ids):
            break
    return ready


REQUOTE_JUMP = 8e-4
"""``requote`` mode: how far the pushed top jumps each tick (8 bps: past the 5 bps tolerance, short of the 20 bps
spread, so a new bid never crosses the bot's own old ask)."""


def move_tops(driver: Any, rng: random.Random, jump: float = 0.0) -> None:
    """A new pushed best bid/ask for every quoted pair: the depth read's top moved by < 0.05 bps (``jump``: by
    that fraction instead)."""
    now = time.time()
    for key, (_, book) in list(driver._books.items()):
        if not book.bids or not book.asks:
            continue
        shift = 1 + (jump or rng.uniform(-5e-6, 5e-6))
        (bid, bid_size), (ask, ask_size) = book.bids[0], book.asks[0]
        driver.tops[key] = (bid * shift, bid_size, ask * shift, ask_size, now)


TAKER_KEY, TAKER_SECRET = "quiettakerkey", "quiettakersecret"


def make_taker(base_url: str, symbols: list[str]) -> Any:
    """``fills`` mode: an emulator account with plenty of every asset, and a ccxt client of it (sync)."""
    import ccxt

    from exchanges.ccxt_config import binance_config_for

    assets = {asset for symbol in symbols for asset in symbol.split("/")}
    admin_post(base_url, "/admin/accounts", {"api_key": TAKER_KEY, "secret": TAKER_SECRET,
                                             "balances": {a: "1000000000" for a in assets}}, ADMIN_TOKEN)
    client = ccxt.binance(binance_config_for(base_url, TAKER_KEY, TAKER_SECRET))
    client.load_markets()
    return client


def sweep(driver: Any, taker: Any, side: str) -> None:
    """Fill the bots' resting ``side`` quotes (``buy``: their bids, hit by a sell) of every pair: an IOC limit at the
    worst of them for everything the book shows at or better than it (the emulator's ladder in front included)."""
    worst: dict[str, float] = {}
    for runner in driver.runners.values():
        for row in runner.rows:
            if row.side != side:
                continue
            price = float(row.price)
            held = worst.get(row.trading_pair)
            worst[row.trading_pair] = price if held is None else (
                min(held, price) if side == "buy" else max(held, price))
    for pair, price in worst.items():
        book = taker.fetch_order_book(pair, 100)
        levels = book["bids"] if side == "buy" else book["asks"]
        amount = sum(a for p, a in levels if (p >= price if side == "buy" else p <= price))
        if amount > 0:
            taker.create_order(pair, "limit", "sell" if side == "buy" else "buy", amount, price,
                               {"timeInForce": "IOC"})


def apply_pushes(driver: Any, settle_secs: float = 0.4) -> None:
    """Let the order streams' pushes of a sweep arrive and apply them to the views (the feeder's pass)."""
    deadline = time.monotonic() + settle_secs
    while time.monotonic() < deadline:
        time.sleep(0.05)
        driver._feed_once(time.time())


def drain(driver: Any, timeout_secs: float = 30.0) -> None:
    """Wait for the cycles a tick handed to the pool (a non-quiet verdict) and take their runners back."""
    deadline = time.monotonic() + timeout_secs
    while any(r.busy for r in driver.runners.values()) and time.monotonic() < deadline:
        driver.wake.wait(0.05)
        driver.wake.clear()
        driver._take_back()


def measure(driver: Any, ticks: int, mode: str, profile: bool, base_url: str = "") -> dict[str, Any]:
    rng = random.Random(7)
    per_bot_us: list[float] = []
    per_bot_cpu_us: list[float] = []  # the driver thread's CPU (time.thread_time): what other load does not inflate
    verdicts: Counter[str] = Counter()
    profiler = cProfile.Profile(time.thread_time) if profile else None  # CPU, not waits
    per_fill_cpu_us: list[float] = []  # ``fills``: the ticking thread's CPU per fill sync
    per_fill_process_cpu_us: list[float] = []  # ... and the whole process's (the I/O loop's requests and pushes)
    by_thread: Counter[str] = Counter()  # ``fills``: CPU us of each other thread during the timed ticks
    fills_run = 0
    if mode in ("full", "requote", "fills"):  # the pool's cycles run here, on the thread being timed
        driver.pool.submit = lambda fn, *args, deadline, on_cancel=None: fn(*args)
    taker = make_taker(base_url, sorted({r.trading_pair for rn in driver.runners.values() for r in rn.rows})) \
        if mode == "fills" else None
    for tick in range(ticks):
        driver._feed_once(time.time())  # the feeder's pass: untimed (its own thread in a worker)
        drain(driver)
        if mode == "moving":
            move_tops(driver, rng)
        elif mode == "requote":
            move_tops(driver, rng, REQUOTE_JUMP if tick % 2 == 0 else 0.0)  # up, then back where it was
        elif mode == "fills":
            sweep(driver, taker, "buy" if tick % 2 == 0 else "sell")
            apply_pushes(driver)
        now = time.time()
        due = [r for r in driver.runners.values() if not r.busy and r.engine is not None]
        for runner in due:
            runner.next_due = now
            if mode == "full":
                runner.last_full_at = 0.0  # its periodic full cycle is due
        before = Counter(driver.stats)
        if profiler is not None:
            profiler.enable()
        threads_before = threads_cpu() if mode == "fills" else {}
        began, began_cpu, began_process = time.perf_counter(), time.thread_time(), time.process_time()
        driver._run_due(due, now)
        driver._take_back()  # (a full cycle hands its runner back)
        spent, spent_cpu = time.perf_counter() - began, time.thread_time() - began_cpu
        spent_process = time.process_time() - began_process
        for name, seconds in (threads_cpu() if mode == "fills" else {}).items():
            by_thread[name] += int(1e6 * (seconds - threads_before.get(name, seconds)))
        if profiler is not None:
            profiler.disable()
        per_bot_us.append(1e6 * spent / max(len(due), 1))
        per_bot_cpu_us.append(1e6 * spent_cpu / max(len(due), 1))
        tick_verdicts = {k: v - before.get(k, 0) for k, v in driver.stats.items()
                         if not k.endswith(("_ms", "_calls")) and v - before.get(k, 0)}
        verdicts.update(tick_verdicts)
        if mode == "fills" and tick_verdicts.get("fills"):
            per_fill_cpu_us.append(1e6 * spent_cpu / tick_verdicts["fills"])
            per_fill_process_cpu_us.append(1e6 * spent_process / tick_verdicts["fills"])
            fills_run += tick_verdicts["fills"]
    began = time.perf_counter()
    driver._flush()
    flush_ms = 1000 * (time.perf_counter() - began)
    drain(driver)
    per_bot_us.sort()
    per_bot_cpu_us.sort()
    result = {
        "ticks": ticks,
        "bots_per_tick": len(driver.runners),
        "per_bot_us": {"p50": round(percentile(per_bot_us, 50), 1), "p90": round(percentile(per_bot_us, 90), 1),
                       "min": round(per_bot_us[0], 1), "mean": round(sum(per_bot_us) / len(per_bot_us), 1)},
        "per_bot_cpu_us": _spread(per_bot_cpu_us),
        "flush_ms": round(flush_ms, 2),
        **({"per_fill_cpu_us": _spread(per_fill_cpu_us), "per_fill_process_cpu_us": _spread(per_fill_process_cpu_us),
            "per_fill_cpu_us_by_thread": {name: round(us / fills_run, 1) for name, us in by_thread.most_common()
                                          if us / fills_run >= 1.0}}
           if per_fill_cpu_us else {}),
        "verdicts": dict(verdicts.most_common()),
    }
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(45)
        for where in (r"verdict.py:.*\(_check\)", r"\(execute_cycle\)", r"\(monitoring_iteration\)",
                      r"\(decide_quotes\)", r"\(risk_in_memory\)", r"\(rebalancing_due\)",
                      r"pipeline.py:.*\(decide\)", r"feed.py:.*\(_snapshot\)"):
            stats.print_callees(where)  # where a check's time goes, callee by callee
        result["profile"] = out.getvalue()
        profiler.dump_stats(str(ROOT / "var" / f"quiet_tick-{mode}.prof"))  # for pstats' callers / callees
    return result


def threads_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process, by thread name (``time.pthread_getcpuclockid``)."""
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # (ended meanwhile)
            continue
        cpu[thread.name] = cpu.get(thread.name, 0.0) + seconds
    return cpu


def _spread(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50": round(percentile(values, 50), 1), "min": round(values[0], 1),
            "mean": round(sum(values) / len(values), 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--mode", choices=["moving", "static", "requote", "fills", "full"], default="moving")
    parser.add_argument("--bots-per-symbol", type=int, default=20)
    parser.add_argument("--bots-per-account", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of the ticks")
    options = parser.parse_args(argv)

    database = BenchDatabase("mmbench_quiet")
    redis = PrivateRedis()
    emulator = None
    driver = None
    try:
        os.environ.update(CELERY_TASK_ALWAYS_EAGER="1", ENGINE_BOOK_STREAMS="0",
                          ENGINE_ORDER_STREAMS="1" if options.mode == "fills" else "0",
                          ENGINE_FULL_CYCLE_SECS="3600", ENGINE_DRIVER_ENABLED="0")
        setup_django(database.url, redis.url)
        from bots.engine.bootstep import prepare_process
        from bots.engine.driver import Driver

        prepare_process()  # as a worker does at start: ccxt imported, start-up objects frozen, its gc thresholds

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        symbols = scale_symbols(options.bots, options.bots_per_symbol)
        emulator = start_emulator(port, account="unusedkey:unusedsecret:USDT=1", admin_token=ADMIN_TOKEN,
                                  symbols=",".join(symbols), market_step_ms=0, noise_rate=0.0)
        started = time.monotonic()
        bot_ids = start_bots(options.bots, base_url, options.bots_per_symbol, options.bots_per_account)
        driver = Driver("quiet-bench")
        ready = settle(driver, bot_ids, max(120.0, options.bots * 0.5))
        print(f"{ready}/{len(bot_ids)} bots cycling after {time.monotonic() - started:.0f} s")
        figures = measure(driver, options.ticks, options.mode, options.profile, base_url)
        figures.update(bots=options.bots, mode=options.mode, bots_per_symbol=options.bots_per_symbol,
                       bots_per_account=options.bots_per_account)
        profile = figures.pop("profile", None)
        label = {"full": "full cycle", "requote": "check and re-quote", "fills": "check and fill sync"}.get(
            options.mode, f"quiet tick, {options.mode}")
        print(f"{label}, N={options.bots}: per bot wall p50 {figures['per_bot_us']['p50']} us, "
              f"p90 {figures['per_bot_us']['p90']} us, min {figures['per_bot_us']['min']} us; driver-thread CPU "
              f"p50 {figures['per_bot_cpu_us']['p50']} us, min {figures['per_bot_cpu_us']['min']} us "
              f"(ticks {options.ticks}); flush {figures['flush_ms']} ms; verdicts {figures['verdicts']}")
        if "per_fill_cpu_us" in figures:
            print(f"per fill sync: ticking thread CPU {figures['per_fill_cpu_us']} us, process CPU "
                  f"{figures['per_fill_process_cpu_us']} us; by thread (mean) {figures['per_fill_cpu_us_by_thread']}")
        if profile:
            print(profile)
        write_result({"full": "full_cycle", "requote": "requote_tick", "fills": "fill_tick"}.get(
            options.mode, "quiet_tick"), figures)
        return figures
    finally:
        if driver is not None:
            driver.stop()
            from exchanges.registry import clear_gateway_cache

            clear_gateway_cache()
        if emulator is not None:
            emulator.stop()
        release(database, redis)


if __name__ == "__main__":
    main()
