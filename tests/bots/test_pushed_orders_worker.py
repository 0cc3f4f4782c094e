"""A bot on an OKX account, and one on a Bybit account, run by a real Celery worker against an emulator
process of that venue: the engine's account view comes from the venue's pushed order updates (the
dialect's private stream through ccxt.pro's real ``okx`` / ``bybit`` class), so the worker's drivers
count pushed orders while their REST open-orders reads of the account fall to the reconcile rate
(ENGINE_ACCOUNT_RECONCILE_SECS; a fill sync takes the listing from the pushed view and has only the
balances read again) instead of one per monitoring interval; and every fill the venue's journal holds is
recorded exactly once."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from bots import quoting, services
from bots.engine import keys
from bots.engine.feed import ACCOUNT_READ_MIN_SECS
from bots.engine.health import live_drivers
from bots.models import Bot, BotStatus, Fill
from exchanges.registry import clear_gateway_cache
from mmplatform.redis_client import get_redis, text
from tests.bots.test_multi_venue_worker import PAIR, VenueProcess, status_of
from tests.processes import start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RECONCILE_SECS = 3.0
INTERVAL_SECS = 0.25
WINDOW_SECS = 12.0
WINDOW_MAX_SECS = 45.0


def feed_counts() -> dict[str, int]:
    """The feeder's counters summed over the live drivers (what each publishes in its stats hash)."""
    totals = {"order_pushes": 0, "account_reads": 0}
    for token in live_drivers():
        stats = {text(k): text(v) for k, v in get_redis().hgetall(keys.driver_stats(token)).items()}
        for name in totals:
            totals[name] += int(stats.get(name, 0) or 0)
    return totals


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_a_bot_on_the_venue_keeps_its_account_view_from_pushes(world_a: Any, celery_queue: str, venue: str) -> None:
    process = VenueProcess(venue)
    bot = world_a.bot
    worker = None
    try:
        account = process.account(world_a)
        bot.exchange_accounts.set([account])
        for name, value in {"trading_pairs": PAIR, "grid_levels": 1, "order_size_quote": Decimal("500"),
                            "spread_bps": 20.0, "min_spread_bps": 2.0, "maker_fee_bps": 0.0,
                            "monitoring_interval_secs": INTERVAL_SECS, "error_recovery_delay_secs": 0.5,
                            "adaptation_enabled": False, "metrics_interval_secs": 60.0,
                            "max_position_quote": Decimal("1000000")}.items():
            setattr(bot, name, value)
        bot.save()
        worker = start_worker(f"worker-{venue}", concurrency=1, ENGINE_ORDER_STREAMS="1",
                              ENGINE_ACCOUNT_RECONCILE_SECS=str(RECONCILE_SECS))
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.RUNNING, 60, message="bot never reached RUNNING")
        wait_until(lambda: feed_counts()["order_pushes"] > 0, 60,
                   message=f"no order pushed by {venue}'s private stream (see {worker.log_path})")

        # a window of pushes: REST reads of the account only at the reconcile rate
        # (at least WINDOW_SECS; longer, up to WINDOW_MAX_SECS, until a push came: the emulator's random market
        # sometimes leaves the quotes inside the refresh tolerance and unfilled for a while, as in a CI run)
        before, fills_before, started = feed_counts(), Fill.objects.filter(bot=bot).count(), time.monotonic()
        time.sleep(WINDOW_SECS)
        while (feed_counts()["order_pushes"] == before["order_pushes"]
               and time.monotonic() - started < WINDOW_MAX_SECS):
            time.sleep(0.5)
        after, fills_after = feed_counts(), Fill.objects.filter(bot=bot).count()
        window = time.monotonic() - started
        pushes = after["order_pushes"] - before["order_pushes"]
        reads = after["account_reads"] - before["account_reads"]
        print(f"{venue}: {pushes} orders pushed, {reads} REST account reads in {window:.1f} s, "
              f"{fills_after - fills_before} fills")
        assert pushes > 0, "the bot's own re-quotes and fills are pushed"
        allowed = window / RECONCILE_SECS + 2  # fill syncs read the account's balances only, not its orders
        polled = window / max(0.9 * INTERVAL_SECS, ACCOUNT_READ_MIN_SECS)  # the feeder's rate without pushes
        assert reads <= allowed < polled, (f"{reads} REST reads of the account in {window:.1f} s: pushed views "
                                           f"allow {allowed:.0f}, polling would make ~{polled:.0f}")

        # then quotes inside the venue's takers' reach, for fills to count
        Bot.objects.filter(pk=bot.pk).update(spread_bps=4.0, updated_at=timezone.now())
        wait_until(lambda: Fill.objects.filter(bot=bot).count() >= 2, 120, message=f"no fills on {venue}")
        services.bot_request_stop(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.STOPPED, 60, message="bot never stopped")

        # every fill the venue journaled, recorded once, as the venue made it
        journal = [e for e in process.admin("GET", "journal")["entries"] if e["event"] in ("fill", "partial_fill")]
        venue_fills = {str(e["trade_id"]): (Decimal(e["fill_quantity"]), Decimal(e["fill_price"])) for e in journal}
        recorded = list(Fill.objects.filter(bot=bot).values_list("exchange_trade_id", "amount", "price"))
        assert len(recorded) == len({trade_id for trade_id, _, _ in recorded}), "a fill recorded twice"
        assert {trade_id: (amount, price) for trade_id, amount, price in recorded} == venue_fills
    finally:
        if worker is not None:
            worker.stop()
        process.proc.stop()
        clear_gateway_cache()
        quoting.forget(bot)
