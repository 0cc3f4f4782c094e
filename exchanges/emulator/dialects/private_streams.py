"""Private (account) websocket streams of the OKX and Bybit dialects, on the shared private-stream
machinery (``exchanges.emulator.user_streams.PrivateStreamHub``: the engine reports every step of a
subscribed account's orders, rendered once per loop turn, in order, never coalesced):

* OKX ``/ws/v5/private``: ``{"op": "login", "args": [{"apiKey", "passphrase", "timestamp", "sign"}]}``
  with ``sign`` = base64(HMAC-SHA256(secret, timestamp + "GET" + "/users/self/verify")) (timestamp in
  seconds, within 30 s) -> ``{"event": "login", "code": "0"}`` or ``{"event": "error", "code": ...}``
  (60005 unknown key, 60024 wrong passphrase, 60004 / 60006 bad or stale timestamp, 60007 bad sign: the
  codes ccxt maps to ``AuthenticationError`` / ``InvalidNonce``); then ``subscribe`` to the ``orders``
  channel (``instType`` SPOT or ANY, optional ``instId``; 60011 before a login) and every step of the
  account's orders is pushed as ``{"arg", "data": [order]}`` -- state live / partially_filled / filled /
  canceled (self-trade prevention: ``cancelSource`` 32), a fill with its ``tradeId``, ``fillPx``,
  ``fillSz``, ``fillFee`` (negative: paid), ``fillFeeCcy``, ``fillTime`` and ``execType`` (T / M), what
  ccxt.pro's ``okx`` reads for ``watch_orders`` and (from the same channel) ``watch_my_trades``. Text
  ``ping`` -> ``pong``.
* Bybit ``/v5/private``: ``{"op": "auth", "args": [apiKey, expires, signature]}`` with ``signature`` =
  hex HMAC-SHA256(secret, "GET/realtime" + expires) (expires in ms, in the future) ->
  ``{"success": true, "op": "auth"}`` or ``{"retCode": 10003 | 10004 | 10002, "retMsg", "op": "auth"}``
  (ccxt: ``AuthenticationError``, ``InvalidNonce``); then ``subscribe`` to ``order`` and / or
  ``execution`` (also ``order.spot``, ``execution.spot``; "Request not authorized" before an auth): every
  order step as ``{"topic": "order", "data": [order]}`` and every fill as
  ``{"topic": "execution", "data": [execution]}``, Bybit v5's fields (``category`` spot), what ccxt.pro's
  ``bybit`` reads for ``watch_orders`` / ``watch_my_trades``. ``{"op": "ping"}`` -> ``{"op": "pong"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from exchanges.emulator.dialects.base import fmt, now_ms
from exchanges.emulator.user_streams import Credentials, OrderStep, PrivateStreamHub, PushConnection

if TYPE_CHECKING:
    from exchanges.emulator.dialects.bybit import BybitDialect
    from exchanges.emulator.dialects.okx import OkxDialect
    from exchanges.emulator.engine import MatchingEngine

MAX_CLOCK_SKEW_SECS = 30
OKX_INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "ANY")
"""What OKX's ``orders`` channel takes; the emulator lists spot only, so SPOT and ANY get pushes."""
BYBIT_TOPICS = {"order": "order", "order.spot": "order", "execution": "execution", "execution.spot": "execution"}
"""Bybit private topics served -> what they carry."""

