"""Self-trade prevention: the matching engine never matches two orders of one account unless the taker
says NONE (Binance ``selfTradePreventionMode`` EXPIRE_TAKER / EXPIRE_MAKER / EXPIRE_BOTH, OKX ``stpMode``,
Bybit ``smpType``); each dialect takes its venue's parameter and default and reports the expired order
the way the venue does, read back through ccxt's unmodified classes; the project's gateway sends the
mode the venue registry names, so a crossing order of the platform expires instead of trading."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal as D

import ccxt
import pytest
from exchanges_testkit import API_KEY, API_SECRET, START_BALANCES, emulator_config

from exchanges.ccxt_config import config_for
from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.engine import BadParameterError, MarketSpec, MatchingEngine
from exchanges.emulator.server import AccountConfig, EmulatorServer
from exchanges.gateway import GatewayCredentials, OrderRequest
from exchanges.venues import VENUES, get_venue

PASSPHRASE = "Emulator-Pass-1"
SPEC = MarketSpec("BTC/USDT", "BTC", "USDT", D("0.01"), D("0.001"), D("0.001"), D("1"))
_ids = itertools.count()


def engine() -> MatchingEngine:
    book = MatchingEngine([SPEC], D("0.001"), D("0.001"))
    for account in ("a", "b"):
        book.create_account(account, {"BTC": D(10), "USDT": D(1_000_000)})
    # a's own ask at 100 is first in line; b's ask at 101 behind it
    book.place_order("a", "BTC/USDT", "SELL", "LIMIT", D("1"), D("100"))
    book.place_order("b", "BTC/USDT", "SELL", "LIMIT", D("1"), D("101"))
    return book


def self_trades(book: MatchingEngine, account: str) -> int:
    """Trades in which the account was buyer and seller (its history holds the trade id twice)."""
    ids = [t.trade_id for t in book.account_trades(account, "BTC/USDT", from_id=0, limit=10**6)]
    return len(ids) - len(set(ids))


@pytest.mark.parametrize(("mode", "status", "filled", "own_ask_left", "market_status"), [
    ("NONE", "FILLED", D("1.5"), False, "FILLED"),
    ("EXPIRE_TAKER", "EXPIRED_IN_MATCH", D("0"), True, "EXPIRED_IN_MATCH"),
    ("EXPIRE_MAKER", "PARTIALLY_FILLED", D("1"), False, "EXPIRED"),
    ("EXPIRE_BOTH", "EXPIRED_IN_MATCH", D("0"), False, "EXPIRED_IN_MATCH"),
])
@pytest.mark.parametrize("order_type", ["LIMIT", "MARKET"])
def test_each_mode_decides_what_meets_the_accounts_own_resting_order(
        mode: str, status: str, filled: D, own_ask_left: bool, market_status: str, order_type: str) -> None:
    book = engine()
    before = book.asset_totals_units()
    price = D("102") if order_type == "LIMIT" else None
    order, fills = book.place_order("a", "BTC/USDT", "BUY", order_type, D("1.5"), price, self_trade_prevention=mode)
    # EXPIRE_MAKER: the own ask is taken off, b's ask at 101 fills 1; the limit rests the rest, a market
    # order's remainder expires as any market order's does (the book is empty)
    assert order.status == (status if order_type == "LIMIT" else market_status)
    assert order.filled == filled and sum(f.quantity for f in fills) == filled
    assert order.self_trade_prevention == mode
    assert self_trades(book, "a") == (1 if mode == "NONE" else 0)
    own = [o for o in book.open_orders("a") if o.side == "SELL"]
    assert bool(own) == own_ask_left
    if mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
        expired = book.get_order("a", "BTC/USDT", order_id=1)
        assert expired.status == "EXPIRED_IN_MATCH" and expired.prevented_quantity == D("1")
    if order.status == "EXPIRED_IN_MATCH":
        assert order.prevented_quantity == D("1.5")
    # nothing is left locked by an expired order, and no unit was created or lost
    assert book.asset_totals_units() == before
    locked_quote = book.balances("a")["USDT"].locked
    resting = [o for o in book.open_orders("a") if o.side == "BUY"]
    assert locked_quote == sum(((o.quantity - o.filled) * o.price for o in resting), D(0))


def test_another_accounts_orders_still_match_and_a_bad_mode_is_refused() -> None:
    book = engine()
    order, _ = book.place_order("b", "BTC/USDT", "BUY", "LIMIT", D("1"), D("100"), self_trade_prevention="EXPIRE_BOTH")
    assert order.status == "FILLED"  # b took a's ask: two accounts, no prevention
    with pytest.raises(BadParameterError):
        book.place_order("a", "BTC/USDT", "BUY", "LIMIT", D("1"), D("99"), self_trade_prevention="SOMETIMES")
    assert [o.price for o in book.open_orders("a")] == []  # nothing was booked by the refused order


# --- each dialect, through ccxt's own classes ---------------------------------------------------------


def venue_server(venue: str, **overrides) -> EmulatorServer:
    account = AccountConfig(API_KEY, API_SECRET, dict(START_BALANCES), passphrase=PASSPHRASE if venue == "okx" else "")
    server = EmulatorServer(emulator_config(venue=venue, accounts=(account,), **overrides))
    server.start_in_thread()
    return server


@pytest.fixture(params=sorted(VENUES))
def venue_emulator(request) -> Iterator[tuple[str, EmulatorServer]]:
    server = venue_server(request.param)
    yield request.param, server
    server.stop_thread()


def ccxt_client(venue: str, server: EmulatorServer):
    return getattr(ccxt, venue)(config_for(venue, server.base_url, API_KEY, API_SECRET,
                                           PASSPHRASE if venue == "okx" else ""))


def own_self_trades(server: EmulatorServer) -> int:
    account_id = server._keys[API_KEY][0]

    def count() -> int:
        ids = [t.trade_id for t in server.engine.account_trades(account_id, "BTC/USDT", from_id=0, limit=10**6)]
        return len(ids) - len(set(ids))

    return int(server.call(count))  # type: ignore[arg-type]


def test_each_dialect_expires_the_taker_with_the_registry_mode_and_reports_it_as_the_venue_does(venue_emulator):
    venue, server = venue_emulator
    exchange = ccxt_client(venue, server)
    ask = exchange.fetch_order_book("BTC/USDT", 5)["bids"][0][0] + 50  # inside the spread: nobody else there
    resting = exchange.create_order("BTC/USDT", "limit", "sell", 0.01, ask)
    stp = get_venue(venue).self_trade_prevention
    taker = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, ask + 1, dict(stp))
    fetched = exchange.fetch_order(taker["id"], "BTC/USDT")
    assert fetched["status"] in ("canceled", "expired") and fetched["filled"] == 0
    assert exchange.fetch_order(resting["id"], "BTC/USDT")["status"] == "open"
    raw = fetched["info"]
    if venue == "binance":
        assert raw["status"] == "EXPIRED_IN_MATCH" and raw["selfTradePreventionMode"] == "EXPIRE_TAKER"
        assert raw["preventedQuantity"] == "0.01000"
    elif venue == "okx":
        assert raw["state"] == "canceled" and raw["cancelSource"] == "32" and raw["stpMode"] == "cancel_taker"
    else:
        assert raw["orderStatus"] == "Cancelled" and raw["cancelType"] == "CancelBySmp"
        assert raw["smpType"] == "CancelTaker"
    assert own_self_trades(server) == 0
    # the venue's default without the parameter: Binance EXPIRE_MAKER, OKX cancel_maker, Bybit none
    second = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, ask + 1)
    if venue == "bybit":
        assert exchange.fetch_order(second["id"], "BTC/USDT")["status"] == "closed"
        assert own_self_trades(server) == 1
    else:
        assert exchange.fetch_order(resting["id"], "BTC/USDT")["status"] in ("canceled", "expired")
        assert exchange.fetch_order(second["id"], "BTC/USDT")["status"] == "open"
        assert own_self_trades(server) == 0


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_an_emulator_without_stp_lets_an_account_trade_with_itself(venue):
    server = venue_server(venue, self_trade_prevention=False)
    try:
        exchange = ccxt_client(venue, server)
        ask = exchange.fetch_order_book("BTC/USDT", 5)["bids"][0][0] + 50
        exchange.create_order("BTC/USDT", "limit", "sell", 0.01, ask)
        stp = dict(get_venue(venue).self_trade_prevention)
        taker = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, ask, stp)
        assert exchange.fetch_order(taker["id"], "BTC/USDT")["status"] == "closed"
        assert own_self_trades(server) == 1
    finally:
        server.stop_thread()


@pytest.mark.parametrize("venue", sorted(VENUES))
async def test_the_gateway_sends_the_registry_mode_so_its_crossing_order_expires(venue):
    async with EmulatorServer(emulator_config(venue=venue, accounts=(AccountConfig(
            API_KEY, API_SECRET, dict(START_BALANCES), passphrase=PASSPHRASE if venue == "okx" else ""),))) as server:
        gateway = CcxtGateway(GatewayCredentials(
            account_key=f"{venue}-stp", exchange_id=venue, api_key=API_KEY, api_secret=API_SECRET,
            passphrase=PASSPHRASE if venue == "okx" else "", api_base_url=server.base_url, rate_limit_per_sec=1000,
        ), backoff_secs=0.01)
        try:
            book = await gateway.fetch_order_book("BTC/USDT", 5)
            ask = book.bids[0].price + D("50")
            sell = await gateway.place_order(OrderRequest(
                "BTC/USDT", "sell", amount=D("0.01"), price=ask, client_order_id=f"mm-7-1-{next(_ids)}-9s0",
                post_only=False))
            buy = await gateway.place_order(OrderRequest(
                "BTC/USDT", "buy", amount=D("0.01"), price=ask, client_order_id=f"mm-7-1-{next(_ids)}-9b0",
                post_only=False))
            # (Bybit answers a placement with its ids only: the order's fate is read back)
            buy = await gateway.fetch_order("BTC/USDT", client_order_id=buy.client_order_id)
            assert not buy.is_open and buy.filled == 0
            assert (await gateway.fetch_order("BTC/USDT", exchange_order_id=sell.exchange_order_id)).is_open
            assert own_self_trades(server) == 0
        finally:
            await gateway.close()


async def test_a_one_request_cancel_replace_carries_the_mode_too():
    """Binance's cancel-replace (one request): the new half is placed with the registry's mode."""
    async with EmulatorServer(emulator_config()) as server:
        gateway = CcxtGateway(GatewayCredentials(
            account_key="binance-stp", exchange_id="binance", api_key=API_KEY, api_secret=API_SECRET,
            api_base_url=server.base_url, rate_limit_per_sec=1000), backoff_secs=0.01)
        try:
            book = await gateway.fetch_order_book("BTC/USDT", 5)
            ask = book.bids[0].price + D("50")
            sell = await gateway.place_order(OrderRequest(
                "BTC/USDT", "sell", amount=D("0.01"), price=ask, client_order_id=f"mm-7-1-{next(_ids)}-9s0",
                post_only=False))
            bid = await gateway.place_order(OrderRequest(
                "BTC/USDT", "buy", amount=D("0.01"), price=ask - D("10"), client_order_id=f"mm-7-1-{next(_ids)}-9b0",
                post_only=False))
            new = await gateway.replace_order(
                "BTC/USDT", cancel_exchange_order_id=bid.exchange_order_id, cancel_client_order_id=None,
                new=OrderRequest("BTC/USDT", "buy", amount=D("0.01"), price=ask,
                                 client_order_id=f"mm-7-1-{next(_ids)}-9b0", post_only=False))
            assert not new.is_open and new.filled == 0
            assert (await gateway.fetch_order("BTC/USDT", exchange_order_id=sell.exchange_order_id)).is_open
            assert own_self_trades(server) == 0
            raw = server.engine.get_order(server._keys[API_KEY][0], "BTC/USDT", int(new.exchange_order_id))
            assert raw.status == "EXPIRED_IN_MATCH" and raw.self_trade_prevention == "EXPIRE_TAKER"
        finally:
            await gateway.close()
