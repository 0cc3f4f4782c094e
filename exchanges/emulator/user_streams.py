"""The emulator's Binance user-data stream over the WebSocket API: ``executionReport`` pushes.

ccxt.pro's ``binance`` (spot) ``watch_orders`` / ``watch_my_trades`` connect to
``urls['api']['ws']['ws-api']['spot']`` (here ``ws://host:port/ws-api/v3``), send the signed
``userDataStream.subscribe.signature`` request (``apiKey``, ``timestamp``, HMAC-SHA256 of the sorted,
url-encoded parameters, as a REST request is signed) and then receive, on the same socket,
``{"subscriptionId": n, "event": {"e": "executionReport", ...}}`` for every change of the account's
orders: NEW when one is accepted, TRADE per fill (maker or taker), CANCELED, EXPIRED. Also served:
``userDataStream.unsubscribe`` and ``ping``. Other methods answer Binance's error shape.

The server reports changes (``order_event``) from its request handlers and its trade listener; the hub
queues them and builds the frames once, at the end of the loop turn, from the engine's state then (an
order's cumulative figures are its newest; a TRADE's own price/quantity/fee come from its trade
record). Only accounts with a subscriber cost anything. Nothing is coalesced or dropped: a client that
falls more than ``MAX_PENDING_FRAMES`` behind is disconnected (as Binance drops a slow consumer), and
reconciles by REST when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from exchanges.emulator.engine import EngineError, MatchingEngine, OrderInfo

logger = logging.getLogger(__name__)

PATH = "/ws-api/v3"
MAX_PENDING_FRAMES = 10_000
HEARTBEAT_SECS = 20.0
MAX_RECV_WINDOW_MS = 60_000

Event = tuple[str, str, str, int, int | None]
"""(execution type, account id, symbol, order id, trade id or None)."""


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


class UserConnection:
    """One WebSocket API client: its subscriptions (account per subscription id) and ordered frames."""

    def __init__(self, websocket: web.WebSocketResponse):
        self.websocket = websocket
        self.subscriptions: dict[int, str] = {}
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write_loop())

    def send(self, frame: str) -> None:
        if self.queue.qsize() >= MAX_PENDING_FRAMES:
            logger.info("user stream: a client fell %s frames behind; disconnecting it", MAX_PENDING_FRAMES)
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(frame)

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    await self.websocket.close()
                    return
                await self.websocket.send_str(frame)
        except (ConnectionError, RuntimeError) as error:
            logger.debug("user stream writer stopped: %s", error)

    async def stop(self) -> None:
        self.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer


class UserDataHub:
    """Subscriptions by account and the executionReport pushes of one emulator (Binance dialect)."""

    def __init__(self, engine: MatchingEngine, credentials: Callable[[str], tuple[str, bytes] | None]):
        """``credentials(api_key)`` -> (account id, secret) or None for an unknown key."""
        self._engine = engine
        self._credentials = credentials
        self._subscribers: dict[str, set[tuple[UserConnection, int]]] = {}
        self._pending: list[Event] = []
        self._flush_handle: asyncio.Handle | None = None
        self._next_subscription = 0
        self.connections: set[UserConnection] = set()
        self.frames_sent = 0

    # --- the server's hooks ------------------------------------------------------------------------------

    def watched(self, account_id: str) -> bool:
        return account_id in self._subscribers

    def order_event(self, execution_type: str, order: OrderInfo, trade_id: int | None = None) -> None:
        """An order of ``order.account_id`` changed (on the server's loop): pushed at the end of this turn."""
        self.event(execution_type, order.account_id, order.symbol, order.order_id, trade_id)

    def event(self, execution_type: str, account_id: str, symbol: str, order_id: int, trade_id: int | None) -> None:
        if account_id not in self._subscribers:
            return
        self._pending.append((execution_type, account_id, symbol, order_id, trade_id))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        for execution_type, account_id, symbol, order_id, trade_id in pending:
            subscribers = self._subscribers.get(account_id)
            if not subscribers:
                continue
            try:
                report = self.execution_report(execution_type, account_id, symbol, order_id, trade_id)
            except EngineError:
                continue
            for connection, subscription_id in subscribers:
                connection.send(json.dumps({"subscriptionId": subscription_id, "event": report}))
                self.frames_sent += 1

    def execution_report(self, execution_type: str, account_id: str, symbol: str, order_id: int,
                         trade_id: int | None) -> dict[str, Any]:
        order = self._engine.get_order(account_id, symbol, order_id=order_id)
        spec = self._engine.markets[symbol]
        now = int(time.time() * 1000)
        report: dict[str, Any] = {
            "e": "executionReport", "E": now, "s": spec.exchange_symbol, "c": order.client_order_id,
            "S": order.side, "o": order.order_type,
            "f": order.time_in_force if order.order_type != "LIMIT_MAKER" else "GTC",
            "q": _fmt(order.quantity), "p": _fmt(order.price), "P": "0.00000000", "F": "0.00000000", "g": -1,
            "C": order.client_order_id if execution_type == "CANCELED" else "",
            "x": execution_type, "X": order.status, "r": "NONE", "i": order.order_id,
            "l": "0.00000000", "z": _fmt(order.filled), "L": "0.00000000", "n": "0", "N": None,
            "T": order.updated_ms, "t": -1, "I": 0, "w": order.is_open, "m": False, "M": False,
            "O": order.created_ms, "Z": _fmt(order.cumulative_quote), "Y": "0.00000000", "Q": "0.00000000",
            "W": order.created_ms, "V": "NONE",
        }
        if trade_id is not None:
            trade = next((t for t in self._engine.account_trades(account_id, symbol, order_id=order_id, limit=1000)
                          if t.trade_id == trade_id), None)
            if trade is not None:
                report.update({"l": _fmt(trade.quantity), "L": _fmt(trade.price), "n": _fmt(trade.fee),
                               "N": trade.fee_asset, "T": trade.time_ms, "t": trade.trade_id, "m": trade.is_maker,
                               "M": True, "Y": _fmt(trade.quote_quantity)})
        return report

    # --- the socket -------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECS)
        await websocket.prepare(request)
        connection = UserConnection(websocket)
        self.connections.add(connection)
        try:
            async for message in websocket:
                if message.type != WSMsgType.TEXT:
                    continue
                connection.send(json.dumps(self._answer(connection, message.data)))
        finally:
            self._drop(connection)
            await connection.stop()
        return websocket

    def _drop(self, connection: UserConnection) -> None:
        self.connections.discard(connection)
        for subscription_id, account_id in connection.subscriptions.items():
            subscribers = self._subscribers.get(account_id)
            if subscribers is not None:
                subscribers.discard((connection, subscription_id))
                if not subscribers:
                    del self._subscribers[account_id]

    def _answer(self, connection: UserConnection, raw: str) -> dict[str, Any]:
        try:
            request = json.loads(raw)
            request_id = request.get("id")
            method = request["method"]
            params = request.get("params") or {}
        except (ValueError, KeyError, AttributeError, TypeError):
            return {"id": None, "status": 400, "error": {"code": -1102, "msg": "Malformed request."}}
        if method == "ping":
            return {"id": request_id, "status": 200, "result": {}}
        if method == "userDataStream.subscribe.signature":
            return self._subscribe(connection, request_id, params)
        if method == "userDataStream.unsubscribe":
            subscription_id = params.get("subscriptionId")
            for sid in list(connection.subscriptions) if subscription_id is None else [subscription_id]:
                account_id = connection.subscriptions.pop(sid, None)
                if account_id is not None:
                    self._subscribers.get(account_id, set()).discard((connection, sid))
                    if not self._subscribers.get(account_id):
                        self._subscribers.pop(account_id, None)
            return {"id": request_id, "status": 200, "result": {}}
        return {"id": request_id, "status": 400, "error": {"code": -1100, "msg": f"Unknown method {method!r}."}}

    def _subscribe(self, connection: UserConnection, request_id: Any, params: dict) -> dict[str, Any]:
        def error(code: int, msg: str, status: int = 400) -> dict[str, Any]:
            return {"id": request_id, "status": status, "error": {"code": code, "msg": msg}}

        entry = self._credentials(str(params.get("apiKey") or ""))
        if entry is None:
            return error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        account_id, secret = entry
        signature = str(params.get("signature") or "")
        unsigned = {k: v for k, v in params.items() if k != "signature"}
        payload = urlencode(sorted((k, str(v).lower() if isinstance(v, bool) else str(v))
                                   for k, v in unsigned.items()))
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected, signature.lower()):
            return error(-1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            return error(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        now = int(time.time() * 1000)
        if not 0 < recv_window <= MAX_RECV_WINDOW_MS or timestamp > now + 1000 or now - timestamp > recv_window:
            return error(-1021, "Timestamp for this request is outside of the recvWindow.")
        subscription_id = self._next_subscription
        self._next_subscription += 1
        connection.subscriptions[subscription_id] = account_id
        self._subscribers.setdefault(account_id, set()).add((connection, subscription_id))
        return {"id": request_id, "status": 200, "result": {"subscriptionId": subscription_id}}

    async def close(self) -> None:
        for connection in list(self.connections):
            await connection.websocket.close()
            await connection.stop()
