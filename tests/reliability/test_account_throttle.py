"""The per-account request budget holds under a burst from many bots on one key: ten bots share one
ExchangeAccount (20 requests/s) on a real worker with two processes, each bot wanting far more than its
share; the emulator counts what arrives under that API key, and no one-second window exceeds the budget
plus its burst. Then the tenant's kill switch under that load: zero open orders when it returns. The
bots' order-to-fill and cancel-to-fill ratios are printed."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from bots import services
from bots.engine.lease import cycle_records
from bots.engine.metrics import order_flow_metrics
from bots.models import Bot, BotStatus
from tests.conftest import make_bot
from tests.processes import start_worker, wait_until
from tests.reliability.conftest import EMULATOR_KEY, emulator_bot, exchange_orders

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BOTS = 10
RATE_PER_SEC = 20.0
BURST = RATE_PER_SEC  # the bucket's default burst: one second of budget
LOAD_SECS = 6.0


def busiest_second(arrivals: list[float]) -> int:
    """The most arrivals within any window [t, t + 1 s) that starts at an arrival."""
    arrivals = sorted(arrivals)
    best, first = 0, 0
    for last, moment in enumerate(arrivals):
        while moment - arrivals[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_ten_bots_on_one_key_stay_within_the_budget(world_a: Any, emulator: Any, celery_queue: str) -> None:
    fields = {"trading_pairs": "BTC/USDT", "grid_levels": 1, "order_size_quote": Decimal("500"),
              "monitoring_interval_secs": 0.3, "error_recovery_delay_secs": 0.5, "adaptation_enabled": False,
              "order_refresh_secs": 1.0}
    bots = [emulator_bot(world_a, emulator, **fields)]
    account = world_a.account
    account.rate_limit_per_sec = RATE_PER_SEC
    account.save()
    bots += [make_bot(world_a.tenant, account, name=f"crowd-{i}", pairs="BTC/USDT",
                      **{k: v for k, v in fields.items() if k != "trading_pairs"}) for i in range(1, BOTS)]
    worker = start_worker(concurrency=2)
    try:
        for bot in bots:
            services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: Bot.objects.filter(pk__in=[b.pk for b in bots], status=BotStatus.RUNNING).count() == BOTS,
                   90, message="not every bot reached RUNNING")
        load_from = time.monotonic()
        cycles_before = sum(len(cycle_records(b.pk)) for b in bots)
        time.sleep(LOAD_SECS)
        cycles = sum(len(cycle_records(b.pk)) for b in bots) - cycles_before
        arrivals = emulator.request_times(EMULATOR_KEY)
        loaded = [t for t in arrivals if t >= load_from]
        peak = busiest_second(arrivals)  # start-up included: the burst is spent there
        wanted = BOTS / fields["monitoring_interval_secs"]
        print(f"\n{BOTS} bots on one key ({RATE_PER_SEC:.0f}/s, burst {BURST:.0f}): {len(loaded) / LOAD_SECS:.1f} "
              f"requests/s arrived under load, busiest second {peak}; {cycles / LOAD_SECS:.1f} cycles/s "
              f"(the bots wanted {wanted:.0f}/s)")
        assert peak <= RATE_PER_SEC + BURST, f"{peak} requests within one second on a {RATE_PER_SEC}/s key"
        assert len(loaded) / LOAD_SECS >= 0.75 * RATE_PER_SEC, "the bots never pressed the budget: nothing tested"

        clicked = time.monotonic()
        services.tenant_kill(tenant=world_a.tenant, user=world_a.owner)
        took = time.monotonic() - clicked
        prefixes = tuple(f"mm-{b.pk}-" for b in bots)
        resting = [o.client_order_id for o in exchange_orders(emulator)
                   if o.is_open and o.client_order_id.startswith(prefixes)]
        print(f"tenant kill switch under a saturated budget: {took * 1000:.0f} ms to zero open orders")
        assert resting == [], f"open after the kill returned: {resting}"
        for bot in bots[:3]:
            metrics = order_flow_metrics(bot=bot)
            print(f"  {bot.name}: {metrics.orders_sent} orders, {metrics.cancels} cancels, {metrics.fills} fills -> "
                  f"order/fill {metrics.order_to_fill_ratio}, cancel/fill {metrics.cancel_to_fill_ratio}")
    finally:
        worker.stop()
