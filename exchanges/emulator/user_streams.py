"""The emulator's private streams: every change of an account's orders pushed to its subscribers.

``PrivateStreamHub`` is what every dialect shares. The matching engine reports each step of the orders
of an account someone subscribed to (``MatchingEngine.report_orders`` / ``order_listener``: accept,
each fill -- maker or taker --, cancel, expiry, self-trade prevention's included) with the order as it
stood right after that step and, for a fill, the account's side of the trade. The hub queues the steps
and renders them once, at the end of the loop turn, into each subscriber's frames, in order. Nothing
is coalesced or dropped: a client that falls more than ``MAX_PENDING_FRAMES`` behind is disconnected
(as venues drop a slow consumer) and reconciles by REST when it reconnects. Only accounts with a
subscriber cost anything. A dialect supplies the socket protocol (``answer``: login, subscribe, ping)
and the framing (``frames``); Binance's is ``UserDataHub`` below, OKX's and Bybit's live in
``exchanges.emulator.dialects.private_streams``.

Binance (``UserDataHub``): ccxt.pro's ``binance`` (spot) ``watch_orders`` / ``watch_my_trades`` connect to
``urls['api']['ws']['ws-api']['spot']`` (here ``ws://host:port/ws-api/v3``), send the signed
``userDataStream.subscribe.signature`` request (``apiKey``, ``timestamp``, HMAC-SHA256 of the sorted,
url-encoded parameters, as a REST request is signed) and then receive, on the same socket,
``{"subscriptionId": n, "event": {"e": "executionReport", ...}}`` for every change of the account's
orders: NEW when one is accepted, TRADE per fill (maker or taker), CANCELED, EXPIRED, and
TRADE_PREVENTION (status ``EXPIRED_IN_MATCH``) for an order self-trade prevention expired, resting or
incoming. Also served: ``userDataStream.unsubscribe`` and ``ping``. Other methods answer Binance's
error shape. After a loop turn's steps of an account, ``outboundAccountPosition`` with the free and locked
balances of the assets they moved, as they stand after all of them (``account_frames``): a client that has seen it
after a step's report holds balances that include that step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from exchanges.emulator.engine import MatchingEngine, OrderInfo, TradeInfo

logger = logging.getLogger(__name__)

PATH = "/ws-api/v3"
MAX_PENDING_FRAMES = 10_000
HEARTBEAT_SECS = 20.0
MAX_RECV_WINDOW_MS = 60_000

Credentials = Callable[[str], tuple[str, bytes] | None]
"""api key -> (account id, secret), None for an unknown key."""


@dataclass(frozen=True, slots=True)
class OrderStep:
    """One step of an order: ``kind`` NEW (accepted), TRADE (a fill: ``trade``), CANCELED or EXPIRED
    (an IOC / market remainder, or self-trade prevention: ``order.status`` ``EXPIRED_IN_MATCH``);
    ``order`` as it stood right after it."""

    kind: str
    order: OrderInfo
    trade: TradeInfo | None

    @property
    def prevented(self) -> bool:
        """Self-trade prevention took this order off (resting or incoming)."""
        return self.order.status == "EXPIRED_IN_MATCH"


_KINDS = {"accept": "NEW", "fill": "TRADE", "partial_fill": "TRADE", "cancel": "CANCELED", "expire": "EXPIRED"}


_connection_ids = itertools.count(1)


def fmt8(value: Decimal) -> str:
    return f"{value:.8f}"


class PushConnection:
    """One private-stream client: what it subscribed to (the dialect's business) and its ordered frames."""

    def __init__(self, websocket: web.WebSocketResponse):
        self.websocket = websocket
        self.conn_id = f"{next(_connection_ids):08x}"
        """The socket's id in the venue's answers (OKX ``connId``, Bybit ``conn_id``)."""
        self.account_id: str | None = None
        """The account a login / auth bound the socket to (OKX, Bybit)."""
        self.subscriptions: dict[Any, Any] = {}
        """The dialect's subscriptions on this socket."""
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write_loop())

    def send(self, frame: str) -> None:
        if self.queue.qsize() >= MAX_PENDING_FRAMES:
            logger.info("private stream: a client fell %s frames behind; disconnecting it", MAX_PENDING_FRAMES)
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
            logger.debug("private stream writer stopped: %s", error)

    @property
    def connection(self) -> PushConnection:
        """A connection is its own subscriber where a login binds the whole socket (OKX, Bybit)."""
        return self

    async def stop(self) -> None:
        self.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer


