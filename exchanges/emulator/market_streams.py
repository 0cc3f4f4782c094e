"""The emulator's Binance-style websocket market streams: ``<symbol>@bookTicker`` pushes (and, through
``public_streams.PublicFeeds``, ``<symbol>@trade`` and ``<symbol>@depth@100ms`` on the same sockets).

ccxt.pro's binance spot client connects to ``/ws/<n>``, sends ``SUBSCRIBE`` / ``UNSUBSCRIBE`` /
``LIST_SUBSCRIPTIONS`` requests and gets Binance's answers; a subscriber then receives
``{"u", "s", "b", "B", "a", "A"}`` whenever the symbol's best bid or ask (price or size) changes,
and once right after subscribing (the current top, so a new client need not wait for a move).

The server calls ``BookTickerHub.books_changed()`` after anything that may move a book. One flush per
event-loop turn compares each subscribed symbol's top of book with the last one published, so a burst
of matching events becomes at most one frame per symbol. Each connection keeps only the newest unsent
frame per symbol: a slow reader gets coalesced frames, never an unbounded queue, and the matching path
never waits on a socket. The engine stays pure: the hub only reads ``engine.book_ticks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from decimal import Decimal

from aiohttp import WSCloseCode, WSMsgType, web

from exchanges.emulator.engine import MatchingEngine
from exchanges.emulator.public_streams import PublicFeeds

logger = logging.getLogger(__name__)

CHANNEL = "bookTicker"
HEARTBEAT_SECS = 20.0
"""Server pings this often (as Binance does); a client that misses the pong is disconnected."""
WRITER_LIMIT_BYTES = 16 * 1024
"""Unflushed bytes after which a send waits for the socket to drain (then frames coalesce instead)."""
CLOSE_TIMEOUT_SECS = 2.0
SUPPORTED_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
MAX_QUEUED_FRAMES = 10_000
"""Trade / depth frames (never coalesced) a client may fall behind before it is disconnected."""

Top = tuple[int, int, int, int]
"""(best bid ticks, bid lots, best ask ticks, ask lots); 0 for an empty side."""


class _RequestError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class StreamConnection:
    """One websocket client: its subscriptions and at most one pending frame per symbol."""

    def __init__(self, websocket: web.WebSocketResponse, request: web.Request):
        self.websocket = websocket
        self.request = request
        self.symbols: set[str] = set()
        self.pending: dict[str, str] = {}
        """symbol -> newest frame not yet written; bounded by the number of subscribed symbols."""
        self.frames_sent = 0
        self.frames_coalesced = 0
        """Frames replaced by a newer one before they could be written (the client read too slowly)."""
        self.ordered: deque[str] = deque()
        """Frames that must all arrive, in order (trades, depth updates)."""
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())

    def offer(self, symbol: str, frame: str) -> None:
        """Queue ``frame`` for ``symbol``, replacing an unsent older one. Never blocks."""
        if symbol in self.pending:
            self.frames_coalesced += 1
        self.pending[symbol] = frame
        self._wake.set()

    def send_in_order(self, frame: str) -> None:
        """Queue a frame that may not be coalesced or dropped; a client too far behind is disconnected."""
        if len(self.ordered) >= MAX_QUEUED_FRAMES:
            self.ordered.clear()
            self.pending.clear()
            asyncio.get_running_loop().create_task(self.websocket.close(code=WSCloseCode.POLICY_VIOLATION,
                                                                         message=b"slow consumer"))
            return
        self.ordered.append(frame)
        self._wake.set()

    def discard(self, symbol: str) -> None:
        """Drop the unsent frame of an unsubscribed symbol."""
        self.pending.pop(symbol, None)

    async def _write_loop(self) -> None:
        websocket = self.websocket
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.ordered:
                    await websocket.send_str(self.ordered.popleft())
                    self.frames_sent += 1
                while self.pending:
                    symbol = next(iter(self.pending))
                    frame = self.pending.pop(symbol)
                    await websocket.send_str(frame)  # waits only when the client is behind
                    self.frames_sent += 1
        except (ConnectionError, RuntimeError) as error:  # the socket closed under us
            logger.debug("book ticker writer stopped: %s", error)

    async def stop(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


class BookTickerHub:
    """Subscriptions, top-of-book change detection and coalesced pushes of one emulator."""

    def __init__(self, engine: MatchingEngine, first_update_id: int = 1):
        self._engine = engine
        self._symbols_by_stream_id = {spec.exchange_symbol.lower(): symbol for symbol, spec in engine.markets.items()}
        self._subscribers: dict[str, set[StreamConnection]] = {}
        self._tops: dict[str, Top] = {}
        self._frames: dict[str, str] = {}
        self._update_ids: dict[str, int] = {}
        self._first_update_id = first_update_id
        self.feeds = PublicFeeds(engine, first_update_id)
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[StreamConnection] = set()

    # --- the server's hook ---------------------------------------------------------------------------

    def books_changed(self) -> None:
        """Anything may have moved a best bid or ask: publish changes once, at the end of this loop turn."""
        if self._flush_handle is None and (self._subscribers or self.feeds.active) and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self.feeds.flush()
        for symbol, connections in self._subscribers.items():
            if self._refresh(symbol):
                frame = self._frames[symbol]
                for connection in connections:
                    connection.offer(symbol, frame)

    def _refresh(self, symbol: str) -> bool:
        """Re-read ``symbol``'s top of book; True (and a new update id and frame) if it changed."""
        bids, asks = self._engine.book_ticks(symbol, 1)
        top = (*(bids[0] if bids else (0, 0)), *(asks[0] if asks else (0, 0)))
        if self._tops.get(symbol) == top:
            return False
        self._tops[symbol] = top
        update_id = self._update_ids.get(symbol, self._first_update_id - 1) + 1
        self._update_ids[symbol] = update_id
        self._frames[symbol] = self.frame(symbol, update_id, top)
        return True

    def frame(self, symbol: str, update_id: int, top: Top) -> str:
        """The push of a new top of book (Binance ``bookTicker``; other dialects override it)."""
        spec = self._engine.markets[symbol]
        bid_ticks, bid_lots, ask_ticks, ask_lots = top
        return json.dumps({
            "u": update_id,
            "s": spec.exchange_symbol,
            "b": _fmt(spec.tick_size * bid_ticks),
            "B": _fmt(spec.lot_size * bid_lots),
            "a": _fmt(spec.tick_size * ask_ticks),
            "A": _fmt(spec.lot_size * ask_lots),
        }, separators=(",", ":"))

    async def subscribe(self, connection: StreamConnection, symbols: list[str]) -> list[str]:
        """Add ``symbols`` to ``connection``; returns the newly added ones (the caller acks, then calls
        ``push_current``)."""
        added = [symbol for symbol in symbols if symbol not in connection.symbols]
        for symbol in added:
            connection.symbols.add(symbol)
            self._subscribers.setdefault(symbol, set()).add(connection)
        return added

    def push_current(self, connection: StreamConnection, added: list[str]) -> None:
        """The current top of each newly subscribed symbol, after the ack (others see it only if it moved)."""
        for symbol in added:
            targets = self._subscribers[symbol] if self._refresh(symbol) else (connection,)
            for target in targets:
                target.offer(symbol, self._frames[symbol])

    # --- websocket endpoint ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws`` and ``/ws/<n>``: one client's requests until it disconnects."""
        websocket = web.WebSocketResponse(
            heartbeat=HEARTBEAT_SECS, compress=False, writer_limit=WRITER_LIMIT_BYTES, max_msg_size=64 * 1024,
            timeout=CLOSE_TIMEOUT_SECS,
        )
        await websocket.prepare(request)
        self._loop = asyncio.get_running_loop()
        connection = StreamConnection(websocket, request)
        self.connections.add(connection)
        try:
            async for message in websocket:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._answer(connection, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        except ConnectionError:  # the client vanished while we answered
            pass
        finally:
            self._forget(connection)
            await connection.stop()
        return websocket

    async def _answer(self, connection: StreamConnection, data: str | bytes) -> None:
        request_id = None
        try:
            try:
                request = json.loads(data)
            except ValueError as error:
                raise _RequestError(3, f"Invalid JSON: {error}") from None
            if not isinstance(request, dict):
                raise _RequestError(2, "Invalid request: expected an object")
            request_id = request.get("id")
            if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, int | str)):
                request_id = None
                raise _RequestError(2, "Invalid request: request ID must be an unsigned integer")
            method = request.get("method")
            if method is None:
                raise _RequestError(2, "Invalid request: missing field `method`")
            if method not in SUPPORTED_METHODS:
                expected = ", ".join(f"`{name}`" for name in SUPPORTED_METHODS)
                raise _RequestError(2, f"Invalid request: unknown variant `{method}`, expected one of {expected}")
            if method == "LIST_SUBSCRIPTIONS":
                result = sorted({*(self._stream_name(symbol) for symbol in connection.symbols),
                                 *self.feeds.streams_of(connection)})
                await connection.websocket.send_str(_json({"result": result, "id": request_id}))
                return
            symbols, feeds = self._symbols_of(request.get("params"))
            if method == "SUBSCRIBE":
                added = await self.subscribe(connection, symbols)
                for stream, symbol in feeds:
                    self.feeds.subscribe(connection, stream, symbol)
                await connection.websocket.send_str(_json({"result": None, "id": request_id}))
                self.push_current(connection, added)
            else:
                for symbol in symbols:
                    self._unsubscribe(connection, symbol)
                for stream, symbol in feeds:
                    self.feeds.unsubscribe(connection, stream, symbol)
                await connection.websocket.send_str(_json({"result": None, "id": request_id}))
        except _RequestError as error:
            await connection.websocket.send_str(
                _json({"error": {"code": error.code, "msg": error.message}, "id": request_id}))

    def _symbols_of(self, params: object) -> tuple[list[str], list[tuple[str, str]]]:
        """The bookTicker symbols, and the (stream, symbol) of trade / depth streams, a request names."""
        if not isinstance(params, list) or not all(isinstance(item, str) for item in params):
            raise _RequestError(2, "Invalid request: params must be a list of stream names")
        symbols = []
        feeds = []
        for stream in params:
            stream_id, _, channel = stream.partition("@")
            symbol = self._symbols_by_stream_id.get(stream_id.lower())
            if symbol is not None and channel != CHANNEL and self.feeds.channel_of(stream):
                feeds.append((f"{stream_id.lower()}@{channel}", symbol))
                continue
            if channel != CHANNEL or symbol is None:
                raise _RequestError(2, f"Invalid request: invalid stream {stream!r}")
            symbols.append(symbol)
        return symbols, feeds

    def _stream_name(self, symbol: str) -> str:
        return f"{self._engine.markets[symbol].exchange_symbol.lower()}@{CHANNEL}"

    def _unsubscribe(self, connection: StreamConnection, symbol: str) -> None:
        connection.symbols.discard(symbol)
        connection.discard(symbol)
        subscribers = self._subscribers.get(symbol)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self._subscribers[symbol]

    def _forget(self, connection: StreamConnection) -> None:
        self.feeds.forget(connection)
        for symbol in list(connection.symbols):
            self._unsubscribe(connection, symbol)
        self.connections.discard(connection)

    async def close(self) -> None:
        """Close every client socket with 1001 (going away); abort the ones that do not answer in time."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        connections = list(self.connections)

        async def close_one(connection: StreamConnection) -> None:
            await connection.stop()
            try:
                await asyncio.wait_for(
                    connection.websocket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"),
                    CLOSE_TIMEOUT_SECS)
            except (TimeoutError, ConnectionError, RuntimeError):
                transport = connection.request.transport
                if transport is not None:
                    transport.abort()

        await asyncio.gather(*(close_one(connection) for connection in connections))


def _fmt(value: Decimal) -> str:
    return f"{value:f}"


def _json(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))
