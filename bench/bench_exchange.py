"""Exchange-layer benchmark: matching-engine throughput in-process, and order placement latency
through the gateway (ccxt async) to the emulator on loopback. Prints figures and writes
``bench/results/exchange.json``; it never fails on a time.

    python -m bench.bench_exchange [--orders 200000] [--ticks 100000] [--placements 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Child, free_port, machine, start_emulator  # noqa: E402
from exchanges.emulator.engine import (  # noqa: E402
    BUY,
    GTC,
    IOC,
    SELL,
    EngineError,
    MarketSpec,
    MatchingEngine,
)

BTC = MarketSpec("BTC/USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal("5"))


def _engine() -> MatchingEngine:
    engine = MatchingEngine([BTC], Decimal("0.001"), Decimal("0.001"))
    for name in ("a", "b", "c", "d"):
        engine.create_account(name, {"USDT": Decimal("1e12"), "BTC": Decimal("1e7")})
    return engine


def bench_engine_decimal_mix(operations: int, seed: int = 1) -> dict:
    """Decimal API: ~50% place resting, ~35% cancel, ~15% crossing (matching) orders around a mid."""
    rng = random.Random(seed)
    engine = _engine()
    accounts = ["a", "b", "c", "d"]
    open_ids: list[tuple[str, int]] = []
    prepared = []
    for _ in range(operations):
        roll = rng.random()
        account = rng.choice(accounts)
        side = rng.choice(("BUY", "SELL"))
        offset = Decimal(rng.randint(1, 200)) / 100
        if roll < 0.5:
            price = Decimal(30000) - offset if side == "BUY" else Decimal(30000) + offset
            prepared.append(("place", account, side, price, "GTC"))
        elif roll < 0.85:
            prepared.append(("cancel", account, None, None, None))
        else:
            price = Decimal(30000) + offset if side == "BUY" else Decimal(30000) - offset
            prepared.append(("place", account, side, price, "IOC"))
    quantity = Decimal("0.01")
    start = time.perf_counter()
    for kind, account, side, price, tif in prepared:
        if kind == "place":
            try:
                order, _ = engine.place_order(account, "BTC/USDT", side, "LIMIT", quantity, price, time_in_force=tif)
            except EngineError:
                continue
            if order.is_open:
                open_ids.append((account, order.order_id))
        elif open_ids:
            account, order_id = open_ids.pop(rng.randrange(len(open_ids)))
            try:
                engine.cancel_order(account, "BTC/USDT", order_id=order_id)
            except EngineError:
                pass
    elapsed = time.perf_counter() - start
    return {"operations": operations, "seconds": elapsed, "ops_per_sec": operations / elapsed}


def bench_engine_fast_mix(operations: int, seed: int = 1) -> dict:
    """The int fast path with the same mix."""
    rng = random.Random(seed)
    engine = _engine()
    engine.record_trades = False
    accounts = ["a", "b", "c", "d"]
    open_ids: list[tuple[str, int]] = []
    prepared = [(rng.random(), rng.choice(accounts), rng.choice((BUY, SELL)), rng.randint(1, 200))
                for _ in range(operations)]
    start = time.perf_counter()
    for roll, account, side, offset in prepared:
        if roll < 0.5:
            price = 3_000_000 - offset if side == BUY else 3_000_000 + offset
            try:
                open_ids.append((account, engine.place_limit_fast(account, "BTC/USDT", side, price, 1000, GTC)))
            except EngineError:
                pass
        elif roll < 0.85:
            if open_ids:
                account, order_id = open_ids.pop(rng.randrange(len(open_ids)))
                engine.cancel_fast(account, order_id)
        else:
            price = 3_000_000 + offset if side == BUY else 3_000_000 - offset
            try:
                engine.place_limit_fast(account, "BTC/USDT", side, price, 1000, IOC)
            except EngineError:
                pass
    elapsed = time.perf_counter() - start
    return {"operations": operations, "seconds": elapsed, "ops_per_sec": operations / elapsed}


def bench_cancel_replace_ticks(ticks: int) -> dict:
    """The bare matching engine under a quoting pattern: every tick cancels the previous bid and ask and
    places new ones around a moving mid, on a 20-level book, through the engine's int fast path. No
    strategy, no backtester bookkeeping: the backtester end to end is ``bench_strategies``'
    "backtest, requote every L1 tick"."""
    engine = _engine()
    engine.record_trades = False
    for level in range(20):
        engine.place_limit_fast("d", "BTC/USDT", BUY, 2_990_000 - level * 100, 10_000)
        engine.place_limit_fast("d", "BTC/USDT", SELL, 3_010_000 + level * 100, 10_000)
    bid = ask = None
    start = time.perf_counter()
    for tick in range(ticks):
        if bid is not None:
            engine.cancel_fast("a", bid)
            engine.cancel_fast("a", ask)
        mid = 3_000_000 + (tick % 97) - 48
        bid = engine.place_limit_fast("a", "BTC/USDT", BUY, mid - 500, 1000)
        ask = engine.place_limit_fast("a", "BTC/USDT", SELL, mid + 500, 1000)
    elapsed = time.perf_counter() - start
    return {"ticks": ticks, "seconds": elapsed, "ticks_per_sec": ticks / elapsed, "ops_per_sec": 4 * ticks / elapsed}


# --- placement latency over loopback -------------------------------------------------------------


VENUES = ("binance", "okx", "bybit")
"""Every venue the emulator speaks: the gateway's placement is measured on each one's dialect."""

PASSPHRASE = {"okx": "benchpass"}
"""Venues that sign with a passphrase (OKX), and the one this bench's emulator account uses."""