class PrivateStreamHub:
    """Subscribers by account and the pushes of one emulator; a dialect supplies ``answer`` and ``frames``.

    A subscriber is anything hashable with a ``connection`` (``PushConnection``) the dialect registers
    under an account with ``add`` (and removes with ``discard``); ``frames(subscriber, step, memo)`` says
    what that subscriber gets for a step (``memo``: a dict per step, to render a payload once for every
    subscriber)."""

    path = ""
    """The socket's URL path on the emulator."""

    def __init__(self, engine: MatchingEngine, credentials: Credentials):
        self._engine = engine
        self._credentials = credentials
        self._subscribers: dict[str, set[Any]] = {}
        self._pending: list[OrderStep] = []
        self._flush_handle: asyncio.Handle | None = None
        self.connections: set[PushConnection] = set()
        self.frames_sent = 0
        engine.order_listener = self.order_changed

    # --- what a dialect supplies ----------------------------------------------------------------------

    def answer(self, connection: PushConnection, raw: str) -> Iterable[str]:
        """The replies to one client message (login, subscribe, ping ...), in order."""
        raise NotImplementedError

    def frames(self, subscriber: Any, step: OrderStep, memo: dict[Hashable, Any]) -> Iterable[str]:
        """What ``subscriber`` receives for ``step`` (nothing when it did not subscribe to that)."""
        raise NotImplementedError

    def account_frames(self, subscriber: Any, account_id: str, assets: set[str],
                       memo: dict[Hashable, Any]) -> Iterable[str]:
        """What ``subscriber`` receives after a loop turn's steps of ``account_id``, which moved the balances of
        ``assets`` (rendered after every step of the turn: the balances as they stand once all of them are done).
        None by default (a dialect that pushes no balances)."""
        return ()

    # --- subscriptions --------------------------------------------------------------------------------

    def watched(self, account_id: str) -> bool:
        return account_id in self._subscribers

    def add(self, account_id: str, subscriber: Any) -> None:
        """Push ``account_id``'s order steps to ``subscriber`` from now on."""
        subscribers = self._subscribers.get(account_id)
        if subscribers is None:
            subscribers = self._subscribers[account_id] = set()
            self._engine.report_orders(account_id, True)
        subscribers.add(subscriber)

    def discard(self, account_id: str, subscriber: Any) -> None:
        subscribers = self._subscribers.get(account_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[account_id]
            self._engine.report_orders(account_id, False)

    def _drop(self, connection: PushConnection) -> None:
        """A socket closed: every subscriber on it goes."""
        self.connections.discard(connection)
        for account_id, subscribers in list(self._subscribers.items()):
            for subscriber in [s for s in subscribers if s.connection is connection]:
                self.discard(account_id, subscriber)

    # --- the engine's hook ------------------------------------------------------------------------------

    def order_changed(self, event: str, order: OrderInfo, trade: TradeInfo | None) -> None:
        """``MatchingEngine.order_listener``: queue the step, rendered at the end of this loop turn."""
        if order.account_id not in self._subscribers:
            return
        self._pending.append(OrderStep(_KINDS[event], order, trade))
        if self._flush_handle is None:
            try:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # the engine was driven outside the server's loop: render now
                self._flush()

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        moved: dict[str, set[str]] = {}  # account -> the assets this turn's steps moved, in the order first seen
        for step in pending:
            subscribers = self._subscribers.get(step.order.account_id)
            if not subscribers:
                continue
            spec = self._engine.markets[step.order.symbol]
            assets = moved.setdefault(step.order.account_id, set())
            assets.update((spec.base, spec.quote))
            if step.trade is not None and step.trade.fee_asset:
                assets.add(step.trade.fee_asset)
            memo: dict[Hashable, Any] = {}
            for subscriber in list(subscribers):
                for frame in self.frames(subscriber, step, memo):
                    subscriber.connection.send(frame)
                    self.frames_sent += 1
        for account_id, assets in moved.items():
            memo = {}
            for subscriber in list(self._subscribers.get(account_id, ())):
                for frame in self.account_frames(subscriber, account_id, assets, memo):
                    subscriber.connection.send(frame)
                    self.frames_sent += 1

    def order_fee(self, step: OrderStep) -> tuple[Decimal, str]:
        """The order's fees up to and including ``step`` and their asset (the engine books them per fill)."""
        order = step.order
        spec = self._engine.markets[order.symbol]
        asset = spec.base if order.side == "BUY" else spec.quote
        if not order.filled:
            return Decimal(0), asset
        last = step.trade.trade_id if step.trade is not None else None
        # its fills are no older than the order: the account's history is read from there on only
        trades = [t for t in self._engine.account_trades(order.account_id, order.symbol, since_ms=order.created_ms,
                                                         limit=10**9, order_id=order.order_id)
                  if last is None or t.trade_id <= last]
        return sum((t.fee for t in trades), Decimal(0)), trades[0].fee_asset if trades else asset

    # --- the socket -------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECS)
        await websocket.prepare(request)
        connection = PushConnection(websocket)
        self.connections.add(connection)
        try:
            async for message in websocket:
                if message.type != WSMsgType.TEXT:
                    continue
                for reply in self.answer(connection, message.data):
                    connection.send(reply)
        finally:
            self._drop(connection)
            await connection.stop()
        return websocket

    async def close(self) -> None:
        """Close every socket (a venue dropping its clients)."""
        for connection in list(self.connections):
            await connection.websocket.close()
            await connection.stop()


class UserDataHub(PrivateStreamHub):
    """Binance's user-data stream over the WebSocket API: ``executionReport`` pushes."""

    path = PATH

    def __init__(self, engine: MatchingEngine, credentials: Credentials):
        super().__init__(engine, credentials)
        self._next_subscription = 0
        self._next_prevented_match = 1

    def frames(self, subscriber: Any, step: OrderStep, memo: dict[Hashable, Any]) -> Iterable[str]:
        report = memo.get("report")
        if report is None:
            report = memo["report"] = self.execution_report(step)
        return (json.dumps({"subscriptionId": subscriber.subscription_id, "event": report}),)

    def account_frames(self, subscriber: Any, account_id: str, assets: set[str],
                       memo: dict[Hashable, Any]) -> Iterable[str]:
        """``outboundAccountPosition``: the free and locked balances of the assets the turn's steps moved, as they
        stand after all of them (Binance sends one after the ``executionReport`` of every change that moves the
        account's balances)."""
        position = memo.get("position")
        if position is None:
            now = int(time.time() * 1000)
            balances = self._engine.balances(account_id)
            position = memo["position"] = {
                "e": "outboundAccountPosition", "E": now, "u": now,
                "B": [{"a": asset, "f": fmt8(balances[asset].free), "l": fmt8(balances[asset].locked)}
                      for asset in sorted(assets) if asset in balances]}
        return (json.dumps({"subscriptionId": subscriber.subscription_id, "event": position}),)

    def execution_report(self, step: OrderStep) -> dict[str, Any]:
        order = step.order
        spec = self._engine.markets[order.symbol]
        execution_type = "TRADE_PREVENTION" if step.prevented else step.kind
        report: dict[str, Any] = {
            "e": "executionReport", "E": int(time.time() * 1000), "s": spec.exchange_symbol,
            "c": order.client_order_id, "S": order.side, "o": order.order_type,
            "f": order.time_in_force if order.order_type != "LIMIT_MAKER" else "GTC",
            "q": fmt8(order.quantity), "p": fmt8(order.price), "P": "0.00000000", "F": "0.00000000", "g": -1,
            "C": order.client_order_id if execution_type == "CANCELED" else "",
            "x": execution_type, "X": order.status, "r": "NONE", "i": order.order_id,
            "l": "0.00000000", "z": fmt8(order.filled), "L": "0.00000000", "n": "0", "N": None,
            "T": order.updated_ms, "t": -1, "I": 0, "w": order.is_open, "m": False, "M": False,
            "O": order.created_ms, "Z": fmt8(order.cumulative_quote), "Y": "0.00000000", "Q": "0.00000000",
            "W": order.created_ms, "V": order.self_trade_prevention,
        }
        if step.prevented:  # Binance's prevented-match fields
            report.update({"v": self._next_prevented_match, "A": fmt8(order.prevented_quantity),
                           "B": fmt8(order.prevented_quantity), "u": 0})
            self._next_prevented_match += 1
        trade = step.trade
        if trade is not None:
            report.update({"l": fmt8(trade.quantity), "L": fmt8(trade.price), "n": fmt8(trade.fee),
                           "N": trade.fee_asset, "T": trade.time_ms, "t": trade.trade_id, "m": trade.is_maker,
                           "M": True, "Y": fmt8(trade.quote_quantity)})
        return report

    def answer(self, connection: PushConnection, raw: str) -> Iterable[str]:
        return (json.dumps(self._answer(connection, raw)),)

    def _answer(self, connection: PushConnection, raw: str) -> dict[str, Any]:
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
                    self.discard(account_id, _Subscription(connection, sid))
            return {"id": request_id, "status": 200, "result": {}}
        return {"id": request_id, "status": 400, "error": {"code": -1100, "msg": f"Unknown method {method!r}."}}

    def _subscribe(self, connection: PushConnection, request_id: Any, params: dict) -> dict[str, Any]:
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
        self.add(account_id, _Subscription(connection, subscription_id))
        return {"id": request_id, "status": 200, "result": {"subscriptionId": subscription_id}}


class _Subscription(NamedTuple):
    """One Binance user-data subscription."""

    connection: PushConnection
    subscription_id: int
