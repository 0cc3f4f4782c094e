"""Fill-to-hedge latency of cross-venue hedging (issue 15 item 5): a bot quotes BTC/USDT on a Binance-dialect
emulator process and hedges each fill there on an OKX-dialect one (a real Celery worker, ccxt's real
classes), its quotes centred on the hedge venue's mid (reference price "one chosen venue's mid": okx), as a
desk hedging on a deep venue quotes. The maker venue's mid jumps ±50 bps (admin ``POST /admin/mid``), each
jump taking the bot's ask or bid there: one fill, one hedge. Measured on the venues' own ms clocks (one
machine): the jump (the fill happens inside it) -> the hedge IOC accepted on the hedge venue; and the parts:
-> the Hedge row stored with the fill (the fill sync), -> the IOC sent.

    python -m bench.bench_hedge [--fills 30] [--interval 0.1]
"""

from __future__ import annotations

import argparse
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
    fence_bots,
    make_tenant,
    setup_django,
    use_queue,
    wait_for,
)
from bench.bench_multi_venue import PASSPHRASE, make_account  # noqa: E402
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

MAKER, HEDGE = "binance", "okx"
MID = 60000.0


def bench(env: dict[str, str], *, fills: int, interval_secs: float, concurrency: int) -> dict[str, Any]:
    from bots import services
    from bots.models import Bot, BotStatus, Hedge, HedgeStatus

    emulators, urls = [], {}
    queue = f"bench-hedge-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker = None
    bot = None
    try:
        tenant = make_tenant(f"hedge-{uuid.uuid4().hex[:4]}")
        accounts = {}
        for index, venue in enumerate((MAKER, HEDGE)):
            port = free_port()
            api_key, secret = f"{venue}hedgekey", f"{venue}hedgesecret"
            emulators.append(start_emulator(port, account=f"{api_key}:{secret}:BTC=100,USDT=6000000",
                                            admin_token=ADMIN_TOKEN, seed=index + 1, venue=venue,
                                            passphrase=PASSPHRASE if venue == "okx" else ""))
            urls[venue] = f"http://127.0.0.1:{port}"
            accounts[venue] = make_account(tenant, venue, urls[venue], api_key, secret)
        worker = start_worker({**env, "CELERY_QUEUE": queue}, queue, concurrency, name="hedge-worker")
        bot = Bot.objects.create(
            tenant=tenant, name="hedging-bot", trading_pairs="BTC/USDT", monitoring_interval_secs=interval_secs,
            error_recovery_delay_secs=interval_secs, grid_levels=1, spread_bps=10.0, min_spread_bps=2.0,
            maker_fee_bps=0.0, order_size_quote=Decimal("500"), min_order_size_quote=Decimal("10"),
            max_order_size_quote=Decimal("10000"), adaptation_enabled=False, metrics_interval_secs=60.0,
            max_daily_loss_quote=Decimal("1000000000"), max_drawdown_ratio=1.0, inventory_deviation_limit=1.0,
            default_rebalance_threshold=1.0, volatility_pause_threshold=1000.0, order_refresh_secs=3600.0,
            max_position_quote=Decimal("1e12"), reference_price="venue", reference_venue=HEDGE,
            hedge_enabled=True, hedge_account=accounts[HEDGE], hedge_max_slippage_bps=25.0)
        bot.exchange_accounts.set(accounts.values())
        services.bot_request_start(bot=bot, user=None)
        if not wait_for(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.RUNNING, 90):
            raise RuntimeError(f"the bot never ran; see {worker.log_path}")
        total, stored, sent, timeouts, breaches = [], [], [], 0, 0
        for index in range(fills):
            done_before = Hedge.objects.filter(bot=bot).count()
            if not wait_for(lambda: _quoting(urls[MAKER]), 30):
                raise RuntimeError(f"the maker venue's quotes never came back; see {worker.log_path}")
            mid = MID * (1.005 if index % 2 == 0 else 0.995)  # through the ask, then back through the bid
            answer = admin_post(urls[MAKER], "/admin/mid", {"symbol": "BTC/USDT", "mid": f"{mid:.2f}"}, ADMIN_TOKEN)
            moved_ms = float(answer["time_ms"])
            if not wait_for(lambda n=done_before: _settled(bot, n), 15, 0.005):
                timeouts += 1
                continue
            hedge = Hedge.objects.filter(bot=bot).select_related("order").latest("pk")
            if hedge.status != HedgeStatus.HEDGED or hedge.order is None or hedge.order.acknowledged_at is None:
                breaches += 1
                continue
            total.append(hedge.order.acknowledged_at.timestamp() * 1000 - moved_ms)
            stored.append(hedge.created_at.timestamp() * 1000 - moved_ms)
            sent.append(hedge.order.created_at.timestamp() * 1000 - moved_ms)
        return {
            "fills": fills, "timeouts": timeouts, "not_hedged": breaches, "monitoring_interval_secs": interval_secs,
            "worker_concurrency": concurrency,
            "fill_to_hedge_accepted": summary_ms(total),
            "fill_to_hedge_row_stored": summary_ms(stored),
            "fill_to_hedge_order_stored": summary_ms(sent),
            "measured": "the maker venue's book move (the fill happens inside it, its ms clock) -> the hedge IOC "
                        "accepted on the hedge venue (its ms clock); the parts on our clock: the Hedge row stored "
                        "with the Fill by the fill sync, the IOC's row stored before it is sent",
        }
    finally:
        if bot is not None:
            fence_bots([bot.pk])
        if worker is not None:
            worker.stop()
        for emulator in emulators:
            emulator.stop()


def _settled(bot: Any, before: int) -> bool:
    """A hedge more than ``before`` exists and none is waiting to be sent."""
    from bots.models import Hedge, HedgeStatus

    hedges = Hedge.objects.filter(bot=bot)
    return hedges.count() > before and not hedges.filter(status=HedgeStatus.PENDING).exists()


def _quoting(url: str) -> bool:
    """The bot's bid and ask rest on the maker venue (its only orders on that account)."""
    from bench.common import admin_get

    orders = admin_get(url, f"/admin/orders?api_key={MAKER}hedgekey", ADMIN_TOKEN)["orders"]
    return sorted(o["side"] for o in orders) == ["BUY", "SELL"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.1, help="the bot's monitoring interval, s")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    options = parser.parse_args(argv)
    database = BenchDatabase("mmbenchhedge")
    redis: PrivateRedis | None = None
    figures: dict[str, Any] = {"database": database.kind}
    try:
        redis = PrivateRedis()
        env = setup_django(database.url, redis.url)
        started = time.monotonic()
        result = bench(env, fills=options.fills, interval_secs=options.interval, concurrency=options.concurrency)
        result["seconds"] = round(time.monotonic() - started, 1)
        result["command"] = "python -m bench.bench_hedge " + " ".join(argv if argv is not None else sys.argv[1:])
        figures["fill_to_hedge"] = result
        figures["command"] = result["command"]
        for name in ("fill_to_hedge_accepted", "fill_to_hedge_row_stored", "fill_to_hedge_order_stored"):
            lat = result[name]
            if lat.get("count"):
                print(f"{name:>27}: p50 {lat['p50_ms']:.1f} ms  p90 {lat['p90_ms']:.1f} ms  "
                      f"p99 {lat['p99_ms']:.1f} ms  max {lat['max_ms']:.1f} ms  (n={lat['count']})")
        print(f"timeouts: {result['timeouts']}, not hedged: {result['not_hedged']} of {result['fills']} fills")
    finally:
        release(database, redis)
    path = write_result("hedge", figures)
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
