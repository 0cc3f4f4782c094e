"""One bot config through the backtester and through the live engine's decision path on the same data:
the same decisions (intents, pre-trade denials with their reasons, keep/cancel/place).

The backtester replays generated data with ``Backtest.from_config(bot.to_config())`` and records each
decision's inputs. For each of them the live engine (``MarketMakingBot`` of the same Bot row, real
Postgres and Redis) is put in the same state the way it gets there live: the balances assessed by its
inventory manager, the resting quotes as open Order rows of a LiquidityPosition read back through its
order manager; then ``decide_quotes`` (the engine's decide -> check step) must return the backtest's
decision. Nothing is mocked; no exchange is needed because deciding sends nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bots.config import validate_market_making_config
from bots.engine.core import MarketMakingBot
from bots.models import LiquidityPosition, Order, OrderPurpose, OrderStatus
from strategies import pipeline
from strategies.backtest import Backtest, settings_from_metadata
from strategies.marketdata import generate_market_data
from strategies.types import LiveOrder

pytestmark = pytest.mark.django_db

PAIR = "SYN/USDT"
STEPS = 120  # decisions compared (each stores the resting quotes as Order rows)


def normalised(decision: pipeline.Decision) -> pipeline.Decision:
    """Order ids as strings (the backtester's ids are ints, the engine's are client order ids)."""

    def ids(orders: list[LiveOrder]) -> list[LiveOrder]:
        return [dataclasses.replace(o, order_id=str(o.order_id)) for o in orders]

    diff = dataclasses.replace(decision.diff, keep=ids(decision.diff.keep), cancel=ids(decision.diff.cancel))
    return dataclasses.replace(decision, diff=diff)


def configure(bot: Any) -> Any:
    """A grid bot whose checks bite: 4 intents against max_open_orders 3, a tight price collar."""
    for name, value in {
        "trading_pairs": PAIR, "default_strategy": "GRID_TRADING", "grid_levels": 2, "spread_bps": 4.0,
        "level_spacing_bps": 12.0, "order_size_quote": Decimal("50"), "min_order_size_quote": Decimal("10"),
        "max_order_size_quote": Decimal("200"), "max_open_orders": 3, "price_collar_bps": 15.0,
        "order_refresh_tolerance_bps": 3.0, "order_refresh_secs": 20.0, "maker_fee_bps": 1.0,
        "min_spread_bps": 1.0, "adaptation_enabled": False,
    }.items():
        setattr(bot, name, value)
    bot.save()
    return bot


def test_one_config_decides_the_same_in_the_backtest_and_the_live_engine(world_a: Any) -> None:
    bot = configure(world_a.bot)
    config = validate_market_making_config(bot.to_config())
    data = generate_market_data(3000, seed=21, volatility_bps_per_sqrt_sec=4.0)
    data.metadata["symbol"] = PAIR
    settings = dataclasses.replace(settings_from_metadata(data), initial_base=5.0, initial_quote=500.0,
                                   analysis_interval_secs=0.0)
    recorded: list[tuple[pipeline.DecisionInputs, pipeline.Decision]] = []
    result = Backtest.from_config(data, config, settings,
                                  on_decision=lambda i, d: recorded.append((i, d))).run()
    assert result.fills > 5 and result.orders_denied > 0 and result.orders_cancelled > 0, result.summary()

    engine = MarketMakingBot(bot)
    position = LiquidityPosition.objects.create(tenant=bot.tenant, bot=bot, exchange_account=world_a.account,
                                                trading_pair=PAIR)
    account_id = world_a.account.pk
    compared = kept = cancelled = denied = 0
    for n, (inputs, expected) in enumerate(recorded[:STEPS]):
        # the state the live engine would hold: balances (assessed at this mid) and its open quotes
        engine.inventory_manager.balances = {account_id: {  # as read from the venue (Decimal totals)
            "SYN": Decimal(repr(inputs.inventory.base_balance)), "USDT": Decimal(repr(inputs.inventory.quote_balance))}}
        engine.inventory_manager.current_inventory.pop(PAIR, None)
        engine.inventory_manager.assess(position, inputs.snapshot.mid)
        Order.objects.filter(bot=bot).delete()
        for order in inputs.live:
            row = Order.objects.create(
                tenant=bot.tenant, bot=bot, position=position, exchange_account=world_a.account,
                trading_pair=PAIR, client_order_id=str(order.order_id), side=order.side,
                purpose=OrderPurpose.QUOTE, price=Decimal(repr(order.price)), amount=Decimal(repr(order.size)),
                status=OrderStatus.OPEN, level=order.level)
            Order.objects.filter(pk=row.pk).update(created_at=datetime.fromtimestamp(order.placed_at, UTC))
        live_rows = [o for o in engine.order_manager.open_orders(position) if o.purpose == OrderPurpose.QUOTE]
        assert [r.created_at.timestamp() for r in live_rows] == [o.placed_at for o in inputs.live]

        decision = engine.decide_quotes(position, inputs.snapshot, live_rows, 0, now=inputs.now)

        assert normalised(decision) == normalised(expected), f"decision {n} at ts {inputs.now}"
        compared += 1
        kept += len(decision.diff.keep)
        cancelled += len(decision.diff.cancel)
        denied += len(decision.denied)
    # the comparison covered every stage: kept and replaced quotes, and denials with their reasons
    assert compared == min(STEPS, len(recorded)) and kept and cancelled and denied
    assert any("max_open_orders" in d.reason for _, e in recorded[:STEPS] for d in e.denied)
