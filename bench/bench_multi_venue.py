"""Tick-to-quote of a bot quoting BTC/USDT on three venues (issue 15): three emulator processes (the
Binance, OKX and Bybit dialects), a real Celery worker, every venue's pushed streams -- the best bid/ask
(public) and the account's own order updates (private: Binance's user-data stream, OKX's ``orders``
channel, Bybit's ``order`` topic), so the feeder reads accounts by REST only at the reconcile rate.
Two phases, one bot:

* ``own`` (reference price: each venue's own mid): one venue's mid jumps (+-25 bps, admin
  ``POST /admin/mid``), the venues in turn; the latency is the time until the bot's replacement bid and
  ask on that venue are accepted -- tick-to-quote on each venue;
* ``follow`` (reference price: Binance's mid): Binance's mid jumps; the latency is until the
  replacement quotes are accepted on each venue: Binance's own re-quote and OKX's and Bybit's following
  it (their own books do not move).

Times are the emulators' own ms clocks (one machine). Also printed: the orders pushed and the REST
account reads per second over each phase, and how many of the three order streams were live.

    python -m bench.bench_multi_venue [--moves 200] [--interval 0.05] [--mode own|follow|both]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import (  # noqa: E402
    ADMIN_TOKEN,
    OrderWatch,
    _requoted,
    fence_bots,
    make_tenant,
    setup_django,
    use_queue,
    wait_for,
)
from bench.common import (  # noqa: E402
    BenchDatabase,
    PrivateRedis,
    admin_post,
    free_port,
    release,
    start_emulator,
    start_worker,
    summary_ms,
    write_result,
)

VENUES = ("binance", "okx", "bybit")
PASSPHRASE = "Bench-Phrase-1"


def make_account(tenant: Any, venue: str, base_url: str, api_key: str, secret: str) -> Any:
    from exchanges.models import ExchangeAccount

    account = ExchangeAccount(tenant=tenant, label=f"{venue}-bench", exchange_id=venue, api_base_url=base_url,
                              rate_limit_per_sec=1000.0)
    account.set_credentials(api_key=api_key, api_secret=secret, passphrase=PASSPHRASE if venue == "okx" else "")
    account.save()
    return account


def feed_stats() -> dict[str, int]:
    """The feeder's counters summed over the live drivers (each publishes them in its stats hash)."""
    from bots.engine import keys
    from bots.engine.health import live_drivers
    from mmplatform.redis_client import get_redis, text

    totals = {"order_pushes": 0, "account_reads": 0, "order_streams_live": 0}
    for token in live_drivers():
        stats = {text(k): text(v) for k, v in get_redis().hgetall(keys.driver_stats(token)).items()}
        for name in totals:
            totals[name] += int(stats.get(name, 0) or 0)
    return totals


def bench(env: dict[str, str], *, moves: int, interval_secs: float, concurrency: int,
          modes: tuple[str, ...]) -> dict[str, Any]:
    from django.utils import timezone

    from bots import services
    from bots.models import Bot, BotStatus

    emulators, urls, watches = [], {}, {}
    queue = f"bench-mv-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker = None
    bot = None
    try:
        tenant = make_tenant(f"mv-{uuid.uuid4().hex[:4]}")
        accounts = []
        for index, venue in enumerate(VENUES):
            port = free_port()
            api_key, secret = f"{venue}benchkey", f"{venue}benchsecret"
            emulators.append(start_emulator(port, account=f"{api_key}:{secret}:BTC=100,USDT=6000000",
                                            admin_token=ADMIN_TOKEN, seed=index + 1, venue=venue,
                                            passphrase=PASSPHRASE if venue == "okx" else ""))
            urls[venue] = f"http://127.0.0.1:{port}"
            watches[venue] = OrderWatch(urls[venue], api_key, "")  # the account is the bot's alone
            accounts.append(make_account(tenant, venue, urls[venue], api_key, secret))
        worker = start_worker({**env, "CELERY_QUEUE": queue}, queue, concurrency, name="mv-worker")
        first = REFERENCES[modes[0]]
        bot = Bot.objects.create(
            tenant=tenant, name="three-venue-bot", trading_pairs="BTC/USDT", monitoring_interval_secs=interval_secs,
            error_recovery_delay_secs=interval_secs, grid_levels=1, spread_bps=20.0, order_size_quote=Decimal("100"),
            min_order_size_quote=Decimal("10"), max_order_size_quote=Decimal("10000"), adaptation_enabled=False,
            metrics_interval_secs=60.0, max_daily_loss_quote=Decimal("1000000000"), max_drawdown_ratio=1.0,
            inventory_deviation_limit=1.0, default_rebalance_threshold=1.0, volatility_pause_threshold=1000.0,
            order_refresh_secs=3600.0, max_position_quote=Decimal("1e12"), **first)
        bot.exchange_accounts.set(accounts)
        services.bot_request_start(bot=bot, user=None)
        if not wait_for(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.RUNNING, 90):
            raise RuntimeError(f"the bot never ran; see {worker.log_path}")
        for venue in VENUES:
            if not wait_for(lambda v=venue: len(watches[v].orders()) == 2, 60):
                raise RuntimeError(f"{venue}: the bot's first quotes never rested; see {worker.log_path}")
        if not wait_for(lambda: feed_stats()["order_streams_live"] >= len(VENUES), 60):
            print(f"note: only {feed_stats()['order_streams_live']} of {len(VENUES)} order streams live")
        result: dict[str, Any] = {"moves": moves, "monitoring_interval_secs": interval_secs,
                                  "worker_concurrency": concurrency,
                                  "load_average_1m": [round(os.getloadavg()[0], 1)]}  # before, after
        rng = random.Random(1)
        for mode in modes:
            Bot.objects.filter(pk=bot.pk).update(updated_at=timezone.now(), **REFERENCES[mode])  # a full cycle
            run(mode, urls, watches, 20, interval_secs, rng)  # warm-up (and the new reference taking hold)
            before, started = feed_stats(), time.monotonic()
            latencies, timeouts = run(mode, urls, watches, moves, interval_secs, rng, start_index=20)
            seconds = time.monotonic() - started
            after = feed_stats()
            result[mode] = {
                "seconds": round(seconds, 1), "timeouts": timeouts,
                "latency": {venue: summary_ms(samples) for venue, samples in latencies.items()},
                "order_pushes_per_sec": round((after["order_pushes"] - before["order_pushes"]) / seconds, 1),
                "account_reads_per_sec": round((after["account_reads"] - before["account_reads"]) / seconds, 2),
                "order_streams_live": after["order_streams_live"],
                "measured": MEASURED[mode],
            }
        result["load_average_1m"].append(round(os.getloadavg()[0], 1))
        return result
    finally:
        if bot is not None:
            fence_bots([bot.pk])
        if worker is not None:
            worker.stop()
        for emulator in emulators:
            emulator.stop()


