"""Rebalancing against the real emulator: one imbalance is traded once (the inventory is updated after each
rebalancing trade, spec ``update_inventory``), and the engine driver checks the need every monitoring
interval, not only on its periodic full cycles. An imbalance is made by depositing base on the venue."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.engine.driver import Driver
from bots.engine.shards import DRIVERS_KEY, shard_key
from bots.models import Bot, Order, OrderPurpose
from exchanges.emulator.server import EmulatorServer
from mmplatform.redis_client import get_redis
from tests.bots.conftest import EMULATOR_KEY, started_bot

pytestmark = pytest.mark.django_db(transaction=True)


def deposit(server: EmulatorServer, asset: str, amount: str) -> None:
    account = server._keys[EMULATOR_KEY][0]
    server.call(lambda: server.engine.deposit(account, asset, Decimal(amount)))


def venue_ratio(server: EmulatorServer, pair: str = "BTC/USDT") -> float:
    """The account's base share of the pair's value at the emulator's mid."""
    account = server._keys[EMULATOR_KEY][0]
    balances = server.call(lambda: server.engine.balances(account))
    mid = server.call(lambda: server.market.mid(pair))
    base_asset, quote_asset = pair.split("/")
    base = balances[base_asset].total * mid
    return float(base / (base + balances[quote_asset].total))


def rebalance_orders(bot: Bot) -> list[Order]:
    return list(Order.objects.filter(bot=bot, purpose=OrderPurpose.REBALANCE).order_by("pk"))


def full_cycle(bot: Bot) -> None:
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))


def test_an_imbalance_is_rebalanced_once(world_a: Any, frozen_emulator: EmulatorServer, settings: Any) -> None:
    """Two pairs of one account out of balance: INVENTORY_IMBALANCE forces a trade on each, then the
    regular check runs — on the inventory as those trades left it (both pairs share the USDT balance),
    so no pair is traded twice."""
    settings.MARKET_DATA_CACHE_SECS = 0.0
    server = frozen_emulator
    bot = started_bot(world_a, server, grid_levels=1,
                      inventory_deviation_limit=0.08,  # INVENTORY_IMBALANCE forces a rebalance ...
                      default_rebalance_threshold=0.05,  # ... and the regular check would trade it too
                      max_order_size_quote=Decimal("50000"), volatility_pause_threshold=1000.0,
                      max_position_quote=Decimal("1000000"))
    deposit(server, "BTC", "0.5")
    eth_value = Decimal(str(venue_ratio(server, "ETH/USDT")))  # lift ETH/USDT to about the same ratio
    deposit(server, "ETH", "10" if eth_value > Decimal("0.45") else "20")
    before = {pair: venue_ratio(server, pair) for pair in ("BTC/USDT", "ETH/USDT")}
    assert all(r > 0.58 for r in before.values()), before
    full_cycle(bot)
    trades = rebalance_orders(bot)
    by_pair = {pair: [o for o in trades if o.trading_pair == pair] for pair in before}
    assert all(len(rows) == 1 for rows in by_pair.values()), [
        (o.client_order_id, o.side, o.amount, o.filled, o.status) for o in trades]
    assert all(o.side == "sell" and o.filled > 0 for o in trades)
    after = {pair: venue_ratio(server, pair) for pair in before}
    assert all(abs(r - 0.5) < 0.03 for r in after.values()), f"overshot or short of the targets: {after}"
    full_cycle(bot)  # on balances read from the venue: nothing left to rebalance
    assert len(rebalance_orders(bot)) == 2


@pytest.fixture
def driver(settings: Any) -> Any:
    settings.ENGINE_BOOK_STREAMS = False
    settings.ENGINE_FULL_CYCLE_SECS = 3600.0  # no periodic full cycle during the test
    get_redis().delete(DRIVERS_KEY, *(shard_key(s) for s in range(64)))
    made = Driver("test")
    yield made
    made.stop()


def tick_until(driver: Driver, predicate: Any, timeout_secs: float) -> bool:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        driver._feed_once(time.time())
        driver.tick()
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_driver_checks_the_rebalancing_need_every_interval(world_a: Any, frozen_emulator: EmulatorServer,
                                                                driver: Driver) -> None:
    server = frozen_emulator
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1, monitoring_interval_secs=0.2,
                      metrics_interval_secs=3600.0, volatility_pause_threshold=1000.0,
                      inventory_deviation_limit=1.0,  # no risk status: only the rebalancing check can see it
                      default_rebalance_threshold=0.05, max_order_size_quote=Decimal("50000"),
                      max_position_quote=Decimal("1000000"))
    assert tick_until(driver, lambda: (r := driver.runners.get(bot.pk)) is not None and r.engine is not None
                      and not r.busy, 30), "the driver never took the bot"
    deposit(server, "BTC", "0.5")
    assert tick_until(driver, lambda: bool(rebalance_orders(bot)), 40), (
        f"no rebalancing trade; verdicts: {dict(driver.stats)}")
    assert driver.stats["full: rebalancing needed"] >= 1
    # the driver's account view still shows the balances from before the trade for up to 10 s: no second trade
    tick_until(driver, lambda: len(rebalance_orders(bot)) > 1, 12)
    assert len(rebalance_orders(bot)) == 1, [(o.side, o.amount, o.filled) for o in rebalance_orders(bot)]
    assert abs(venue_ratio(server) - 0.5) < 0.02


def test_rebalance_now_trades_every_pair_to_its_target(world_a: Any, frozen_emulator: EmulatorServer,
                                                        settings: Any) -> None:
    """The admin's "rebalance now" (and a scheduled run): a pair within its band is traded to its target
    too, once, under the bot's lease, recorded on the run."""
    from bots import services, tasks
    from bots.models import BotStatus, RebalanceRun

    settings.MARKET_DATA_CACHE_SECS = 0.0
    server = frozen_emulator
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1, default_rebalance_threshold=0.15,
                      inventory_deviation_limit=0.3, volatility_pause_threshold=1000.0)
    deposit(server, "BTC", "0.15")  # ratio ~0.535: inside the 0.15 band, so no cycle would trade it
    full_cycle(bot)
    assert rebalance_orders(bot) == []
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    run = services.bot_request_rebalance(bot=bot, user=world_a.operator)
    assert tasks.rebalance_bot(bot.pk, run.pk) == 1  # what the worker runs on commit
    run = RebalanceRun.objects.get(pk=run.pk)
    assert (run.trigger, run.outcome, run.trades_executed) == ("manual", "done", 1)
    assert len(rebalance_orders(bot)) == 1
    assert abs(venue_ratio(server) - 0.5) < 0.01
    assert tasks.rebalance_bot(bot.pk, run.pk) == 0  # a redelivered message does not trade again
