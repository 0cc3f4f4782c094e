"""A start that fails midway leaves nothing on the venue: the exchange fails (the emulator's fault
injection: every request answered 503) right after the first pair's orders rest, the start task cancels
what it placed and the bot ends in ERROR with the reason on its row and a BotError event. And the
watchdog cancels what a bot in ERROR still has resting."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bots import tasks
from bots.models import Bot, BotEvent, BotStatus, Order
from exchanges.emulator.server import EmulatorServer, FaultConfig
from tests.bots.conftest import emulator_bot, emulator_open_orders, started_bot
from tests.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class FailAfterFirstPair:
    """On the emulator's own loop (so nothing of the bot runs in between): once the bot's first pair rests
    (``orders`` open orders), every request fails with a 503 until the gateway gave up one read (its
    ``read_attempts`` 503s), then the exchange works again (the failed start's cancels get through)."""

    def __init__(self, server: EmulatorServer, bot_id: int, orders: int, read_attempts: int = 4):
        self.server, self.prefix, self.orders, self.read_attempts = server, f"mm-{bot_id}-", orders, read_attempts
        self.state = "armed"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _step(self) -> None:
        account = next(iter(self.server._keys.values()))[0]
        if self.state == "armed":
            resting = [o for o in self.server.engine.open_orders(account)
                       if o.client_order_id.startswith(self.prefix)]
            if len(resting) >= self.orders:
                self.served = self.server.faults_served["503"]
                self.server.set_faults(FaultConfig(error_rate=1.0))
                self.state = "failing"
        elif self.state == "failing" and self.server.faults_served["503"] - self.served >= self.read_attempts:
            self.server.set_faults(FaultConfig())
            self.state = "recovered"

    def _run(self) -> None:
        while not self.stopping.wait(0.0005) and self.state != "recovered":
            self.server.call(self._step)

    def __enter__(self) -> FailAfterFirstPair:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)


def test_a_start_that_fails_midway_cancels_what_it_placed_and_ends_in_error(world_a: Any,
                                                                            frozen_emulator: EmulatorServer) -> None:
    bot = emulator_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT,ETH/USDT", grid_levels=2)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.STARTING, epoch=1)
    with FailAfterFirstPair(frozen_emulator, bot.pk, orders=4) as fault:
        outcome = tasks.start_bot(bot.pk, 1)  # the task's body, in this process
    assert fault.state == "recovered", "the fault never fired: the first pair's orders never rested"
    assert outcome == "error"
    assert [o.client_order_id for o in emulator_open_orders(frozen_emulator)] == [], \
        "the failed start left orders on the venue"
    placed = Order.objects.filter(bot=bot, exchange_order_id__gt="")
    assert placed.count() >= 4, "the first pair's orders were placed before the fault"
    assert not Order.objects.filter(bot=bot, status__in=["open", "partially_filled", "pending"]).exists()
    bot.refresh_from_db()
    assert bot.status == BotStatus.ERROR
    assert "start failed" in bot.status_reason and "ExchangeUnavailableError" in bot.status_reason
    assert "ExchangeUnavailableError" in bot.last_error
    error = BotEvent.objects.get(bot=bot, event_type="BotError")
    assert "start failed" in error.payload["error"]


def test_watchdog_cancels_the_resting_orders_of_a_bot_in_error(world_a: Any, frozen_emulator: EmulatorServer,
                                                               settings: Any) -> None:
    """A bot went to ERROR with its quotes resting (e.g. its start failed and the venue refused the cancels
    too): no driver cycles it, the watchdog cancels them. Celery's eager mode runs the task the watchdog
    enqueues here, in this process (the task body is the production one; workers are tested elsewhere)."""
    from mmplatform.celery import app

    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT")
    assert emulator_open_orders(frozen_emulator)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.ERROR, status_reason="authentication failed")
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        assert tasks.watchdog()["cleaned"] == 1
    finally:
        app.conf.task_always_eager = previous
    wait_until(lambda: emulator_open_orders(frozen_emulator) == [], 10, message="orders of the ERROR bot still rest")
    assert not Order.objects.filter(bot=bot, status__in=["open", "partially_filled", "pending"]).exists()
    assert tasks.watchdog()["cleaned"] == 0, "nothing left to clean"
