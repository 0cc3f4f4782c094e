"""Public best-bid/ask websocket streams of the OKX and Bybit dialects, on the Binance hub's machinery
(change detection, one flush per loop turn, coalesced per-connection frames):

* OKX ``/ws/v5/public``: ``{"op": "subscribe", "args": [{"channel": "bbo-tbt", "instId": ...}]}``, pushes
  ``{"arg", "data": [{"asks", "bids", "ts", "seqId"}]}``, text ``ping`` -> ``pong``;
* Bybit ``/v5/public/spot``: ``{"op": "subscribe", "args": ["orderbook.1.<symbol>"]}``, pushes level-1
  ``snapshot`` frames, ``{"op": "ping"}`` -> ``pong``.

What ccxt.pro's ``watch_bids_asks`` (and so the project's ``BookTickerStream``) of each venue uses.
"""

from __future__ import annotations

import json
import time

from exchanges.emulator.market_streams import BookTickerHub, StreamConnection, Top, _fmt, _json


def _levels(price: str, size: str, okx: bool) -> list:
    if price == "0":
        return []
    return [[price, size, "0", "1"]] if okx else [[price, size]]


class OkxBboHub(BookTickerHub):
    """OKX ``bbo-tbt``."""

    def frame(self, symbol: str, update_id: int, top: Top) -> str:
        spec = self._engine.markets[symbol]
        bid_ticks, bid_lots, ask_ticks, ask_lots = top
        bid, ask = _fmt(spec.tick_size * bid_ticks), _fmt(spec.tick_size * ask_ticks)
        return _json({"arg": {"channel": "bbo-tbt", "instId": symbol.replace("/", "-")}, "data": [{
            "asks": _levels(ask, _fmt(spec.lot_size * ask_lots), True) if ask_ticks else [],
            "bids": _levels(bid, _fmt(spec.lot_size * bid_lots), True) if bid_ticks else [],
            "ts": str(int(time.time() * 1000)), "seqId": update_id}]})

    async def _answer(self, connection: StreamConnection, data: str | bytes) -> None:
        if data == "ping":
            await connection.websocket.send_str("pong")
            return
        try:
            request = json.loads(data)
            op, args = request["op"], request["args"]
            assert op in ("subscribe", "unsubscribe") and isinstance(args, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            await connection.websocket.send_str(_json({"event": "error", "code": "60012",
                                                       "msg": f"Invalid request: {str(data)[:200]}", "connId": "1"}))
            return
        for arg in args:
            symbol = str((arg or {}).get("instId", "")).replace("-", "/") if isinstance(arg, dict) else ""
            channel = arg.get("channel") if isinstance(arg, dict) else None
            if channel != "bbo-tbt" or symbol not in self._engine.markets:
                await connection.websocket.send_str(_json({
                    "event": "error", "code": "60018", "msg": f"Wrong URL or channel:{channel},instId:"
                    f"{arg.get('instId') if isinstance(arg, dict) else arg} doesn't exist", "connId": "1"}))
                continue
            if op == "subscribe":
                added = await self.subscribe(connection, [symbol])
                await connection.websocket.send_str(_json({"event": "subscribe", "arg": arg, "connId": "1"}))
                self.push_current(connection, added)
            else:
                self._unsubscribe(connection, symbol)
                await connection.websocket.send_str(_json({"event": "unsubscribe", "arg": arg, "connId": "1"}))


class BybitOrderbookHub(BookTickerHub):
    """Bybit ``orderbook.1.<symbol>`` (level 1: every push a snapshot)."""

    def frame(self, symbol: str, update_id: int, top: Top) -> str:
        spec = self._engine.markets[symbol]
        bid_ticks, bid_lots, ask_ticks, ask_lots = top
        now = int(time.time() * 1000)
        return _json({"topic": f"orderbook.1.{spec.exchange_symbol}", "type": "snapshot", "ts": now, "data": {
            "s": spec.exchange_symbol,
            "b": _levels(_fmt(spec.tick_size * bid_ticks), _fmt(spec.lot_size * bid_lots), False) if bid_ticks else [],
            "a": _levels(_fmt(spec.tick_size * ask_ticks), _fmt(spec.lot_size * ask_lots), False) if ask_ticks else [],
            "u": update_id, "seq": update_id}, "cts": now})

    async def _answer(self, connection: StreamConnection, data: str | bytes) -> None:
        try:
            request = json.loads(data)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            await connection.websocket.send_str(_json({"success": False, "ret_msg": "error:invalid op",
                                                       "conn_id": "1", "op": ""}))
            return
        req_id = request.get("req_id", "")
        if op == "ping":
            await connection.websocket.send_str(_json({"success": True, "ret_msg": "pong", "conn_id": "1",
                                                       "req_id": req_id, "op": "ping"}))
            return
        by_topic = {f"orderbook.1.{spec.exchange_symbol}": symbol for symbol, spec in self._engine.markets.items()}
        topics = request.get("args") if isinstance(request.get("args"), list) else []
        unknown = [topic for topic in topics if topic not in by_topic]
        if op not in ("subscribe", "unsubscribe") or unknown or not topics:
            await connection.websocket.send_str(_json({
                "success": False, "ret_msg": f"error:handler not found,topic:{','.join(map(str, unknown))}",
                "conn_id": "1", "req_id": req_id, "op": op}))
            return
        symbols = [by_topic[topic] for topic in topics]
        if op == "subscribe":
            added = await self.subscribe(connection, symbols)
            await connection.websocket.send_str(_json({"success": True, "ret_msg": "subscribe", "conn_id": "1",
                                                       "req_id": req_id, "op": "subscribe"}))
            self.push_current(connection, added)
        else:
            for symbol in symbols:
                self._unsubscribe(connection, symbol)
            await connection.websocket.send_str(_json({"success": True, "ret_msg": "", "conn_id": "1",
                                                       "req_id": req_id, "op": "unsubscribe"}))
