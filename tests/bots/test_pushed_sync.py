"""A fill sync on an account whose order stream is live takes the venue's listing and the fate of the
orders that left the book from the account view the pushes keep (``FillSyncMixin.sync_position`` with a
view), against the real emulator and database in process: it asks the venue about no order the view
accounts for, only about a row the view knows nothing of, and still reads the trades.

The gateway's reads are counted by wrapping the real gateway's methods (they still reach the emulator)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot
from bots.engine.market_data import AccountView
from bots.models import LiquidityPosition, Order, OrderStatus
from mmplatform import aio
from tests.bots.conftest import started_bot

pytestmark = pytest.mark.django_db(transaction=True)


def counted(monkeypatch: pytest.MonkeyPatch, gateway: Any, names: tuple[str, ...]) -> dict[str, int]:
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(gateway, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(gateway, name, wrapper)
    return calls


def test_a_sync_on_a_pushed_view_asks_the_venue_only_what_the_view_does_not_know(
        world_a: Any, frozen_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=2)
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    gateway = engine.order_manager.gateways[position.exchange_account_id]
    rows = list(Order.objects.filter(bot=bot, position=position, status=OrderStatus.OPEN).order_by("pk"))
    assert len(rows) == 4
    listed = aio.run(gateway.fetch_open_orders("BTC/USDT"))
    # the venue cancels one order (as a pushed CANCELED would say), and a second one the view never heard of
    pushed_gone, unheard_of = rows[0], rows[1]
    for row in (pushed_gone, unheard_of):
        aio.run(gateway.cancel_order("BTC/USDT", exchange_order_id=row.exchange_order_id))
    final = aio.run(gateway.fetch_order("BTC/USDT", client_order_id=pushed_gone.client_order_id))
    assert final.status == "canceled"
    now = time.time()
    view = AccountView(
        taken_at=now, balances={}, read_at=now,
        orders={o.client_order_id: o for o in listed
                if o.client_order_id not in (pushed_gone.client_order_id, unheard_of.client_order_id)},
        closed={pushed_gone.client_order_id: (now, final)})

    calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_order", "fetch_my_trades"))
    engine.order_manager.sync_position(position, mid=float("nan"), view=view)

    assert calls["fetch_open_orders"] == 0, "the view stands for the venue's listing"
    assert calls["fetch_order"] == 1, "only the row the view knows nothing of is asked about"
    assert calls["fetch_my_trades"] == 1, "rows left the book: the trades are read"
    statuses = dict(Order.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", "status"))
    assert statuses[pushed_gone.pk] == OrderStatus.CANCELED
    assert statuses[unheard_of.pk] == OrderStatus.CANCELED
    assert [statuses[r.pk] for r in rows[2:]] == [OrderStatus.OPEN, OrderStatus.OPEN]


def test_without_a_view_the_sync_reads_the_venue(world_a: Any, frozen_emulator: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=1,
                      order_size_quote=Decimal("500"))
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT", is_active=True)
    gateway = engine.order_manager.gateways[position.exchange_account_id]
    row = Order.objects.filter(bot=bot, position=position, status=OrderStatus.OPEN).first()
    assert row is not None
    aio.run(gateway.cancel_order("BTC/USDT", exchange_order_id=row.exchange_order_id))

    calls = counted(monkeypatch, gateway, ("fetch_open_orders", "fetch_order", "fetch_my_trades"))
    engine.order_manager.sync_position(position, mid=float("nan"))

    assert calls == {"fetch_open_orders": 1, "fetch_order": 1, "fetch_my_trades": 1}
    row.refresh_from_db()
    assert row.status == OrderStatus.CANCELED
