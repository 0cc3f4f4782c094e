"""The emulator's Binance user-data stream (WebSocket API ``userDataStream.subscribe.signature`` +
``executionReport``), read by ccxt.pro's real ``binance`` class, unmodified, with only its URLs pointed
at the emulator (``exchanges.venues.binance.private_stream_config_for``); orders sent by ccxt's REST
class. A raw websocket checks the protocol's refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from exchanges_testkit import API_KEY, API_SECRET, START_BALANCES, emulator_config

from exchanges.ccxt_config import binance_config_for
from exchanges.emulator.server import AccountConfig, EmulatorServer
from exchanges.venues.base import websocket_url_for
from exchanges.venues.binance import private_stream_config_for

BTC = "BTC/USDT"
WATCH_SECS = 15.0  # a guard against hanging, not a speed assertion
TAKER_KEY, TAKER_SECRET = "taker-key", "taker-secret"


@pytest.fixture
def venue() -> Iterator[EmulatorServer]:
    server = EmulatorServer(emulator_config(accounts=(
        AccountConfig(API_KEY, API_SECRET, dict(START_BALANCES)),
        AccountConfig(TAKER_KEY, TAKER_SECRET, dict(START_BALANCES)),
    )))
    server.start_in_thread()
    yield server
    server.stop_thread()


async def orders_until(pro: ccxt_pro.binance, done, first: asyncio.Future | None = None) -> list[dict]:
    """Pushed order updates until one satisfies ``done``. ``first``: a ``watch_orders`` started before the action
    whose push is awaited (ccxt.pro resolves only a watch already waiting: a push that comes before the next
    ``watch_orders`` call is cached but wakes nobody, and the watch would wait for an update that never comes)."""
    seen: list[dict] = []
    while True:
        batch = await asyncio.wait_for(first if first is not None else pro.watch_orders(BTC), WATCH_SECS)
        first = None
        seen += batch
        if any(done(o) for o in batch):
            return seen


def test_watch_orders_and_my_trades_see_new_fill_and_cancel_pushed(venue: EmulatorServer) -> None:
    async def scenario() -> None:
        pro = ccxt_pro.binance(private_stream_config_for(venue.base_url, API_KEY, API_SECRET))
        rest = ccxt_async.binance(binance_config_for(venue.base_url, API_KEY, API_SECRET))
        taker = ccxt_async.binance(binance_config_for(venue.base_url, TAKER_KEY, TAKER_SECRET))
        try:
            await pro.load_markets()
            first = asyncio.ensure_future(pro.watch_orders(BTC))  # subscribes (signed) before the orders exist
            await asyncio.sleep(0.5)
            book = await rest.fetch_order_book(BTC, 5)
            # inside the spread: the best bid alone, first in line for the taker
            bid = D(rest.price_to_precision(BTC, (book["bids"][0][0] + book["asks"][0][0]) / 2))
            resting = await rest.create_order(BTC, "limit", "buy", 0.01, float(bid), {"newClientOrderId": "uds-rest"})
            got = await asyncio.wait_for(first, WATCH_SECS)
            assert got[-1]["clientOrderId"] == "uds-rest" and got[-1]["status"] == "open"

            # another account sells into it: the fill is pushed (order update and the trade itself)
            trades_watch = asyncio.ensure_future(pro.watch_my_trades(BTC))
            fill_watch = asyncio.ensure_future(pro.watch_orders(BTC))  # waiting before the fill is pushed
            await asyncio.sleep(0.2)
            await taker.create_order(BTC, "limit", "sell", 0.004, float(bid), {"timeInForce": "IOC"})
            seen = await orders_until(pro, lambda o: o["id"] == resting["id"] and o["filled"] == 0.004, fill_watch)
            assert seen[-1]["status"] == "open" and seen[-1]["remaining"] == pytest.approx(0.006)
            trades = await asyncio.wait_for(trades_watch, WATCH_SECS)
            assert trades[-1]["order"] == resting["id"] and trades[-1]["amount"] == pytest.approx(0.004)
            assert trades[-1]["takerOrMaker"] == "maker" and trades[-1]["price"] == pytest.approx(float(bid))
            listed = await rest.fetch_my_trades(BTC)
            assert trades[-1]["id"] == listed[-1]["id"]  # the same trade id the REST endpoint lists

            cancel_watch = asyncio.ensure_future(pro.watch_orders(BTC))  # waiting before the cancel is pushed
            await asyncio.sleep(0.1)
            await rest.cancel_order(resting["id"], BTC)
            seen = await orders_until(pro, lambda o: o["id"] == resting["id"] and o["status"] == "canceled",
                                      cancel_watch)
            assert seen[-1]["filled"] == pytest.approx(0.004)
        finally:
            await pro.close()
            await rest.close()
            await taker.close()

    asyncio.run(scenario())


def test_another_accounts_orders_are_not_pushed(venue: EmulatorServer) -> None:
    async def scenario() -> None:
        pro = ccxt_pro.binance(private_stream_config_for(venue.base_url, API_KEY, API_SECRET))
        taker = ccxt_async.binance(binance_config_for(venue.base_url, TAKER_KEY, TAKER_SECRET))
        rest = ccxt_async.binance(binance_config_for(venue.base_url, API_KEY, API_SECRET))
        try:
            await pro.load_markets()
            watch = asyncio.ensure_future(pro.watch_orders(BTC))
            await asyncio.sleep(0.5)
            bid = (await rest.fetch_order_book(BTC, 5))["bids"][0][0]
            await taker.create_order(BTC, "limit", "buy", 0.01, bid, {"newClientOrderId": "other"})
            await rest.create_order(BTC, "limit", "buy", 0.01, bid, {"newClientOrderId": "mine"})
            got = await asyncio.wait_for(watch, WATCH_SECS)
            assert [o["clientOrderId"] for o in got] == ["mine"]
        finally:
            await pro.close()
            await rest.close()
            await taker.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("params", "code"), [
    ({"apiKey": "nobody", "timestamp": 1, "signature": "00"}, -2015),
    ({"apiKey": API_KEY, "timestamp": "now", "signature": "00"}, -1022),  # the signature is checked first
])
def test_bad_subscriptions_are_refused_in_binance_shape(venue: EmulatorServer, params: dict, code: int) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                websocket_url_for(venue.base_url, "/ws-api/v3")) as ws:
            await ws.send_str(json.dumps({"id": "1", "method": "userDataStream.subscribe.signature",
                                          "params": params}))
            answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
            assert answer["id"] == "1" and answer["status"] >= 400 and answer["error"]["code"] == code
            await ws.send_str(json.dumps({"id": "2", "method": "order.place", "params": {}}))
            answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
            assert answer["status"] == 400 and answer["error"]["code"] == -1100
            assert not venue.user_streams._subscribers  # nothing subscribed

    asyncio.run(scenario())
