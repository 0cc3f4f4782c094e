"""ccxt's unmodified ``okx`` and ``bybit`` classes (sync and async), with only their URLs pointed at the
emulator's OKX / Bybit dialects, load markets, read books, tickers and balances, trade and read fills --
every structure checked with ccxt's own validators (``ccxt.test.exchange.base``) -- and get each venue's
error codes, so ccxt raises the same exception classes as against the venue. Then the project's
``CcxtGateway`` on each dialect: venue-safe client ids, exactly-once placement, cancel-then-place; and
each dialect's public best bid/ask stream through ccxt.pro."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from decimal import Decimal as D

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from ccxt.test.exchange.base.test_balance import test_balance as check_balance
from ccxt.test.exchange.base.test_market import test_market as check_market
from ccxt.test.exchange.base.test_order import test_order as check_order
from ccxt.test.exchange.base.test_order_book import test_order_book as check_order_book
from ccxt.test.exchange.base.test_ticker import test_ticker as check_ticker
from ccxt.test.exchange.base.test_trade import test_trade as check_trade
from exchanges_testkit import API_KEY, API_SECRET, START_BALANCES, admin, emulator_config

from exchanges.ccxt_config import config_for
from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.server import AccountConfig, EmulatorServer, FaultConfig
from exchanges.gateway import CANCELED, GatewayCredentials, OrderRequest
from exchanges.streams import BookTickerStream
from exchanges.venues import get_venue
from mmplatform.errors import InvalidOrderError, OrderNotFoundError, ReplaceCancelFailedError

PASSPHRASE = "Emulator-Pass-1"
VENUES = ("okx", "bybit")
_ids = itertools.count()


def cid(prefix: str = "t") -> str:
    """An alphanumeric client id (raw ccxt calls: OKX takes nothing else)."""
    return f"{prefix}{next(_ids)}x{int(time.time() * 1000) % 10**8}"


def venue_config(venue: str, **overrides) -> object:
    account = AccountConfig(API_KEY, API_SECRET, dict(START_BALANCES), passphrase=PASSPHRASE if venue == "okx" else "")
    return emulator_config(venue=venue, accounts=(account,), **overrides)


def client(
    venue: str, base_url: str, key: str = API_KEY, secret: str = API_SECRET, passphrase: str | None = None, module=ccxt
):
    if passphrase is None:
        passphrase = PASSPHRASE if venue == "okx" else ""
    return getattr(module, venue)(config_for(venue, base_url, key, secret, passphrase))


def by_client_id(venue: str, client_order_id: str) -> dict:
    """The raw ccxt param naming an order by client id (the gateway takes it from the registry)."""
    return {get_venue(venue).client_id_param: client_order_id}


@pytest.fixture(scope="module", params=VENUES)
def dialect(request) -> Iterator[tuple[str, EmulatorServer]]:
    server = EmulatorServer(venue_config(request.param))
    server.start_in_thread()
    yield request.param, server
    server.stop_thread()


@pytest.fixture(params=VENUES)
def fresh_dialect(request) -> Iterator[tuple[str, EmulatorServer]]:
    server = EmulatorServer(venue_config(request.param))
    server.start_in_thread()
    yield request.param, server
    server.stop_thread()


def test_sync_client_lifecycle_passes_ccxt_validators(dialect):
    venue, server = dialect
    exchange = client(venue, server.base_url)
    now = exchange.milliseconds()
    markets = exchange.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT"}
    for market in markets.values():
        check_market(exchange, {}, "loadMarkets", market)
    btc = markets["BTC/USDT"]
    assert btc["spot"] and btc["active"] and exchange.precisionMode == ccxt.TICK_SIZE
    assert btc["precision"]["amount"] == 0.00001 and btc["precision"]["price"] == 0.01
    book = exchange.fetch_order_book("BTC/USDT", 5)
    check_order_book(exchange, {}, "fetchOrderBook", book, "BTC/USDT")
    assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) == 5
    ticker = exchange.fetch_ticker("BTC/USDT")
    check_ticker(exchange, {}, "fetchTicker", ticker, "BTC/USDT")
    assert ticker["bid"] == book["bids"][0][0] and ticker["ask"] == book["asks"][0][0]
    balance = exchange.fetch_balance()
    check_balance(exchange, {}, "fetchBalance", balance)
    assert balance["BTC"]["free"] == 10 and balance["USDT"]["total"] == 1_000_000

    # a resting limit order, found by id and by client id, listed, cancelled by client id
    maker_cid = cid("m")
    bid = book["bids"][0][0] - 100
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, bid, {"clientOrderId": maker_cid})
    assert placed["clientOrderId"] == maker_cid and placed["id"]
    fetched = exchange.fetch_order(placed["id"], "BTC/USDT")
    check_order(exchange, {}, "fetchOrder", fetched, "BTC/USDT", now)
    assert fetched["status"] == "open" and fetched["price"] == bid and fetched["amount"] == 0.01
    assert exchange.fetch_order(None, "BTC/USDT", by_client_id(venue, maker_cid))["id"] == placed["id"]
    open_orders = exchange.fetch_open_orders("BTC/USDT")
    for order in open_orders:
        check_order(exchange, {}, "fetchOpenOrders", order, "BTC/USDT", now)
    assert [o["clientOrderId"] for o in open_orders] == [maker_cid]
    assert exchange.fetch_balance()["USDT"]["used"] == pytest.approx(0.01 * bid)
    exchange.cancel_order(None, "BTC/USDT", by_client_id(venue, maker_cid))
    assert exchange.fetch_order(placed["id"], "BTC/USDT")["status"] == "canceled"
    assert exchange.fetch_open_orders("BTC/USDT") == []

    # post-only rests; IOC and market orders take
    post = exchange.create_order("BTC/USDT", "limit", "sell", 0.01, book["asks"][0][0] + 50, {"postOnly": True})
    post_order = exchange.fetch_order(post["id"], "BTC/USDT")
    assert post_order["status"] == "open" and post_order["postOnly"]
    exchange.cancel_order(post["id"], "BTC/USDT")
    since = exchange.milliseconds() - 1000
    ioc = exchange.create_order(
        "BTC/USDT", "limit", "buy", 0.02, book["asks"][0][0], {"timeInForce": "IOC", "clientOrderId": cid("i")}
    )
    ioc_order = exchange.fetch_order(ioc["id"], "BTC/USDT")
    assert ioc_order["status"] == "closed" and ioc_order["filled"] == 0.02
    sold = exchange.create_order("BTC/USDT", "market", "sell", 0.01)
    sold_order = exchange.fetch_order(sold["id"], "BTC/USDT")
    check_order(exchange, {}, "fetchOrder", sold_order, "BTC/USDT", now)
    assert sold_order["status"] == "closed" and sold_order["filled"] == 0.01 and sold_order["side"] == "sell"
    trades = exchange.fetch_my_trades("BTC/USDT", since=since)
    for trade in trades:
        check_trade(exchange, {}, "fetchMyTrades", trade, "BTC/USDT", now, False)
    assert {t["order"] for t in trades} == {ioc["id"], sold["id"]}
    assert sum(t["amount"] for t in trades if t["order"] == ioc["id"]) == pytest.approx(0.02)
    assert all(t["takerOrMaker"] == "taker" for t in trades)
    assert exchange.fetch_balance()["BTC"]["total"] == pytest.approx(10 + 0.02 - 0.02 * 0.001 - 0.01)


@pytest.mark.parametrize("venue", VENUES)
async def test_async_client_and_a_maker_fill(venue):
    async with EmulatorServer(venue_config(venue)) as server:
        exchange = client(venue, server.base_url, module=ccxt_async)
        server.add_account(AccountConfig("k2", "s2", {"USDT": D("100000")}, passphrase="p2"))
        other = client(venue, server.base_url, "k2", "s2", "p2" if venue == "okx" else "", module=ccxt_async)
        try:
            await exchange.load_markets()
            book = await exchange.fetch_order_book("ETH/USDT", 10)
            maker_cid = cid("a")
            maker = await exchange.create_order(
                "ETH/USDT",
                "limit",
                "sell",
                0.3,
                book["asks"][0][0] - 0.01,
                {"postOnly": True, "clientOrderId": maker_cid},
            )
            assert (await exchange.fetch_order(None, "ETH/USDT", by_client_id(venue, maker_cid)))["id"] == maker["id"]
            await other.load_markets()
            taker_params = {"marketUnit": "baseCoin"} if venue == "bybit" else {}
            await other.create_order("ETH/USDT", "market", "buy", 0.3, None, taker_params)
            trades = await exchange.fetch_my_trades("ETH/USDT")
            assert [t["order"] for t in trades] == [maker["id"]] and trades[0]["takerOrMaker"] == "maker"
            assert (await exchange.fetch_order(maker["id"], "ETH/USDT"))["status"] == "closed"
            assert (await other.fetch_balance())["ETH"]["free"] == pytest.approx(0.3 * 0.999)
        finally:
            await exchange.close()
            await other.close()


# --- each venue's error codes -> ccxt's exception classes -----------------------------------------


def _bad_signature(venue, server):
    client(venue, server.base_url, secret="wrong").fetch_balance()


def _bad_key(venue, server):
    client(venue, server.base_url, key="nobody").fetch_balance()


def _bad_passphrase(venue, server):
    client(venue, server.base_url, passphrase="wrong").fetch_balance()


def _insufficient(venue, server):
    client(venue, server.base_url).create_order("BTC/USDT", "limit", "sell", 11, 70000)


def _cancel_unknown(venue, server):
    client(venue, server.base_url).cancel_order("999999999", "BTC/USDT")


def _fetch_unknown(venue, server):
    client(venue, server.base_url).fetch_order("999999999", "BTC/USDT")


def _lot_size(venue, server):
    exchange = client(venue, server.base_url)
    exchange.load_markets()
    exchange.markets["BTC/USDT"]["precision"]["amount"] = 1e-8  # let ccxt send what the venue refuses
    exchange.create_order("BTC/USDT", "limit", "buy", 0.000001, 50000)


def _duplicate_client_id(venue, server):
    exchange = client(venue, server.base_url)
    same = cid("dup")
    exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 10000, {"clientOrderId": same})
    try:
        exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 10000, {"clientOrderId": same})
    finally:  # the first one rests on the module's emulator: a later test lists the open orders
        exchange.cancel_order(None, "BTC/USDT", by_client_id(venue, same))


def _stale_timestamp(venue, server):
    exchange = client(venue, server.base_url)
    exchange.options["timeDifference"] = 120_000
    exchange.fetch_balance()


CASES = {
    "okx": [
        (_bad_signature, "50113", ccxt.AuthenticationError),
        (_bad_key, "50111", ccxt.AuthenticationError),
        (_bad_passphrase, "50105", ccxt.AuthenticationError),
        (_insufficient, "51008", ccxt.InsufficientFunds),
        (_cancel_unknown, "51400", ccxt.OrderNotFound),
        (_fetch_unknown, "51603", ccxt.OrderNotFound),
        (_lot_size, "51020", ccxt.InvalidOrder),
        (_duplicate_client_id, "51016", ccxt.InvalidOrder),
        (_stale_timestamp, "50102", ccxt.InvalidNonce),
    ],
    "bybit": [
        (_bad_signature, "10004", ccxt.AuthenticationError),
        (_bad_key, "10003", ccxt.AuthenticationError),
        (_insufficient, "170131", ccxt.InsufficientFunds),
        (_cancel_unknown, "170213", ccxt.OrderNotFound),
        (_lot_size, "170136", ccxt.InvalidOrder),
        (_duplicate_client_id, "170141", ccxt.InvalidOrder),
        (_stale_timestamp, "10002", ccxt.InvalidNonce),
    ],
}


@pytest.mark.parametrize(
    ("dialect", "action", "code", "error_class"),
    [(venue, *case) for venue, cases in CASES.items() for case in cases],
    ids=lambda v: v.__name__ if callable(v) and not isinstance(v, type) else None,
    indirect=["dialect"],
)
def test_venue_error_codes_raise_matching_ccxt_exceptions(dialect, action, code, error_class):
    with pytest.raises(error_class) as info:
        action(*dialect)
    assert code in str(info.value)


@pytest.mark.parametrize("dialect", ["bybit"], indirect=True)
def test_bybit_fetch_of_an_unknown_order_raises_order_not_found(dialect):
    """Bybit answers an unknown id with an empty list; ccxt turns that into OrderNotFound."""
    with pytest.raises(ccxt.OrderNotFound):
        _fetch_unknown(*dialect)


def test_rate_limit_burst_is_the_venue_code_with_retry_after(fresh_dialect):
    venue, server = fresh_dialect
    exchange = client(venue, server.base_url)
    exchange.load_markets()
    admin(
        server.base_url,
        "POST",
        "/admin/faults",
        {"rate_limit_burst_rate": 1.0, "rate_limit_burst_length": 2, "retry_after_secs": 3},
    )
    with pytest.raises(ccxt.RateLimitExceeded) as info:
        exchange.fetch_balance()
    assert ("50011" if venue == "okx" else "10006") in str(info.value)
    assert exchange.last_response_headers["Retry-After"] == "3"
    admin(server.base_url, "POST", "/admin/faults", {"rate_limit_burst_rate": 0.0})
    exchange.fetch_balance()


# --- the project's gateway on each dialect ----------------------------------------------------------


def gateway_for(venue: str, server: EmulatorServer, **kwargs) -> CcxtGateway:
    credentials = GatewayCredentials(
        account_key=f"{venue}-test",
        exchange_id=venue,
        api_key=API_KEY,
        api_secret=API_SECRET,
        passphrase=PASSPHRASE if venue == "okx" else "",
        api_base_url=server.base_url,
        rate_limit_per_sec=1000,
    )
    kwargs.setdefault("backoff_secs", 0.01)
    return CcxtGateway(credentials, **kwargs)


def engine_id(tag: str) -> str:
    """An id in the engine's shape (``mm-<bot>-<epoch>-<cycle>-<position><side><level>``)."""
    return f"mm-7-1-{next(_ids)}-9{tag}"


