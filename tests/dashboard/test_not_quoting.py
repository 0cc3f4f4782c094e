"""The engine records why a running bot does not quote (bots/quoting.py, noted where
``MarketMakingBot.decide_quotes`` decides), against the real exchange emulator, and the reason goes
away as soon as the bot quotes again after a config change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bots import quoting
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot, Order
from bots.selectors import bot_summaries
from tests.conftest import TenantWorld

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def frozen() -> Iterator[Any]:
    from exchanges.registry import clear_gateway_cache
    from tests.bots.conftest import start_emulator

    server = start_emulator(market_step_ms=0,
                            dynamics={s: {"noise_arrival_rate_per_sec": 0.0} for s in ("BTC/USDT", "ETH/USDT")})
    yield server
    server.stop_thread()
    clear_gateway_cache()


def full_cycle(bot: Bot) -> MarketMakingBot:
    bot.refresh_from_db()
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    return engine


def test_a_paused_strategy_is_reported_and_cleared_when_the_threshold_changes(world_a: TenantWorld,
                                                                              frozen: Any) -> None:
    from tests.bots.conftest import started_bot

    bot = started_bot(world_a, frozen, trading_pairs="BTC/USDT", default_strategy="VOLATILITY_ADAPTIVE",
                      volatility_pause_threshold=0.0001)
    try:
        reasons = quoting.current([bot.pk]).get(bot.pk, {})
        assert "above the pause threshold 0.0%" in reasons.get("BTC/USDT", ""), reasons
        assert not Order.objects.filter(bot=bot, status="open").exists()
        summary = bot_summaries(tenant=world_a.tenant, bot_id=bot.pk)[0]
        assert summary.not_quoting_text.startswith("Running — not quoting: BTC/USDT: daily volatility")
        assert summary.needs_attention

        Bot.objects.filter(pk=bot.pk).update(volatility_pause_threshold=5.0)
        full_cycle(bot)
        assert quoting.current([bot.pk]) == {}, "the reason no longer holds"
        assert Order.objects.filter(bot=bot, status="open").exists()
        assert bot_summaries(tenant=world_a.tenant, bot_id=bot.pk)[0].not_quoting_text == ""
    finally:
        quoting.forget(bot)


def test_a_stale_book_is_reported_and_cleared_when_a_fresh_one_quotes(world_a: TenantWorld, frozen: Any) -> None:
    import time

    from tests.bots.conftest import started_bot

    bot = started_bot(world_a, frozen, trading_pairs="BTC/USDT")
    try:
        assert quoting.current([bot.pk]) == {}, "a quoting bot has no reason"
        engine = MarketMakingBot(bot)
        engine.initialize_exchanges(emit_events=False, validate=False)
        position = engine.active_positions[(world_a.account.pk, "BTC/USDT")]
        engine._update_market_data()
        # the venue stopped answering an hour ago
        engine.book_fetched_at[(world_a.account.pk, "BTC/USDT")] = time.time() - 3600
        assert engine._adjust_orders(position, initial=False) == 0
        reason = quoting.current([bot.pk])[bot.pk]["BTC/USDT"]
        assert reason.startswith("BTC/USDT: order book is ") and "s old (limit" in reason

        full_cycle(bot)  # a fresh book: quoting again
        assert quoting.current([bot.pk]) == {}
        assert Order.objects.filter(bot=bot, status="open").exists()
    finally:
        quoting.forget(bot)