REFERENCES = {"own": {"reference_price": "own", "reference_venue": ""},
              "follow": {"reference_price": "venue", "reference_venue": "binance"}}
MEASURED = {
    "own": "one venue's mid jump (+-25 bps, the venues in turn) -> the replacement bid and ask accepted on that "
           "venue (its emulator's ms clock)",
    "follow": "Binance's mid jump (+-25 bps) -> the replacement bid and ask accepted on each venue (each "
              "emulator's ms clock); all: until the last venue's",
}


def run(mode: str, urls: dict[str, str], watches: dict[str, OrderWatch], moves: int, interval_secs: float,
        rng: random.Random, start_index: int = 0) -> tuple[dict[str, list[float]], int]:
    latencies: dict[str, list[float]] = {venue: [] for venue in (*VENUES, *(("all",) if mode == "follow" else ()))}
    timeouts = 0
    for index in range(start_index, start_index + moves):
        moved = VENUES[index % len(VENUES)] if mode == "own" else "binance"
        turn = index // len(VENUES) if mode == "own" else index
        mid = 60000.0 * (1.0025 if turn % 2 == 0 else 0.9975)
        answer = admin_post(urls[moved], "/admin/mid", {"symbol": "BTC/USDT", "mid": f"{mid:.2f}"}, ADMIN_TOKEN)
        moved_at_ms = float(answer["time_ms"])
        following = (moved,) if mode == "own" else VENUES
        done: dict[str, float] = {}
        deadline = time.monotonic() + 5
        while len(done) < len(following) and time.monotonic() < deadline:
            for venue in following:
                if venue not in done:
                    at = _requoted(watches[venue].orders(), mid, moved_at_ms)
                    if at is not None:
                        done[venue] = at
            if len(done) < len(following):
                time.sleep(0.01)
        if len(done) < len(following):
            timeouts += 1
        else:
            for venue, at in done.items():
                latencies[venue].append(max(at - moved_at_ms, 0.0))
            if mode == "follow":
                latencies["all"].append(max(max(done.values()) - moved_at_ms, 0.0))
        time.sleep(rng.uniform(0, interval_secs))
    return latencies, timeouts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=200, help="mid jumps per phase")
    parser.add_argument("--interval", type=float, default=0.05, help="the bot's monitoring interval, s")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--mode", choices=("own", "follow", "both"), default="both")
    options = parser.parse_args(argv)
    modes = ("own", "follow") if options.mode == "both" else (options.mode,)
    database = BenchDatabase("mmbenchmv")
    redis: PrivateRedis | None = None
    figures: dict[str, Any] = {"database": database.kind}
    try:
        redis = PrivateRedis()
        env = setup_django(database.url, redis.url)
        result = bench(env, moves=options.moves, interval_secs=options.interval, concurrency=options.concurrency,
                       modes=modes)
        result["command"] = "python -m bench.bench_multi_venue " + " ".join(argv if argv is not None else sys.argv[1:])
        figures["tick_to_quote_three_venues"] = result
        figures["command"] = result["command"]
        print(f"load average (1 min) before / after: {' / '.join(map(str, result['load_average_1m']))} "
              f"on {os.cpu_count()} cores")
        for mode in modes:
            phase = result[mode]
            print(f"{mode}: {MEASURED[mode]}")
            for venue, lat in phase["latency"].items():
                if lat.get("count"):
                    print(f"  {venue:>8}: p50 {lat['p50_ms']:.1f} ms  p90 {lat['p90_ms']:.1f} ms  "
                          f"p99 {lat['p99_ms']:.1f} ms  (n={lat['count']})")
            print(f"  timeouts: {phase['timeouts']} of {result['moves']}; order streams live "
                  f"{phase['order_streams_live']} of {len(VENUES)}; {phase['order_pushes_per_sec']} orders pushed/s, "
                  f"{phase['account_reads_per_sec']} REST account reads/s")
    finally:
        release(database, redis)
    path = write_result("multi_venue", figures)
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
