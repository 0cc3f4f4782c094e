"""A bot on OKX and on Bybit (the emulator's dialects), in process with the real database: it quotes with
the platform's client ids (sent in the venue's encoding, stored and matched decoded), records the fills
the noise traders make, and stopping it leaves no order open on the venue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Fill, Order, OrderStatus
from exchanges.emulator.server import AccountConfig, EmulatorServer
from exchanges.registry import clear_gateway_cache
from exchanges.venues import get_venue
from tests.bots.conftest import (
    BALANCES,
    EMULATOR_KEY,
    EMULATOR_SECRET,
    emulator_bot,
    emulator_open_orders,
    emulator_trades,
    start_emulator,
)

PASSPHRASE = "Bot-Pass-1"


@pytest.fixture(params=["okx", "bybit"])
def venue_emulator(request) -> Iterator[tuple[str, EmulatorServer]]:
    venue = request.param
    server = start_emulator(venue=venue, accounts=(
        AccountConfig(EMULATOR_KEY, EMULATOR_SECRET, dict(BALANCES), passphrase=PASSPHRASE if venue == "okx" else ""),))
    yield venue, server
    server.stop_thread()
    clear_gateway_cache()


def test_a_bot_quotes_fills_and_stops_on_the_venue(world_a: Any, venue_emulator: Any) -> None:
    venue, server = venue_emulator
    bot = emulator_bot(world_a, server, status="starting", epoch=1, trading_pairs="BTC/USDT")
    account = world_a.account
    account.refresh_from_db()
    account.exchange_id = venue
    account.set_credentials(api_key=EMULATOR_KEY, api_secret=EMULATOR_SECRET,
                            passphrase=PASSPHRASE if venue == "okx" else "")
    account.full_clean()
    account.save()
    engine = MarketMakingBot(bot)
    assert engine.initialize_exchanges()
    assert engine.start_market_making(bot.pairs)
    rows = list(Order.objects.filter(bot=bot, status=OrderStatus.OPEN))
    assert len(rows) == 4 and all(row.client_order_id.startswith(f"mm-{bot.pk}-") for row in rows)
    rules = get_venue(venue).client_ids
    on_venue = emulator_open_orders(server)
    assert sorted(o.client_order_id for o in on_venue) == sorted(rules.encode(r.client_order_id) for r in rows)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not Fill.objects.filter(bot=bot).exists():
        cycle_engine = MarketMakingBot(bot)
        cycle_engine.initialize_exchanges(emit_events=False, validate=False)
        cycle_engine.monitoring_iteration(begin_cycle(bot.pk))
        time.sleep(0.3)
    fills = list(Fill.objects.filter(bot=bot))
    assert fills, "noise traders should fill resting quotes"
    # every fill is matched to the bot's order through the decoded client id, and is the venue's own trade
    assert all(fill.order_id is not None for fill in fills)
    venue_trades = {str(t.trade_id): t for t in emulator_trades(server, "BTC/USDT")}
    for fill in fills:
        trade = venue_trades[fill.exchange_trade_id]
        assert rules.decode(trade.client_order_id) == fill.order.client_order_id
        assert (fill.amount, fill.price) == (trade.quantity, trade.price)

    stopper = MarketMakingBot(bot)
    stopper.initialize_exchanges(emit_events=False, validate=False)
    assert stopper.stop_market_making()
    assert emulator_open_orders(server) == []
    assert not Order.objects.filter(bot=bot, status__in=["open", "pending", "partially_filled"]).exists()
