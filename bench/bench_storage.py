"""Storage per bot-day: N demo bots (``mmplatform.demo.DEMO_BOT_SETTINGS``: BTC/USDT and ETH/USDT, three
levels, 1 s interval) run against the emulator's active market through a real Celery worker for a
window; the rows and bytes written per table are counted and extrapolated to one bot-day:

- **without aggregation**: every routine event one row (the code before issue 14: the ``occurrences``
  of the summary rows), its bytes at the table's measured bytes per row;
- **as written**: what the tables really gained (routine events as per-minute summary rows);
- **kept for good** after the retention policy (bots/retention.py): a pass with the clock moved past
  every retention window prunes what it may, and what remains is what a bot-day adds for ever (hourly
  snapshots: for ``RETENTION_SNAPSHOTS_DAYS``; a window under an hour cannot show the downsampling, so
  they are counted as one per hour); the bounded part (kept ``RETENTION_*_DAYS`` days, then pruned)
  gives the steady-state footprint per bot.

Event rows are summary rows updated in place: the table's bytes include the dead tuples of those updates
until autovacuum reclaims them.

Bytes are Postgres' ``pg_total_relation_size`` (table, TOAST and indexes) gains, so they include index
growth and page slack; on SQLite only rows are counted. Nothing here fails on a figure.

    python -m bench.bench_storage                  # 3 bots, 180 s
    python -m bench.bench_storage --bots 1 --window 60
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import MARKETS, fence_bots, make_account, make_tenant, setup_django, use_queue, wait_for  # noqa: E402
from bench.common import (  # noqa: E402
    BenchDatabase,
    PrivateRedis,
    admin_post,
    free_port,
    release,
    start_emulator,
    start_worker,
    write_result,
)

ADMIN_TOKEN = "bench-admin"
TABLES = {
    "orders": "bots_order",
    "fills": "bots_fill",
    "events": "bots_botevent",
    "performance_snapshots": "bots_performancesnapshot",
    "inventory_snapshots": "bots_inventorysnapshot",
    "risk_events": "risk_riskevent",
}
DAY = 86400.0


def table_rows() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        found = {}
        for name, table in TABLES.items():
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            found[name] = cursor.fetchone()[0]
    return found


def table_bytes() -> dict[str, int] | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"pg_total_relation_size('{t}')" for t in TABLES.values()))
        return dict(zip(TABLES, cursor.fetchone(), strict=True))


def event_counts(bot_ids: list[int]) -> dict[str, dict[str, int]]:
    """Per event type: rows stored and events they stand for."""
    from django.db.models import Count, Sum

    from bots.models import BotEvent

    rows = (BotEvent.objects.filter(bot_id__in=bot_ids).values("event_type")
            .annotate(rows=Count("id"), events=Sum("occurrences")).order_by("-events"))
    return {r["event_type"]: {"rows": r["rows"], "events": r["events"]} for r in rows}


def per_bot_day(value: float, bots: int, secs: float) -> float:
    return round(value / bots / secs * DAY, 1)


def run(bots: int, window_secs: float, concurrency: int, market: str) -> dict[str, Any]:
    from django.conf import settings
    from django.utils import timezone

    from bots import retention, services
    from bots.models import Bot, BotStatus
    from mmplatform.demo import DEMO_BALANCES, DEMO_BOT_SETTINGS, DEMO_PAIRS

    env = dict(__import__("os").environ)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    conditions = MARKETS[market]
    emulator = start_emulator(port, account="unusedkey:unusedsecret:USDT=1", admin_token=ADMIN_TOKEN,
                              symbols=DEMO_PAIRS, market_step_ms=100, volatility_bps=conditions["volatility_bps"],
                              noise_rate=conditions["noise_rate"])
    queue = f"bench-storage-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker = start_worker({**env, "CELERY_QUEUE": queue}, queue, concurrency, name="storage-worker")
    bot_ids: list[int] = []
    try:
        tenant = make_tenant(f"storage-{uuid.uuid4().hex[:4]}")
        balances = dict(item.split("=") for item in DEMO_BALANCES.split(","))
        for i in range(bots):  # an account per bot: each quotes both pairs from its own inventory
            key, secret = f"storage{i}key", f"storage{i}secret"
            admin_post(base_url, "/admin/accounts", {"api_key": key, "secret": secret, "balances": balances},
                       ADMIN_TOKEN)
            account = make_account(tenant, f"acct-{i}", base_url, key, secret)
            bot = Bot.objects.create(tenant=tenant, name=f"storage-{i}", trading_pairs=DEMO_PAIRS, **DEMO_BOT_SETTINGS)
            bot.exchange_accounts.add(account)
            bot_ids.append(bot.pk)
        time.sleep(3)  # the worker finishes starting
        for bot in Bot.objects.filter(pk__in=bot_ids):
            services.bot_request_start(bot=bot, user=None)
        wait_for(lambda: Bot.objects.filter(pk__in=bot_ids, status=BotStatus.RUNNING).count() == bots, 120, 1.0)
        time.sleep(10)  # past the first placements: the window sees the steady rhythm
        rows_before, bytes_before, events_before = table_rows(), table_bytes(), event_counts(bot_ids)
        started = time.time()
        time.sleep(window_secs)
        rows_after, bytes_after, events_after = table_rows(), table_bytes(), event_counts(bot_ids)
        secs = time.time() - started
    finally:
        fence_bots(bot_ids)
        worker.stop(20)
        emulator.stop()

    written = {k: rows_after[k] - rows_before[k] for k in TABLES}
    grown = {k: bytes_after[k] - bytes_before[k] for k in TABLES} if bytes_after and bytes_before else None
    by_type = {}
    for kind, after in events_after.items():
        before = events_before.get(kind, {"rows": 0, "events": 0})
        by_type[kind] = {"rows": after["rows"] - before["rows"], "events": after["events"] - before["events"]}
    routine_rows = sum(v["rows"] for k, v in by_type.items() if k in retention_routine())
    routine_events = sum(v["events"] for k, v in by_type.items() if k in retention_routine())
    unaggregated = dict(written)
    unaggregated["events"] = written["events"] - routine_rows + routine_events

    # retention: the clock moved past every window, in two passes (snapshots downsample near their cutoff)
    end = timezone.now()
    policy = retention.Policy.from_settings()
    pruned = retention.prune(now=end + timedelta(days=policy.snapshots_full_days + 1), policy=policy)
    later = retention.prune(now=end + timedelta(days=max(policy.orders_days, policy.routine_events_days) + 1),
                            policy=policy)
    kept = table_rows()

    def daily(values: dict[str, int]) -> dict[str, float]:
        return {k: per_bot_day(v, bots, secs) for k, v in values.items()}

    bytes_per_row = {k: round(grown[k] / written[k], 1) for k in TABLES if grown and written[k]} if grown else {}
    result: dict[str, Any] = {
        "bots": bots,
        "pairs_per_bot": len(DEMO_PAIRS.split(",")),
        "window_secs": round(secs, 1),
        "market": market,
        "bot_settings": {k: str(v) for k, v in DEMO_BOT_SETTINGS.items()},
        "retention_settings": {name: getattr(settings, name) for name in dir(settings)
                               if name.startswith("RETENTION_")},
        "events_by_type_in_window": by_type,
        "rows_per_bot_day": {
            "without_aggregation": daily(unaggregated),
            "as_written": daily(written),
        },
        "bytes_per_row": bytes_per_row,
        "pruned_by_retention": {k: v + later.get(k, 0) for k, v in pruned.items() if k != "more"},
    }
    # what a bot-day keeps for good: the window's rows minus what retention removed (the rows before the
    # window were pruned alike, so scale the remainder by the window's share of all rows)
    kept_for_good = {k: max(0, round(kept[k] * written[k] / rows_after[k])) if rows_after[k] else 0 for k in TABLES}
    result["rows_per_bot_day"]["kept_for_good"] = daily(kept_for_good)
    # snapshots: a window shorter than an hour cannot show the hourly downsampling; a bot-day keeps one
    # per hour (per pair for inventory) until RETENTION_SNAPSHOTS_DAYS
    pairs = result["pairs_per_bot"]
    for kind, per_hour in (("performance_snapshots", 1), ("inventory_snapshots", pairs)):
        written_per_day = result["rows_per_bot_day"]["as_written"][kind]
        result["rows_per_bot_day"]["kept_for_good"][kind] = min(written_per_day, 24.0 * per_hour)
    if grown:
        mb = 1024 * 1024

        def megabytes(rows: dict[str, Any]) -> float:
            return round(sum(rows[k] * bytes_per_row.get(k, 0) for k in TABLES) / mb, 2)

        per_day = result["rows_per_bot_day"]
        result["mb_per_bot_day"] = {
            "without_aggregation": megabytes(per_day["without_aggregation"]),
            "as_written": round(sum(grown.values()) / bots / secs * DAY / mb, 2),
            "kept_for_good": megabytes(per_day["kept_for_good"]),
        }
        bounded = {k: per_day["as_written"][k] - per_day["kept_for_good"][k] for k in TABLES}
        days = {"orders": policy.orders_days, "events": policy.routine_events_days,
                "performance_snapshots": policy.snapshots_full_days, "inventory_snapshots": policy.snapshots_full_days}
        result["steady_state_mb_per_bot"] = round(
            sum(bounded[k] * bytes_per_row.get(k, 0) * days.get(k, 0) for k in TABLES) / mb, 1)
        result["steady_state_note"] = ("rows that retention removes, kept their RETENTION_*_DAYS: the bounded "
                                       "footprint of one running bot; kept_for_good grows by its figure each day")
    return result


def retention_routine() -> set[str]:
    from bots.events import ROUTINE_EVENTS

    return set(ROUTINE_EVENTS)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=3)
    parser.add_argument("--window", type=float, default=180.0, help="measured seconds")
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes")
    parser.add_argument("--market", choices=sorted(MARKETS), default="active")
    options = parser.parse_args(argv)
    database = BenchDatabase("mmbench")
    redis: PrivateRedis | None = None
    try:
        redis = PrivateRedis()
        setup_django(database.url, redis.url)
        figures = run(options.bots, options.window, options.concurrency, options.market)
    finally:
        release(database, redis)
    figures["database"] = database.kind
    figures["command"] = "python -m bench.bench_storage " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_result("storage", figures)
    print(f"{figures['bots']} bots x {figures['pairs_per_bot']} pairs, {figures['window_secs']} s ({database.kind})")
    print("events in the window (rows stored / events):")
    for kind, counts in figures["events_by_type_in_window"].items():
        print(f"  {kind:22} {counts['rows']:6} / {counts['events']}")
    for label, rows in figures["rows_per_bot_day"].items():
        print(f"rows per bot-day, {label}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rows.items()))
    for label, value in (figures.get("mb_per_bot_day") or {}).items():
        print(f"MB per bot-day, {label}: {value}")
    if "steady_state_mb_per_bot" in figures:
        print(f"steady state per running bot (bounded part): {figures['steady_state_mb_per_bot']} MB")
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
