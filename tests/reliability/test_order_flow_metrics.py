"""Order-to-fill and cancel-to-fill ratios (bots/engine/metrics.py) on a known set of rows: every
status counts as an order message, cancels are the rows whose cancel was sent, a fill is one
execution, other bots' rows and rows before the window are left out; the bot page's JSON shows them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from bots.engine.metrics import order_flow_metrics
from bots.models import Fill, Order, OrderStatus
from bots.selectors import bot_state
from tests.conftest import make_bot

pytestmark = pytest.mark.django_db


def order(bot: Any, cid: str, status: str, **fields: Any) -> Order:
    return Order.objects.create(
        tenant_id=bot.tenant_id, bot=bot, exchange_account=bot.exchange_accounts.get(), trading_pair="BTC/USDT",
        client_order_id=cid, side="buy", price=Decimal("60000"), amount=Decimal("0.01"), status=status, **fields)


def fill(order_row: Order, trade_id: str, *, executed_at: Any = None) -> Fill:
    return Fill.objects.create(
        tenant_id=order_row.tenant_id, bot=order_row.bot, order=order_row,
        exchange_account_id=order_row.exchange_account_id, exchange_trade_id=trade_id, trading_pair="BTC/USDT",
        side="buy", price=Decimal("60000"), amount=Decimal("0.005"), fee=Decimal("0"), fee_currency="BTC",
        executed_at=executed_at or timezone.now())


def test_ratios_on_a_known_set_of_rows(world_a: Any) -> None:
    bot = world_a.bot
    assert order_flow_metrics(bot=bot).order_to_fill_ratio is None  # nothing to divide by yet
    filled_twice = order(bot, "mm-k-1", OrderStatus.FILLED)
    partly_then_cancelled = order(bot, "mm-k-2", OrderStatus.CANCELED)
    order(bot, "mm-k-3", OrderStatus.CANCELED)
    order(bot, "mm-k-4", OrderStatus.CANCEL_PENDING)
    order(bot, "mm-k-5", OrderStatus.OPEN)
    order(bot, "mm-k-6", OrderStatus.REJECTED)
    order(bot, "mm-k-7", OrderStatus.PENDING)
    order(bot, "mm-k-8", OrderStatus.LOST)
    fill(filled_twice, "t1")
    fill(filled_twice, "t2")
    fill(partly_then_cancelled, "t3")
    other = make_bot(world_a.tenant, world_a.account, name="other")  # its rows never count here
    fill(order(other, "mm-o-1", OrderStatus.CANCELED), "t9")

    metrics = order_flow_metrics(bot=bot)
    assert (metrics.orders_sent, metrics.cancels, metrics.fills, metrics.filled_orders) == (8, 3, 3, 2)
    assert metrics.order_to_fill_ratio == pytest.approx(8 / 3)
    assert metrics.cancel_to_fill_ratio == pytest.approx(1.0)
    assert order_flow_metrics(bot=bot.pk) == metrics

    # a window: yesterday's order and fill are left out
    yesterday = timezone.now() - timedelta(days=1)
    old = order(bot, "mm-k-0", OrderStatus.CANCELED)
    Order.objects.filter(pk=old.pk).update(created_at=yesterday)
    fill(old, "t0", executed_at=yesterday)
    today = order_flow_metrics(bot=bot, since=timezone.now() - timedelta(hours=1))
    assert today == metrics
    everything = order_flow_metrics(bot=bot)
    assert (everything.orders_sent, everything.cancels, everything.fills) == (9, 4, 4)

    state = bot_state(bot=bot)
    assert state["order_flow"]["orders_sent"] == 8 and state["order_flow"]["cancel_to_fill_ratio"] == 1.0