def _start_emulator(port: int, venue: str = "binance") -> Child:
    """``bench.common.start_emulator`` with this bench's account, market timer on (100 ms)."""
    return start_emulator(port, account="bench:benchsecret:BTC=1000,USDT=100000000", admin_token="bench",
                          market_step_ms=100, venue=venue, passphrase=PASSPHRASE.get(venue, ""))


def _summary(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {
        "count": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p90_ms": ordered[int(0.90 * (len(ordered) - 1))],
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }


async def _bench_placements(base_url: str, placements: int, redis_url: str | None, run_id: str) -> dict:
    import ccxt.async_support as ccxt_async

    from exchanges.ccxt_config import binance_config_for
    from exchanges.ccxt_gateway import CcxtGateway
    from exchanges.gateway import GatewayCredentials, OrderRequest
    from exchanges.ratelimit import LocalTokenBucket, RedisTokenBucket

    results: dict = {}
    # bare ccxt async, for reference
    exchange = ccxt_async.binance(binance_config_for(base_url, "bench", "benchsecret"))
    await exchange.load_markets()
    samples = []
    for i in range(placements):
        price = str(Decimal(20000) + Decimal(i % 1000) / 100)
        start = time.perf_counter()
        await exchange.create_order("BTC/USDT", "limit", "buy", "0.001", price, {"newClientOrderId": f"raw{i}"})
        samples.append((time.perf_counter() - start) * 1000)
    await exchange.close()
    results["bare_ccxt_async"] = _summary(samples[50:])

    # the in-process bucket; the gateway's own Redis bucket (leasing while the budget has room, as in
    # production); the Redis bucket without a lease (a script call before every request)
    variants: list[tuple[str, str | None, bool]] = [("gateway_local_limiter", None, False)]
    if redis_url:
        variants += [("gateway_redis_limiter", redis_url, False), ("gateway_redis_limiter_no_lease", redis_url, True)]
    for name, url, no_lease in variants:
        credentials = GatewayCredentials(f"bench-{name}-{run_id}", "binance", "bench", "benchsecret",
                                         api_base_url=base_url, rate_limit_per_sec=1_000_000)
        limiter: LocalTokenBucket | RedisTokenBucket | None = None
        if url is None:
            limiter = LocalTokenBucket(1_000_000)
        elif no_lease:
            limiter = RedisTokenBucket(url, f"mmplatform:ratelimit:bench:{name}:{run_id}", 1_000_000, 1_000_000)
        gateway = CcxtGateway(credentials, rate_limiter=limiter, redis_url=url, rate_limit_burst=1_000_000)
        await gateway.load_markets()
        samples = []
        for i in range(placements):
            request = OrderRequest("BTC/USDT", "buy", Decimal(20000) + Decimal(i % 1000) / 100, Decimal("0.001"),
                                   f"{name[:10]}{i}")
            start = time.perf_counter()
            await gateway.place_order(request)
            samples.append((time.perf_counter() - start) * 1000)
        await gateway.close()
        if isinstance(limiter, RedisTokenBucket):
            await limiter.close()
        results[name] = _summary(samples[50:])
    return results


async def _bench_venue_placements(venue: str, base_url: str, placements: int) -> dict:
    """One limit order through ``CcxtGateway.place_order`` on ``venue``'s dialect (local limiter)."""
    from exchanges.ccxt_gateway import CcxtGateway
    from exchanges.gateway import GatewayCredentials, OrderRequest
    from exchanges.ratelimit import LocalTokenBucket

    credentials = GatewayCredentials(f"bench-{venue}", venue, "bench", "benchsecret",
                                     passphrase=PASSPHRASE.get(venue, ""), api_base_url=base_url,
                                     rate_limit_per_sec=1_000_000)
    gateway = CcxtGateway(credentials, rate_limiter=LocalTokenBucket(1_000_000), rate_limit_burst=1_000_000)
    await gateway.load_markets()
    samples = []
    try:
        for i in range(placements):
            request = OrderRequest("BTC/USDT", "buy", Decimal(20000) + Decimal(i % 1000) / 100, Decimal("0.001"),
                                   f"v{venue[:3]}{i}")
            start = time.perf_counter()
            await gateway.place_order(request)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        await gateway.close()
    return _summary(samples[50:])


def _forget_keys(redis_url: str, run_id: str) -> None:
    """Delete the keys this run created (its limiter buckets carry ``run_id`` in their name), no others."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*{run_id}*", count=1000):
        client.delete(key)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000, help="engine operations per mix")
    parser.add_argument("--ticks", type=int, default=100_000,
                        help="cancel + re-place ticks on the bare engine (default %(default)s)")
    parser.add_argument("--placements", type=int, default=2000, help="placements per latency variant")
    options = parser.parse_args()

    figures: dict = {"machine": machine(), "date": datetime.now(tz=UTC).isoformat(timespec="seconds")}
    figures["engine_decimal_api_mix"] = bench_engine_decimal_mix(options.orders)
    figures["engine_fast_path_mix"] = bench_engine_fast_mix(options.orders)
    figures["engine_cancel_replace_ticks"] = bench_cancel_replace_ticks(options.ticks)
    print(f"engine, Decimal API mix : {figures['engine_decimal_api_mix']['ops_per_sec']:>12,.0f} ops/s "
          "(target >= 50,000)")
    print(f"engine, int fast path   : {figures['engine_fast_path_mix']['ops_per_sec']:>12,.0f} ops/s")
    print(f"engine cancel+re-place  : {figures['engine_cancel_replace_ticks']['ticks_per_sec']:>12,.0f} ticks/s "
          f"({figures['engine_cancel_replace_ticks']['ops_per_sec']:,.0f} ops/s; bare engine, no strategy)")

    # the Redis limiter: $REDIS_URL's server with keys of this run's own (deleted afterwards), or a private
    # redis-server of the bench's own when REDIS_URL is unset; never a server nobody named
    run_id = uuid.uuid4().hex[:12]
    redis_url = os.environ.get("REDIS_URL") or None
    private_redis = None
    port = free_port()
    process = _start_emulator(port)
    try:
        if redis_url is None:
            from bench.common import PrivateRedis

            private_redis = PrivateRedis()
            redis_url = private_redis.url
        latency = asyncio.run(_bench_placements(f"http://127.0.0.1:{port}", options.placements, redis_url, run_id))
    finally:
        process.stop()
        if private_redis is not None:
            private_redis.stop()
        elif redis_url is not None:
            _forget_keys(redis_url, run_id)
    figures["placement_latency"] = latency
    by_venue: dict = {}
    for venue in VENUES:  # each dialect in an emulator of its own, one after the other
        port = free_port()
        process = _start_emulator(port, venue)
        try:
            by_venue[venue] = asyncio.run(_bench_venue_placements(venue, f"http://127.0.0.1:{port}",
                                                                  options.placements))
        finally:
            process.stop()
    figures["placement_latency_by_venue"] = by_venue
    for venue, summary in by_venue.items():
        print(f"gateway on {venue:<14}: p50 {summary['p50_ms']:.3f} ms  p90 {summary['p90_ms']:.3f} ms  "
              f"p99 {summary['p99_ms']:.3f} ms  (n={summary['count']}; targets p50 <= 1, p99 <= 3)")
    figures["placement_latency_note"] = "emulator in its own process on loopback; market timer on (100 ms)"
    for name, summary in latency.items():
        print(f"{name:<24}: p50 {summary['p50_ms']:.3f} ms  p90 {summary['p90_ms']:.3f} ms  "
              f"p99 {summary['p99_ms']:.3f} ms  (n={summary['count']}; gateway targets p50 <= 1, p99 <= 3)")

    out = ROOT / "bench" / "results" / "exchange.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
