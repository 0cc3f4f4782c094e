"""The engine driver's account views kept by the venue's pushed order updates (Binance's user-data
stream through ccxt.pro's real ``binance`` class, served by the emulator): once the stream is live the
views stay current without REST reads of the open orders (those come only every
ENGINE_ACCOUNT_RECONCILE_SECS, after a fill sync and when the stream subscribes again), and an order
that leaves the book is noticed from the push. In process against the real emulator, database and
Redis; the driver's ``tick`` and feeder pass are called by the test."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from bots.engine.driver import Driver
from bots.engine.lease import cycle_records
from bots.models import Bot, Order, OrderStatus
from exchanges.ccxt_config import binance_config_for
from exchanges.emulator.server import EmulatorServer
from tests.bots.conftest import EMULATOR_KEY, EMULATOR_SECRET, emulator_open_orders, started_bot
from tests.bots.test_driver import driver, settle  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pushed(settings: Any) -> None:
    settings.ENGINE_BOOK_STREAMS = False
    settings.ENGINE_ORDER_STREAMS = True
    settings.ENGINE_ACCOUNT_RECONCILE_SECS = 3600.0  # no REST reconciliation during the test
    settings.ENGINE_FULL_CYCLE_SECS = 3600.0


@pytest.fixture
def streamed_bot(world_a: Any, frozen_emulator: EmulatorServer, pushed: None) -> Bot:
    return started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=1,
                       monitoring_interval_secs=0.2, metrics_interval_secs=3600.0,
                       volatility_pause_threshold=1000.0, inventory_deviation_limit=1.0)


def venue_side_cancel(server: EmulatorServer, exchange_order_id: str) -> None:
    """A cancel the bot did not send (an operator on the venue's site, a venue expiry): signed REST."""
    async def cancel() -> None:
        client = ccxt_async.binance(binance_config_for(server.base_url, EMULATOR_KEY, EMULATOR_SECRET))
        try:
            await client.cancel_order(exchange_order_id, "BTC/USDT")
        finally:
            await client.close()

    asyncio.run(cancel())


def test_pushed_order_updates_keep_the_views_current_without_rest_reads(
        streamed_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:  # noqa: F811
    account_id = streamed_bot.exchange_accounts.get().pk
    runner = settle(driver, streamed_bot, lambda r: r.engine is not None and driver._order_stream_live(account_id)
                    and account_id in driver.accounts)
    # the REST read that follows the subscription, then nothing but pushes
    runner = settle(driver, streamed_bot, lambda r: driver.accounts[account_id].read_at > 0 and r.known and set(
        driver.accounts[account_id].orders) == r.known)
    read_at = driver.accounts[account_id].read_at
    cycles = len(cycle_records(streamed_bot.pk))
    deadline = time.monotonic() + 2.0  # ten monitoring intervals: a polled view would be read ~10 times
    while time.monotonic() < deadline:
        driver._feed_once(time.time())
        driver.tick()
        time.sleep(0.02)
    view = driver.accounts[account_id]
    assert view.read_at == read_at, "no REST read of the open orders while the stream is live"
    assert time.time() - view.taken_at < 0.5  # and yet the view is current
    assert len(cycle_records(streamed_bot.pk)) >= cycles + 5
    assert "no account view" not in runner.last_verdict

    victim = emulator_open_orders(frozen_emulator)[0]
    time.sleep(0.6)  # orders younger than SENT_MARGIN_SECS may be missing from a view for good reason
    venue_side_cancel(frozen_emulator, str(victim.order_id))
    runner = settle(driver, streamed_bot, lambda r: r.last_verdict.startswith("fills")
                    and victim.client_order_id not in r.known)
    assert Order.objects.get(client_order_id=victim.client_order_id).status == OrderStatus.CANCELED
    open_now = emulator_open_orders(frozen_emulator)
    assert len(open_now) == 2 and {o.client_order_id for o in open_now} == runner.known  # quoted again


def test_a_dropped_stream_falls_back_to_polling_and_resubscribes(
        streamed_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:  # noqa: F811
    account_id = streamed_bot.exchange_accounts.get().pk
    settle(driver, streamed_bot, lambda r: r.engine is not None and driver._order_stream_live(account_id)
           and account_id in driver.accounts and driver.accounts[account_id].read_at > 0)
    # the venue drops every user-data socket
    frozen_emulator.call(lambda: asyncio.ensure_future(frozen_emulator.user_streams.close()))
    settle(driver, streamed_bot, lambda r: not driver._order_stream_live(account_id), timeout_secs=30)
    before = driver.accounts[account_id].read_at if account_id in driver.accounts else 0.0
    # polled meanwhile, and subscribed again (then read once more by REST)
    runner = settle(driver, streamed_bot, lambda r: driver._order_stream_live(account_id)
                    and account_id in driver.accounts and driver.accounts[account_id].read_at > before,
                    timeout_secs=30)
    assert set(driver.accounts[account_id].orders) == runner.known


def test_a_new_gateway_for_the_account_replaces_its_stream(
        streamed_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:  # noqa: F811
    """Rotated keys give the account a new gateway: the stream signed with the old one is closed and a
    new one subscribes with the new gateway's credentials."""
    from exchanges.ccxt_gateway import CcxtGateway

    account_id = streamed_bot.exchange_accounts.get().pk
    settle(driver, streamed_bot, lambda r: r.engine is not None and driver._order_stream_live(account_id))
    old_gateway, old_task = driver.order_stream_tasks[account_id]
    new_gateway = CcxtGateway(old_gateway._credentials)
    driver.wanted_accounts[account_id] = (new_gateway, driver.wanted_accounts[account_id][1])
    driver._ensure_order_streams()
    assert driver.order_stream_tasks[account_id][0] is new_gateway
    deadline = time.monotonic() + 10
    while not old_task.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert old_task.cancelled()
    deadline = time.monotonic() + 15
    while not driver._order_stream_live(account_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver._order_stream_live(account_id)
    from mmplatform import aio

    aio.run(new_gateway.close())  # its REST session (the driver's stop closes the stream)


def test_a_check_waits_for_a_live_view_a_little_behind_instead_of_running_a_full_cycle(
        streamed_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer) -> None:  # noqa: F811
    """The feeder's pass late (a loaded process) under a live order stream: a due bot's check waits for its account
    view instead of running a full cycle -- no cycle, the lease released, still due at its time (the wait is lag) --
    and is looked at again ``VIEW_RETRY_SECS`` later; once a feeder's pass brought the view up to date, the check
    decides as usual. A view behind by more than ``VIEW_BEHIND_SECS`` falls back to the full cycle, as before."""
    from dataclasses import replace

    from bots.engine.feed import VIEW_BEHIND_SECS, VIEW_RETRY_SECS, view_limit
    from bots.engine.lease import BotLease

    account_id = streamed_bot.exchange_accounts.get().pk
    runner = settle(driver, streamed_bot, lambda r: r.engine is not None and r.known
                    and driver._order_stream_live(account_id) and account_id in driver.accounts)
    driver._housekeeping_at = driver._flush_at = time.time() + 3600  # these ticks: checks only
    limit = view_limit(runner.interval)
    cycles = len(cycle_records(streamed_bot.pk))
    waits = driver.stats["view_waits"]

    view = driver.accounts[account_id]
    driver.accounts[account_id] = replace(view, taken_at=time.time() - limit - 1.0)  # the feeder's pass is late
    due_at = time.time()
    driver.bring_forward(runner, due_at)
    driver.tick()  # (no feeder pass)
    assert runner.last_verdict.startswith("wait: account view behind"), runner.last_verdict
    assert not runner.busy and runner.wait_until and runner.next_due == due_at
    assert driver.stats["view_waits"] == waits + 1
    assert not BotLease.is_held(streamed_bot.pk)
    assert len(cycle_records(streamed_bot.pk)) == cycles  # no cycle ran
    began = runner.wait_until - VIEW_RETRY_SECS  # when the check began to wait
    assert driver.due_queue.next_at() == pytest.approx(began + VIEW_RETRY_SECS)  # looked at again then
    driver.tick()  # (still no feeder pass: it waits again, not sooner than VIEW_RETRY_SECS after the first)
    assert runner.wait_until - VIEW_RETRY_SECS >= began + VIEW_RETRY_SECS and driver.stats["view_waits"] == waits + 2
    assert len(cycle_records(streamed_bot.pk)) == cycles and runner.next_due == due_at

    driver._feed_once(time.time())  # the feeder catches up: the live view is current again
    time.sleep(VIEW_RETRY_SECS)
    runner = settle(driver, streamed_bot, lambda r: not r.wait_until and r.last_verdict)
    assert not runner.last_verdict.startswith(("wait", "full")), runner.last_verdict
    assert len(cycle_records(streamed_bot.pk)) > cycles

    view = driver.accounts[account_id]
    driver.accounts[account_id] = replace(view, taken_at=time.time() - limit - VIEW_BEHIND_SECS - 1.0)
    driver.bring_forward(runner, time.time())
    driver.tick()
    assert runner.last_verdict == "full: no account view"
    settle(driver, streamed_bot, lambda r: r.engine is not None)


def test_a_periodic_full_cycle_takes_the_live_views_orders_and_balances(
        streamed_bot: Bot, driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The driver hands its full cycles the account views the order stream keeps: a periodic full cycle reads
    neither the open orders nor the balances by REST (``CycleMixin.monitoring_iteration``, ``views``)."""
    from tests.bots.test_pushed_sync import counted

    account_id = streamed_bot.exchange_accounts.get().pk
    runner = settle(driver, streamed_bot, lambda r: r.engine is not None and driver._order_stream_live(account_id)
                    and account_id in driver.accounts and driver.accounts[account_id].balances_at > 0)
    engine, gateway = runner.engine, driver.wanted_accounts[account_id][0]
    calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_balance"))
    account_reads = driver.feed_stats["account_reads"]
    runner.last_full_at = 1.0  # its periodic full cycle is due
    driver.bring_forward(runner)
    runner = settle(driver, streamed_bot, lambda r: r.engine is not None and r.engine is not engine)
    assert runner.last_verdict.startswith("full: periodic full cycle")
    # (the feeder's own REST reads, if any, are counted in its stats)
    assert calls["fetch_open_orders"] == driver.feed_stats["account_reads"] - account_reads, "the view is the listing"
    view = driver.accounts[account_id]
    assert runner.engine.inventory_manager.balances[account_id] == view.balances
    assert calls["fetch_balance"] <= driver.feed_stats["balance_reads"], "only the feeder's own balance reads"
    assert set(driver.accounts[account_id].orders) == runner.known
