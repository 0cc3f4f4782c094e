"""Cross-venue hedging's pure decisions (risk/hedging.py): what a maker fill owes, the IOC's limit, the
split of a rounded size into what is sent and what is carried, and what an IOC's answer means."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk import hedging

D = Decimal


@pytest.mark.parametrize(("side", "amount", "fee", "fee_currency", "need"), [
    ("sell", "0.5", "30", "USDT", "0.5"),  # sold 0.5 BTC on the maker venue: the hedge buys 0.5
    ("buy", "0.5", "0.0005", "BTC", "-0.4995"),  # bought 0.5, paid 0.0005 of it as fee: sells what came in
    ("buy", "0.5", "0", "", "-0.5"),
    ("sell", "0.5", "0.0005", "BTC", "0.5005"),  # a base fee on a sale left with the sale
    ("buy", "0.5", "0.2", "BNB", "-0.5"),  # a third asset's fee moves no base
])
def test_a_fill_owes_the_base_it_moved(side: str, amount: str, fee: str, fee_currency: str, need: str) -> None:
    assert hedging.hedge_need(side=side, amount=D(amount), fee=D(fee), fee_currency=fee_currency,
                              base="BTC") == D(need)


@pytest.mark.parametrize(("side", "reference", "bps", "limit"), [
    ("buy", "60000", 20.0, "60120"),  # pays at most 20 bps above the maker fill's price
    ("sell", "60000", 20.0, "59880"),  # receives at least 20 bps below it
    ("buy", "0.5", 1.5, "0.500075"),
])
def test_the_limit_is_the_fill_price_plus_or_minus_the_slippage(side: str, reference: str, bps: float,
                                                                 limit: str) -> None:
    assert hedging.limit_price(side, D(reference), bps) == D(limit)


@pytest.mark.parametrize(("signed", "rounded", "price", "send", "amount", "carry"), [
    ("0.01665", "0.01665", "60000", True, "0.01665", "0"),  # on the lot: all of it
    ("0.0166433", "0.01664", "60000", True, "0.01664", "0.0000033"),  # below the lot: carried
    ("-0.0166433", "0.01664", "60000", True, "0.01664", "-0.0000033"),  # a sell carries a negative rest
    ("0.008", "0", "60000", False, "0", "0.008"),  # rounds to nothing: all carried
    ("0.00008", "0.00008", "60000", False, "0", "0.00008"),  # 4.8 USDT: under the 5 USDT minimum notional
    ("0.00001", "0.00001", "600000", True, "0.00001", "0"),
])
def test_a_rounded_size_is_sent_and_the_rest_carried(signed: str, rounded: str, price: str, send: bool,
                                                     amount: str, carry: str) -> None:
    plan = hedging.plan(D(signed), rounded_amount=D(rounded), rounded_price=D(price), min_amount=D("0.00001"),
                        min_notional=D("5"))
    assert (plan.send, plan.amount, plan.carry) == (send, D(amount), D(carry))
    assert plan.side == ("buy" if D(signed) > 0 else "sell")


@given(st.decimals(min_value=D("-10"), max_value=D("10"), places=8).filter(lambda d: d != 0),
       st.sampled_from([D("0.00001"), D("0.001"), D("0.01")]))
def test_nothing_is_lost_between_what_is_sent_and_what_is_carried(signed: Decimal, lot: Decimal) -> None:
    rounded = (abs(signed) / lot).to_integral_value(rounding="ROUND_FLOOR") * lot
    plan = hedging.plan(signed, rounded_amount=rounded, rounded_price=D("100"), min_amount=lot, min_notional=D("5"))
    sent = plan.amount if plan.side == "buy" else -plan.amount
    assert sent + plan.carry == signed
    assert abs(plan.carry) < lot or not plan.send
    assert plan.amount == 0 or plan.amount % lot == 0


@pytest.mark.parametrize(("amount", "filled", "hedged", "unfilled"), [
    ("0.5", "0.5", True, "0"),
    ("0.5", "0.2", False, "0.3"),  # partly filled: the book moved beyond the limit
    ("0.5", "0", False, "0.5"),
])
def test_an_ioc_answer_is_hedged_or_a_slippage_breach(amount: str, filled: str, hedged: bool, unfilled: str) -> None:
    result = hedging.outcome(amount=D(amount), filled=D(filled), limit=D("60120.00"), side="buy")
    assert (result.hedged, result.unfilled) == (hedged, D(unfilled))
    if not hedged:
        assert "limited to 60120" in result.reason and "asks at or below" in result.reason
