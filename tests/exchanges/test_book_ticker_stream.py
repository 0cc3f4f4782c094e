"""Pushed best bid/ask: the emulator's ``/ws`` bookTicker streams, read by ccxt.pro's real ``binance``
class through ``exchanges.streams.BookTickerStream`` (and by a raw websocket for the protocol edges)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Iterator
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from exchanges_testkit import API_KEY, API_SECRET, admin, emulator_config

from exchanges.ccxt_config import binance_config_for, binance_stream_config_for, websocket_url_for
from exchanges.emulator.server import EmulatorServer
from exchanges.gateway import BestQuote
from exchanges.streams import BookTickerStream
from mmplatform import aio
from mmplatform.errors import BadSymbolError, ExchangeUnavailableError

BTC, ETH = "BTC/USDT", "ETH/USDT"
WATCH_SECS = 15.0  # a guard against hanging, not a speed assertion


@pytest.fixture
def venue() -> Iterator[EmulatorServer]:
    server = EmulatorServer(emulator_config())
    server.start_in_thread()
    yield server
    server.stop_thread()


async def set_mid(server: EmulatorServer, symbol: str, mid: str) -> tuple[D, D]:
    """POST /admin/mid; returns the new best bid and ask."""
    status, _ = await asyncio.to_thread(admin, server.base_url, "POST", "/admin/mid", {"symbol": symbol, "mid": mid})
    assert status == 200
    _, state = await asyncio.to_thread(admin, server.base_url, "GET", "/admin/state")
    return D(state["symbols"][symbol]["best_bid"]), D(state["symbols"][symbol]["best_ask"])


async def watch_until(stream: BookTickerStream, symbols: list[str], done) -> list[BestQuote]:
    """Every quote watched until ``done(quote)`` holds for one of them."""
    seen: list[BestQuote] = []
    while True:
        quotes = await asyncio.wait_for(stream.watch(symbols), WATCH_SECS)
        seen += quotes
        if any(done(quote) for quote in quotes):
            return seen


async def latest_of_each(stream: BookTickerStream, symbols: list[str]) -> dict[str, BestQuote]:
    latest: dict[str, BestQuote] = {}
    while set(latest) != set(symbols):
        for quote in await asyncio.wait_for(stream.watch(symbols), WATCH_SECS):
            latest[quote.symbol] = quote
    return latest


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8900", "ws://127.0.0.1:8900/ws"),
        ("http://127.0.0.1:8900/", "ws://127.0.0.1:8900/ws"),
        ("https://venue.example:443", "wss://venue.example:443/ws"),
        ("HTTPS://venue.example", "wss://venue.example/ws"),
    ],
)
def test_websocket_url_follows_the_api_base_url(base_url, expected):
    assert websocket_url_for(base_url) == expected
    client = ccxt_pro.binance(binance_stream_config_for(base_url))
    assert client.urls["api"]["ws"]["spot"] == expected
    assert client.urls["api"]["public"] == base_url.rstrip("/") + "/api/v3"
    assert not client.apiKey and not client.secret


@pytest.mark.parametrize("base_url", ["127.0.0.1:8900", "ftp://host", ""])
def test_a_base_url_without_http_scheme_is_refused(base_url):
    with pytest.raises(ValueError, match="expected http"):
        websocket_url_for(base_url)


# --- pushes through ccxt.pro ---------------------------------------------------------------------------


async def test_every_mid_move_reaches_the_stream_of_that_symbol_only(venue):
    stream = BookTickerStream("binance", venue.base_url)
    try:
        first = await latest_of_each(stream, [BTC, ETH])
        eth_before = first[ETH]
        update_id = first[BTC].update_id
        assert update_id is not None and first[BTC].bid < first[BTC].ask
        for step in range(1, 21):
            bid, ask = await set_mid(venue, BTC, str(60000 + 37 * step))
            seen = await watch_until(stream, [BTC, ETH], lambda q, bid=bid: q.symbol == BTC and q.bid == bid)
            assert [q.symbol for q in seen] == [BTC]  # ETH did not move: nothing pushed for it
            quote = seen[-1]
            assert (quote.bid, quote.ask) == (bid, ask) and quote.bid_size > 0 and quote.ask_size > 0
            assert quote.update_id == update_id + 1  # one update per move: none lost, none spurious
            update_id = quote.update_id
        bid, ask = await set_mid(venue, ETH, "3100")
        seen = await watch_until(stream, [BTC, ETH], lambda q: q.symbol == ETH)
        assert [(q.symbol, q.bid, q.ask) for q in seen] == [(ETH, bid, ask)]
        assert seen[0].update_id == eth_before.update_id + 1
    finally:
        await stream.close()


async def test_an_order_at_the_top_of_book_moves_the_book_ticker(venue):
    stream = BookTickerStream("binance", venue.base_url)
    trader = ccxt_async.binance(binance_config_for(venue.base_url, API_KEY, API_SECRET))
    try:
        before = (await latest_of_each(stream, [BTC]))[BTC]
        price = before.bid + D("0.01")  # improves the bid, does not cross
        order = await trader.create_order(BTC, "limit", "buy", 0.01, float(price))
        seen = await watch_until(stream, [BTC], lambda q: q.bid == price)
        assert (seen[-1].bid_size, seen[-1].ask, seen[-1].ask_size) == (D("0.01"), before.ask, before.ask_size)

        joined = await trader.create_order(BTC, "limit", "buy", 0.02, float(price))  # same level: size only
        seen = await watch_until(stream, [BTC], lambda q: q.bid_size == D("0.03"))
        assert seen[-1].bid == price

        await trader.cancel_order(order["id"], BTC)
        await trader.cancel_order(joined["id"], BTC)
        seen = await watch_until(stream, [BTC], lambda q: q.bid == before.bid)
        assert (seen[-1].bid_size, seen[-1].ask) == (before.bid_size, before.ask)
    finally:
        await trader.close()
        await stream.close()


async def test_a_symbol_the_venue_does_not_list_is_a_bad_symbol(venue):
    stream = BookTickerStream("binance", venue.base_url)
    try:
        with pytest.raises(BadSymbolError):
            await asyncio.wait_for(stream.watch(["DOGE/USDT"]), WATCH_SECS)
    finally:
        await stream.close()


async def test_the_stream_reconnects_after_a_server_restart(venue):
    stream = BookTickerStream("binance", venue.base_url, backoff_secs=0.05, backoff_max_secs=0.2)
    port = venue.port
    restarted = None
    try:
        await latest_of_each(stream, [BTC])
        pending = asyncio.ensure_future(stream.watch([BTC]))
        await asyncio.sleep(0)
        await asyncio.to_thread(venue.stop_thread)  # closes the socket (1001) under a waiting watch
        with pytest.raises(ExchangeUnavailableError):
            await asyncio.wait_for(pending, WATCH_SECS)

        restarted = EmulatorServer(emulator_config(port=port))
        await asyncio.to_thread(restarted.start_in_thread)
        failures = 0
        while True:  # each call reconnects (after a backoff) until the venue answers
            try:
                await asyncio.wait_for(stream.watch([BTC]), WATCH_SECS)
                break
            except ExchangeUnavailableError:
                failures += 1
                assert failures < 50
        bid, ask = await set_mid(restarted, BTC, "58000")
        seen = await watch_until(stream, [BTC], lambda q: q.bid == bid)
        assert seen[-1].ask == ask
    finally:
        await stream.close()
        if restarted is not None:
            await asyncio.to_thread(restarted.stop_thread)


async def test_keepalive_pings_are_answered_so_an_idle_stream_stays_up(venue):
    stream = BookTickerStream("binance", venue.base_url, keepalive_secs=0.05)
    try:
        await latest_of_each(stream, [BTC])
        (client,) = stream._exchange.clients.values()
        await asyncio.sleep(0.5)  # ten ping intervals: two unanswered pings in a row would drop the socket
        bid, _ = await set_mid(venue, BTC, "60500")
        await watch_until(stream, [BTC], lambda q: q.bid == bid)
        assert list(stream._exchange.clients.values()) == [client] and client.lastPong is not None
    finally:
        await stream.close()


def test_the_stream_runs_on_the_process_io_loop(venue):
    """Celery workers call async code through ``mmplatform.aio.run`` on one background loop."""
    stream = BookTickerStream("binance", venue.base_url)
    try:
        first = aio.run(latest_of_each(stream, [BTC, ETH]))
        assert set(first) == {BTC, ETH}
        bid, _ = aio.run(set_mid(venue, ETH, "3050"))
        seen = aio.run(watch_until(stream, [BTC, ETH], lambda q: q.symbol == ETH and q.bid == bid))
        assert seen[-1].update_id == first[ETH].update_id + 1
    finally:
        aio.run(stream.close())


# --- the protocol, with a plain websocket ----------------------------------------------------------------


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive_str(), WATCH_SECS))


async def test_requests_are_answered_in_binance_shapes(venue):
    async with aiohttp.ClientSession() as session, session.ws_connect(websocket_url_for(venue.base_url) + "/0") as ws:
        cases = [
            ({"method": "SUBSCRIBE", "params": ["dogeusdt@bookTicker"], "id": 1}, 2, "invalid stream"),
            ({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 2}, 2, "invalid stream"),
            ({"method": "SUBSCRIBE", "params": "btcusdt@bookTicker", "id": 3}, 2, "params"),
            ({"method": "SUBSCRIB", "params": ["btcusdt@bookTicker"], "id": 4}, 2, "unknown variant `SUBSCRIB`"),
            ({"params": [], "id": 5}, 2, "missing field `method`"),
        ]
        for request, code, message in cases:
            await ws.send_json(request)
            answer = await receive_json(ws)
            assert answer["id"] == request["id"] and answer["error"]["code"] == code, answer
            assert message in answer["error"]["msg"]
        await ws.send_str("{not json")
        answer = await receive_json(ws)
        assert answer["error"]["code"] == 3 and answer["id"] is None
        # a rejected request subscribes nothing, not even its valid streams
        await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker", "xxxusdt@bookTicker"], "id": 6})
        assert (await receive_json(ws))["error"]["code"] == 2
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 7})
        assert await receive_json(ws) == {"result": [], "id": 7}

        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "ETHUSDT@bookTicker"], "id": 8})
        assert await receive_json(ws) == {"result": None, "id": 8}
        snapshots = {frame["s"]: frame for frame in [await receive_json(ws), await receive_json(ws)]}
        assert set(snapshots) == {"BTCUSDT", "ETHUSDT"}
        assert set(snapshots["BTCUSDT"]) == {"u", "s", "b", "B", "a", "A"}
        assert D(snapshots["BTCUSDT"]["b"]) < D(snapshots["BTCUSDT"]["a"])
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 9})
        assert await receive_json(ws) == {"result": ["btcusdt@bookTicker", "ethusdt@bookTicker"], "id": 9}


async def test_unsubscribe_stops_the_pushes_of_that_symbol(venue):
    async with aiohttp.ClientSession() as session, session.ws_connect(websocket_url_for(venue.base_url) + "/1") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "ethusdt@bookTicker"], "id": 1})
        assert await receive_json(ws) == {"result": None, "id": 1}
        await receive_json(ws), await receive_json(ws)  # the two snapshots
        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 2})
        assert await receive_json(ws) == {"result": None, "id": 2}

        await set_mid(venue, BTC, "61000")
        eth_bid, eth_ask = await set_mid(venue, ETH, "3100")
        # frames keep their order on one socket: had BTC still been pushed, it would come first
        frame = await receive_json(ws)
        assert (frame["s"], D(frame["b"]), D(frame["a"])) == ("ETHUSDT", eth_bid, eth_ask)
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert await receive_json(ws) == {"result": ["ethusdt@bookTicker"], "id": 3}


async def test_closing_the_server_closes_the_sockets_with_going_away():
    server = EmulatorServer(emulator_config())
    await server.start()
    async with aiohttp.ClientSession() as session, session.ws_connect(websocket_url_for(server.base_url)) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1})
        await receive_json(ws), await receive_json(ws)
        stopping = asyncio.ensure_future(server.stop())
        message = await asyncio.wait_for(ws.receive(), WATCH_SECS)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == aiohttp.WSCloseCode.GOING_AWAY
        await asyncio.wait_for(stopping, WATCH_SECS)
    assert not server.streams.connections


# --- a slow reader -------------------------------------------------------------------------------------------


class RawWebSocket:
    """A blocking websocket client with a tiny receive buffer, so the server's writes back up."""

    def __init__(self, host: str, port: int, path: str = "/ws/0"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, port))
        self.sock.settimeout(WATCH_SECS)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_json(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        assert len(data) < 126
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the socket"
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive_json(self) -> dict:
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            payload = self._read(length)
            if first & 0x0F == 0x1:
                return json.loads(payload)

    def close(self) -> None:
        self.sock.close()


def test_a_slow_reader_gets_coalesced_frames_not_a_growing_queue(venue):
    client = RawWebSocket(venue.config.host, venue.port)
    try:
        client.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "ethusdt@bookTicker"], "id": 1})
        assert client.receive_json() == {"result": None, "id": 1}

        def connection():
            (only,) = venue.streams.connections
            return only

        def shrink_send_buffer() -> None:  # the kernel would otherwise absorb megabytes first
            server_socket = connection().request.transport.get_extra_info("socket")
            server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        venue.call(shrink_send_buffer)

        def pending_state() -> tuple[int, int, int]:
            conn = connection()
            return len(conn.pending), conn.request.transport.get_write_buffer_size(), conn.frames_coalesced

        worst_pending = worst_buffer = 0
        for step in range(4000):  # ~500 kB of frames, far more than the socket buffers hold
            venue.call(lambda step=step: venue.market.set_mid(BTC, D(60000 + (step % 500))))
            if step % 100 == 0:
                pending, buffered, _ = venue.call(pending_state)
                worst_pending, worst_buffer = max(worst_pending, pending), max(worst_buffer, buffered)
        pending, buffered, coalesced = venue.call(pending_state)
        assert coalesced > 0  # the reader fell behind and frames were replaced, not queued
        assert max(worst_pending, pending) <= 2  # at most one unsent frame per subscribed symbol
        assert max(worst_buffer, buffered) < 512 * 1024  # the transport buffer stays bounded too

        final_bid = D(venue.call(lambda: venue.state())["symbols"][BTC]["best_bid"])
        while True:  # reading again drains everything; the newest state arrives, nothing is stuck
            frame = client.receive_json()
            if frame.get("s") == "BTCUSDT" and D(frame["b"]) == final_bid:
                break
    finally:
        client.close()
