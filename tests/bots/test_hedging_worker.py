"""Issue 15 item 5 end to end: a bot quotes BTC/USDT on a Binance-dialect emulator process and hedges each
fill there with an IOC on an OKX-dialect emulator process (ccxt's real classes), run by a real Celery
worker. The markets are frozen: the test moves them through the emulators' admin API.

* a fill: hedged once on the hedge venue, booked in its position; the aggregated inventory stays flat
  (the hedge's fee in base aside) and the net P&L equals what the two accounts' balances gained, to the
  cent (exactly, on Postgres);
* a slippage breach (the hedge venue's book beyond the limit): a risk event, the maker venue's quotes
  cancelled and none placed, until the book comes back and a retry fills it within the limit;
* a failed hedge (the hedge venue answers 503 to everything): a risk event, the maker venue halted — still
  halted after the worker is killed (-9) and another one takes over — until an operator accepts the
  exposure; the maker venue quotes again while the hedge venue is still down;
* the kill switch leaves no order on either venue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bots import quoting, services
from bots.engine.gateways import warm_up
from bots.models import Bot, BotStatus, Fill, Hedge, HedgeStatus, LiquidityPosition
from exchanges.registry import clear_gateway_cache
from risk.models import RiskEvent
from tests.bots.test_multi_venue_worker import PAIR, VenueProcess
from tests.processes import start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MAKER, HEDGE = "binance", "okx"


@pytest.fixture
def venues() -> Iterator[dict[str, VenueProcess]]:
    started: dict[str, VenueProcess] = {}
    try:
        for venue in (MAKER, HEDGE):
            started[venue] = VenueProcess(venue, market_step_ms=0)  # moves only when the test moves it
        yield started
    finally:
        for process in started.values():
            process.proc.stop()
        clear_gateway_cache()


def resting(process: VenueProcess) -> list[dict[str, Any]]:
    return process.open_orders()


def sides(process: VenueProcess) -> list[str]:
    return sorted(o["side"].lower() for o in resting(process))


def hedges(bot: Bot, status: str) -> list[Hedge]:
    return list(Hedge.objects.filter(bot=bot, status=status).select_related("fill").order_by("pk"))


def balances(venues: dict[str, VenueProcess]) -> dict[str, dict[str, Decimal]]:
    return {v: {a: p.balance(a) for a in ("BTC", "USDT")} for v, p in venues.items()}


def net_pnl(bot: Bot, mark: Decimal) -> Decimal:
    return sum((p.realised_pnl_quote + p.unrealised_pnl_quote(mark) - p.fees_paid_quote
                for p in LiquidityPosition.objects.filter(bot=bot)), Decimal(0))


def gained(before: dict[str, dict[str, Decimal]], after: dict[str, dict[str, Decimal]], mark: Decimal) -> Decimal:
    """What the accounts' balances gained, base valued at ``mark``: the venues' own account of every trade."""
    return sum(((after[v]["BTC"] - before[v]["BTC"]) * mark + after[v]["USDT"] - before[v]["USDT"] for v in before),
               Decimal(0))


def take_the_ask(venues: dict[str, VenueProcess], mid: str) -> None:
    """The maker venue's market jumps through the bot's ask: the ask is taken, the bot sold."""
    wait_until(lambda: sides(venues[MAKER]) == ["buy", "sell"], 30, message="no bid and ask on the maker venue")
    venues[MAKER].admin("POST", "mid", symbol=PAIR, mid=mid)


def test_hedging_a_fill_a_slippage_breach_and_a_failed_hedge_through_a_real_worker(
        world_a: Any, venues: dict[str, VenueProcess], celery_queue: str) -> None:
    accounts = {venue: process.account(world_a) for venue, process in venues.items()}
    bot = world_a.bot
    bot.exchange_accounts.set(accounts.values())
    for name, value in {"trading_pairs": PAIR, "grid_levels": 1, "order_size_quote": Decimal("500"),
                        "spread_bps": 10.0, "min_spread_bps": 2.0, "maker_fee_bps": 0.0,
                        "monitoring_interval_secs": 0.5, "error_recovery_delay_secs": 0.5,
                        "adaptation_enabled": False, "metrics_interval_secs": 1.0,
                        "max_position_quote": Decimal("1000000"), "default_rebalance_threshold": 1.0,
                        "inventory_deviation_limit": 1.0, "hedge_enabled": True, "hedge_account": accounts[HEDGE],
                        "hedge_max_slippage_bps": 20.0}.items():
        setattr(bot, name, value)
    bot.save()
    before = balances(venues)
    worker = start_worker("worker-hedge")
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.RUNNING, 60, message="not RUNNING")
        assert LiquidityPosition.objects.filter(bot=bot).count() == 2, "a position on the hedge account too"

        # 1. a fill on the maker venue: hedged on the hedge venue within the limit, booked with the position
        take_the_ask(venues, "60300")
        (done,) = wait_until(lambda: hedges(bot, HedgeStatus.HEDGED), 30, message="the fill was not hedged")
        maker_fill = done.fill
        assert maker_fill.side == "sell" and maker_fill.exchange_account_id == accounts[MAKER].pk
        assert (done.side, done.amount, done.hedged) == ("buy", maker_fill.amount, maker_fill.amount)
        hedge_fills = wait_until(lambda: list(Fill.objects.filter(bot=bot, is_hedge=True)), 15,
                                 message="the hedge's fills were not booked")
        assert {f.exchange_account_id for f in hedge_fills} == {accounts[HEDGE].pk}
        assert sum(f.amount for f in hedge_fills) == maker_fill.amount
        assert all(f.side == "buy" and f.price <= done.limit_price <= maker_fill.price * Decimal("1.002")
                   for f in hedge_fills)
        assert resting(venues[HEDGE]) == [], "the hedge account quotes nothing"
        base = {p.exchange_account_id: p.base_position for p in LiquidityPosition.objects.filter(bot=bot)}
        assert sum(base.values()) == -sum(f.fee for f in hedge_fills if f.fee_currency == "BTC"), "flat"
        mark = Decimal("60321.17")
        assert net_pnl(bot, mark).quantize(Decimal("0.01")) == gained(before, balances(venues), mark).quantize(
            Decimal("0.01"))
        if connection.vendor == "postgresql":  # exactly (SQLite keeps decimal columns as floats)
            assert net_pnl(bot, mark) == gained(before, balances(venues), mark)

        # 2. a slippage breach: the hedge venue's asks are far above the limit when the next fill comes
        venues[HEDGE].admin("POST", "mid", symbol=PAIR, mid="61000")
        take_the_ask(venues, "60600")
        (breach,) = wait_until(lambda: hedges(bot, HedgeStatus.SLIPPAGE), 30, message="no slippage breach")
        event = RiskEvent.objects.get(bot=bot, event_type="HEDGE_SLIPPAGE")
        assert Decimal(event.details["unhedged_base"]) == breach.amount and breach.hedged == 0
        wait_until(lambda: resting(venues[MAKER]) == [], 15, message="the maker venue still quotes")
        cycles = Bot.objects.get(pk=bot.pk).cycle_count
        wait_until(lambda: Bot.objects.get(pk=bot.pk).cycle_count > cycles + 4, 30, message="the bot stopped cycling")
        assert resting(venues[MAKER]) == [], "a halted maker venue placed quotes"
        assert f"{PAIR} @ {MAKER}-desk" in quoting.current([bot.pk]).get(bot.pk, {})
        # the book comes back within the limit: a retry fills it and the maker venue quotes again
        venues[HEDGE].admin("POST", "mid", symbol=PAIR, mid="60300")
        wait_until(lambda: Hedge.objects.get(pk=breach.pk).status == HedgeStatus.HEDGED, 30,
                   message="the retry did not resolve the breach")
        assert RiskEvent.objects.filter(bot=bot, event_type="HEDGE_RESOLVED").count() == 1
        wait_until(lambda: sides(venues[MAKER]) == ["buy", "sell"], 30, message="the maker venue did not resume")

        # 3. a failed hedge: every request to the hedge venue fails
        venues[HEDGE].admin("POST", "faults", error_rate=1.0)
        take_the_ask(venues, "60900")
        (failed,) = wait_until(lambda: hedges(bot, HedgeStatus.FAILED), 60, message="no failed hedge")
        assert RiskEvent.objects.filter(bot=bot, event_type="HEDGE_FAILED").count() == 1
        wait_until(lambda: resting(venues[MAKER]) == [], 15, message="the maker venue still quotes")
        # the halt is the row's: a worker killed -9 and another one taking over still quote nothing there
        worker.kill9()
        worker = start_worker("worker-hedge-2")
        since = time.time()
        wait_until(lambda: (Bot.objects.get(pk=bot.pk).last_cycle_finished_at or 0) and Bot.objects.get(
            pk=bot.pk).last_cycle_finished_at.timestamp() > since + 3, 60, message="the new worker does not cycle")
        assert resting(venues[MAKER]) == [], "the halt did not survive the restart"
        assert Hedge.objects.get(pk=failed.pk).status == HedgeStatus.FAILED
        assert RiskEvent.objects.filter(bot=bot, event_type="HEDGE_FAILED").count() == 1, "one event per failure"
        # an operator accepts the exposure: the maker venue quotes again, the hedge venue still down
        services.bot_resolve_hedges(bot=bot, user=world_a.operator, action="accept")
        wait_until(lambda: sides(venues[MAKER]) == ["buy", "sell"], 30, message="quoting did not resume on accept")
        assert Hedge.objects.get(pk=failed.pk).status == HedgeStatus.ACCEPTED
        venues[HEDGE].admin("POST", "faults", error_rate=0.0)

        # the kill switch: nothing left on either venue; the P&L is still the balances' to the cent
        warm_up()
        services.bot_kill(bot=bot, user=world_a.operator)
        assert resting(venues[MAKER]) == [] and resting(venues[HEDGE]) == []
        after = balances(venues)
        assert net_pnl(bot, mark).quantize(Decimal("0.01")) == gained(before, after, mark).quantize(Decimal("0.01"))
        base = {p.exchange_account_id: p.base_position for p in LiquidityPosition.objects.filter(bot=bot)}
        assert sum(base.values()) < 0, "the accepted exposure: the bot is short what the failed hedge did not buy"
    finally:
        worker.stop()
        quoting.forget(bot)
