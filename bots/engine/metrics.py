"""Order-flow quality of one bot: order-to-fill and cancel-to-fill ratios from its Order and Fill rows.

Venues and regulators watch these (an order-to-trade ratio far above the norm gets a key throttled or
fined); a market maker that re-quotes on every tick shows it here first. A fill is one execution (a
Fill row), so an order filled in three pieces counts three fills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q

from bots.models import Bot, Fill, Order, OrderStatus

CANCEL_STATUSES = (OrderStatus.CANCELED, OrderStatus.CANCEL_PENDING)
"""Rows whose cancel was sent: cancelled on the venue, or its cancel is in flight."""


@dataclass(frozen=True)
class OrderFlowMetrics:
    """Counts and ratios over a window; a ratio is None while there is no fill to divide by."""

    orders_sent: int
    cancels: int
    fills: int
    filled_orders: int
    order_to_fill_ratio: float | None
    cancel_to_fill_ratio: float | None


def order_flow_metrics(*, bot: Bot | int, since: datetime | None = None) -> OrderFlowMetrics:
    """Order-to-fill and cancel-to-fill ratios of ``bot`` (orders created and fills executed at or
    after ``since``; all of them when None). Every Order row counts as one order message: each was
    sent (or is about to be), rejected ones included, as the venue counts them."""
    bot_id = bot if isinstance(bot, int) else bot.pk
    orders = Order.objects.filter(bot_id=bot_id)
    fills = Fill.objects.filter(bot_id=bot_id)
    if since is not None:
        orders = orders.filter(created_at__gte=since)
        fills = fills.filter(executed_at__gte=since)
    order_counts = orders.aggregate(sent=Count("pk"), cancels=Count("pk", filter=Q(status__in=CANCEL_STATUSES)))
    fill_counts = fills.aggregate(fills=Count("pk"), filled_orders=Count("order_id", distinct=True))
    sent, cancels = order_counts["sent"], order_counts["cancels"]
    executions = fill_counts["fills"]
    return OrderFlowMetrics(
        orders_sent=sent,
        cancels=cancels,
        fills=executions,
        filled_orders=fill_counts["filled_orders"],
        order_to_fill_ratio=sent / executions if executions else None,
        cancel_to_fill_ratio=cancels / executions if executions else None,
    )
