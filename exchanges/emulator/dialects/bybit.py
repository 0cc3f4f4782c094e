"""Bybit v5 REST (unified trading account, spot) over the emulator's engine: what ccxt's unmodified
``bybit`` class calls to load markets (incl. the account-type probe), read books, tickers and the
wallet, place / fetch / cancel orders (by id and ``orderLinkId``), list open orders and read
executions -- with Bybit's envelope (``{"retCode", "retMsg", "result", "retExtInfo", "time"}``), its
codes and its header signing (``X-BAPI-API-KEY``, ``-TIMESTAMP``, ``-RECV-WINDOW``, ``-SIGN`` = hex
HMAC-SHA256 of timestamp + key + recv window + query string or JSON body).

A PostOnly order that would take is accepted and cancelled at once (``Cancelled``), as on Bybit.
Deviations, stated: a market buy sized in the quote coin is refused (send ``marketUnit=baseCoin``);
executions are returned in one page (no ``nextPageCursor``).
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

from aiohttp import web

from exchanges.emulator.dialects.base import Dialect, DialectError, Handler, decimal_param, fmt, now_ms, top
from exchanges.emulator.dialects.private_streams import BybitPrivateHub
from exchanges.emulator.dialects.streams import BybitOrderbookHub
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

MAX_CLIENT_ID = 36
_CLIENT_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


SMP_TYPES = {"None": "NONE", "CancelMaker": "EXPIRE_MAKER", "CancelTaker": "EXPIRE_TAKER", "CancelBoth": "EXPIRE_BOTH"}
"""Bybit ``smpType`` -> the engine's mode (Bybit's default: ``None``)."""


def _status(order: OrderInfo) -> str:
    if order.status == "NEW":
        return "New"
    if order.status == "PARTIALLY_FILLED":
        return "PartiallyFilled"
    if order.status == "FILLED":
        return "Filled"
    return "PartiallyFilledCanceled" if order.filled else "Cancelled"


class BybitDialect(Dialect):
    name = "bybit"
    key_header = "X-BAPI-API-KEY"
    stream_paths = ("/v5/public/spot",)
    hub_class = BybitOrderbookHub

    def private_hub(self) -> BybitPrivateHub:
        return BybitPrivateHub(self.engine, self.server._keys.get, self)

    def routes(self) -> list[tuple[str, str, Handler, bool, bool]]:
        return [
            ("GET", "/v5/market/time", self._time, False, False),
            ("GET", "/v5/market/instruments-info", self._instruments, False, False),
            ("GET", "/v5/market/orderbook", self._orderbook, False, False),
            ("GET", "/v5/market/tickers", self._tickers, False, False),
            ("GET", "/v5/asset/coin/query-info", self._coins, True, False),
            ("GET", "/v5/user/query-api", self._query_api, True, False),
            ("GET", "/v5/account/info", self._account_info, True, False),
            ("GET", "/v5/account/wallet-balance", self._wallet, True, False),
            ("POST", "/v5/order/create", self._create, True, True),
            ("POST", "/v5/order/cancel", self._cancel, True, False),
            ("GET", "/v5/order/realtime", self._realtime, True, False),
            ("GET", "/v5/order/history", self._history, True, False),
            ("GET", "/v5/execution/list", self._executions, True, False),
        ]

    # --- envelope, errors, auth -------------------------------------------------------------------

    def ok(self, result: Any) -> dict:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms()}

    @staticmethod
    def _error(code: int, message: str, status: int = 200, headers: dict[str, str] | None = None) -> DialectError:
        return DialectError(status, {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {},
                                     "time": now_ms()}, headers)

    def bad_request(self, message: str) -> DialectError:
        return self._error(10001, f"params error: {message}")

    def too_many(self, retry_after_secs: int) -> DialectError:
        reset = now_ms() + retry_after_secs * 1000
        return self._error(10006, "Too many visits. Exceeded the API Rate Limit.", 200,
                           {"Retry-After": str(retry_after_secs), "X-Bapi-Limit-Reset-Timestamp": str(reset)})

    def engine_error(self, error: EngineError, handler: Handler) -> DialectError:
        if isinstance(error, UnknownSymbolError):
            return self._error(10001, "Not supported symbols")
        if isinstance(error, UnknownOrderError):
            return self._error(170213, "Order does not exist.")
        if isinstance(error, InsufficientBalanceError):
            return self._error(170131, "Insufficient balance.")
        if isinstance(error, DuplicateOrderError):
            return self._error(170141, "Duplicate clientOrderId.")
        if isinstance(error, FilterError):
            if "PRICE" in error.message:
                return self._error(170134, "Order price decimal too long.")
            if "NOTIONAL" in error.message:
                return self._error(170140, "Order value exceeded lower limit.")
            return self._error(170136, "Order quantity lower than the minimum or not a multiple of basePrecision.")
        if isinstance(error, BadParameterError):
            return self._error(10001, f"params error: {error.message}")
        return self._error(10016, f"Internal server error: {error.message}")

    def placement_client_id(self, params: dict) -> str | None:
        return params.get("orderLinkId")

    def authenticate(self, request: web.Request, raw_query: str, body: str) -> str:
        headers = request.headers
        api_key = headers.get("X-BAPI-API-KEY", "")
        entry = self.server._keys.get(api_key)
        if entry is None:
            raise self._error(10003, "API key is invalid.", 401)
        account_id, secret = entry
        stamp = headers.get("X-BAPI-TIMESTAMP", "")
        recv_window = headers.get("X-BAPI-RECV-WINDOW", "5000")
        try:
            stamp_ms, window = int(stamp), int(recv_window)
        except ValueError:
            raise self._error(10001, "params error: X-BAPI-TIMESTAMP / X-BAPI-RECV-WINDOW") from None
        now = now_ms()
        if window <= 0 or stamp_ms > now + 1000 or now - stamp_ms > window:
            raise self._error(10002, "invalid request, please check your server timestamp or recv_window param.")
        payload = stamp + api_key + recv_window + (body if request.method == "POST" else raw_query)
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-BAPI-SIGN", "").lower()):
            raise self._error(10004, "Error sign, please check your signature generation algorithm.")
        return account_id

    def _spot(self, params: dict) -> None:
        if params.get("category", "spot") != "spot":
            raise self._error(10001, "params error: the emulator lists spot only (category=spot)")

    def symbol_of(self, exchange_symbol: str | None) -> str:
        if not exchange_symbol:
            raise BadParameterError("symbol invalid")
        return self.engine.symbol_for_exchange_id(exchange_symbol)

    # --- public -------------------------------------------------------------------------------------

    def _time(self, params: dict, account_id: str | None) -> dict:
        now = now_ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def _instruments(self, params: dict, account_id: str | None) -> dict:
        if params.get("category") != "spot":
            return {"category": params.get("category", ""), "list": [], "nextPageCursor": ""}
        return {"category": "spot", "nextPageCursor": "", "list": [{
            "symbol": spec.exchange_symbol, "baseCoin": spec.base, "quoteCoin": spec.quote, "innovation": "0",
            "status": "Trading", "marginTrading": "none", "stTag": "0",
            "lotSizeFilter": {"basePrecision": fmt(spec.lot_size), "quotePrecision": "0.00000001",
                              "minOrderQty": fmt(spec.min_qty), "maxOrderQty": "9000000000",
                              "minOrderAmt": fmt(spec.min_notional), "maxOrderAmt": "9000000000"},
            "priceFilter": {"tickSize": fmt(spec.tick_size)},
            "riskParameters": {"limitParameter": "0.05", "marketParameter": "0.05"},
        } for spec in self.engine.markets.values()]}

    def _orderbook(self, params: dict, account_id: str | None) -> dict:
        self._spot(params)
        symbol = self.symbol_of(params.get("symbol"))
        depth = min(max(int(decimal_param(params.get("limit")) or 1), 1), 200)
        book = self.engine.book(symbol, depth)
        now = now_ms()
        return {"s": self.engine.markets[symbol].exchange_symbol,
                "b": [[fmt(level.price), fmt(level.quantity)] for level in book.bids],
                "a": [[fmt(level.price), fmt(level.quantity)] for level in book.asks],
                "ts": now, "u": self.engine.sequence, "seq": self.engine.sequence, "cts": now}

    def _ticker_for(self, symbol: str) -> dict:
        stats = self.server._stats[symbol]
        book = self.engine.book(symbol, 1)
        last = stats["last"] if stats["count"] else self.server.market.mid(symbol)
        change = (last - stats["open"]) / stats["open"] if stats["open"] else 0
        return {
            "symbol": self.engine.markets[symbol].exchange_symbol,
            "bid1Price": top(book.bids)[0], "bid1Size": top(book.bids)[1],
            "ask1Price": top(book.asks)[0], "ask1Size": top(book.asks)[1],
            "lastPrice": fmt(last), "prevPrice24h": fmt(stats["open"]), "price24hPcnt": f"{change:.4f}",
            "highPrice24h": fmt(max(stats["high"], last)), "lowPrice24h": fmt(min(stats["low"], last)),
            "turnover24h": fmt(stats["quote_volume"]), "volume24h": fmt(stats["volume"]), "usdIndexPrice": "",
        }

    def _tickers(self, params: dict, account_id: str | None) -> dict:
        self._spot(params)
        symbols = [self.symbol_of(params["symbol"])] if params.get("symbol") else list(self.engine.markets)
        return {"category": "spot", "list": [self._ticker_for(symbol) for symbol in symbols]}

    # --- account ------------------------------------------------------------------------------------

    def _coins(self, params: dict, account_id: str | None) -> dict:
        specs = self.engine.markets.values()
        assets = sorted({s.base for s in specs} | {s.quote for s in specs})
        return {"rows": [{"name": asset, "coin": asset, "remainAmount": "0", "chains": [{
            "chainType": asset, "confirmation": "1", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
            "chain": asset, "chainDeposit": "0", "chainWithdraw": "0", "minAccuracy": "8", "withdrawPercentageFee": "0",
        }]} for asset in assets]}

    def _query_api(self, params: dict, account_id: str | None) -> dict:
        return {"id": "1", "note": "emulator", "apiKey": "", "readOnly": 0, "secret": "", "permissions": {
            "ContractTrade": [], "Spot": ["SpotTrade"], "Wallet": [], "Options": [], "Derivatives": [],
            "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": []},
            "ips": ["*"], "type": 1, "deadlineDay": -1, "expiredAt": "", "createdAt": "", "unified": 0,
            "uta": 1,
            "userID": 1, "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0}

    def _account_info(self, params: dict, account_id: str | None) -> dict:
        return {"marginMode": "REGULAR_MARGIN", "updatedTime": str(now_ms()), "unifiedMarginStatus": 6,
                "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False,
                "spotHedgingStatus": "OFF"}

    def _wallet(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        if params.get("accountType") != "UNIFIED":
            raise self._error(10001, "accountType only support UNIFIED.")
        coins = [{
            "coin": asset, "equity": fmt(b.total), "walletBalance": fmt(b.total), "locked": fmt(b.locked),
            "availableToWithdraw": "", "totalOrderIM": "0", "totalPositionIM": "0", "borrowAmount": "0",
            "accruedInterest": "0", "usdValue": "0", "unrealisedPnl": "0", "cumRealisedPnl": "0",
            "marginCollateral": True, "collateralSwitch": True, "spotBorrow": "0",
        } for asset, b in sorted(self.engine.balances(account_id).items())]
        return {"list": [{"accountType": "UNIFIED", "totalEquity": "0", "totalWalletBalance": "0",
                          "totalAvailableBalance": "0", "accountIMRate": "0", "accountMMRate": "0", "coin": coins}]}

    # --- orders -------------------------------------------------------------------------------------

    def _create(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        self._spot(params)
        symbol = self.symbol_of(params.get("symbol"))
        link_id = str(params.get("orderLinkId") or "")
        if len(link_id) > MAX_CLIENT_ID or not set(link_id) <= _CLIENT_ID_CHARS:
            raise self._error(10001, "params error: orderLinkId")
        side = str(params.get("side") or "")
        if side not in ("Buy", "Sell"):
            raise self._error(10001, "params error: side invalid")
        order_type = params.get("orderType")
        quantity = decimal_param(params.get("qty"))
        if quantity is None:
            raise self._error(10001, "params error: qty invalid")
        if order_type == "Market":
            if side == "Buy" and params.get("marketUnit") != "baseCoin":
                raise self._error(170130, "Data sent for parameter 'marketUnit' is not valid: the emulator sizes "
                                  "market buys in the base coin (marketUnit=baseCoin).")
            engine_type, tif, price = "MARKET", "IOC", None
        elif order_type == "Limit":
            price = decimal_param(params.get("price"))
            if price is None:
                raise self._error(10001, "params error: price invalid")
            time_in_force = params.get("timeInForce") or "GTC"
            if time_in_force not in ("GTC", "IOC", "PostOnly"):
                raise self._error(170130, "Data sent for parameter 'timeInForce' is not valid.")
            engine_type = "LIMIT_MAKER" if time_in_force == "PostOnly" else "LIMIT"
            tif = "IOC" if time_in_force == "IOC" else "GTC"
        else:
            raise self._error(10001, "params error: orderType invalid")
        smp_type = params.get("smpType") or "None"
        if smp_type not in SMP_TYPES:
            raise self._error(10001, "params error: smpType invalid")
        order, _ = self.engine.place_order(account_id, symbol, side.upper(), engine_type, quantity, price, tif,
                                           link_id or None, now_ms(), cancel_crossing_post_only=True,
                                           self_trade_prevention=(SMP_TYPES[smp_type]
                                                                  if self.server.config.self_trade_prevention
                                                                  else "NONE"))
        return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}

    def _ref(self, params: dict) -> tuple[int | None, str | None]:
        order_id = params.get("orderId")
        link_id = params.get("orderLinkId") or None
        if not order_id and not link_id:
            raise self._error(10001, "params error: orderId or orderLinkId is required")
        if order_id and not str(order_id).isdigit():
            if link_id:  # ccxt sends orderId=None next to an orderLinkId: the link id names the order
                return None, link_id
            raise UnknownOrderError()
        return (int(order_id) if order_id else None), link_id

    def _cancel(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        self._spot(params)
        symbol = self.symbol_of(params.get("symbol"))
        order_id, link_id = self._ref(params)
        order = self.engine.cancel_order(account_id, symbol, order_id, link_id, now_ms=now_ms())
        return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}

    def _orders(self, params: dict, account_id: str, open_only: bool) -> dict:
        self._spot(params)
        symbol = self.symbol_of(params["symbol"]) if params.get("symbol") else None
        if params.get("orderId") or params.get("orderLinkId"):
            if symbol is None:
                raise self._error(10001, "params error: symbol is required with orderId / orderLinkId")
            order_id, link_id = self._ref(params)
            try:
                orders = [self.engine.get_order(account_id, symbol, order_id, link_id)]
            except UnknownOrderError:
                orders = []
            orders = [o for o in orders if not self.server._hidden(o.order_id)]
        elif open_only:
            orders = list(reversed(self.engine.open_orders(account_id, symbol)))
        else:
            orders = [o for o in reversed(self.engine.known_orders(account_id))
                      if not o.is_open and (symbol is None or o.symbol == symbol)]
        limit = min(max(int(decimal_param(params.get("limit")) or 20), 1), 50)
        return {"category": "spot", "nextPageCursor": "", "list": [self.order_json(o) for o in orders[:limit]]}

    def _realtime(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        return self._orders(params, account_id, open_only=True)

    def _history(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        return self._orders(params, account_id, open_only=False)

    def _executions(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        self._spot(params)
        symbols = [self.symbol_of(params["symbol"])] if params.get("symbol") else list(self.engine.markets)
        start = decimal_param(params.get("startTime"))
        end = decimal_param(params.get("endTime"))
        limit = min(max(int(decimal_param(params.get("limit")) or 50), 1), 100)
        trades: list[TradeInfo] = []
        for symbol in symbols:
            trades += self.engine.account_trades(
                account_id, symbol, since_ms=int(start) if start is not None else None,
                until_ms=int(end) if end is not None else None, limit=10**9)
        trades.sort(key=lambda t: t.trade_id)
        trades = trades[:limit] if start is not None else trades[-limit:]
        return {"category": "spot", "nextPageCursor": "", "list": [self.execution_json(t) for t in reversed(trades)]}

    # --- shapes -------------------------------------------------------------------------------------

    def order_json(self, order: OrderInfo, fee_of: tuple[Decimal, str] | None = None) -> dict:
        """Bybit's order shape (``fee_of``: its fees so far and their asset, else read from its fills)."""
        fee, fee_asset = fee_of or self.order_fee(order)
        average = (order.cumulative_quote / order.filled).quantize(self.engine.markets[order.symbol].tick_size) \
            if order.filled else None
        limit = order.order_type != "MARKET"
        return {
            "orderId": str(order.order_id), "orderLinkId": order.client_order_id, "blockTradeId": "",
            "symbol": self.engine.markets[order.symbol].exchange_symbol, "price": fmt(order.price) if limit else "0",
            "qty": fmt(order.quantity), "side": order.side.capitalize(), "isLeverage": "0", "positionIdx": 0,
            "orderStatus": _status(order),
            "cancelType": "CancelBySmp" if order.status == "EXPIRED_IN_MATCH" else "UNKNOWN",
            "rejectReason": "EC_CancelForSmp" if order.status == "EXPIRED_IN_MATCH" else "EC_NoError",
            "avgPrice": fmt(average) if average is not None else "", "leavesQty": fmt(order.quantity - order.filled)
            if order.is_open else "0", "leavesValue": "0", "cumExecQty": fmt(order.filled),
            "cumExecValue": fmt(order.cumulative_quote), "cumExecFee": fmt(fee),
            "cumFeeDetail": {fee_asset: fmt(fee)} if fee else {},
            "timeInForce": "PostOnly" if order.order_type == "LIMIT_MAKER" else order.time_in_force,
            "orderType": "Limit" if limit else "Market", "stopOrderType": "", "orderIv": "", "marketUnit":
            "" if limit else "baseCoin", "triggerPrice": "", "takeProfit": "", "stopLoss": "", "tpslMode": "",
            "tpLimitPrice": "", "slLimitPrice": "", "tpTriggerBy": "", "slTriggerBy": "", "triggerDirection": 0,
            "triggerBy": "", "lastPriceOnCreated": "", "reduceOnly": False, "closeOnTrigger": False,
            "placeType": "", "smpType": {mode: name for name, mode in SMP_TYPES.items()}[order.self_trade_prevention],
            "smpGroup": 0, "smpOrderId": "",
            "createdTime": str(order.created_ms), "updatedTime": str(order.updated_ms),
        }

    def execution_json(self, trade: TradeInfo) -> dict:
        spec = self.engine.markets[trade.symbol]
        return {
            "symbol": spec.exchange_symbol, "orderId": str(trade.order_id), "orderLinkId": trade.client_order_id,
            "side": "Buy" if trade.is_buyer else "Sell", "orderPrice": fmt(trade.price),
            "orderQty": fmt(trade.quantity),
            "leavesQty": "0", "createType": None, "orderType": "Limit", "stopOrderType": "", "execFee": fmt(trade.fee),
            "feeCurrency": trade.fee_asset, "execId": str(trade.trade_id), "execPrice": fmt(trade.price),
            "execQty": fmt(trade.quantity), "execType": "Trade", "execValue": fmt(trade.quote_quantity),
            "execTime": str(trade.time_ms), "isMaker": trade.is_maker, "feeRate": fmt(
                self.engine.maker_fee_rate if trade.is_maker else self.engine.taker_fee_rate),
            "tradeIv": "", "markIv": "", "markPrice": "", "indexPrice": "", "underlyingPrice": "", "blockTradeId": "",
            "closedSize": "", "seq": trade.trade_id,
        }
