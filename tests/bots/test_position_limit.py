"""POSITION_LIMIT_EXCEEDED reduces only the side that grows the position: a bot holding more base than
its limit keeps offering it at full size (the asks unwind the position) and buys less or nothing —
read from the orders resting on the real emulator after a cycle."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot
from risk.models import RiskEvent
from tests.bots.conftest import emulator_open_orders, started_bot

pytestmark = pytest.mark.django_db(transaction=True)

ORDER_SIZE = Decimal("1000")


def test_position_limit_reduces_only_the_growing_side(world_a: Any, frozen_emulator: Any, settings: Any) -> None:
    settings.MARKET_DATA_CACHE_SECS = 0.0
    server = frozen_emulator
    # the account holds 1 BTC (~60,000 USDT) against a 30,000 limit: the position is too long
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=2, order_size_quote=ORDER_SIZE,
                      max_position_quote=Decimal("30000"), position_size_reduction_factor=0.5,
                      inventory_deviation_limit=1.0, default_rebalance_threshold=1.0,
                      volatility_pause_threshold=1000.0, adaptation_enabled=False)
    server.call(lambda: server.market.set_mid("BTC/USDT", server.market.mid("BTC/USDT") * Decimal("1.01")))
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))  # the mid moved 1 %: every quote is replaced

    assert RiskEvent.objects.filter(bot=bot, event_type="POSITION_LIMIT_EXCEEDED").exists()
    resting = emulator_open_orders(server)
    asks = [o for o in resting if o.side == "SELL"]
    bids = [o for o in resting if o.side == "BUY"]
    assert len(asks) == 2, resting
    for ask in asks:  # full size: the side that unwinds the long is not reduced
        assert ask.price * ask.quantity >= ORDER_SIZE * Decimal("0.95"), (ask.price, ask.quantity)
    for bid in bids:  # the side that grows it is reduced (here: no room under the limit at all)
        assert bid.price * bid.quantity <= ORDER_SIZE * Decimal("0.5") * Decimal("1.01"), (bid.price, bid.quantity)
