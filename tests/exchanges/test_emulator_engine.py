"""Matching engine: priority, partial fills, IOC, post-only, fees, locks, client ids, conservation."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanges.emulator.engine import (
    BUY,
    GTC,
    IOC,
    POST_ONLY,
    SELL,
    BadParameterError,
    DuplicateOrderError,
    EngineError,
    FilterError,
    InsufficientBalanceError,
    MarketSpec,
    MatchingEngine,
    UnknownOrderError,
    UnknownSymbolError,
    WouldMatchError,
)

BTC = MarketSpec("BTC/USDT", "BTC", "USDT", D("0.01"), D("0.00001"), D("0.00001"), D("5"))
ETH = MarketSpec("ETH/USDT", "ETH", "USDT", D("0.01"), D("0.0001"), D("0.0001"), D("5"))


def make_engine(maker: str = "0.001", taker: str = "0.002", **kwargs) -> MatchingEngine:
    engine = MatchingEngine([BTC, ETH], D(maker), D(taker), **kwargs)
    for name in ("alice", "bob", "carol"):
        engine.create_account(name, {"USDT": D("1000000"), "BTC": D("10"), "ETH": D("100")})
    return engine


def test_price_time_priority_best_price_then_oldest_first():
    engine = make_engine()
    first, _ = engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30000"))
    second, _ = engine.place_order("bob", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30000"))
    better, _ = engine.place_order("carol", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("29999"))
    _, fills = engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", D("0.15"), D("30000"))
    assert [(f.price, f.quantity) for f in fills] == [(D("29999"), D("0.1")), (D("30000"), D("0.05"))]
    assert engine.get_order("carol", "BTC/USDT", better.order_id).status == "FILLED"
    assert engine.get_order("alice", "BTC/USDT", first.order_id).filled == D("0.05")
    assert engine.get_order("bob", "BTC/USDT", second.order_id).filled == 0
    book = engine.book("BTC/USDT")
    assert book.asks[0].price == D("30000") and book.asks[0].quantity == D("0.15")


def test_partial_fill_rests_remainder_at_limit_and_trades_at_maker_price():
    engine = make_engine()
    engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.2"), D("30000"))
    order, fills = engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT", D("0.5"), D("30100"))
    assert order.status == "PARTIALLY_FILLED" and order.filled == D("0.2")
    assert fills[0].price == D("30000") and not fills[0].is_maker
    assert engine.book("BTC/USDT").bids[0].price == D("30100")
    bob = engine.balances("bob")
    # locked quote is the remainder at the limit price; the price improvement was refunded
    assert bob["USDT"].locked == D("0.3") * D("30100")
    assert bob["USDT"].free == D("1000000") - D("0.2") * D("30000") - D("0.3") * D("30100")


def test_ioc_remainder_expires_and_unlocks():
    engine = make_engine()
    engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30000"))
    order, _ = engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT", D("0.3"), D("30000"), time_in_force="IOC")
    assert order.status == "EXPIRED" and order.filled == D("0.1")
    assert engine.balances("bob")["USDT"].locked == 0
    assert engine.book("BTC/USDT").bids == ()
    assert engine.open_orders("bob") == []


def test_post_only_rejected_when_it_would_cross_and_accepted_otherwise():
    engine = make_engine()
    engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30000"))
    with pytest.raises(WouldMatchError) as info:
        engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT_MAKER", D("0.1"), D("30000"))
    assert info.value.code == -2010 and info.value.message == "Order would immediately match and take."
    assert engine.balances("bob")["USDT"].locked == 0
    order, fills = engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT_MAKER", D("0.1"), D("29999.99"))
    assert order.status == "NEW" and fills == []


def test_a_crossing_post_only_order_can_be_accepted_and_cancelled_instead():
    """OKX / Bybit semantics: the order exists (by id and client id), cancelled, unfilled, with no funds
    locked and the book untouched; its client id is free again."""
    engine = make_engine()
    engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30000"))
    free_before = engine.balances("bob")["USDT"].free
    order, fills = engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT_MAKER", D("0.1"), D("30000"),
                                      client_order_id="pc1", cancel_crossing_post_only=True)
    assert (order.status, order.filled, fills) == ("CANCELED", 0, [])
    assert engine.get_order("bob", "BTC/USDT", client_order_id="pc1").order_id == order.order_id
    assert engine.balances("bob")["USDT"].free == free_before and engine.balances("bob")["USDT"].locked == 0
    assert engine.book("BTC/USDT").asks[0].quantity == D("0.1") and engine.book("BTC/USDT").bids == ()
    assert engine.open_orders("bob") == []
    again, _ = engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT", D("0.1"), D("29000"), client_order_id="pc1")
    assert again.status == "NEW"


def test_market_orders_sweep_levels_and_expire_unfilled_rest():
    engine = make_engine()
    engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30000"))
    engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.1"), D("30010"))
    order, fills = engine.place_order("bob", "BTC/USDT", "BUY", "MARKET", D("0.3"))
    assert [f.price for f in fills] == [D("30000"), D("30010")]
    assert order.status == "EXPIRED" and order.filled == D("0.2")
    assert engine.balances("bob")["USDT"].locked == 0
    assert engine.balances("bob")["USDT"].free == D("1000000") - D("3000") - D("3001")


def test_fees_charged_in_received_asset_at_maker_and_taker_rates():
    engine = make_engine(maker="0.001", taker="0.002")
    engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", D("1"), D("20000"))
    _, fills = engine.place_order("bob", "BTC/USDT", "SELL", "LIMIT", D("1"), D("20000"))
    taker_fill = fills[0]
    assert taker_fill.fee_asset == "USDT" and taker_fill.fee == D("40")  # 0.2% of 20000
    maker_fill = engine.account_trades("alice", "BTC/USDT")[0]
    assert maker_fill.is_maker and maker_fill.fee_asset == "BTC" and maker_fill.fee == D("0.001")
    assert engine.balances("alice")["BTC"].free == D("10") + D("1") - D("0.001")
    assert engine.balances("bob")["USDT"].free == D("1000000") + D("20000") - D("40")
    assert engine.fees_collected == {"USDT": D("40"), "BTC": D("0.001")}


def test_free_and_locked_follow_place_and_cancel():
    engine = make_engine()
    order, _ = engine.place_order("alice", "ETH/USDT", "SELL", "LIMIT", D("2.5"), D("2000"))
    assert engine.balances("alice")["ETH"].locked == D("2.5")
    assert engine.balances("alice")["ETH"].free == D("97.5")
    cancelled = engine.cancel_order("alice", "ETH/USDT", order_id=order.order_id)
    assert cancelled.status == "CANCELED"
    assert engine.balances("alice")["ETH"].locked == 0 and engine.balances("alice")["ETH"].free == D("100")
    with pytest.raises(UnknownOrderError) as info:
        engine.cancel_order("alice", "ETH/USDT", order_id=order.order_id)
    assert info.value.code == -2011


def test_insufficient_balance_rejected_and_changes_nothing():
    engine = make_engine()
    before = engine.balances("alice")
    with pytest.raises(InsufficientBalanceError) as info:
        engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("10.00001"), D("30000"))
    assert info.value.code == -2010
    with pytest.raises(InsufficientBalanceError):
        engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", D("100"), D("30000"))
    assert engine.balances("alice") == before and engine.open_orders("alice") == []


def test_duplicate_open_client_order_id_rejected_but_reusable_after_close():
    engine = make_engine()
    engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", D("0.1"), D("100"), client_order_id="c1")
    with pytest.raises(DuplicateOrderError):
        engine.place_order("alice", "ETH/USDT", "BUY", "LIMIT", D("0.1"), D("100"), client_order_id="c1")
    # another account may use the same client id
    engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT", D("0.1"), D("100"), client_order_id="c1")
    engine.cancel_order("alice", "BTC/USDT", client_order_id="c1")
    again, _ = engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", D("0.1"), D("100"), client_order_id="c1")
    assert engine.get_order("alice", "BTC/USDT", client_order_id="c1").order_id == again.order_id


@pytest.mark.parametrize(
    ("quantity", "price", "error"),
    [
        (D("0.000001"), D("30000"), FilterError),  # off lot
        (D("0.1"), D("30000.001"), FilterError),  # off tick
        (D("0.0001"), D("100"), FilterError),  # notional 0.01 < 5
        (D("0"), D("100"), FilterError),
        (D("-1"), D("100"), FilterError),
        (D("0.1"), D("0"), FilterError),
        (D("0.1"), None, BadParameterError),
    ],
)
def test_filters_reject_with_binance_codes(quantity, price, error):
    engine = make_engine()
    with pytest.raises(error) as info:
        engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", quantity, price)
    assert info.value.code in (-1013, -1102)


def test_unknown_symbol_and_order():
    engine = make_engine()
    with pytest.raises(UnknownSymbolError) as info:
        engine.place_order("alice", "DOGE/USDT", "BUY", "LIMIT", D("1"), D("1"))
    assert info.value.code == -1121
    with pytest.raises(UnknownOrderError) as info2:
        engine.get_order("alice", "BTC/USDT", client_order_id="nope")
    assert info2.value.code == -2013
    order, _ = engine.place_order("alice", "BTC/USDT", "BUY", "LIMIT", D("0.1"), D("100"))
    with pytest.raises(UnknownOrderError):  # other accounts cannot see it
        engine.get_order("bob", "BTC/USDT", order.order_id)


def test_account_trades_since_from_id_and_limit():
    engine = make_engine()
    for i in range(5):
        engine.place_order("alice", "BTC/USDT", "SELL", "LIMIT", D("0.01"), D("30000"), now_ms=1000 * i)
        engine.place_order("bob", "BTC/USDT", "BUY", "LIMIT", D("0.01"), D("30000"), now_ms=1000 * i + 1)
    trades = engine.account_trades("bob", "BTC/USDT")
    assert [t.trade_id for t in trades] == [1, 2, 3, 4, 5]
    assert [t.trade_id for t in engine.account_trades("bob", "BTC/USDT", since_ms=2001)] == [3, 4, 5]
    assert [t.trade_id for t in engine.account_trades("bob", "BTC/USDT", from_id=4)] == [4, 5]
    assert len(engine.account_trades("bob", "BTC/USDT", limit=2)) == 2


def test_fast_path_place_cancel_and_listener():
    engine = make_engine()
    seen = []
    engine.trade_listener = lambda *args: seen.append(args)
    bid = engine.place_limit_fast("alice", "BTC/USDT", BUY, 2_999_000, 10_000, GTC)
    ask = engine.place_limit_fast("alice", "BTC/USDT", SELL, 3_001_000, 10_000, POST_ONLY)
    assert engine.best_bid_ask_ticks("BTC/USDT") == (2_999_000, 3_001_000)
    with pytest.raises(WouldMatchError):
        engine.place_limit_fast("bob", "BTC/USDT", BUY, 3_001_000, 1_000, POST_ONLY)
    assert engine.cancel_fast("alice", bid) == 10_000
    assert engine.cancel_fast("alice", bid) == 0
    assert engine.cancel_fast("bob", ask) == 0  # not bob's
    taker = engine.place_limit_fast("bob", "BTC/USDT", BUY, 3_001_000, 4_000, IOC)
    assert engine.order_state_fast(ask) == (10_000, 4_000, True)
    assert engine.order_state_fast(taker) == (4_000, 4_000, False)
    assert seen and seen[0][1:5] == (ask, taker, "alice", "bob") and seen[0][-2:] == (3_001_000, 4_000)
    assert engine.place_market_fast("carol", "BTC/USDT", BUY, 100_000) == 6_000
    assert engine.order_state_fast(ask)[2] is False


def test_cancel_and_replace_churn_keeps_book_small():
    engine = make_engine()
    engine.place_limit_fast("bob", "BTC/USDT", BUY, 2_000_000, 1_000)  # a resident at the same price
    order = engine.place_limit_fast("alice", "BTC/USDT", BUY, 2_000_000, 1_000)
    for _ in range(1000):
        engine.cancel_fast("alice", order)
        order = engine.place_limit_fast("alice", "BTC/USDT", BUY, 2_000_000, 1_000)
    level = engine._markets["BTC/USDT"].book.bid_levels[2_000_000]
    assert level.live_count == 2 and len(level.orders) < 40
    assert engine.book("BTC/USDT").bids[0].quantity == D("0.02")


def test_closed_orders_store_is_bounded():
    engine = make_engine(closed_order_capacity=50)
    for i in range(200):
        order = engine.place_limit_fast("alice", "BTC/USDT", BUY, 2_000_000, 1_000, client_order_id=f"c{i}")
        engine.cancel_fast("alice", order)
    assert len(engine._closed) == 50
    assert len(engine._accounts["alice"].client_ids) == 50


# --- property: conservation and agreement under random order flow --------------------------------

_action = st.tuples(
    st.sampled_from(["alice", "bob", "carol"]),
    st.sampled_from(["BTC/USDT", "ETH/USDT"]),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["LIMIT", "LIMIT", "LIMIT", "IOC", "LIMIT_MAKER", "MARKET", "CANCEL"]),
    st.integers(min_value=1, max_value=300),  # quantity in lots * 100
    st.integers(min_value=-20, max_value=20),  # price offset in ticks * 50
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_action, min_size=1, max_size=120), st.sampled_from([("0.001", "0.002"), ("0", "0.0075")]))
def test_conservation_and_consistency_under_random_flow(actions, fees):
    engine = make_engine(*fees)
    totals = engine.asset_totals_units()
    mids = {"BTC/USDT": D("30000"), "ETH/USDT": D("2000")}
    for account, symbol, side, kind, size, offset in actions:
        spec = engine.markets[symbol]
        quantity = spec.lot_size * size * 100
        price = mids[symbol] + spec.tick_size * offset * 50
        try:
            if kind == "CANCEL":
                open_orders = engine.open_orders(account, symbol)
                if open_orders:
                    engine.cancel_order(account, symbol, order_id=open_orders[0].order_id)
            elif kind == "MARKET":
                engine.place_order(account, symbol, side, "MARKET", quantity)
            elif kind == "IOC":
                engine.place_order(account, symbol, side, "LIMIT", quantity, price, time_in_force="IOC")
            else:
                engine.place_order(account, symbol, side, kind, quantity, price)
        except EngineError:
            pass
        assert engine.asset_totals_units() == totals
        book = engine.book(symbol)
        if book.bids and book.asks:
            assert book.bids[0].price < book.asks[0].price  # never left crossed
    for account in ("alice", "bob", "carol"):
        balances = engine.balances(account)
        for symbol in engine.markets:
            # locked equals what the open orders reserve
            open_orders = engine.open_orders(account, symbol)
            trades = engine.account_trades(account, symbol, limit=10**9)
            for order in open_orders:
                assert order.filled == sum((t.quantity for t in trades if t.order_id == order.order_id), D(0))
        locked_quote = sum(
            (o.price * (o.quantity - o.filled) for o in engine.open_orders(account) if o.side == "BUY"), D(0)
        )
        assert balances["USDT"].locked == locked_quote
        for base in ("BTC", "ETH"):
            locked_base = sum(
                (o.quantity - o.filled for o in engine.open_orders(account)
                 if o.side == "SELL" and o.symbol.startswith(base)),
                D(0),
            )
            assert balances[base].locked == locked_base
        # balances agree with trade lists: net base received equals fills minus base fees
        for symbol, spec in engine.markets.items():
            trades = engine.account_trades(account, symbol, limit=10**9)
            bought = sum((t.quantity - t.fee for t in trades if t.is_buyer), D(0))
            sold = sum((t.quantity for t in trades if not t.is_buyer), D(0))
            assert balances[spec.base].total == D("10" if spec.base == "BTC" else "100") + bought - sold
    quote_delta = D(0)
    for account in ("alice", "bob", "carol"):
        for symbol in engine.markets:
            for t in engine.account_trades(account, symbol, limit=10**9):
                quote_delta += -t.quote_quantity if t.is_buyer else t.quote_quantity - t.fee
    assert sum((engine.balances(a)["USDT"].total for a in ("alice", "bob", "carol")), D(0)) == (
        D("3000000") + quote_delta
    )
