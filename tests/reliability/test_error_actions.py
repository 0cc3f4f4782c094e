"""The error-action table end to end (engine + ccxt gateway + emulator; the ccxt-class mapping itself is
unit-tested in tests/exchanges):

| venue answer                        | action                                                           |
| ----------------------------------- | ---------------------------------------------------------------- |
| 5xx / timeout on a read             | retried with backoff; the cycle completes                         |
| lost reply to a create (504)        | resolved by client order id, never re-sent: exactly one order     |
| InsufficientFunds / InvalidOrder    | row REJECTED with the reason, not retried, a RiskEvent (once)     |
| AuthenticationError                 | the bot is disabled: ERROR with a clear last_error                |
| 429 / DDoSProtection                | account-wide pause (test_account_backoff.py)                      |
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings

from bots import tasks
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.engine.lease import new_chain
from bots.models import Bot, BotEvent, BotStatus, Order
from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.server import FaultConfig
from risk.models import RiskEvent
from tests.reliability.conftest import (
    EMULATOR_KEY,
    account_id_of,
    assert_orders_map_one_to_one,
    exchange_orders,
    started_engine,
)

pytestmark = pytest.mark.django_db(transaction=True)


def cycle(bot: Bot, **engine_options: Any) -> Any:
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk), **engine_options)
    assert engine.initialize_exchanges(emit_events=False, validate=False)
    return engine.monitoring_iteration(begin_cycle(bot.pk))


def move_mid(server: Any, factor: str) -> None:
    server.call(lambda: server.market.set_mid("BTC/USDT", server.market.mid("BTC/USDT") * Decimal(factor)))


def test_reads_recover_through_5xx_and_timeouts(world_bot: Bot, frozen_emulator: Any) -> None:
    gateways: dict[int, CcxtGateway] = {}

    def patient_gateway(account: Any) -> CcxtGateway:
        """The production gateway with a 0.15 s timeout, so the latency fault produces timeouts."""
        if account.pk not in gateways:
            gateways[account.pk] = CcxtGateway(account.credentials(), timeout_secs=0.15, backoff_secs=0.01,
                                               read_attempts=8, redis_url=settings.REDIS_URL)
        return gateways[account.pk]

    started_engine(world_bot, gateway_factory=patient_gateway)
    frozen_emulator.set_faults(FaultConfig(error_rate=0.25, latency_jitter_ms=200))
    clock = time.monotonic()
    for factor in ("1.004", "0.996", "1.004"):  # the book moves: every cycle reads and re-quotes
        move_mid(frozen_emulator, factor)
        cycle(world_bot, gateway_factory=patient_gateway)  # raises if a read gave up
    faults = dict(frozen_emulator.faults_served)
    frozen_emulator.set_faults(FaultConfig())
    print(f"\n3 cycles through {faults} (and timeouts) in {time.monotonic() - clock:.1f} s")
    assert faults.get("503", 0) > 0
    cycle(world_bot, gateway_factory=patient_gateway)
    assert not Order.objects.filter(bot=world_bot, status="pending").exists()
    assert_orders_map_one_to_one(frozen_emulator, world_bot)


def test_a_create_whose_reply_is_lost_is_resolved_by_client_id_never_resent(world_bot: Bot,
                                                                           frozen_emulator: Any) -> None:
    frozen_emulator.set_faults(FaultConfig(lost_reply_rate=1.0))  # every placement applied, its reply a 504
    started_engine(world_bot)
    rows = list(Order.objects.filter(bot=world_bot))
    assert rows and frozen_emulator.faults_served["lost_reply"] == len(rows)
    attempts = frozen_emulator.placement_attempts()
    for row in rows:
        assert attempts[row.client_order_id] == 1, f"{row.client_order_id} was sent {attempts[row.client_order_id]}x"
        assert row.status == "open" and row.exchange_order_id, f"{row.client_order_id} left {row.status}"
    assert_orders_map_one_to_one(frozen_emulator, world_bot)


def rejected_rows_and_event(bot: Bot, server: Any, error_class: str) -> tuple[list[Order], RiskEvent]:
    rejected = list(Order.objects.filter(bot=bot, status="rejected"))
    assert rejected, f"no order was rejected with {error_class}"
    attempts = server.placement_attempts()
    for row in rejected:
        assert row.error.startswith(error_class), row.error
        assert attempts[row.client_order_id] == 1, f"{row.client_order_id} was retried"
    events = list(RiskEvent.objects.filter(bot=bot, action_taken="not_retried"))
    assert len(events) == 1, "the rejection is not visible to the operator (or not once)"
    assert error_class in events[0].message
    return rejected, events[0]


def test_insufficient_funds_is_rejected_not_retried_and_alerted(world_bot: Bot, frozen_emulator: Any) -> None:
    # someone else's order on the shared key locks 59,400 of the 60,000 USDT: the bot's bids cannot be funded
    account = account_id_of(frozen_emulator, EMULATOR_KEY)
    frozen_emulator.call(lambda: frozen_emulator.engine.place_order(
        account, "BTC/USDT", "BUY", "LIMIT", Decimal("1.98"), Decimal("30000"), client_order_id="manual-1",
        now_ms=int(time.time() * 1000)))
    started_engine(world_bot)
    rejected, event = rejected_rows_and_event(world_bot, frozen_emulator, "InsufficientFundsError")
    assert {r.side for r in rejected} == {"buy"}
    assert Order.objects.filter(bot=world_bot, side="sell", status="open").exists(), "asks are funded"
    cycle(world_bot)  # the same refusal next cycle: new orders, each sent once, no second event
    assert Order.objects.filter(bot=world_bot, status="rejected").count() > len(rejected)
    rejected_rows_and_event(world_bot, frozen_emulator, "InsufficientFundsError")
    assert RiskEvent.objects.filter(bot=world_bot, action_taken="not_retried").count() == 1
    print(f"\nInsufficientFunds: {Order.objects.filter(bot=world_bot, status='rejected').count()} bids rejected "
          f"and not retried; risk log: {event.message[:90]!r}")


def test_invalid_order_is_rejected_not_retried_and_alerted(world_bot: Bot, frozen_emulator: Any,
                                                           settings: Any) -> None:
    settings.MARKET_DATA_CACHE_SECS = 60.0  # the engine quotes on the book it cached before the jump
    started_engine(world_bot)
    account = account_id_of(frozen_emulator, EMULATOR_KEY)
    frozen_emulator.call(lambda: frozen_emulator.engine.cancel_all(account, "BTC/USDT"))
    move_mid(frozen_emulator, "1.03")
    cycle(world_bot)
    # its post-only asks at the old prices would take liquidity now: the venue rejects them
    rejected, event = rejected_rows_and_event(world_bot, frozen_emulator, "InvalidOrderError")
    assert {r.side for r in rejected} == {"sell"}
    print(f"\nInvalidOrder: {len(rejected)} post-only asks rejected and not retried; "
          f"risk log: {event.message[:90]!r}")
    assert_orders_map_one_to_one(frozen_emulator, world_bot)


def test_authentication_failure_disables_the_bot(world_bot: Bot, frozen_emulator: Any, celery_queue: str) -> None:
    started_engine(world_bot)
    chain = new_chain(world_bot.pk)
    assert tasks.run_cycle(world_bot.pk, world_bot.epoch, chain, None) == "ok"
    wrong_secret = "rotated-on-the-venue-0123456789"
    account = world_bot.exchange_accounts.get()
    account.set_credentials(api_key=EMULATOR_KEY, api_secret=wrong_secret)
    account.save()
    requests_before = frozen_emulator.request_count
    assert tasks.run_cycle(world_bot.pk, world_bot.epoch, chain, None) == "auth-error"
    bot = Bot.objects.get(pk=world_bot.pk)
    print(f"\nauthentication failure -> {bot.status}: {bot.last_error!r}")
    assert bot.status == BotStatus.ERROR
    assert bot.last_error.startswith("authentication failed, bot disabled: ")
    assert "Traceback" not in bot.last_error and wrong_secret not in bot.last_error
    assert BotEvent.objects.filter(bot=bot, event_type="BotError").exists()
    # disabled: the chain ends, a late cycle of it does nothing
    assert tasks.run_cycle(world_bot.pk, world_bot.epoch, chain, None) == "fenced"
    assert frozen_emulator.request_count - requests_before < 20
    assert {o.client_order_id for o in exchange_orders(frozen_emulator)} <= set(
        Order.objects.filter(bot=bot).values_list("client_order_id", flat=True))