@pytest.mark.parametrize("venue", VENUES)
async def test_gateway_places_fetches_and_cancels_by_client_id(venue):
    async with EmulatorServer(venue_config(venue)) as server:
        gateway = gateway_for(venue, server)
        try:
            book = await gateway.fetch_order_book("BTC/USDT", 5)
            bid = book.bids[0].price - D("100")
            mine = engine_id("b0")
            order = await gateway.place_order(
                OrderRequest("BTC/USDT", "buy", amount=D("0.01"), price=bid, client_order_id=mine, post_only=True)
            )
            assert order.client_order_id == mine and order.amount == D("0.01") and order.price == bid
            wire = get_venue(venue).client_ids.encode(mine)
            assert server.placement_attempts()[wire] == 1
            fetched = await gateway.fetch_order("BTC/USDT", client_order_id=mine)
            assert fetched.exchange_order_id == order.exchange_order_id and fetched.client_order_id == mine
            assert fetched.is_open and fetched.price == bid
            assert [o.client_order_id for o in await gateway.fetch_open_orders("BTC/USDT")] == [mine]
            # the same client id again: the venue refuses the duplicate, the gateway returns the open order
            again = await gateway.place_order(
                OrderRequest("BTC/USDT", "buy", amount=D("0.01"), price=bid, client_order_id=mine, post_only=True)
            )
            assert again.exchange_order_id == order.exchange_order_id
            # a re-quote: cancel, then place (two requests on these venues)
            new = engine_id("b0")
            replaced = await gateway.replace_order(
                "BTC/USDT",
                cancel_exchange_order_id=None,
                cancel_client_order_id=mine,
                new=OrderRequest("BTC/USDT", "buy", amount=D("0.02"), price=bid, client_order_id=new, post_only=True),
            )
            assert replaced.client_order_id == new
            assert (await gateway.fetch_order("BTC/USDT", client_order_id=mine)).status == CANCELED
            with pytest.raises(ReplaceCancelFailedError):
                await gateway.replace_order(
                    "BTC/USDT",
                    cancel_exchange_order_id=None,
                    cancel_client_order_id=mine,
                    new=OrderRequest("BTC/USDT", "buy", amount=D("0.02"), price=bid, client_order_id=engine_id("b0")),
                )
            cancelled = await gateway.cancel_order("BTC/USDT", client_order_id=new)
            assert cancelled.status == CANCELED
            assert await gateway.fetch_open_orders("BTC/USDT") == []
            with pytest.raises(OrderNotFoundError):
                await gateway.cancel_order("BTC/USDT", client_order_id=new)
            # a fill: the trade carries the platform's client id back, decoded
            taker = engine_id("r0")
            await gateway.place_order(
                OrderRequest(
                    "BTC/USDT",
                    "buy",
                    amount=D("0.01"),
                    price=book.asks[0].price,
                    client_order_id=taker,
                    post_only=False,
                    time_in_force="IOC",
                )
            )
            trades = await gateway.fetch_my_trades("BTC/USDT", since_ms=int(time.time() * 1000) - 5000)
            assert [(t.client_order_id, t.amount, t.is_maker) for t in trades] == [(taker, D("0.01"), False)]
        finally:
            await gateway.close()