def _dumps(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


class OkxPrivateHub(PrivateStreamHub):
    """OKX ``/ws/v5/private``: login, the ``orders`` channel."""

    path = "/ws/v5/private"

    def __init__(self, engine: MatchingEngine, credentials: Credentials, dialect: OkxDialect):
        super().__init__(engine, credentials)
        self._dialect = dialect

    def _error(self, connection: PushConnection, code: str, message: str) -> str:
        return _dumps({"event": "error", "code": code, "msg": message, "connId": connection.conn_id})

    def answer(self, connection: PushConnection, raw: str) -> Iterable[str]:
        if raw == "ping":
            return ("pong",)
        try:
            request = json.loads(raw)
            op, args = request["op"], request["args"]
            if not isinstance(args, list) or not all(isinstance(arg, dict) for arg in args):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return (self._error(connection, "60012", f"Illegal request: {raw[:200]}"),)
        if op == "login":
            return (self._login(connection, args),)
        if op in ("subscribe", "unsubscribe"):
            return [self._subscription(connection, op, arg) for arg in args]
        return (self._error(connection, "60019", f"Invalid op: op:{op}"),)

    def _login(self, connection: PushConnection, args: list[dict]) -> str:
        if len(args) != 1:
            return self._error(connection, "60012", "Illegal request: login takes one argument")
        arg = args[0]
        api_key = str(arg.get("apiKey") or "")
        entry = self._credentials(api_key)
        if entry is None:
            return self._error(connection, "60005", "Invalid OK-ACCESS-KEY")
        account_id, secret = entry
        if not hmac.compare_digest(str(arg.get("passphrase") or ""), self._dialect.server.passphrase_of(api_key)):
            return self._error(connection, "60024", "Wrong passphrase")
        stamp = str(arg.get("timestamp") or "")
        try:
            stamp_secs = float(stamp)
        except ValueError:
            return self._error(connection, "60004", "Invalid timestamp")
        if abs(now_ms() / 1000 - stamp_secs) > MAX_CLOCK_SKEW_SECS:
            return self._error(connection, "60006", "Timestamp request expired")
        expected = base64.b64encode(hmac.new(secret, f"{stamp}GET/users/self/verify".encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, str(arg.get("sign") or "")):
            return self._error(connection, "60007", "Invalid sign")
        if connection.account_id is not None and connection.account_id != account_id:
            self._unsubscribe_all(connection)
        connection.account_id = account_id
        return _dumps({"event": "login", "code": "0", "msg": "", "connId": connection.conn_id})

    def _subscription(self, connection: PushConnection, op: str, arg: dict) -> str:
        channel, inst_type, inst_id = arg.get("channel"), arg.get("instType"), arg.get("instId")
        if channel != "orders" or inst_type not in OKX_INST_TYPES or (
                inst_id is not None and str(inst_id).replace("-", "/") not in self._engine.markets):
            return self._error(connection, "60018", f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist")
        if connection.account_id is None:
            return self._error(connection, "60011", "Please log in")
        key = ("orders", inst_type, inst_id)
        if op == "subscribe":
            connection.subscriptions[key] = {k: arg[k] for k in ("channel", "instType", "instId", "instFamily")
                                             if arg.get(k) is not None}
            self.add(connection.account_id, connection)
        else:
            connection.subscriptions.pop(key, None)
            if not any(isinstance(k, tuple) for k in connection.subscriptions):
                self.discard(connection.account_id, connection)
        return _dumps({"event": op, "arg": arg, "connId": connection.conn_id})

    def _unsubscribe_all(self, connection: PushConnection) -> None:
        if connection.account_id is not None:
            self.discard(connection.account_id, connection)
        for key in [k for k in connection.subscriptions if isinstance(k, tuple)]:
            del connection.subscriptions[key]

    def frames(self, subscriber: Any, step: OrderStep, memo: dict[Hashable, Any]) -> Iterable[str]:
        inst_id = step.order.symbol.replace("/", "-")
        args = [arg for (_, inst_type, wanted), arg in
                ((k, v) for k, v in subscriber.subscriptions.items() if isinstance(k, tuple))
                if inst_type in ("SPOT", "ANY") and wanted in (None, inst_id)]
        if not args:
            return ()
        data = memo.get("okx")
        if data is None:
            data = memo["okx"] = self.order_push(step)
        return (_dumps({"arg": {**args[0], "uid": step.order.account_id}, "data": [data]}),)

    def order_push(self, step: OrderStep) -> dict:
        """One ``orders`` channel entry: OKX's order shape plus the step's own fill."""
        order, trade = step.order, step.trade
        data = self._dialect.order_json(order, self.order_fee(step))
        data.update({"amendResult": "", "amendSource": "", "code": "0", "msg": "", "reqId": "", "execType": "",
                     "fillFee": "0", "fillFeeCcy": "", "fillNotionalUsd": "", "notionalUsd": "", "lastPx": "",
                     "isTpLimit": "false", "quickMgnType": "", "attachAlgoOrds": []})
        if trade is not None:
            data.update({"tradeId": str(trade.trade_id), "fillPx": fmt(trade.price), "fillSz": fmt(trade.quantity),
                         "fillTime": str(trade.time_ms), "fillFee": fmt(-trade.fee), "fillFeeCcy": trade.fee_asset,
                         "execType": "M" if trade.is_maker else "T", "lastPx": fmt(trade.price)})
        return data


class BybitPrivateHub(PrivateStreamHub):
    """Bybit ``/v5/private``: auth, the ``order`` and ``execution`` topics."""

    path = "/v5/private"

    def __init__(self, engine: MatchingEngine, credentials: Credentials, dialect: BybitDialect):
        super().__init__(engine, credentials)
        self._dialect = dialect
        self._next_id = itertools.count(1)

    def answer(self, connection: PushConnection, raw: str) -> Iterable[str]:
        try:
            request = json.loads(raw)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            return (_dumps({"success": False, "ret_msg": "error:invalid op", "conn_id": connection.conn_id,
                            "op": ""}),)
        req_id = request.get("req_id", "")
        args = request.get("args") if isinstance(request.get("args"), list) else []
        if op == "ping":
            return (_dumps({"req_id": req_id, "op": "pong", "args": [str(now_ms())],
                            "conn_id": connection.conn_id}),)
        if op == "auth":
            return (self._auth(connection, args),)
        if op in ("subscribe", "unsubscribe"):
            return (self._subscription(connection, op, args, req_id),)
        return (_dumps({"success": False, "ret_msg": f"error:invalid op {op}", "conn_id": connection.conn_id,
                        "req_id": req_id, "op": op}),)

    def _auth(self, connection: PushConnection, args: list) -> str:
        def refused(code: int, message: str) -> str:
            return _dumps({"success": False, "retCode": code, "retMsg": message, "op": "auth",
                           "conn_id": connection.conn_id})

        if len(args) != 3:
            return refused(10001, "params error: auth takes [apiKey, expires, signature]")
        api_key, expires, signature = (str(arg) for arg in args)
        entry = self._credentials(api_key)
        if entry is None:
            return refused(10003, "API key is invalid.")
        account_id, secret = entry
        try:
            expires_ms = int(expires)
        except ValueError:
            return refused(10001, "params error: expires")
        if expires_ms <= now_ms():
            return refused(10002, "invalid request, please check your server timestamp or recv_window param.")
        expected = hmac.new(secret, f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            return refused(10004, "Error sign, please check your signature generation algorithm.")
        if connection.account_id is not None and connection.account_id != account_id:
            self.discard(connection.account_id, connection)
            for topic in [k for k in connection.subscriptions if k in BYBIT_TOPICS]:
                del connection.subscriptions[topic]
        connection.account_id = account_id
        return _dumps({"success": True, "ret_msg": "", "op": "auth", "conn_id": connection.conn_id})

    def _subscription(self, connection: PushConnection, op: str, topics: list, req_id: Any) -> str:
        def answer(success: bool, message: str) -> str:
            return _dumps({"success": success, "ret_msg": message, "conn_id": connection.conn_id,
                           "req_id": req_id, "op": op})

        unknown = [str(topic) for topic in topics if topic not in BYBIT_TOPICS]
        if unknown or not topics:
            return answer(False, f"error:handler not found,topic:{','.join(unknown)}")
        if connection.account_id is None:
            return answer(False, "Request not authorized")
        for topic in topics:
            if op == "subscribe":
                connection.subscriptions[topic] = True
            else:
                connection.subscriptions.pop(topic, None)
        if any(topic in connection.subscriptions for topic in BYBIT_TOPICS):
            self.add(connection.account_id, connection)
        else:
            self.discard(connection.account_id, connection)
        return answer(True, "")

    def frames(self, subscriber: Any, step: OrderStep, memo: dict[Hashable, Any]) -> Iterable[str]:
        subscribed = {BYBIT_TOPICS[t]: t for t in reversed(list(subscriber.subscriptions)) if t in BYBIT_TOPICS}
        frames = []
        if "order" in subscribed:
            data = memo.get("order")
            if data is None:
                data = memo["order"] = self.order_push(step)
            frames.append(self._frame(subscribed["order"], data))
        if "execution" in subscribed and step.trade is not None:
            data = memo.get("execution")
            if data is None:
                data = memo["execution"] = self.execution_push(step)
            frames.append(self._frame(subscribed["execution"], data))
        return frames

    def _frame(self, topic: str, data: dict) -> str:
        return _dumps({"id": f"{next(self._next_id)}", "topic": topic, "creationTime": now_ms(), "data": [data]})

    def order_push(self, step: OrderStep) -> dict:
        """One ``order`` topic entry: Bybit v5's spot order shape after the step."""
        fee, fee_asset = self.order_fee(step)
        data = self._dialect.order_json(step.order, (fee, fee_asset))
        data.pop("tpslMode", None)  # a contract field: ccxt takes its presence for a contract order
        data.update({"category": "spot", "closedPnl": "0", "feeCurrency": fee_asset if fee else "",
                     "createType": "CreateByUser"})
        return data

    def execution_push(self, step: OrderStep) -> dict:
        """One ``execution`` topic entry: the fill, with its order's price, size and what is left."""
        order, trade = step.order, step.trade
        assert trade is not None
        data = self._dialect.execution_json(trade)
        limit = order.order_type != "MARKET"
        data.update({"category": "spot", "orderPrice": fmt(order.price) if limit else "0",
                     "orderQty": fmt(order.quantity), "leavesQty": fmt(order.quantity - order.filled),
                     "orderType": "Limit" if limit else "Market", "execPnl": "0"})
        data.pop("createType", None)
        return data
