"""Dashboard fixtures: two tenants with a populated bot each, and an exchange account that points at
a closed loopback port (a kill's synchronous cancel fails fast instead of reaching the internet)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from bots.models import (
    Bot,
    BotEvent,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    PerformanceSnapshot,
)
from risk.models import RiskEvent
from tests.conftest import CLOSED_PORT_URL, TenantWorld

# Distinctive names: a page leaking another tenant's bot is caught by a plain substring check.
BOT_NAMES = {"a": "Alpha Quoter", "b": "Bravo Quoter"}


def populate_bot(world: TenantWorld, *, status: str = "running") -> dict[str, Any]:
    """Rows of every kind the bot page shows, for the world's bot."""
    t, bot, account = world.tenant, world.bot, world.account
    account.api_base_url = CLOSED_PORT_URL
    account.save(update_fields=["api_base_url"])
    now = timezone.now()
    Bot.objects.filter(pk=bot.pk).update(name=BOT_NAMES[t.slug], status=status, cycle_count=12,
                                         last_cycle_started_at=now, last_cycle_finished_at=now,
                                         daily_pnl_baseline_quote=Decimal("5"))
    bot.refresh_from_db()
    position = LiquidityPosition.objects.create(
        tenant=t, bot=bot, exchange_account=account, trading_pair="BTC/USDT", base_position=Decimal("0.5"),
        average_cost=Decimal("100"), cost_basis_quote=Decimal("50"), realised_pnl_quote=Decimal("20"),
        fees_paid_quote=Decimal("1"))
    orders = [
        Order.objects.create(tenant=t, bot=bot, position=position, exchange_account=account, trading_pair="BTC/USDT",
                             client_order_id=f"mm-{bot.pk}-{side}-{t.slug}", side=side, price=Decimal(price),
                             amount=Decimal("0.1"), status="open", level=0)
        for side, price in (("buy", "99.5"), ("sell", "100.5"))
    ]
    fill = Fill.objects.create(tenant=t, bot=bot, order=orders[0], position=position, exchange_account=account,
                               exchange_trade_id=f"T-{t.slug}-1", trading_pair="BTC/USDT", side="buy",
                               price=Decimal("99.5"), amount=Decimal("0.05"), executed_at=now)
    event = BotEvent.objects.create(tenant=t, bot=bot, event_type="OrdersPlaced", payload={"order_count": 2})
    risk = RiskEvent.objects.create(tenant=t, bot=bot, event_type="MARKET_VOLATILITY", trading_pair="BTC/USDT",
                                    message=f"volatility high at {t.slug}", action_taken="widen_spreads")
    from mmplatform.redis_client import get_redis

    active = f"mm:risk:active:{bot.pk}"  # the engine holds the breach active, as it does while it lasts
    get_redis().delete(active)
    get_redis().sadd(active, "MARKET_VOLATILITY|BTC/USDT")
    for minutes in (2, 1):
        PerformanceSnapshot.objects.create(tenant=t, bot=bot, taken_at=now - timedelta(minutes=minutes),
                                           realised_pnl_quote=Decimal("20"), fees_paid_quote=Decimal("1"))
        InventorySnapshot.objects.create(tenant=t, bot=bot, trading_pair="BTC/USDT",
                                         taken_at=now - timedelta(minutes=minutes), mid_price=Decimal("102"),
                                         ratio=0.45, target_ratio=0.5)
    return {"position": position, "orders": orders, "fill": fill, "event": event, "risk": risk}


@pytest.fixture
def populated(world_a: TenantWorld, world_b: TenantWorld) -> tuple[TenantWorld, TenantWorld]:
    populate_bot(world_a)
    populate_bot(world_b)
    return world_a, world_b


@pytest.fixture(autouse=True)
def close_exchange_clients() -> Any:
    """A kill opens ccxt clients (its synchronous cancel); close them so none leaks past the test."""
    yield
    from exchanges.registry import clear_gateway_cache

    clear_gateway_cache()
