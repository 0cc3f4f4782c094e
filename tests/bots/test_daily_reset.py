"""The daily risk reset on the engine driver: a bot with a kept engine moves its daily P&L baseline at a check
(``Verdict("reset")``, stored by a pool thread) instead of running a full cycle, so the reset of every bot at
00:00 UTC is not every bot's full cycle at once. In process against the real emulator, database and Redis; the
driver's ``tick`` is called by the test."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from bots.engine.core import daily_reset_key, request_daily_reset
from bots.engine.driver import Driver
from bots.models import Bot, BotStatus
from exchanges.emulator.server import EmulatorServer
from mmplatform.redis_client import get_redis
from tests.bots.conftest import emulator_open_orders
from tests.bots.test_driver import driver, no_streams, running_bot, settle  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_daily_reset_moves_the_baseline_on_the_kept_engine_before_risk_without_a_full_cycle(
        running_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:  # noqa: F811
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    engine, full_at = runner.engine, runner.last_full_at
    orders = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    # the day so far lost a little more than the daily loss limit: the baseline is that far above the net P&L
    net = engine.performance_figures().totals["net_pnl_quote"]
    lost = Decimal(repr(engine.config.risk_limits.max_daily_loss_quote)) + 1
    engine.bot.daily_pnl_baseline_quote = net + lost  # (the driver thread holds the runner: not busy)
    Bot.objects.filter(pk=running_bot.pk).update(daily_pnl_baseline_quote=net + lost)
    driver._feed_once(time.time())  # the account view the checks decide on (the feeder's pass)
    checked = driver._check(runner, time.time(), {}, reset_pending=False)
    assert (checked.kind, checked.reason, checked.detail) == ("full", "risk status", "DAILY_LOSS_LIMIT")
    # a new day: the reset comes before the risk assessment, so yesterday's loss pauses nothing
    checked = driver._check(runner, time.time(), {}, reset_pending=True)
    assert (checked.kind, checked.reason) == ("reset", "daily reset")

    requested = time.time()
    request_daily_reset(running_bot.pk)
    driver._housekeeping_at = 0.0  # the bot refresh reads the baseline the test wrote: the engine holds it
    driver.bring_forward(runner)
    runner = settle(driver, running_bot, lambda r: not get_redis().exists(daily_reset_key(running_bot.pk)))
    row = Bot.objects.get(pk=running_bot.pk)
    assert row.status == BotStatus.RUNNING
    assert row.daily_pnl_baseline_quote == net == engine.bot.daily_pnl_baseline_quote  # at the check's mids
    assert row.daily_reset_at is not None and row.daily_reset_at.timestamp() >= requested - 1
    assert driver.stats["reset"] == 1, driver.stats
    assert not [k for k in driver.stats if k.startswith("full: ")] or "full: daily reset" not in driver.stats
    assert runner.engine is engine and runner.last_full_at == full_at, runner.last_verdict

    # the refresh that reads the row the reset wrote keeps the engine: the baseline is the one it holds
    driver._housekeeping_at = 0.0
    driver.tick()
    assert runner.engine is engine
    driver.bring_forward(runner)
    runner = settle(driver, running_bot, lambda r: r.last_verdict.startswith("quiet"))
    assert runner.engine is engine and runner.last_full_at == full_at
    assert {o.client_order_id for o in emulator_open_orders(frozen_emulator)} == orders  # nothing re-sent

    # a baseline written by someone else (an operator, a test) still reaches the bot: a full cycle on the row
    Bot.objects.filter(pk=running_bot.pk).update(daily_pnl_baseline_quote=net - 5)
    driver._housekeeping_at = 0.0
    runner = settle(driver, running_bot, lambda r: r.engine is not None and r.engine is not engine)
    assert runner.last_full_at > full_at
    assert runner.engine.bot.daily_pnl_baseline_quote == net - 5
