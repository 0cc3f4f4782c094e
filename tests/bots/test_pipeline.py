"""The one decide -> check -> diff step (strategies/pipeline.py): the same decisions as the engine's
former inline chain on recorded inputs, and the only place the live engine decides (pure: no database)."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk import checks
from risk.limits import RiskLimits
from strategies import pipeline
from strategies.base import diff_orders
from strategies.config import STRATEGY_TYPES, OrderConfig, StrategyConfig
from strategies.selection import create_strategy
from strategies.types import BUY, SELL, LiveOrder, MarketSnapshot, OrderIntent, RiskContext
from tests.strategies.conftest import inventory_for, snapshots

ROOT = Path(__file__).resolve().parents[2]
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(kind: str, volatility_daily: float):
    strategy = create_strategy(kind, "BTC/USDT", None, StrategyConfig(grid_levels=3, inventory_skew_bps=50.0),
                               OrderConfig(maker_fee_bps=10.0, min_spread_bps=5.0, order_size_quote=100.0))
    strategy.parameters = dataclasses.replace(
        strategy.parameters, volatility_daily=volatility_daily,
        volatility_bps_per_sqrt_sec=volatility_daily * 1e4 / math.sqrt(86400))
    return strategy


def former_chain(strategy, inputs: pipeline.DecisionInputs, value: float):
    """The live engine's decide -> check -> diff as ``MarketMakingBot.decide_quotes`` spelled it out
    inline before the pipeline existed (bots/engine/core.py at 9c1688a), step for step."""
    intents = strategy.calculate_orders(inputs.snapshot, inputs.inventory, inputs.risk)
    if inputs.reduction.side:
        intents = checks.reduce_growing_side(intents, inputs.reduction.side, inputs.reduction.factor,
                                             inputs.rules.min_order_size_quote)

    def valid_order(i) -> bool:
        if i.size <= 0 or i.price <= 0:
            return False
        notional = i.size * i.price
        if notional < inputs.rules.min_order_size_quote * (1 - 1e-9):
            return False
        return notional <= inputs.rules.max_order_size_quote * (1 + 1e-9)

    valid = [i for i in intents if valid_order(i)]
    result = checks.check_intents(valid, inputs.limits, checks.PreTradeContext(
        inputs.snapshot.mid, value, inputs.others_open, inputs.rules.min_order_size_quote,
        inputs.rules.max_order_size_quote))
    diff = diff_orders(list(inputs.live), result.allowed, tolerance_bps=inputs.rules.order_refresh_tolerance_bps,
                       refresh_secs=inputs.rules.order_refresh_secs, now=inputs.now)
    return intents, valid, result, diff


@st.composite
def live_orders(draw: st.DrawFn, snapshot: MarketSnapshot) -> tuple[LiveOrder, ...]:
    """Resting quotes near the mid, some within the refresh tolerance of a new quote, some old."""
    mid = snapshot.mid
    orders = []
    for n in range(draw(st.integers(0, 6))):
        side = draw(st.sampled_from([BUY, SELL]))
        offset = draw(st.floats(0.0, 0.02))
        price = mid * (1 - offset) if side == BUY else mid * (1 + offset)
        orders.append(LiveOrder(f"c{n}", side, price, draw(st.floats(0.001, 10.0)), draw(st.integers(0, 3)),
                                placed_at=snapshot.now - draw(st.floats(0.0, 120.0))))
    return tuple(orders)


@st.composite
def recorded_inputs(draw: st.DrawFn) -> tuple[str, float, pipeline.DecisionInputs, float]:
    snapshot = draw(snapshots())
    ratio = draw(st.floats(0.05, 0.95))
    inventory = inventory_for(snapshot, ratio, total_quote=draw(st.sampled_from([500.0, 1e4, 1e7])))
    limits = RiskLimits(max_position_quote=draw(st.sampled_from([100.0, 5e3, 1e9])),
                        max_open_orders=draw(st.integers(1, 12)),
                        price_collar_bps=draw(st.sampled_from([5.0, 50.0, 500.0])))
    rules = pipeline.QuotingRules(min_order_size_quote=draw(st.sampled_from([10.0, 100.0])),
                                  max_order_size_quote=draw(st.sampled_from([150.0, 5000.0])),
                                  order_refresh_tolerance_bps=draw(st.sampled_from([0.0, 5.0, 50.0])),
                                  order_refresh_secs=draw(st.sampled_from([10.0, 60.0])))
    reduction = draw(st.sampled_from([pipeline.SideReduction(), pipeline.SideReduction(BUY, 0.5),
                                      pipeline.SideReduction(SELL, 0.2)]))
    value = inventory.base_value_quote * draw(st.sampled_from([1.0, 0.9, 1.1]))  # assessed at an older mid
    inputs = pipeline.DecisionInputs(
        snapshot=snapshot, inventory=inventory,
        risk=RiskContext(min_order_size_quote=rules.min_order_size_quote,
                         max_order_size_quote=rules.max_order_size_quote,
                         max_position_quote=limits.max_position_quote,
                         spread_multiplier=draw(st.sampled_from([1.0, 2.0]))),
        limits=limits, rules=rules, live=draw(live_orders(snapshot)), others_open=draw(st.integers(0, 10)),
        now=snapshot.now, reduction=reduction, position_value_quote=value)
    return draw(st.sampled_from(STRATEGY_TYPES)), draw(st.sampled_from([0.01, 0.05, 0.2])), inputs, value


@PROPERTY
@given(case=recorded_inputs())
def test_the_pipeline_decides_as_the_former_inline_chain(case) -> None:
    kind, volatility, inputs, value = case
    intents, valid, result, diff = former_chain(build(kind, volatility), inputs, value)
    strategy = build(kind, volatility)
    decision = pipeline.decide(strategy, inputs)
    assert list(decision.intents) == list(intents)
    assert list(decision.valid) == valid
    # the one step added since: a placement that would cross one of the bot's kept quotes is denied
    crossing = [d for d in decision.denied if d.code == checks.SELF_TRADE]
    assert [d for d in decision.denied if d.code != checks.SELF_TRADE] == result.denied
    assert decision.allowed == [i for i in result.allowed if all(i is not d.intent for d in crossing)]
    assert decision.diff == dataclasses.replace(diff, place=[i for i in diff.place
                                                             if all(i is not d.intent for d in crossing)])
    for denial in crossing:
        kept = [o.price for o in decision.diff.keep if o.side != denial.intent.side]
        assert kept and (max(kept) <= denial.intent.price * (1 + 1e-9) if denial.intent.side == SELL
                         else min(kept) >= denial.intent.price * (1 - 1e-9))
    assert decision.pause_reason == strategy.pause_reason
    assert set(decision.diff.place) <= set(decision.allowed)
    assert {o.order_id for o in decision.diff.keep} | {o.order_id for o in decision.diff.cancel} == {
        o.order_id for o in inputs.live}


def test_a_denial_carries_its_reason_and_a_reduction_shrinks_the_growing_side() -> None:
    snapshot = MarketSnapshot("BTC/USDT", 99.99, 100.01, 1000.0, tick_size=0.01, lot_size=1e-8)
    inventory = inventory_for(snapshot, 0.5, total_quote=1e5)
    rules = pipeline.QuotingRules(10.0, 5000.0, 5.0, 60.0)
    base = pipeline.DecisionInputs(snapshot, inventory, RiskContext(10.0, 5000.0, 1e9), RiskLimits(max_open_orders=2),
                                   rules, live=(), others_open=1, now=1000.0)
    strategy = build("INVENTORY_BASED", 0.02)
    decision = pipeline.decide(strategy, base)
    assert len(decision.allowed) == 1 and decision.denied
    assert all("max_open_orders 2 reached" in d.reason for d in decision.denied)
    assert decision.diff.place == decision.allowed

    reduced = pipeline.decide(strategy, dataclasses.replace(base, reduction=pipeline.SideReduction(BUY, 0.5),
                                                            limits=RiskLimits()))
    plain = pipeline.decide(strategy, dataclasses.replace(base, limits=RiskLimits()))
    bids = {i.level: i.size for i in plain.intents if i.side == BUY}
    assert bids and all(math.isclose(i.size, bids[i.level] * 0.5) for i in reduced.intents if i.side == BUY)
    assert [i for i in reduced.intents if i.side == SELL] == [i for i in plain.intents if i.side == SELL]


def calls_in(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_the_pipeline_is_the_one_place_the_live_engine_decides() -> None:
    """No module of the live platform calls a step of the decision itself: it calls pipeline.decide."""
    steps = {"calculate_orders", "check_intents", "reduce_growing_side", "diff_orders", "self_trade_denials"}
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for top in ("bots", "exchanges", "mmplatform", "dashboard", "risk")
        for path in (ROOT / top).rglob("*.py")
        for name in calls_in(path) & steps
    }
    assert offenders == set()
    assert "decide" in calls_in(ROOT / "bots" / "engine" / "quotes.py")


# --- no self-trades ------------------------------------------------------------------------------------


def resting(side: str, price: float, owner: str = "bot 2") -> checks.RestingOrder:
    return checks.RestingOrder(side, price, owner)


def intent(side: str, price: float, level: int = 0) -> OrderIntent:
    return OrderIntent(side, price, 1.0, level, post_only=False)


@pytest.mark.parametrize(("intents", "rest", "allowed_prices", "reason"), [
    # a bid at or above the account's lowest resting ask (locked counts) is denied; below it is fine
    ([intent(BUY, 100.0)], [resting(SELL, 100.0)], [], "bid 100 would trade with the account's own resting ask 100 "
                                                      "(bot 2)"),
    ([intent(BUY, 100.5)], [resting(SELL, 100.0), resting(SELL, 101.0)], [], "resting ask 100 (bot 2)"),
    ([intent(BUY, 99.99)], [resting(SELL, 100.0)], [99.99], ""),
    # an ask at or below the highest resting bid
    ([intent(SELL, 99.0)], [resting(BUY, 99.5, "this bot")], [], "ask 99 would trade with the account's own "
                                                                  "resting bid 99.5 (this bot)"),
    ([intent(SELL, 99.6)], [resting(BUY, 99.5)], [99.6], ""),
    # orders on the same side never trade with each other
    ([intent(BUY, 100.0)], [resting(BUY, 101.0)], [100.0], ""),
    # two new orders of one decision that would cross: the second (by level, then side) is denied
    ([intent(BUY, 101.0), intent(SELL, 100.0)], [], [101.0], "ask 100 would trade with the account's own resting "
                                                              "bid 101 (this bot)"),
    ([intent(BUY, 99.0), intent(SELL, 100.0)], [], [99.0, 100.0], ""),
])
def test_a_quote_that_would_cross_the_accounts_own_resting_order_is_denied(
        intents: list[OrderIntent], rest: list[checks.RestingOrder], allowed_prices: list[float], reason: str) -> None:
    allowed, denied = checks.self_trade_denials(intents, rest)
    assert sorted(i.price for i in allowed) == sorted(allowed_prices)
    assert len(allowed) + len(denied) == len(intents)
    assert all(d.code == checks.SELF_TRADE for d in denied)
    if reason:
        assert reason in denied[0].reason
    else:
        assert denied == []


def test_the_pipeline_holds_back_a_quote_crossing_another_bots_order_and_keeps_the_rest() -> None:
    snapshot = MarketSnapshot("BTC/USDT", 99.99, 100.01, 1000.0, tick_size=0.01, lot_size=1e-8)
    inventory = inventory_for(snapshot, 0.5, total_quote=1e5)
    rules = pipeline.QuotingRules(10.0, 5000.0, 5.0, 60.0)
    base = pipeline.DecisionInputs(snapshot, inventory, RiskContext(10.0, 5000.0, 1e9), RiskLimits(), rules, live=(),
                                   others_open=0, now=1000.0)
    strategy = build("GRID_TRADING", 0.02)
    plain = pipeline.decide(strategy, base)
    bids = sorted((i for i in plain.diff.place if i.side == BUY), key=lambda i: -i.price)
    assert len(bids) >= 2 and not plain.denied
    # another bot of the account rests an ask between this bot's best two bids
    other_ask = (bids[0].price + bids[1].price) / 2
    decision = pipeline.decide(strategy, dataclasses.replace(base, account_resting=(resting(SELL, other_ask),)))
    assert [d.intent for d in decision.denied] == [bids[0]]
    assert decision.denied[0].code == checks.SELF_TRADE and "(bot 2)" in decision.denied[0].reason
    assert bids[0] not in decision.diff.place and bids[0] not in decision.allowed
    assert [i for i in plain.diff.place if i is not bids[0]] == decision.diff.place


@PROPERTY
@given(case=recorded_inputs(), data=st.data())
def test_no_placement_ever_crosses_a_resting_order_of_the_account(case, data) -> None:
    kind, volatility, inputs, _ = case
    mid = inputs.snapshot.mid
    others = tuple(resting(data.draw(st.sampled_from([BUY, SELL])), mid * (1 + data.draw(st.floats(-0.01, 0.01))))
                   for _ in range(data.draw(st.integers(0, 4))))
    decision = pipeline.decide(build(kind, volatility), dataclasses.replace(inputs, account_resting=others))
    book = [*others, *(resting(o.side, o.price) for o in decision.diff.keep),
            *(resting(i.side, i.price) for i in decision.diff.place)]
    asks = [o.price for o in book if o.side == SELL]
    bids = [o.price for o in book if o.side == BUY]
    for placed in decision.diff.place:  # (the random resting orders may cross each other: not placements)
        if placed.side == BUY:
            assert all(placed.price < ask * (1 - 1e-12) for ask in asks)
        else:
            assert all(placed.price > bid * (1 + 1e-12) for bid in bids)
    assert set(decision.diff.place) <= set(decision.allowed)


@pytest.mark.parametrize(("side", "price", "rest", "expected"), [
    (BUY, 101.0, [resting(SELL, 100.5), resting(SELL, 102.0)], 100.49),  # one tick short of the own ask
    (BUY, 100.0, [resting(SELL, 100.5)], 100.0),  # reaches no own order: unchanged
    (BUY, 101.0, [resting(BUY, 100.9)], 101.0),  # own bids are not in a buy's way
    (SELL, 99.0, [resting(BUY, 99.5), resting(BUY, 98.0)], 99.51),
    (SELL, 100.0, [resting(BUY, 99.5)], 100.0),
    (BUY, 1.0, [resting(SELL, 0.01)], 0.0),  # nothing left to buy below the account's own ask
])
def test_a_taking_order_stops_a_tick_short_of_the_accounts_own_orders(
        side: str, price: float, rest: list[checks.RestingOrder], expected: float) -> None:
    assert math.isclose(checks.self_trade_limit_price(side, price, rest, 0.01), expected, abs_tol=1e-9)


@pytest.mark.parametrize(("side", "price", "rest", "expected"), [
    # the venue's best ask is 100.2: the limit still reaches it past the account's own ask further up
    (BUY, 101.0, [resting(SELL, 100.5)], 100.49),
    # the account's own ask IS the venue's best ask: a tick short of it takes nothing there
    (BUY, 101.0, [resting(SELL, 100.2)], 0.0),
    # nothing of the account's in the way, but the limit is short of the venue's ask: takes nothing either
    (BUY, 100.1, [], 0.0),
    (SELL, 99.0, [resting(BUY, 99.5)], 99.51),  # the venue's best bid is 99.8: reached
    (SELL, 99.0, [resting(BUY, 99.8)], 0.0),  # the account's own bid is the best bid
    (SELL, 99.0, [resting(SELL, 99.9)], 99.0),  # its own asks are not in a sell's way
])
def test_a_taking_order_passes_on_a_venue_only_where_its_limit_still_reaches_the_best_price(
        side: str, price: float, rest: list[checks.RestingOrder], expected: float) -> None:
    limit = checks.taking_limit_price(side, price, rest, 0.01, best_bid=99.8, best_ask=100.2)
    assert math.isclose(limit, expected, abs_tol=1e-9)


def test_rebalancing_venues_are_ranked_cheapest_first_among_those_that_fund_the_trade() -> None:
    from bots.inventory import VenueOffer, venues_by_price

    offers = [VenueOffer("binance", 59990, 60000, 1.0, 1000.0), VenueOffer("okx", 60290, 60300, 1.0, 1000.0),
              VenueOffer("bybit", 59790, 59800, 0.0, 1000.0), VenueOffer("broke", 59690, 59700, 1.0, 0.0)]
    assert [o.key for o in venues_by_price("buy", offers)] == ["bybit", "binance", "okx"]  # "broke" holds no quote
    assert [o.key for o in venues_by_price("sell", offers)] == ["okx", "binance", "broke"]  # bybit holds no base
