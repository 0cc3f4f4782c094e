"""ccxt's real ``binance`` class (sync and async) against the emulator on loopback."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from exchanges_testkit import API_KEY, API_SECRET, admin, emulator_config

from exchanges.ccxt_config import binance_config_for
from exchanges.emulator.server import AccountConfig, EmulatorServer

_ids = itertools.count()


def client_id(prefix: str = "t") -> str:
    return f"{prefix}{next(_ids)}x{int(time.time() * 1000) % 10**8}"


def sync_client(base_url: str, key: str = API_KEY, secret: str = API_SECRET) -> ccxt.binance:
    return ccxt.binance(binance_config_for(base_url, key, secret))


def test_every_ccxt_url_points_at_the_emulator():
    exchange = ccxt.binance(binance_config_for("http://127.0.0.1:1", "k", "s"))
    assert all(url.startswith("http://127.0.0.1:1/") for url in exchange.urls["api"].values())


def test_sync_client_full_order_lifecycle(emulator: EmulatorServer):
    exchange = sync_client(emulator.base_url)
    markets = exchange.load_markets()
    btc = markets["BTC/USDT"]
    assert btc["spot"] and btc["active"] and btc["precision"]["price"] == 0.01
    assert btc["precision"]["amount"] == 0.00001 and btc["limits"]["cost"]["min"] == 5
    book = exchange.fetch_order_book("BTC/USDT", 5)
    assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) == 5
    ticker = exchange.fetch_ticker("BTC/USDT")
    assert ticker["bid"] == book["bids"][0][0] and ticker["ask"] == book["asks"][0][0]
    balance = exchange.fetch_balance()
    assert balance["ETH"]["free"] > 0

    cid = client_id()
    bid_price = book["bids"][0][0] - 100
    order = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, bid_price, {"newClientOrderId": cid})
    assert order["clientOrderId"] == cid and order["status"] == "open"
    fetched = exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": cid})
    assert fetched["id"] == order["id"] and fetched["price"] == bid_price
    assert order["id"] in [o["id"] for o in exchange.fetch_open_orders("BTC/USDT")]
    assert exchange.fetch_balance()["USDT"]["used"] >= 0.01 * bid_price
    cancelled = exchange.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert order["id"] not in [o["id"] for o in exchange.fetch_open_orders("BTC/USDT")]

    since = exchange.milliseconds() - 1000
    taker_cid = client_id()
    taken = exchange.create_order("BTC/USDT", "limit", "buy", 0.02, book["asks"][0][0], {"clientOrderId": taker_cid})
    assert taken["status"] == "closed" and taken["filled"] == 0.02
    trades = exchange.fetch_my_trades("BTC/USDT", since=since)
    mine = [t for t in trades if t["order"] == taken["id"]]
    assert sum(t["amount"] for t in mine) == pytest.approx(0.02)
    assert mine[0]["takerOrMaker"] == "taker" and mine[0]["fee"]["currency"] == "BTC"


async def test_async_client_against_in_loop_emulator():
    async with EmulatorServer(emulator_config()) as server:
        exchange = ccxt_async.binance(binance_config_for(server.base_url, API_KEY, API_SECRET))
        try:
            await exchange.load_markets()
            book = await exchange.fetch_order_book("ETH/USDT", 10)
            ticker = await exchange.fetch_ticker("ETH/USDT")
            assert ticker["bid"] == book["bids"][0][0]
            cid = client_id("a")
            ask_price = book["asks"][0][0] + 5
            order = await exchange.create_order("ETH/USDT", "limit", "sell", 0.5, ask_price, {"clientOrderId": cid})
            assert (await exchange.fetch_order(None, "ETH/USDT", {"clientOrderId": cid}))["id"] == order["id"]
            assert [o["clientOrderId"] for o in await exchange.fetch_open_orders("ETH/USDT")] == [cid]
            assert (await exchange.fetch_balance())["ETH"]["used"] == 0.5
            await exchange.cancel_order(None, "ETH/USDT", {"clientOrderId": cid})
            assert await exchange.fetch_open_orders("ETH/USDT") == []
            # a post-only order resting at the top of book, then lifted by another account's market flow
            maker = await exchange.create_order(
                "ETH/USDT", "limit", "sell", 0.3, book["asks"][0][0] - 0.01, {"postOnly": True}
            )
            assert maker["status"] == "open"
            server.add_account(AccountConfig("k2", "s2", {"USDT": Decimal("100000")}))  # same loop: direct
            other = ccxt_async.binance(binance_config_for(server.base_url, "k2", "s2"))
            try:
                await other.create_order("ETH/USDT", "market", "buy", 0.3)
            finally:
                await other.close()
            trades = await exchange.fetch_my_trades("ETH/USDT")
            assert [t["order"] for t in trades] == [maker["id"]] and trades[0]["takerOrMaker"] == "maker"
            assert (await exchange.fetch_order(maker["id"], "ETH/USDT"))["status"] == "closed"
        finally:
            await exchange.close()


# --- error codes -> ccxt exception classes -----------------------------------------------------------


def _bad_signature(emulator):
    sync_client(emulator.base_url, secret="wrong").fetch_balance()


def _bad_key(emulator):
    sync_client(emulator.base_url, key="nobody").fetch_balance()


def _stale_timestamp(emulator):
    exchange = sync_client(emulator.base_url)
    exchange.options["timeDifference"] = 120_000  # our clock 2 minutes behind
    exchange.fetch_balance()


def _insufficient(emulator):
    exchange = sync_client(emulator.base_url)
    exchange.create_order("BTC/USDT", "limit", "sell", 11, 70000)


def _post_only_cross(emulator):
    exchange = sync_client(emulator.base_url)
    ask = exchange.fetch_order_book("BTC/USDT", 5)["asks"][0][0]
    exchange.create_order("BTC/USDT", "limit", "buy", 0.001, ask, {"postOnly": True})


def _cancel_unknown(emulator):
    sync_client(emulator.base_url).cancel_order("999999999", "BTC/USDT")


def _fetch_unknown(emulator):
    sync_client(emulator.base_url).fetch_order("999999999", "BTC/USDT")


def _filter_failure(emulator):
    exchange = sync_client(emulator.base_url)
    exchange.load_markets()
    exchange.private_post_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                 "quantity": "0.000001", "price": "100"})


def _bad_symbol(emulator):
    sync_client(emulator.base_url).public_get_depth({"symbol": "DOGEUSDT"})


def _duplicate_client_id(emulator):
    exchange = sync_client(emulator.base_url)
    cid = client_id("dup")
    exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 10000, {"clientOrderId": cid})
    exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 10000, {"clientOrderId": cid})


@pytest.mark.parametrize(
    ("action", "text", "error_class"),
    [
        (_bad_signature, "-1022", ccxt.AuthenticationError),
        (_bad_key, "-2015", ccxt.AuthenticationError),
        (_stale_timestamp, "-1021", ccxt.InvalidNonce),
        (_insufficient, "insufficient balance", ccxt.InsufficientFunds),
        (_post_only_cross, "would immediately match", ccxt.OrderImmediatelyFillable),
        (_cancel_unknown, "-2011", ccxt.OrderNotFound),
        (_fetch_unknown, "-2013", ccxt.OrderNotFound),
        (_filter_failure, "-1013", ccxt.InvalidOrder),
        (_bad_symbol, "-1121", ccxt.BadSymbol),
        (_duplicate_client_id, '"code":-2010', ccxt.InvalidOrder),
    ],
    ids=lambda v: v.__name__ if callable(v) and not isinstance(v, type) else None,
)
def test_binance_error_codes_raise_matching_ccxt_exceptions(emulator, action, text, error_class):
    """ccxt matches some answers by code (the body is in the message), others by exact message."""
    with pytest.raises(error_class) as info:
        action(emulator)
    assert text in str(info.value)


def test_rate_limit_burst_answers_429_with_retry_after(fresh_emulator: EmulatorServer):
    exchange = sync_client(fresh_emulator.base_url)
    status, _ = admin(fresh_emulator.base_url, "POST", "/admin/faults",
                      {"rate_limit_burst_rate": 1.0, "rate_limit_burst_length": 2, "retry_after_secs": 3})
    assert status == 200
    with pytest.raises(ccxt.DDoSProtection):
        exchange.fetch_time()
    assert exchange.last_response_headers["Retry-After"] == "3"
    admin(fresh_emulator.base_url, "POST", "/admin/faults", {"rate_limit_burst_rate": 0.0})
    assert exchange.fetch_time() > 0


def test_server_error_and_lost_reply(fresh_emulator: EmulatorServer):
    exchange = sync_client(fresh_emulator.base_url)
    exchange.load_markets()
    admin(fresh_emulator.base_url, "POST", "/admin/faults", {"error_rate": 1.0})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.fetch_order_book("BTC/USDT")
    admin(fresh_emulator.base_url, "POST", "/admin/faults", {"error_rate": 0.0, "lost_reply_rate": 1.0})
    cid = client_id("lost")
    with pytest.raises(ccxt.RequestTimeout):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 10000, {"clientOrderId": cid})
    admin(fresh_emulator.base_url, "POST", "/admin/faults", {"lost_reply_rate": 0.0})
    # the order was accepted even though its reply was lost
    assert exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": cid})["status"] == "open"


def test_admin_api_requires_token_and_moves_the_mid(emulator: EmulatorServer):
    assert admin(emulator.base_url, "GET", "/admin/state", token=None)[0] == 401
    assert admin(emulator.base_url, "GET", "/admin/state", token="wrong")[0] == 401
    status, body = admin(emulator.base_url, "POST", "/admin/mid", {"symbol": "ETH/USDT", "mid": "3100"})
    assert status == 200 and body["mid"] == "3100.00"
    state = admin(emulator.base_url, "GET", "/admin/state")[1]
    assert float(state["symbols"]["ETH/USDT"]["best_bid"]) < 3100 < float(state["symbols"]["ETH/USDT"]["best_ask"])
    status, body = admin(emulator.base_url, "POST", "/admin/accounts", {"api_key": "x"})
    assert status == 400 and "secret" in body["error"]
    status, _ = admin(emulator.base_url, "POST", "/admin/accounts",
                      {"api_key": "fresh", "secret": "s", "balances": {"USDT": "50"}})
    assert status == 200
    assert sync_client(emulator.base_url, "fresh", "s").fetch_balance()["USDT"]["free"] == 50
