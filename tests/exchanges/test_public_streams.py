"""The Binance dialect's public ``<symbol>@trade`` and ``<symbol>@depth@100ms`` streams, read by ccxt.pro's
unmodified ``binance`` class (``watch_trades``, ``watch_order_book``: only its URLs point at the emulator)
and by a raw websocket for the protocol (update ids without gaps, ``GET /api/v3/depth``'s ``lastUpdateId``
consistent with them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from exchanges_testkit import API_KEY, API_SECRET, START_BALANCES, admin, emulator_config

from exchanges.ccxt_config import binance_config_for, binance_stream_config_for, websocket_url_for
from exchanges.emulator.server import AccountConfig, EmulatorServer

BTC = "BTC/USDT"
WATCH_SECS = 15.0  # a guard against hanging, not a speed assertion


@pytest.fixture
def venue() -> Iterator[EmulatorServer]:
    server = EmulatorServer(emulator_config(accounts=(
        AccountConfig(API_KEY, API_SECRET, dict(START_BALANCES)),
        AccountConfig("taker-key", "taker-secret", dict(START_BALANCES)),
    )))
    server.start_in_thread()
    yield server
    server.stop_thread()


async def set_mid(server: EmulatorServer, mid: str) -> None:
    status, _ = await asyncio.to_thread(admin, server.base_url, "POST", "/admin/mid", {"symbol": BTC, "mid": mid})
    assert status == 200


def engine_book(server: EmulatorServer, depth: int = 1000) -> tuple[list[list[float]], list[list[float]]]:
    book = server.call(lambda: server.engine.book(BTC, depth))
    return ([[float(level.price), float(level.quantity)] for level in book.bids],  # type: ignore[attr-defined]
            [[float(level.price), float(level.quantity)] for level in book.asks])  # type: ignore[attr-defined]


async def book_becomes(client, server: EmulatorServer) -> dict:
    """Watch until ccxt.pro's local book equals the engine's, level for level (an update that arrived
    before this call is already in the local book: ``watch_order_book`` only waits for the next one)."""
    deadline = asyncio.get_running_loop().time() + WATCH_SECS
    if BTC in client.orderbooks:
        book = client.orderbooks[BTC].limit()
    else:
        book = await asyncio.wait_for(client.watch_order_book(BTC), WATCH_SECS)
    while True:
        bids, asks = engine_book(server)
        if [list(level[:2]) for level in book["bids"]] == bids and [list(level[:2]) for level in book["asks"]] == asks:
            return book
        assert asyncio.get_running_loop().time() < deadline, "the local book never matched the venue's"
        try:
            book = await asyncio.wait_for(client.watch_order_book(BTC), 0.5)
        except TimeoutError:
            book = client.orderbooks[BTC].limit()


async def test_watch_order_book_keeps_ccxt_pros_local_book_equal_to_the_venues(venue):
    client = ccxt_pro.binance(binance_stream_config_for(venue.base_url))
    trader = ccxt_async.binance(binance_config_for(venue.base_url, API_KEY, API_SECRET))
    try:
        book = await book_becomes(client, venue)
        assert book["bids"] and book["asks"] and book["bids"][0][0] < book["asks"][0][0]
        nonce = book["nonce"]
        # every kind of change: the market moves, an order joins a level, adds one, is cancelled, trades
        for step, mid in enumerate(("60100", "59950", "60020")):
            await set_mid(venue, mid)
            book = await book_becomes(client, venue)
            best_bid = book["bids"][0][0]
            joined = await trader.create_order(BTC, "limit", "buy", 0.01, best_bid)
            added = await trader.create_order(BTC, "limit", "sell", 0.02, book["asks"][0][0] + 5 + step)
            book = await book_becomes(client, venue)
            await trader.cancel_order(joined["id"], BTC)
            await trader.create_order(BTC, "market", "buy", 0.03)  # takes the best asks
            await trader.cancel_order(added["id"], BTC)
            book = await book_becomes(client, venue)
        assert book["nonce"] > nonce  # it followed the diffs (a gap would have raised in ccxt.pro)
    finally:
        await trader.close()
        await client.close()


async def test_watch_trades_gets_every_trade_of_the_symbol_with_the_venues_ids(venue):
    client = ccxt_pro.binance(binance_stream_config_for(venue.base_url))
    taker = ccxt_async.binance(binance_config_for(venue.base_url, "taker-key", "taker-secret"))
    maker = ccxt_async.binance(binance_config_for(venue.base_url, API_KEY, API_SECRET))
    try:
        first = asyncio.ensure_future(client.watch_trades(BTC))
        await asyncio.sleep(0.5)  # the subscription is acknowledged before the trades happen
        ask = (await maker.fetch_order_book(BTC, 5))["bids"][0][0] + 20
        resting = await maker.create_order(BTC, "limit", "sell", 0.05, ask)
        await taker.create_order(BTC, "limit", "buy", 0.02, ask)  # fills against the resting sell: maker sold
        await taker.create_order(BTC, "market", "sell", 0.01)  # hits the market's bids: the buyer was the maker
        await asyncio.wait_for(first, WATCH_SECS)
        deadline = asyncio.get_running_loop().time() + WATCH_SECS
        # (trades that arrive between two calls are in ccxt.pro's cache, not in the next call's answer)
        while sum(t["amount"] for t in client.trades[BTC]) < 0.03 - 1e-12:
            assert asyncio.get_running_loop().time() < deadline, list(client.trades[BTC])
            await asyncio.sleep(0.05)
        seen = list(client.trades[BTC])
        venue_trades = await taker.fetch_my_trades(BTC)
        assert [t["id"] for t in seen] == [t["id"] for t in venue_trades]
        assert [(t["price"], t["amount"], t["side"]) for t in seen] == [
            (t["price"], t["amount"], t["side"]) for t in venue_trades]
        assert seen[0]["side"] == "buy" and seen[-1]["side"] == "sell"
        assert seen[0]["price"] == ask and (await maker.fetch_order(resting["id"], BTC))["filled"] == 0.02
    finally:
        await taker.close()
        await maker.close()
        await client.close()


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive_str(), WATCH_SECS))


async def test_depth_updates_count_without_gaps_from_the_rest_snapshots_last_update_id(venue):
    async with aiohttp.ClientSession() as session, session.ws_connect(websocket_url_for(venue.base_url) + "/0") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 1})
        assert await receive_json(ws) == {"result": None, "id": 1}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert await receive_json(ws) == {"result": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 2}
        async with session.get(venue.base_url + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000}) as r:
            snapshot = await r.json()
        last = snapshot["lastUpdateId"]
        book = {"bids": {D(p): D(q) for p, q in snapshot["bids"]}, "asks": {D(p): D(q) for p, q in snapshot["asks"]}}
        await set_mid(venue, "60300")
        await set_mid(venue, "60250")
        seen = 0
        while True:
            frame = await receive_json(ws)
            assert frame["e"] == "depthUpdate" and frame["s"] == "BTCUSDT"
            if frame["u"] <= snapshot["lastUpdateId"]:
                continue  # Binance's recipe: drop what the snapshot already holds
            assert frame["U"] == last + 1 and frame["u"] >= frame["U"]  # no gap, from the snapshot on
            last = frame["u"]
            for side, key in (("bids", "b"), ("asks", "a")):
                for price, quantity in frame[key]:
                    if D(quantity) == 0:
                        book[side].pop(D(price), None)
                    else:
                        book[side][D(price)] = D(quantity)
            seen += 1
            async with session.get(venue.base_url + "/api/v3/depth", params={"symbol": "BTCUSDT"}) as r:
                now = await r.json()
            if now["lastUpdateId"] == last:
                break
        assert seen >= 2
        # the snapshot plus the updates is the venue's book at that update id
        assert sorted(book["bids"].items(), reverse=True)[:100] == [(D(p), D(q)) for p, q in now["bids"]]
        assert sorted(book["asks"].items())[:100] == [(D(p), D(q)) for p, q in now["asks"]]
        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 3})
        assert await receive_json(ws) == {"result": None, "id": 3}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 4})
        assert await receive_json(ws) == {"result": ["btcusdt@trade"], "id": 4}
