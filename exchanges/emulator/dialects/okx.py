"""OKX v5 REST over the emulator's engine: what ccxt's unmodified ``okx`` class calls to load markets,
read books, tickers and balances, place / fetch / cancel orders (by id and ``clOrdId``), list open
orders and read fills -- with OKX's envelope (``{"code", "msg", "data"}``), its per-order ``sCode``
errors and its request signing (``OK-ACCESS-KEY``, ``-PASSPHRASE``, ``-TIMESTAMP``, ``-SIGN`` = base64
HMAC-SHA256 of timestamp + method + path?query + body).

A ``post_only`` order that would take is accepted and cancelled at once (state ``canceled``), as on OKX.
Deviations, stated: a market buy sized in the quote currency (``tgtCcy=quote_ccy``) is refused;
fills come oldest first from ``begin`` (newest first within the page, as OKX orders them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from exchanges.emulator.dialects.base import (
    BATCH,
    Dialect,
    DialectError,
    Handler,
    decimal_param,
    fmt,
    now_ms,
    top,
)
from exchanges.emulator.dialects.private_streams import OkxPrivateHub
from exchanges.emulator.dialects.streams import OkxBboHub
from exchanges.emulator.engine import (
    BadParameterError,
    DuplicateOrderError,
    EngineError,
    FilterError,
    InsufficientBalanceError,
    OrderInfo,
    TradeInfo,
    UnknownOrderError,
    UnknownSymbolError,
)

_STATES = {"NEW": "live", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
           "EXPIRED": "canceled", "EXPIRED_IN_MATCH": "canceled"}
STP_MODES = {"cancel_maker": "EXPIRE_MAKER", "cancel_taker": "EXPIRE_TAKER", "cancel_both": "EXPIRE_BOTH"}
"""OKX ``stpMode`` -> the engine's mode; OKX's default is ``cancel_maker`` (it cannot be turned off)."""
STP_CANCEL_SOURCE = "32"
"""``cancelSource`` of an order self-trade prevention cancelled."""
MAX_CLIENT_ID = 32
MAX_CLOCK_SKEW_MS = 30_000


def _inst_id(symbol: str) -> str:
    return symbol.replace("/", "-")


def _ord_type(order: OrderInfo) -> str:
    if order.order_type == "LIMIT_MAKER":
        return "post_only"
    if order.order_type == "MARKET":
        return "market"
    return "ioc" if order.time_in_force == "IOC" else "limit"


def _stp_name(order: OrderInfo) -> str:
    names = {engine_mode: name for name, engine_mode in STP_MODES.items()}
    return names.get(order.self_trade_prevention, "")


class OkxDialect(Dialect):
    name = "okx"
    key_header = "OK-ACCESS-KEY"
    stream_paths = ("/ws/v5/public",)
    hub_class = OkxBboHub

    def private_hub(self) -> OkxPrivateHub:
        return OkxPrivateHub(self.engine, self.server._keys.get, self)

    def routes(self) -> list[tuple[str, str, Handler, bool, bool]]:
        return [
            ("GET", "/api/v5/public/time", self._time, False, False),
            ("GET", "/api/v5/public/instruments", self._instruments, False, False),
            ("GET", "/api/v5/market/books", self._books, False, False),
            ("GET", "/api/v5/market/ticker", self._ticker, False, False),
            ("GET", "/api/v5/market/tickers", self._tickers, False, False),
            ("GET", "/api/v5/asset/currencies", self._currencies, True, False),
            ("GET", "/api/v5/account/balance", self._balance, True, False),
            ("POST", "/api/v5/trade/order", self._place, True, True),
            ("POST", "/api/v5/trade/batch-orders", self._batch, True, True),
            ("GET", "/api/v5/trade/order", self._query, True, False),
            ("POST", "/api/v5/trade/cancel-order", self._cancel, True, False),
            ("GET", "/api/v5/trade/orders-pending", self._pending, True, False),
            ("GET", "/api/v5/trade/fills-history", self._fills, True, False),
            ("GET", "/api/v5/trade/fills", self._fills, True, False),
        ]

    # --- envelope, errors, auth -------------------------------------------------------------------

    def ok(self, result: Any) -> dict:
        return {"code": "0", "msg": "", "data": result}

    @staticmethod
    def _error(code: str, message: str, status: int = 200) -> DialectError:
        return DialectError(status, {"code": code, "msg": message, "data": []})

    @staticmethod
    def _order_error(code: str, message: str, client_id: str = "") -> DialectError:
        """A refused order: OKX answers ``code 1`` with the reason per order (``sCode``)."""
        return DialectError(200, {"code": "1", "msg": "All operations failed", "data": [
            {"ordId": "", "clOrdId": client_id, "tag": "", "ts": str(now_ms()), "sCode": code, "sMsg": message}]})

    def bad_request(self, message: str) -> DialectError:
        return self._error("51000", f"Parameter error: {message}", 400)

    def too_many(self, retry_after_secs: int) -> DialectError:
        return DialectError(429, {"code": "50011", "msg": "Too Many Requests", "data": []},
                            headers={"Retry-After": str(retry_after_secs)})

    def engine_error(self, error: EngineError, handler: Handler) -> DialectError:
        placing = handler == self._place
        if isinstance(error, UnknownSymbolError):
            return self._error("51001", "Instrument ID does not exist")
        if isinstance(error, UnknownOrderError):
            if handler == self._cancel:
                return self._order_error("51400", "Order cancellation failed as the order has been filled, "
                                         "canceled or does not exist")
            return self._error("51603", "Order does not exist")
        if isinstance(error, InsufficientBalanceError):
            return self._order_error("51008", "Order failed. Insufficient balance")
        if isinstance(error, DuplicateOrderError):
            return self._order_error("51016", "Duplicated clOrdId")
        if isinstance(error, FilterError):
            if "PRICE" in error.message:
                return self._order_error("51000", "Parameter px error: not a multiple of tickSz")
            return self._order_error("51020", "Order amount should be greater than the min available amount "
                                     "and a multiple of lotSz")
        if isinstance(error, BadParameterError):
            return self._order_error("51000", f"Parameter error: {error.message}") if placing else \
                self._error("51000", f"Parameter error: {error.message}")
        return self._error("50000", error.message)

    def placement_client_id(self, params: dict) -> str | None:
        return params.get("clOrdId")

    def authenticate(self, request: web.Request, raw_query: str, body: str) -> str:
        headers = request.headers
        api_key = headers.get("OK-ACCESS-KEY")
        if not api_key:
            raise self._error("50103", 'Request header "OK-ACCESS-KEY" cannot be empty.', 401)
        entry = self.server._keys.get(api_key)
        if entry is None:
            raise self._error("50111", "Invalid OK-ACCESS-KEY.", 401)
        account_id, secret = entry
        passphrase = headers.get("OK-ACCESS-PASSPHRASE")
        if not passphrase:
            raise self._error("50104", 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.', 401)
        if not hmac.compare_digest(passphrase, self.server.passphrase_of(api_key)):
            raise self._error("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.', 401)
        stamp = headers.get("OK-ACCESS-TIMESTAMP", "")
        try:
            stamp_ms = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            raise self._error("50112", "Invalid OK-ACCESS-TIMESTAMP.", 401) from None
        if abs(now_ms() - stamp_ms) > MAX_CLOCK_SKEW_MS:
            raise self._error("50102", "Timestamp request expired.", 401)
        signature = headers.get("OK-ACCESS-SIGN", "")
        payload = stamp + request.method + request.raw_path + body
        expected = base64.b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()).decode()
        if not signature or not hmac.compare_digest(expected, signature):
            raise self._error("50113", "Invalid Sign.", 401)
        return account_id

    def symbol_of(self, inst_id: str | None) -> str:
        if not inst_id:
            raise BadParameterError("instId can't be empty")
        symbol = inst_id.replace("-", "/")
        if symbol not in self.engine.markets:
            raise UnknownSymbolError()
        return symbol

    # --- public -------------------------------------------------------------------------------------

    def _time(self, params: dict, account_id: str | None) -> list:
        return [{"ts": str(now_ms())}]

    def _instruments(self, params: dict, account_id: str | None) -> list:
        if params.get("instType") != "SPOT":
            return []
        listed = str(self.server.started_ms)
        return [{
            "alias": "", "baseCcy": spec.base, "category": "1", "ctMult": "", "ctType": "", "ctVal": "", "ctValCcy": "",
            "expTime": "", "instFamily": "", "instId": _inst_id(spec.symbol), "instType": "SPOT", "lever": "",
            "listTime": listed, "lotSz": fmt(spec.lot_size), "maxIcebergSz": "9999999999", "maxLmtAmt": "20000000",
            "maxLmtSz": "9999999999", "maxMktAmt": "1000000", "maxMktSz": "1000000", "maxStopSz": "1000000",
            "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999", "minSz": fmt(spec.min_qty), "optType": "",
            "quoteCcy": spec.quote, "ruleType": "normal", "settleCcy": "", "state": "live", "stk": "",
            "tickSz": fmt(spec.tick_size), "uly": "",
        } for spec in self.engine.markets.values()]

    def _books(self, params: dict, account_id: str | None) -> list:
        symbol = self.symbol_of(params.get("instId"))
        depth = min(max(int(decimal_param(params.get("sz")) or 1), 1), 400)
        book = self.engine.book(symbol, depth)
        return [{
            "asks": [[fmt(level.price), fmt(level.quantity), "0", "1"] for level in book.asks],
            "bids": [[fmt(level.price), fmt(level.quantity), "0", "1"] for level in book.bids],
            "ts": str(now_ms()),
        }]

    def _ticker_for(self, symbol: str) -> dict:
        stats = self.server._stats[symbol]
        book = self.engine.book(symbol, 1)
        last = stats["last"] if stats["count"] else self.server.market.mid(symbol)
        return {
            "instType": "SPOT", "instId": _inst_id(symbol), "last": fmt(last), "lastSz": fmt(stats["last_qty"]),
            "askPx": top(book.asks)[0], "askSz": top(book.asks)[1],
            "bidPx": top(book.bids)[0], "bidSz": top(book.bids)[1],
            "open24h": fmt(stats["open"]), "high24h": fmt(max(stats["high"], last)),
            "low24h": fmt(min(stats["low"], last)), "volCcy24h": fmt(stats["quote_volume"]),
            "vol24h": fmt(stats["volume"]), "ts": str(now_ms()), "sodUtc0": fmt(stats["open"]),
            "sodUtc8": fmt(stats["open"]),
        }

    def _ticker(self, params: dict, account_id: str | None) -> list:
        return [self._ticker_for(self.symbol_of(params.get("instId")))]

    def _tickers(self, params: dict, account_id: str | None) -> list:
        return [self._ticker_for(symbol) for symbol in self.engine.markets] if params.get("instType") == "SPOT" else []

    # --- private ------------------------------------------------------------------------------------

    def _currencies(self, params: dict, account_id: str | None) -> list:
        assets = sorted({spec.base for spec in self.engine.markets.values()}
                        | {spec.quote for spec in self.engine.markets.values()})
        return [{"ccy": asset, "chain": f"{asset}-{asset}", "name": asset, "canDep": False, "canWd": False,
                 "canInternal": False, "minWd": "0", "maxWd": "0", "wdTickSz": "8", "minFee": "0", "maxFee": "0",
                 "mainNet": True} for asset in assets]

    def _balance(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        wanted = set(filter(None, str(params.get("ccy") or "").split(",")))
        details = []
        stamp = str(now_ms())
        for asset, balance in sorted(self.engine.balances(account_id).items()):
            if wanted and asset not in wanted:
                continue
            details.append({
                "ccy": asset, "eq": fmt(balance.total), "cashBal": fmt(balance.total), "availBal": fmt(balance.free),
                "frozenBal": fmt(balance.locked), "ordFrozen": fmt(balance.locked), "availEq": "", "uTime": stamp,
                "disEq": "0", "eqUsd": "0", "upl": "0",
            })
        return [{"adjEq": "", "details": details, "imr": "", "isoEq": "0", "mgnRatio": "", "mmr": "", "notionalUsd": "",
                 "ordFroz": "", "totalEq": "0", "uTime": stamp}]

    def _place(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self.symbol_of(params.get("instId"))
        client_id = str(params.get("clOrdId") or "")
        if client_id and (len(client_id) > MAX_CLIENT_ID or not client_id.isalnum() or not client_id.isascii()):
            raise self._order_error("51000", "Parameter clOrdId error", client_id)
        if params.get("tdMode", "cash") != "cash":
            raise self._order_error("51000", "Parameter tdMode error: spot trading is cash only", client_id)
        side = str(params.get("side") or "").upper()
        if side not in ("BUY", "SELL"):
            raise self._order_error("51000", "Parameter side error", client_id)
        ord_type = params.get("ordType")
        quantity = decimal_param(params.get("sz"))
        price = decimal_param(params.get("px"))
        if quantity is None:
            raise self._order_error("51000", "Parameter sz error", client_id)
        if ord_type == "market":
            if side == "BUY" and params.get("tgtCcy", "quote_ccy") != "base_ccy":
                raise self._order_error("51000", "Parameter tgtCcy error: the emulator sizes market buys in the "
                                        "base currency (tgtCcy=base_ccy)", client_id)
            order_type, tif = "MARKET", "IOC"
        elif ord_type in ("limit", "post_only", "ioc"):
            if price is None:
                raise self._order_error("51000", "Parameter px error", client_id)
            order_type = "LIMIT_MAKER" if ord_type == "post_only" else "LIMIT"
            tif = "IOC" if ord_type == "ioc" else "GTC"
        else:
            raise self._order_error("51000", "Parameter ordType error", client_id)
        stp_mode = params.get("stpMode") or "cancel_maker"
        if stp_mode not in STP_MODES:
            raise self._order_error("51000", "Parameter stpMode error", client_id)
        try:
            order, _ = self.engine.place_order(account_id, symbol, side, order_type, quantity,
                                               price if order_type != "MARKET" else None, tif, client_id or None,
                                               now_ms(), cancel_crossing_post_only=True,
                                               self_trade_prevention=(STP_MODES[stp_mode]
                                                                      if self.server.config.self_trade_prevention
                                                                      else "NONE"))
        except EngineError as error:
            answer = self.engine_error(error, self._place)
            if isinstance(answer.body, dict) and answer.body.get("data"):
                answer.body["data"][0]["clOrdId"] = client_id
            raise answer from None
        return [{"ordId": str(order.order_id), "clOrdId": client_id, "tag": "", "ts": str(order.created_ms),
                 "sCode": "0", "sMsg": "Order placed"}]

    def _batch(self, params: dict, account_id: str | None) -> list:
        """Up to 20 orders; each answered on its own (``code`` 0 all placed, 2 some, 1 none)."""
        orders = params.get(BATCH)
        if not isinstance(orders, list) or not orders or len(orders) > 20:
            raise self._error("51000", "Parameter error: 1 to 20 orders per batch")
        answers = []
        for item in orders:
            try:
                answers += self._place(item if isinstance(item, dict) else {}, account_id)
            except DialectError as error:
                if not isinstance(error.body, dict) or not error.body.get("data"):
                    raise
                answers += error.body["data"]
        failed = sum(1 for answer in answers if answer["sCode"] != "0")
        if failed:
            code = "1" if failed == len(answers) else "2"
            raise DialectError(200, {"code": code, "msg": "All operations failed" if code == "1" else
                                     "Bulk operation partially succeeded", "data": answers})
        return answers

    def _ref(self, params: dict) -> tuple[int | None, str | None]:
        order_id = params.get("ordId")
        client_id = params.get("clOrdId") or None
        if not order_id and not client_id:
            raise BadParameterError("Either parameter ordId or clOrdId is required")
        try:
            return (int(order_id) if order_id else None), client_id
        except ValueError:
            raise UnknownOrderError() from None

    def _query(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self.symbol_of(params.get("instId"))
        order_id, client_id = self._ref(params)
        order = self.engine.get_order(account_id, symbol, order_id, client_id)
        if self.server._hidden(order.order_id):
            raise UnknownOrderError()
        return [self.order_json(order)]

    def _cancel(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self.symbol_of(params.get("instId"))
        order_id, client_id = self._ref(params)
        order = self.engine.cancel_order(account_id, symbol, order_id, client_id, now_ms=now_ms())
        return [{"ordId": str(order.order_id), "clOrdId": order.client_order_id, "ts": str(now_ms()),
                 "sCode": "0", "sMsg": ""}]

    def _pending(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self.symbol_of(params["instId"]) if params.get("instId") else None
        orders = self.engine.open_orders(account_id, symbol)
        return [self.order_json(order) for order in reversed(orders) if not self.server._hidden(order.order_id)]

    def _fills(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbols = [self.symbol_of(params["instId"])] if params.get("instId") else list(self.engine.markets)
        limit = min(max(int(decimal_param(params.get("limit")) or 100), 1), 100)
        begin = decimal_param(params.get("begin"))
        end = decimal_param(params.get("end"))
        trades: list[TradeInfo] = []
        for symbol in symbols:
            trades += self.engine.account_trades(
                account_id, symbol, since_ms=int(begin) if begin is not None else None,
                until_ms=int(end) if end is not None else None, limit=10**9)
        trades.sort(key=lambda t: t.trade_id)
        trades = trades[:limit] if begin is not None else trades[-limit:]
        return [self.fill_json(trade) for trade in reversed(trades)]

    # --- shapes -------------------------------------------------------------------------------------

    def order_json(self, order: OrderInfo, fee_of: tuple[Decimal, str] | None = None) -> dict:
        """OKX's order shape (``fee_of``: its fees so far and their asset, else read from its fills)."""
        fee, fee_asset = fee_of or self.order_fee(order)
        average = (order.cumulative_quote / order.filled).quantize(self.engine.markets[order.symbol].tick_size) \
            if order.filled else None
        return {
            "accFillSz": fmt(order.filled), "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "avgPx": fmt(average) if average is not None else "", "cTime": str(order.created_ms),
            "cancelSource": STP_CANCEL_SOURCE if order.status == "EXPIRED_IN_MATCH" else "",
            "category": "normal", "ccy": "", "clOrdId": order.client_order_id, "fee": fmt(-fee), "feeCcy": fee_asset,
            "fillPx": "", "fillSz": "0", "fillTime": "", "instId": _inst_id(order.symbol), "instType": "SPOT",
            "lever": "", "ordId": str(order.order_id), "ordType": _ord_type(order),
            "pnl": "0", "posSide": "net", "px": fmt(order.price) if order.order_type != "MARKET" else "",
            "rebate": "0", "rebateCcy": self.engine.markets[order.symbol].quote, "reduceOnly": "false",
            "side": order.side.lower(), "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "",
            "state": _STATES[order.status], "stpId": "", "stpMode": _stp_name(order), "sz": fmt(order.quantity),
            "tag": "", "tdMode": "cash", "tgtCcy": "base_ccy" if order.order_type == "MARKET" else "",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tradeId": "", "uTime": str(order.updated_ms),
        }

    def fill_json(self, trade: TradeInfo) -> dict:
        return {
            "instType": "SPOT", "instId": _inst_id(trade.symbol), "tradeId": str(trade.trade_id),
            "ordId": str(trade.order_id), "clOrdId": trade.client_order_id, "billId": str(trade.trade_id), "tag": "",
            "fillPx": fmt(trade.price), "fillSz": fmt(trade.quantity), "fillIdxPx": "", "fillPnl": "0",
            "side": "buy" if trade.is_buyer else "sell", "posSide": "net", "execType": "M" if trade.is_maker else "T",
            "feeCcy": trade.fee_asset, "fee": fmt(-trade.fee), "ts": str(trade.time_ms), "fillTime": str(trade.time_ms),
        }


