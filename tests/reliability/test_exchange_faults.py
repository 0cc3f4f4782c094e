"""Exchange faults for many cycles at a fixed seed -- timeouts (latency above the gateway timeout),
5xx, 429 with Retry-After, lost acknowledgements, partial fills from the noise flow -- then the
invariants: every exchange order of the bot is exactly one Order row, fills equal the venue's trade
list, and the venue's balances equal the starting balances moved by the recorded fills."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.conf import settings

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot, Fill, Order
from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.server import FaultConfig
from tests.reliability.conftest import (
    BALANCES,
    assert_balances_match_fills,
    assert_fills_match_exchange,
    assert_orders_map_one_to_one,
    emulator_bot,
    started_engine,
)

pytestmark = pytest.mark.django_db(transaction=True)

CYCLES = 25
FAULTS = FaultConfig(latency_jitter_ms=150, error_rate=0.08, rate_limit_burst_rate=0.03, rate_limit_burst_length=2,
                     retry_after_secs=0, lost_reply_rate=0.25)


def test_invariants_hold_after_many_faulty_cycles(world_a: Any, emulator: Any) -> None:
    bot = emulator_bot(world_a, emulator, order_refresh_secs=1.0)
    gateways: dict[int, CcxtGateway] = {}

    def short_timeout_gateway(account: Any) -> CcxtGateway:
        """The production gateway with a 0.12 s timeout, so the latency fault produces timeouts."""
        if account.pk not in gateways:
            gateways[account.pk] = CcxtGateway(account.credentials(), timeout_secs=0.12, backoff_secs=0.01,
                                               redis_url=settings.REDIS_URL)
        return gateways[account.pk]

    started_engine(bot, gateway_factory=short_timeout_gateway)
    emulator.set_faults(FAULTS)
    outcomes: Counter[str] = Counter()
    requests_before = emulator.request_count
    for _ in range(CYCLES):
        engine = MarketMakingBot(Bot.objects.get(pk=bot.pk), gateway_factory=short_timeout_gateway)
        try:
            if not engine.initialize_exchanges(emit_events=False, validate=False):
                outcomes["no connection"] += 1
                continue
            report = engine.monitoring_iteration(begin_cycle(bot.pk))
            outcomes["ok"] += 1
            outcomes["placed"] += report.placed
            outcomes["fills"] += report.fills
        except Exception as error:  # the chain survives any error of a cycle (as run_cycle does)
            outcomes[type(error).__name__] += 1
        time.sleep(0.05)
    emulator.set_faults(FaultConfig())
    print(f"\n{CYCLES} faulty cycles, {emulator.request_count - requests_before} requests: {dict(outcomes)}")
    assert outcomes["ok"] >= CYCLES // 2, outcomes
    assert outcomes["placed"] > 0

    # settle: one clean cycle, then stop (cancels everything) and a last fill sync
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk), gateway_factory=short_timeout_gateway)
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    assert engine.stop_market_making()
    engine.reconcile()

    assert Fill.objects.filter(bot=bot).exists(), "the noise flow should have filled some quotes"
    assert_orders_map_one_to_one(emulator, bot)
    assert_fills_match_exchange(emulator, bot)
    assert_balances_match_fills(emulator, bot, dict(BALANCES))
    statuses = Counter(Order.objects.filter(bot=bot).values_list("status", flat=True))
    print(f"order rows by status: {dict(statuses)}")
