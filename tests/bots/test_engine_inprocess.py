"""The engine's spec methods against the real emulator and the real database, in process
(no Celery): start, cycles, fills and accounting, stop."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import BotEvent, Fill, LiquidityPosition, Order, OrderStatus
from tests.bots.conftest import emulator_bot, emulator_open_orders


@pytest.fixture
def engine_bot(world_a: Any, emulator: Any) -> Any:
    return emulator_bot(world_a, emulator, status="starting", epoch=1)


def test_start_places_quotes_and_stop_cancels_everything(engine_bot: Any, emulator: Any) -> None:
    engine = MarketMakingBot(engine_bot)
    assert engine.initialize_exchanges()
    assert BotEvent.objects.filter(bot=engine_bot, event_type="ExchangeConnected").exists()
    assert engine.start_market_making(engine_bot.pairs)
    positions = LiquidityPosition.objects.filter(bot=engine_bot, is_active=True)
    assert {p.trading_pair for p in positions} == {"BTC/USDT", "ETH/USDT"}
    open_rows = Order.objects.filter(bot=engine_bot, status=OrderStatus.OPEN)
    assert open_rows.count() == 8  # 2 pairs x 2 sides x 2 levels
    assert BotEvent.objects.filter(bot=engine_bot, event_type="OrdersPlaced").count() == 2
    assert BotEvent.objects.filter(bot=engine_bot, event_type="MarketMakingStarted").exists()
    for row in open_rows:
        assert row.client_order_id.startswith(f"mm-{engine_bot.pk}-")
        assert row.exchange_order_id

    assert len(emulator_open_orders(emulator)) == 8
    assert engine.stop_market_making()
    assert emulator_open_orders(emulator) == []
    assert not Order.objects.filter(bot=engine_bot, status__in=["open", "pending", "partially_filled"]).exists()
    assert BotEvent.objects.filter(bot=engine_bot, event_type="MarketMakingStopped").exists()


def test_cycles_record_fills_and_accounting_matches_fills(engine_bot: Any, emulator: Any) -> None:
    engine = MarketMakingBot(engine_bot)
    engine.initialize_exchanges()
    engine.start_market_making(engine_bot.pairs)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Fill.objects.filter(bot=engine_bot).count() < 3:
        cycle_engine = MarketMakingBot(engine_bot)
        cycle_engine.initialize_exchanges(emit_events=False, validate=False)
        cycle_engine.monitoring_iteration(begin_cycle(engine_bot.pk))
        time.sleep(0.3)
    fills = list(Fill.objects.filter(bot=engine_bot))
    assert len(fills) >= 3, "noise traders should fill resting quotes"
    for position in LiquidityPosition.objects.filter(bot=engine_bot, is_active=True):
        base = position.trading_pair.split("/")[0]
        own = [f for f in fills if f.trading_pair == position.trading_pair]
        net_base = sum((f.amount if f.side == "buy" else -f.amount) - (f.fee if f.fee_currency == base else 0)
                       for f in own)
        assert position.base_position == net_base
        assert position.fill_count == len(own)
        assert position.volume_quote == sum((f.amount * f.price for f in own), Decimal(0))
    MarketMakingBot(engine_bot).stop_market_making()
