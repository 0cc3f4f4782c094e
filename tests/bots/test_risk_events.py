"""Each of the spec's four risk event types, triggered on purpose against the emulator: its
handler acts, a RiskEvent row and a RiskEventHandled event are recorded once per breach."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot, BotEvent, BotStatus, Order, OrderPurpose
from risk.models import RiskEvent
from tests.bots.conftest import emulator_open_orders, started_bot


def cycle(bot: Bot) -> MarketMakingBot:
    bot.refresh_from_db()
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    return engine


def handled(bot: Bot, event_type: str) -> list[BotEvent]:
    return [e for e in BotEvent.objects.filter(bot=bot, event_type="RiskEventHandled")
            if e.payload.get("event_type") == event_type]


def open_sizes(bot: Bot, pair: str) -> list[Decimal]:
    return sorted(o.amount for o in Order.objects.filter(bot=bot, trading_pair=pair, status="open",
                                                         purpose=OrderPurpose.QUOTE))


def test_position_limit_exceeded_reduces_order_sizes(world_a: Any, frozen_emulator: Any) -> None:
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", order_refresh_tolerance_bps=0.0,
                  order_refresh_secs=0.001)
    normal = open_sizes(bot, "BTC/USDT")
    # 1 BTC at ~60,000 USDT is above a 50,000 position limit
    Bot.objects.filter(pk=bot.pk).update(max_position_quote=Decimal("50000"), position_size_reduction_factor=0.5)
    engine = cycle(bot)
    assert "POSITION_LIMIT_EXCEEDED" in engine.report.risk_events
    assert len(handled(bot, "POSITION_LIMIT_EXCEEDED")) == 1
    assert RiskEvent.objects.filter(bot=bot, event_type="POSITION_LIMIT_EXCEEDED").count() == 1
    reduced = open_sizes(bot, "BTC/USDT")
    asks = [o for o in Order.objects.filter(bot=bot, status="open", side="sell")]
    assert asks and reduced and max(reduced) < max(normal), (normal, reduced)
    assert not Order.objects.filter(bot=bot, status="open", side="buy").exists(), "no bids above the limit"
    cycle(bot)
    assert len(handled(bot, "POSITION_LIMIT_EXCEEDED")) == 1, "one event per breach, not per cycle"


def test_daily_loss_limit_pauses_trading_and_cancels(world_a: Any, frozen_emulator: Any) -> None:
    bot = started_bot(world_a, frozen_emulator)
    assert emulator_open_orders(frozen_emulator)
    # the day started 1,000 USDT better than now: a 1,000 loss today hits a 500 limit
    Bot.objects.filter(pk=bot.pk).update(daily_pnl_baseline_quote=Decimal("1000"), max_daily_loss_quote=Decimal("500"))
    engine = cycle(bot)
    assert "DAILY_LOSS_LIMIT" in engine.report.risk_events
    assert len(handled(bot, "DAILY_LOSS_LIMIT")) == 1
    bot.refresh_from_db()
    assert bot.status == BotStatus.PAUSED
    assert "daily P&L" in bot.status_reason
    assert emulator_open_orders(frozen_emulator) == []
    cycle(bot)
    assert emulator_open_orders(frozen_emulator) == [], "a paused bot does not quote"


def test_inventory_imbalance_forces_a_rebalancing_trade(world_a: Any, frozen_emulator: Any) -> None:
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT")
    # balances sit at ratio 0.5; a 0.9 target is 0.4 away, beyond the 0.3 deviation limit
    Bot.objects.filter(pk=bot.pk).update(target_ratios={"BTC/USDT": 0.9})
    engine = cycle(bot)
    assert "INVENTORY_IMBALANCE" in engine.report.risk_events
    assert len(handled(bot, "INVENTORY_IMBALANCE")) == 1
    rebalance = Order.objects.filter(bot=bot, purpose=OrderPurpose.REBALANCE)
    assert rebalance.exists()
    order = rebalance.first()
    assert order.side == "buy" and order.time_in_force == "IOC"
    assert order.status in ("filled", "partially_filled", "expired", "canceled")
    assert BotEvent.objects.filter(bot=bot, event_type="InventoryRebalanced").exists()


def test_market_volatility_widens_spreads(world_a: Any, frozen_emulator: Any, settings: Any, monkeypatch: Any) -> None:
    # the cycles below are a fraction of a second apart: measure returns at that spacing (the 10 s
    # sparse sampling of live analysis is tested in tests/strategies and tests/platform)
    monkeypatch.setattr("strategies.analysis.VOLATILITY_SAMPLE_SECS", 0.0)
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", order_refresh_tolerance_bps=0.0,
                  order_refresh_secs=0.001, volatility_spread_widen_factor=3.0)

    def spread(b: Bot) -> Decimal:
        rows = Order.objects.filter(bot=b, status="open", level=0, purpose=OrderPurpose.QUOTE)
        return rows.get(side="sell").price - rows.get(side="buy").price

    normal = spread(bot)
    # a really volatile market: the emulator's mid jumps 1 % each way between cycles
    settings.MARKET_DATA_CACHE_SECS = 0
    engine = None
    for i in range(8):
        mid = Decimal("60000") * (Decimal("1.01") if i % 2 else Decimal("0.99"))
        frozen_emulator.call(lambda m=mid: frozen_emulator.market.set_mid("BTC/USDT", m))
        engine = cycle(bot)
    assert engine is not None and "MARKET_VOLATILITY" in engine.report.risk_events
    assert len(handled(bot, "MARKET_VOLATILITY")) == 1
    widened = spread(bot)
    assert widened > normal * Decimal("2.5"), (normal, widened)


@pytest.mark.parametrize("event_type", ["POSITION_LIMIT_EXCEEDED", "DAILY_LOSS_LIMIT", "INVENTORY_IMBALANCE",
                                        "MARKET_VOLATILITY"])
def test_handler_table_covers_every_spec_event(event_type: str) -> None:
    from risk.checks import ACTIONS

    assert event_type in ACTIONS
