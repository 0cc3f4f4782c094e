"""The accounting identity, exactly: realised + unrealised − fees equals the mark-to-market change of
the balances that the same fills produced, recomputed independently from the trade list (every
balance valued at the same mid, in quote). Random fill sequences: buys and sells, partial fills of
one order, fees in base and in quote, flips through flat and exact returns to flat."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.accounting import PositionAccount, apply_fill

BASE, QUOTE, THIRD = "BTC", "USDT", "BNB"


@dataclass(frozen=True)
class Trade:
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_currency: str


def balance_change(trades: list[Trade], mid: Decimal, third_price: Decimal = Decimal(0)) -> Decimal:
    """What the trades did to the account, valued at ``mid``: the venue's view, no accounting."""
    base = quote = third = Decimal(0)
    for t in trades:
        sign = 1 if t.side == "buy" else -1
        base += sign * t.amount
        quote -= sign * t.amount * t.price
        if t.fee_currency == BASE:
            base -= t.fee
        elif t.fee_currency == QUOTE:
            quote -= t.fee
        elif t.fee_currency == THIRD:
            third -= t.fee
    return base * mid + quote + third * third_price


prices = st.integers(min_value=1, max_value=10_000_000).map(lambda n: Decimal(n).scaleb(-2))  # 0.01 .. 100,000
amounts = st.integers(min_value=1, max_value=5_000_000).map(lambda n: Decimal(n).scaleb(-6))  # 1e-6 .. 5
fee_rates = st.sampled_from([Decimal(0), Decimal("0.001"), Decimal("0.00075"), Decimal("0.0002"), Decimal("-0.0001")])


@st.composite
def fill_sequences(draw: st.DrawFn, fee_currencies: tuple[str, ...] = (BASE, QUOTE, "")) -> list[Trade]:
    trades: list[Trade] = []
    position = Decimal(0)  # the base the sequence has moved so far, to aim flips and returns to flat
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        kind = draw(st.sampled_from(["random", "random", "flat", "flip", "partials"]))
        side = draw(st.sampled_from(["buy", "sell"]))
        amount = draw(amounts)
        if kind in ("flat", "flip") and position != 0:
            side = "sell" if position > 0 else "buy"
            amount = abs(position) + (amount if kind == "flip" else 0)
        price = draw(prices)
        pieces = [amount]
        if kind == "partials" and amount > Decimal("0.00001"):  # one order filled in several trades
            cut = (amount * Decimal(draw(st.integers(min_value=1, max_value=99))) / 100).quantize(Decimal("1e-6"))
            if 0 < cut < amount:
                pieces = [cut, amount - cut]
        for piece in pieces:
            currency = draw(st.sampled_from(fee_currencies))
            rate = draw(fee_rates)
            fee = Decimal(0)
            if currency == BASE:
                fee = (piece * rate).quantize(Decimal("1e-8"))
            elif currency == QUOTE:
                fee = (piece * price * rate).quantize(Decimal("1e-8"))
            elif currency == THIRD:
                fee = (piece * rate * 10).quantize(Decimal("1e-8"))
            trades.append(Trade(side, price, piece, fee, currency))
            position += (piece if side == "buy" else -piece) - (fee if currency == BASE else 0)
    return trades


def run(trades: list[Trade], **extra: Decimal) -> PositionAccount:
    account = PositionAccount()
    for t in trades:
        account = apply_fill(account, side=t.side, price=t.price, amount=t.amount, fee=t.fee,
                             fee_currency=t.fee_currency, base=BASE, quote=QUOTE, **extra)
    return account


@settings(max_examples=400, deadline=None)
@given(fill_sequences(), prices)
def test_pnl_equals_the_mark_to_market_change_of_the_balances(trades: list[Trade], mid: Decimal) -> None:
    account = run(trades)
    assert account.net_pnl_quote(mid) == balance_change(trades, mid)
    # and the position is the base the fills moved (fees in base included)
    assert account.base_position == balance_change(trades, Decimal(1)) - balance_change(trades, Decimal(0))