@pytest.mark.parametrize("venue", VENUES)
async def test_gateway_lost_reply_resolves_to_exactly_one_order(venue):
    async with EmulatorServer(venue_config(venue, faults=FaultConfig(lost_reply_rate=1.0))) as server:
        gateway = gateway_for(venue, server)
        try:
            await gateway.load_markets()
            mine = engine_id("s1")
            order = await gateway.place_order(
                OrderRequest("BTC/USDT", "sell", amount=D("0.01"), price=D("70000"), client_order_id=mine)
            )
            assert order.client_order_id == mine and order.is_open
            assert server.placement_attempts()[get_venue(venue).client_ids.encode(mine)] == 1
            assert len(server.engine.open_orders(API_KEY)) == 1
        finally:
            await gateway.close()


async def test_gateway_refuses_an_id_the_venue_cannot_take():
    async with EmulatorServer(venue_config("okx")) as server:
        gateway = gateway_for("okx", server)
        try:
            with pytest.raises(InvalidOrderError, match="32 characters"):
                await gateway.place_order(
                    OrderRequest(
                        "BTC/USDT", "buy", amount=D("0.01"), price=D("50000"), client_order_id="mm-" + "1" * 30
                    )
                )
            assert server.placement_attempts() == {}
        finally:
            await gateway.close()


