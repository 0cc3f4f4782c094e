"""What every non-Binance dialect shares: request accounting, injected faults, the JSON envelope,
engine errors mapped to the venue's codes. A dialect supplies routes, authentication and its codes."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from exchanges.emulator.engine import EngineError, OrderInfo
from exchanges.emulator.market_streams import BookTickerHub
from exchanges.emulator.market_streams import _fmt as fmt  # the emulator's one decimal spelling
from exchanges.emulator.user_streams import PrivateStreamHub

if TYPE_CHECKING:
    from exchanges.emulator.server import EmulatorServer

Handler = Callable[[dict, str | None], Any]
BATCH = "_batch"
"""Key under which a JSON-array body reaches the handler."""


class DialectError(Exception):
    """An error answer in the venue's shape."""

    def __init__(self, status: int, body: dict | str, headers: dict[str, str] | None = None):
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers


def now_ms() -> int:
    return int(time.time() * 1000)


def top(levels: tuple) -> tuple[str, str]:
    """Price and size of the best level, empty strings for an empty side."""
    return (fmt(levels[0].price), fmt(levels[0].quantity)) if levels else ("", "")


def decimal_param(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


class Dialect:
    """One venue's REST API over ``server``'s engine."""

    name = ""
    key_header = ""
    stream_paths: tuple[str, ...] = ()
    hub_class: type[BookTickerHub] = BookTickerHub

    def stream_hub(self, default: BookTickerHub) -> BookTickerHub:
        """The public-stream hub of this dialect (replacing the server's Binance one)."""
        return self.hub_class(self.engine, first_update_id=default._first_update_id)

    def private_hub(self) -> PrivateStreamHub:
        """The private (account) stream hub of this dialect, served on its ``path`` (replacing the
        server's Binance user-data stream)."""
        raise NotImplementedError

    def __init__(self, server: EmulatorServer):
        self.server = server
        self.engine = server.engine

    # --- what a dialect supplies ---------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Handler, bool, bool]]:
        """(method, path, handler, signed, is placement)."""
        raise NotImplementedError

    def authenticate(self, request: web.Request, raw_query: str, body: str) -> str:
        """The account id of a signed request; raises ``DialectError``."""
        raise NotImplementedError

    def engine_error(self, error: EngineError, handler: Handler) -> DialectError:
        """The venue's answer for an engine refusal in ``handler``."""
        raise NotImplementedError

    def too_many(self, retry_after_secs: int) -> DialectError:
        raise NotImplementedError

    def ok(self, result: Any) -> dict:
        """The venue's success envelope around ``result``."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        for method, path, handler, signed, is_placement in self.routes():
            app.router.add_route(method, path, self.wrap(handler, signed, is_placement))

    def symbol_of(self, exchange_symbol: str | None) -> str:
        """The unified symbol of a venue symbol id."""
        raise NotImplementedError

    def wrap(
        self, handler: Handler, signed: bool, is_placement: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        server = self.server

        async def endpoint(request: web.Request) -> web.StreamResponse:
            server.request_count += 1
            api_key = request.headers.get(self.key_header)
            if api_key:
                times = server._request_times.get(api_key)
                if times is None:
                    times = server._request_times[api_key] = deque(maxlen=100_000)
                times.append(time.monotonic())
            faults = server.faults
            lost = False
            try:
                if faults.latency_ms or faults.latency_jitter_ms:
                    delay = faults.latency_ms + server._latency_rng.uniform(-1, 1) * faults.latency_jitter_ms
                    if delay > 0:
                        await asyncio.sleep(delay / 1000.0)
                if faults.rate_limit_burst_rate or faults.error_rate or faults.lost_reply_rate:
                    try:
                        lost = server._draw_faults(faults, is_placement)
                    except Exception as reject:  # the server's Binance-shaped _Reject: re-shaped here
                        if getattr(reject, "status", 0) == 429:
                            raise self.too_many(faults.retry_after_secs) from None
                        return web.Response(status=503, text="Service Unavailable")
                body = await request.text() if request.method == "POST" else ""
                raw_query = request.raw_path.partition("?")[2]
                params: dict = dict(parse_qsl(raw_query, keep_blank_values=True))
                if body:
                    try:
                        payload = json.loads(body)
                    except ValueError:
                        payload = None
                    if isinstance(payload, list):
                        payload = {BATCH: payload}
                    if not isinstance(payload, dict):
                        raise self.bad_request("request body must be JSON")
                    params.update(payload)
                account_id = self.authenticate(request, raw_query, body) if signed else None
                if is_placement:
                    for item in params.get(BATCH) or [params]:
                        server._placements.append(str(self.placement_client_id(item) if isinstance(item, dict) else ""))
                try:
                    result = handler(params, account_id)
                except EngineError as error:
                    raise self.engine_error(error, handler) from None
                finally:
                    if request.method != "GET":
                        server.streams.books_changed()
            except DialectError as error:
                text = error.body if isinstance(error.body, str) else json.dumps(error.body, separators=(",", ":"))
                return web.Response(status=error.status, text=text, content_type="application/json",
                                    headers=error.headers)
            if lost:
                server.faults_served["lost_reply"] += 1
                if faults.lost_reply_mode == "drop" and request.transport is not None:
                    request.transport.close()
                return web.Response(status=504, text="Gateway Time-out")
            return web.Response(text=json.dumps(self.ok(result), separators=(",", ":")),
                                content_type="application/json")

        return endpoint

    def bad_request(self, message: str) -> DialectError:
        raise NotImplementedError

    def placement_client_id(self, params: dict) -> str | None:
        return None

    def order_fee(self, order: OrderInfo) -> tuple[Decimal, str]:
        """Total fee of an order's fills and its asset (the engine books fees per fill)."""
        trades = self.engine.account_trades(order.account_id, order.symbol, since_ms=order.created_ms, limit=10**9,
                                            order_id=order.order_id)  # its fills are no older than the order
        if not trades:
            spec = self.engine.markets[order.symbol]
            return Decimal(0), spec.base if order.side == "BUY" else spec.quote
        return sum((t.fee for t in trades), Decimal(0)), trades[0].fee_asset