@settings(max_examples=200, deadline=None)
@given(fill_sequences(fee_currencies=(BASE,)), prices)
def test_fees_in_base_on_every_fill(trades: list[Trade], mid: Decimal) -> None:
    account = run(trades)
    assert account.net_pnl_quote(mid) == balance_change(trades, mid)
    # each fee counted once, at its fill price
    assert account.fees_paid_quote == sum((t.fee * t.price for t in trades), Decimal(0))


@settings(max_examples=200, deadline=None)
@given(fill_sequences(fee_currencies=(BASE, QUOTE, THIRD)), prices, prices)
def test_a_third_asset_fee_valued_at_a_given_price(trades: list[Trade], mid: Decimal, bnb: Decimal) -> None:
    account = run(trades, fee_price_quote=bnb)
    assert account.net_pnl_quote(mid) == balance_change(trades, mid, third_price=bnb)


def test_the_measured_cases_of_issue_13() -> None:
    """Fees in base on buys that cover a short and come back through flat (where the fee was counted
    twice: once as a fee, once more as a short opened at no cost), and on plain buys."""
    short = Trade("sell", Decimal("100"), Decimal("2"), Decimal("0.2"), QUOTE)
    cover = [Trade("buy", Decimal("90"), Decimal("1"), Decimal("0.001"), BASE),
             Trade("buy", Decimal("95"), Decimal("1"), Decimal("0.001"), BASE)]
    buys = [Trade("buy", Decimal("100") + i, Decimal("0.5"), Decimal("0.0005"), BASE) for i in range(12)]
    flip = Trade("sell", Decimal("99"), Decimal("7.5"), Decimal("0.0075"), BASE)
    for trades in ([short, *cover], buys, [*buys, flip]):
        account = run(trades)
        for mid in (Decimal("90"), Decimal("100.5"), Decimal("120")):
            assert account.net_pnl_quote(mid) == balance_change(trades, mid), (trades, mid)
    covered = run([short, *cover])
    assert covered.base_position == Decimal("-0.002")  # the fees in base: the account is short of them
    assert covered.fees_paid_quote == Decimal("0.2") + Decimal("0.09") + Decimal("0.095")  # once each


@pytest.mark.django_db
def test_the_migration_recomputes_existing_positions_from_their_fills(world_a: Any) -> None:
    """Rows written by the old accounting (the fee in base booked twice through flat) are replayed."""
    import importlib
    from datetime import UTC, datetime, timedelta

    from django.apps import apps

    from bots.models import Fill, LiquidityPosition

    migration = importlib.import_module("bots.migrations.0003_position_cost_basis")
    position = LiquidityPosition.objects.create(
        tenant=world_a.tenant, bot=world_a.bot, exchange_account=world_a.account, trading_pair="BTC/USDT",
        base_position=Decimal("-0.002"), average_cost=Decimal(0), realised_pnl_quote=Decimal("15"),
        fees_paid_quote=Decimal("1"), volume_quote=Decimal("385"), fill_count=3)
    trades = [Trade("sell", Decimal("100"), Decimal("2"), Decimal("0.2"), QUOTE),
              Trade("buy", Decimal("90"), Decimal("1"), Decimal("0.001"), BASE),
              Trade("buy", Decimal("95"), Decimal("1"), Decimal("0.001"), BASE)]
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for n, t in enumerate(trades):
        Fill.objects.create(tenant=world_a.tenant, bot=world_a.bot, position=position, exchange_account=world_a.account,
                            exchange_trade_id=str(9 - n if n else 10), trading_pair="BTC/USDT", side=t.side,
                            price=t.price, amount=t.amount, fee=t.fee, fee_currency=t.fee_currency,
                            executed_at=start + timedelta(seconds=n))
    migration.replay_fills(apps, None)
    position.refresh_from_db()
    expected = run(trades)
    assert (position.base_position, position.cost_basis_quote, position.realised_pnl_quote,
            position.fees_paid_quote, position.fill_count) == (
        expected.base_position, expected.cost_basis_quote, expected.realised_pnl_quote,
        expected.fees_paid_quote, 3)
    mid = Decimal("97")
    net = position.realised_pnl_quote + position.unrealised_pnl_quote(mid) - position.fees_paid_quote
    assert net == balance_change(trades, mid)
