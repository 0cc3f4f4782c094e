"""Lost and late: a venue answers "order not found" for a while right after accepting an order (and
its acknowledgement may be lost too). The order is marked lost only after LOST_AFTER_MISSES misses,
an order that shows up later is managed again, and a fill that arrives later is still applied.
Binance spot has no cancel-all-after heartbeat in ccxt, so the platform's watchdog cancels the
resting orders of a bot whose cycles stopped."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from django.utils import timezone

from bots import tasks
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.engine.orders import LOST_AFTER_MISSES
from bots.models import Bot, Fill, Order
from exchanges.emulator.server import FaultConfig
from tests.processes import start_worker, wait_until
from tests.reliability.conftest import (
    assert_fills_match_exchange,
    assert_orders_map_one_to_one,
    exchange_orders,
    started_engine,
)

pytestmark = pytest.mark.django_db(transaction=True)


def cycle(bot: Bot) -> Any:
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
    engine.initialize_exchanges(emit_events=False, validate=False)
    return engine.monitoring_iteration(begin_cycle(bot.pk))


def move_mid(server: Any, factor: float) -> None:
    server.call(lambda: server.market.set_mid("BTC/USDT", server.market.mid("BTC/USDT") * Decimal(repr(factor))))


def test_acknowledged_order_invisible_for_a_while_is_not_lost(world_bot: Bot, frozen_emulator: Any) -> None:
    frozen_emulator.set_faults(FaultConfig(not_found_after_accept_ms=1500))
    started_engine(world_bot)
    rows = list(Order.objects.filter(bot=world_bot, status="open"))
    assert rows and all(r.exchange_order_id for r in rows)
    for _ in range(LOST_AFTER_MISSES + 1):  # inside the window the venue denies knowing them
        cycle(world_bot)
    time.sleep(1.6)
    cycle(world_bot)
    for row in rows:
        row.refresh_from_db()
        assert row.status == "open", f"{row.client_order_id} is {row.status} although it rests on the venue"
    assert_orders_map_one_to_one(frozen_emulator, world_bot)


def test_lost_acknowledgement_then_late_visibility_and_late_fill(world_bot: Bot, frozen_emulator: Any) -> None:
    """Every placement reply is lost and the venue denies the order for 3 s: the rows end lost or
    rejected meanwhile; once the orders show up they are managed again and their fills recorded."""
    frozen_emulator.set_faults(FaultConfig(lost_reply_rate=1.0, not_found_after_accept_ms=3000))
    started_engine(world_bot)
    for _ in range(LOST_AFTER_MISSES):
        cycle(world_bot)
    frozen_emulator.set_faults(FaultConfig())
    time.sleep(3.1)
    resting = [o for o in exchange_orders(frozen_emulator) if o.is_open]
    assert resting, "the orders whose replies were lost rest on the venue"
    cycle(world_bot)
    assert_orders_map_one_to_one(frozen_emulator, world_bot)
    # the market runs through every resting quote: each of those fills must be recorded
    move_mid(frozen_emulator, 1.03)
    move_mid(frozen_emulator, 0.97 / 1.03)
    for _ in range(2):
        cycle(world_bot)
    assert Fill.objects.filter(bot=world_bot).exists()
    assert_fills_match_exchange(frozen_emulator, world_bot)
    assert_orders_map_one_to_one(frozen_emulator, world_bot)


def test_binance_spot_has_no_dead_mans_switch_in_ccxt() -> None:
    """Why the watchdog path below is the one in use for binance spot."""
    assert not ccxt.binance().has.get("cancelAllOrdersAfter")


@pytest.mark.integration
def test_watchdog_cancels_the_orders_of_a_bot_whose_cycles_stopped(world_bot: Bot, frozen_emulator: Any,
                                                                      celery_queue: str, settings: Any) -> None:
    started_engine(world_bot)
    stale = {o.client_order_id for o in exchange_orders(frozen_emulator) if o.is_open}
    assert stale
    silent_for = 3 * tasks.stale_after_secs(world_bot)
    Bot.objects.filter(pk=world_bot.pk).update(last_cycle_finished_at=timezone.now() - timedelta(seconds=silent_for))
    worker = start_worker()
    try:
        clicked = time.monotonic()
        assert tasks.watchdog() == {"restarted": 0, "cancelled": 1, "cleaned": 0}  # resuming is the drivers' job
        wait_until(lambda: not stale & {o.client_order_id for o in exchange_orders(frozen_emulator) if o.is_open},
                   60, message="the silent bot's resting orders were never cancelled")
        print(f"\nwatchdog: silent bot's {len(stale)} resting orders cancelled in "
              f"{1000 * (time.monotonic() - clicked):.0f} ms")
        wait_until(lambda: Bot.objects.get(pk=world_bot.pk).cycle_count > 0 and any(
            o.is_open for o in exchange_orders(frozen_emulator)), 60, message="no engine driver resumed the bot")
    finally:
        worker.stop()
    assert_orders_map_one_to_one(frozen_emulator, world_bot)
