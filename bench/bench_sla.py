"""SLA figures: what computing them costs, per engine cycle and per fill.

The SLA work never runs in a cycle: beat's ``sla-figures`` task computes each closed minute from the
order rows and fills (``liquidity.services.store_minutes``) and sums hours and days. The only change on
the engine's path is that an order row takes the venue's accept / cancel time (``venue_time``, one
datetime conversion per answer). This bench writes the rows a demo bot (two pairs, three levels a side)
writes in a minute at the measured re-quote rate (~3 a second per pair, every order replaced), plus
fills, into a database of its own, and times the minute task on them:

- cost per cycle: CPU of one minute's computation (both pairs, stored, hour and day re-summed) divided
  by the re-quote cycles of that minute, without fills;
- cost per fill: the extra CPU of the same minutes with fills, divided by the fills;
- the live status of a day's agreement (read from stored rows plus the current minute);
- ``venue_time`` per call (the engine's side).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.common import ROOT, BenchDatabase, PrivateRedis, release, write_result

PAIRS = {"BTC/USDT": 60000.0, "ETH/USDT": 3000.0}
LEVELS = 3
SPREAD_BPS = 12.0
SPACING_BPS = 6.0


def populate(bot: Any, account: Any, start: datetime, minutes: int, requotes_per_sec: float, fills_per_minute: int,
             seed: int) -> dict[str, int]:
    """Order rows (and fills) of ``minutes`` of quoting from ``start``: every re-quote replaces the six
    orders of a pair (accept, then cancel at the next re-quote); fills hit random resting orders."""
    from bots.engine import keys
    from bots.models import Fill, LiquidityPosition, Order, OrderStatus
    from mmplatform.redis_client import get_redis

    rng = random.Random(seed)
    orders: list[Order] = []
    counts = {"orders": 0, "fills": 0, "cycles": 0}
    step_ms = int(1000 / requotes_per_sec)
    venue = f"{account.exchange_id}@{account.api_base_url or 'default'}"
    pipe = get_redis().pipeline()
    for pair, mid0 in PAIRS.items():
        LiquidityPosition.objects.get_or_create(tenant=bot.tenant, bot=bot, exchange_account=account, trading_pair=pair)
        t_ms = int(start.timestamp() * 1000)
        end_ms = t_ms + minutes * 60_000
        cycle = 0
        mid = mid0
        while t_ms < end_ms:
            mid *= 1 + rng.gauss(0, 0.0002)
            if cycle % 8 == 0:  # the feeder's reads: a mid point about every 2.7 s
                pipe.rpush(keys.market_data("mids", venue, pair), f"{t_ms / 1000}:{mid}")
            closes = t_ms + step_ms
            for side in ("buy", "sell"):
                for level in range(LEVELS):
                    away = (SPREAD_BPS / 2 + level * SPACING_BPS) / 10_000
                    price = mid * (1 - away if side == "buy" else 1 + away)
                    orders.append(Order(
                        tenant_id=bot.tenant_id, bot=bot, exchange_account=account, trading_pair=pair,
                        client_order_id=f"mm-{bot.pk}-1-{pair[:3]}{cycle}-{side[0]}{level}", side=side,
                        price=Decimal(f"{price:.2f}"), amount=Decimal(f"{500 / price:.5f}"),
                        status=OrderStatus.CANCELED, acknowledged_at=datetime.fromtimestamp(t_ms / 1000, tz=UTC),
                        closed_at=datetime.fromtimestamp((closes + 3) / 1000, tz=UTC), cycle=cycle, level=level))
            t_ms, cycle = closes, cycle + 1
        counts["cycles"] += cycle
    pipe.execute()
    Order.objects.bulk_create(orders, batch_size=5000)
    counts["orders"] = len(orders)
    if fills_per_minute:
        saved = list(Order.objects.filter(bot=bot).only("pk", "side", "price", "amount", "acknowledged_at",
                                                        "trading_pair"))
        fills = []
        for n in range(fills_per_minute * minutes):
            order = rng.choice(saved)
            fills.append(Fill(tenant_id=bot.tenant_id, bot=bot, order=order, exchange_account=account,
                              exchange_trade_id=f"t{bot.pk}-{n}", trading_pair=order.trading_pair, side=order.side,
                              price=order.price, amount=order.amount / 3, is_maker=True,
                              executed_at=order.acknowledged_at + timedelta(milliseconds=100)))
        Fill.objects.bulk_create(fills, batch_size=5000)
        counts["fills"] = len(fills)
    return counts


def time_minutes(bot: Any, start: datetime, minutes: int) -> list[tuple[float, float]]:
    """(CPU ms, wall ms) of computing and storing each minute."""
    from liquidity import services

    samples = []
    for m in range(minutes):
        minute = start + timedelta(minutes=m)
        cpu, wall = time.process_time(), time.perf_counter()
        services.store_minutes([bot], minute, minute + timedelta(minutes=1), sample_venue=True)
        samples.append(((time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000))
    return samples


def run(minutes: int, requotes_per_sec: float, fills_per_minute: int) -> dict[str, Any]:
    from bots.engine.orders import venue_time
    from bots.models import Bot
    from exchanges.models import ExchangeAccount
    from liquidity import services
    from liquidity.models import Sla
    from mmplatform.demo import DEMO_BOT_SETTINGS
    from mmplatform.tenancy.models import Tenant

    tenant = Tenant.objects.create(name="bench", slug="bench")
    account = ExchangeAccount.objects.create(tenant=tenant, label="venue", exchange_id="binance",
                                             api_base_url="http://127.0.0.1:1")
    start = (datetime.now(tz=UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    figures: dict[str, Any] = {"minutes": minutes, "requotes_per_sec_per_pair": requotes_per_sec,
                               "fills_per_minute": fills_per_minute, "pairs": len(PAIRS), "levels": LEVELS}
    results = {}
    for label, fills in (("quotes_only", 0), ("with_fills", fills_per_minute)):
        bot = Bot.objects.create(tenant=tenant, name=f"bench-{label}", trading_pairs=",".join(PAIRS),
                                 **DEMO_BOT_SETTINGS)
        bot.exchange_accounts.add(account)
        counts = populate(bot, account, start, minutes, requotes_per_sec, fills, seed=len(label))
        time_minutes(bot, start, 1)  # warm-up (caches, first queries), then recompute every minute
        samples = time_minutes(bot, start, minutes)
        cpu = sorted(s[0] for s in samples)
        wall = sorted(s[1] for s in samples)
        results[label] = {**counts, "cpu_ms_per_minute_p50": cpu[len(cpu) // 2],
                          "wall_ms_per_minute_p50": wall[len(wall) // 2]}
        results[label]["bot"] = bot
    quotes, filled = results["quotes_only"], results["with_fills"]
    cycles_per_minute = quotes["cycles"] / minutes
    figures["cycles_per_minute"] = cycles_per_minute
    figures["orders_per_minute"] = quotes["orders"] / minutes
    figures["cpu_ms_per_minute"] = round(quotes["cpu_ms_per_minute_p50"], 2)
    figures["wall_ms_per_minute"] = round(quotes["wall_ms_per_minute_p50"], 2)
    figures["cpu_us_per_cycle"] = round(quotes["cpu_ms_per_minute_p50"] / cycles_per_minute * 1000, 1)
    figures["cpu_ms_per_minute_with_fills"] = round(filled["cpu_ms_per_minute_p50"], 2)
    extra = filled["cpu_ms_per_minute_p50"] - quotes["cpu_ms_per_minute_p50"]
    figures["cpu_us_per_fill"] = round(max(extra, 0.0) / fills_per_minute * 1000, 1) if fills_per_minute else None
    # the live status of a day's agreement: stored rows plus what the task has not stored yet
    bot = quotes["bot"]
    sla = Sla.objects.create(tenant=tenant, bot=bot, name="bench", min_uptime_pct=Decimal("90"),
                             max_spread_bps=Decimal("50"), min_depth_quote=Decimal("1000"))
    now = start + timedelta(minutes=minutes)
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        statuses = services.evaluate(sla, now=now + timedelta(seconds=30))
        samples.append((time.perf_counter() - began) * 1000)
    figures["status_ms"] = round(sorted(samples)[2], 1)
    figures["status_example"] = {s.figures.trading_pair: s.status for s in statuses}
    figures["uptime_example"] = {s.figures.trading_pair: round(s.figures.summary.uptime_bid, 4) for s in statuses}
    began = time.perf_counter()
    stamp = int(time.time() * 1000)
    for n in range(100_000):
        venue_time(stamp + n % 1000)
    figures["venue_time_ns"] = round((time.perf_counter() - began) / 100_000 * 1e9)
    from django.utils import timezone

    began = time.perf_counter()
    for _ in range(100_000):
        timezone.now()
    figures["timezone_now_ns"] = round((time.perf_counter() - began) / 100_000 * 1e9)  # what it replaced
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="minutes of rows measured (default: %(default)s)")
    parser.add_argument("--requotes", type=float, default=3.0,
                        help="re-quotes a second per pair, every order replaced (default: %(default)s)")
    parser.add_argument("--fills", type=int, default=300,
                        help="fills a minute in the second run, many so their cost stands out of the noise (a demo "
                             "bot in the active market fills ~50 a minute) (default: %(default)s)")
    options = parser.parse_args(argv)
    from bench.bench_engine import setup_django

    database = BenchDatabase("mmbench")
    redis: PrivateRedis | None = None
    try:
        redis = PrivateRedis()
        setup_django(database.url, redis.url)
        figures = run(options.minutes, options.requotes, options.fills)
    finally:
        release(database, redis)
    figures["database"] = database.kind
    figures["command"] = "python -m bench.bench_sla " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_result("sla", figures)
    print(f"demo bot x {figures['pairs']} pairs, {figures['cycles_per_minute']:.0f} re-quote cycles and "
          f"{figures['orders_per_minute']:.0f} orders a minute, {figures['fills_per_minute']} fills a minute "
          f"({database.kind})")
    print(f"minute task: {figures['cpu_ms_per_minute']} ms CPU ({figures['wall_ms_per_minute']} ms wall) a minute")
    print(f"cost per cycle: {figures['cpu_us_per_cycle']} us CPU; per fill: {figures['cpu_us_per_fill']} us CPU")
    print(f"live status of a day agreement: {figures['status_ms']} ms; venue_time: {figures['venue_time_ns']} ns "
          f"a call (engine side; timezone.now(), which it replaced: {figures['timezone_now_ns']} ns)")
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