# --- public best bid/ask streams (ccxt.pro through the project's BookTickerStream) ------------------


@pytest.mark.parametrize("venue", VENUES)
async def test_best_bid_ask_stream_of_each_dialect(venue):
    async with EmulatorServer(venue_config(venue)) as server:
        stream = BookTickerStream(venue, server.base_url, timeout_secs=5)
        try:
            seen: dict[str, object] = {}
            while len(seen) < 2:
                for quote in await asyncio.wait_for(stream.watch(["BTC/USDT", "ETH/USDT"]), 10):
                    seen[quote.symbol] = quote
            book = server.engine.book("BTC/USDT", 1)
            assert (seen["BTC/USDT"].bid, seen["BTC/USDT"].ask) == (book.bids[0].price, book.asks[0].price)
            server.market.set_mid("BTC/USDT", D("61000"))
            server.streams.books_changed()
            moved = None
            while moved is None:
                quotes = await asyncio.wait_for(stream.watch(["BTC/USDT"]), 10)
                moved = next((q for q in quotes if q.bid > D("60500")), None)
            book = server.engine.book("BTC/USDT", 1)
            assert (moved.bid, moved.bid_size, moved.ask) == (book.bids[0].price, book.bids[0].quantity,
                                                              book.asks[0].price)
            if venue == "okx":  # OKX numbers its pushes (seqId); Bybit's level-1 snapshots reach ccxt without one
                assert moved.update_id > seen["BTC/USDT"].update_id
        finally:
            await stream.close()


def test_a_crossing_post_only_order_is_accepted_then_cancelled_as_on_the_venue(dialect):
    """OKX and Bybit do not refuse a post-only order that would take: they accept and cancel it."""
    venue, server = dialect
    exchange = client(venue, server.base_url)
    exchange.load_markets()
    ask = exchange.fetch_order_book("BTC/USDT", 1)["asks"][0][0]
    used_before = exchange.fetch_balance()["USDT"]["used"]
    crossing_cid = cid("x")
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, ask, {"postOnly": True,
                                                                          "clientOrderId": crossing_cid})
    order = exchange.fetch_order(placed["id"], "BTC/USDT")
    assert (order["status"], order["filled"], order["clientOrderId"]) == ("canceled", 0, crossing_cid)
    assert exchange.fetch_balance()["USDT"]["used"] == used_before
    assert exchange.fetch_order_book("BTC/USDT", 1)["asks"][0][0] == ask  # nothing traded
    # the client id is free again, as for any closed order
    again = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, ask - 500, {"clientOrderId": crossing_cid})
    exchange.cancel_order(again["id"], "BTC/USDT")
