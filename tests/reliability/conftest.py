"""Fixtures of the reliability suite: the engine's emulator fixtures, an engine bot started in process
(no Celery) and the invariants every fault test checks afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot
from bots.models import Bot, BotStatus, Fill, Order
from exchanges.emulator.server import EmulatorServer
from tests.bots.conftest import (  # noqa: F401  (fixtures re-exported for this directory)
    BALANCES,
    EMULATOR_KEY,
    emulator,
    emulator_bot,
    frozen_emulator,
    start_emulator,
)


def account_id_of(server: EmulatorServer, api_key: str = EMULATOR_KEY) -> str:
    return server._keys[api_key][0]


def exchange_orders(server: EmulatorServer, api_key: str = EMULATOR_KEY) -> list[Any]:
    """Every order the emulator holds for the account (open and closed)."""
    account = account_id_of(server, api_key)
    return list(server.call(lambda: server.engine.known_orders(account)))  # type: ignore[arg-type]


def exchange_trades(server: EmulatorServer, pairs: list[str], api_key: str = EMULATOR_KEY) -> list[Any]:
    account = account_id_of(server, api_key)
    trades: list[Any] = []
    for pair in pairs:
        trades += server.call(lambda pair=pair: server.engine.account_trades(account, pair, limit=10**9))
    return trades


def exchange_balances(server: EmulatorServer, api_key: str = EMULATOR_KEY) -> dict[str, Decimal]:
    account = account_id_of(server, api_key)
    balances = server.call(lambda: server.engine.balances(account))
    return {asset: b.free + b.locked for asset, b in balances.items()}  # type: ignore[union-attr]


def started_engine(bot: Bot, **engine_options: Any) -> MarketMakingBot:
    """Start market making in this process and mark the bot RUNNING (what start_bot does)."""
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.STARTING, epoch=bot.epoch + 1)
    bot.refresh_from_db()
    engine = MarketMakingBot(bot, **engine_options)
    assert engine.initialize_exchanges()
    assert engine.start_market_making(bot.pairs)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    bot.refresh_from_db()
    return engine


def assert_orders_map_one_to_one(server: EmulatorServer, bot: Bot) -> None:
    """Every exchange order of the bot is exactly one Order row (no duplicate, no orphan) and every
    row the exchange acknowledged is on the exchange under the same id."""
    prefix = f"mm-{bot.pk}-"
    remote = [o for o in exchange_orders(server) if (o.client_order_id or "").startswith(prefix)]
    remote_ids = [o.client_order_id for o in remote]
    assert len(remote_ids) == len(set(remote_ids)), "two exchange orders with one client order id"
    rows = {o.client_order_id: o for o in Order.objects.filter(bot=bot)}
    orphans = [cid for cid in remote_ids if cid not in rows]
    assert not orphans, f"exchange orders the database does not know: {orphans}"
    for order in remote:
        row = rows[order.client_order_id]
        if row.exchange_order_id:
            assert row.exchange_order_id == str(order.order_id), row.client_order_id
        if order.is_open:
            assert row.status in ("open", "partially_filled", "pending", "cancel_pending"), (
                f"{row.client_order_id} rests on the exchange but the row says {row.status}")


def assert_fills_match_exchange(server: EmulatorServer, bot: Bot) -> None:
    """Fill rows equal the emulator's trade list of the account, trade for trade (no lost, no extra)."""
    trades = {str(t.trade_id): t for t in exchange_trades(server, bot.pairs)
              if (t.client_order_id or "").startswith(f"mm-{bot.pk}-")}
    fills = {f.exchange_trade_id: f for f in Fill.objects.filter(bot=bot)}
    missing = sorted(set(trades) - set(fills))
    extra = sorted(set(fills) - set(trades))
    assert not missing, f"trades on the exchange never recorded as fills: {missing}"
    assert not extra, f"fills the exchange does not know: {extra}"
    for trade_id, trade in trades.items():
        fill = fills[trade_id]
        assert (fill.price, fill.amount, fill.fee) == (trade.price, trade.quantity, trade.fee), trade_id


def assert_balances_match_fills(server: EmulatorServer, bot: Bot, start: dict[str, Decimal]) -> None:
    """What the exchange holds equals the starting balances moved by every recorded fill."""
    expected = dict(start)
    for fill in Fill.objects.filter(bot=bot):
        base, quote = fill.trading_pair.split("/")
        signed = fill.amount if fill.side == "buy" else -fill.amount
        expected[base] = expected.get(base, Decimal(0)) + signed
        expected[quote] = expected.get(quote, Decimal(0)) - signed * fill.price
        expected[fill.fee_currency] = expected.get(fill.fee_currency, Decimal(0)) - fill.fee
    actual = exchange_balances(server)
    for asset in set(expected) | set(actual):
        assert actual.get(asset, Decimal(0)) == expected.get(asset, Decimal(0)), asset


@pytest.fixture
def world_bot(world_a: Any, frozen_emulator: EmulatorServer) -> Iterator[Bot]:  # noqa: F811
    """World A's bot on a frozen emulator, one pair, quick intervals."""
    yield emulator_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT")
