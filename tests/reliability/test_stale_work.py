"""Stale work is fenced: a late ``run_cycle`` of an old epoch or chain (as the broker redelivers it
after its visibility timeout), or a cycle overtaken by a stop mid-way, changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from bots import tasks
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.engine.lease import current_chain, new_chain
from bots.models import Bot, BotEvent, BotStatus, Order
from tests.reliability.conftest import exchange_orders, started_engine

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot(server: Any, bot: Bot) -> tuple[Any, ...]:
    """Everything a stale task could change: rows, their states, the bot row and the exchange."""
    bot.refresh_from_db()
    rows = tuple(Order.objects.filter(bot=bot).order_by("pk").values_list("client_order_id", "status", "filled"))
    remote = tuple(sorted((o.client_order_id, o.status) for o in exchange_orders(server)))
    return (rows, remote, bot.status, bot.epoch, bot.cycle_count, bot.last_error,
            BotEvent.objects.filter(bot=bot).count())


def test_redelivered_cycle_of_an_old_epoch_does_nothing(world_bot: Bot, frozen_emulator: Any,
                                                         celery_queue: str) -> None:
    started_engine(world_bot)
    old_epoch, old_chain = world_bot.epoch, new_chain(world_bot.pk)
    # a restart: new epoch, new chain; the old chain's next cycle is still in the broker
    Bot.objects.filter(pk=world_bot.pk).update(epoch=old_epoch + 1)
    new_chain(world_bot.pk)
    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", frozen_emulator.market.mid("BTC/USDT")
                                                                 * 101 / 100))
    before = snapshot(frozen_emulator, world_bot)
    assert tasks.run_cycle(world_bot.pk, old_epoch, old_chain, None) == "stale-chain"
    assert snapshot(frozen_emulator, world_bot) == before
    # the same epoch fence holds with the current chain id (a start that bumped only the epoch)
    assert tasks.run_cycle(world_bot.pk, old_epoch, current_chain(world_bot.pk), None) == "fenced"
    assert snapshot(frozen_emulator, world_bot) == before


def test_late_cycle_of_a_stopped_bot_does_nothing(world_bot: Bot, frozen_emulator: Any, celery_queue: str) -> None:
    engine = started_engine(world_bot)
    chain = new_chain(world_bot.pk)
    engine.stop_market_making()
    Bot.objects.filter(pk=world_bot.pk).update(status=BotStatus.STOPPED, epoch=world_bot.epoch + 1)
    before = snapshot(frozen_emulator, world_bot)
    assert tasks.run_cycle(world_bot.pk, world_bot.epoch, chain, None) == "fenced"
    assert tasks.run_cycle(world_bot.pk, world_bot.epoch + 1, chain, None) == "fenced"  # STOPPED is not cycling
    assert snapshot(frozen_emulator, world_bot) == before
    assert not [o for o in exchange_orders(frozen_emulator) if o.is_open]


def test_stop_during_a_cycle_prevents_its_placements(world_bot: Bot, frozen_emulator: Any) -> None:
    """The cycle was built before the stop; it re-reads the row before sending and places nothing."""
    started_engine(world_bot)
    stale = MarketMakingBot(Bot.objects.get(pk=world_bot.pk))
    assert stale.initialize_exchanges(emit_events=False, validate=False)
    Bot.objects.filter(pk=world_bot.pk).update(status=BotStatus.STOPPING, epoch=world_bot.epoch + 1)
    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", frozen_emulator.market.mid("BTC/USDT")
                                                                 * 102 / 100))
    ids_before = set(Order.objects.filter(bot=world_bot).values_list("client_order_id", flat=True))
    report = stale.monitoring_iteration(begin_cycle(world_bot.pk))
    assert report.placed == 0
    assert set(Order.objects.filter(bot=world_bot).values_list("client_order_id", flat=True)) == ids_before
    assert {o.client_order_id for o in exchange_orders(frozen_emulator)} <= ids_before
