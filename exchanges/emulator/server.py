"""The emulator's Binance spot-compatible HTTP API (aiohttp), with admin endpoints and fault injection.
(``EmulatorConfig.venue`` ``okx`` / ``bybit`` serves those venues' REST dialects instead, from
``exchanges.emulator.dialects``, over the same engine, market, faults and admin endpoints.)

ccxt's unmodified ``binance`` class talks to it once its URLs point here (``exchanges.ccxt_config``);
ccxt.pro's ``binance`` gets ``<symbol>@bookTicker`` pushes from ``/ws`` (``market_streams``), and
``<symbol>@trade`` / ``<symbol>@depth@100ms`` (``public_streams``: ``watch_trades``, ``watch_order_book``).
Signed endpoints check ``X-MBX-APIKEY``, the HMAC-SHA256 signature over the raw query string + body,
and ``timestamp``/``recvWindow``; errors carry Binance codes so ccxt raises its usual exceptions.
Faults (latency, 5xx, 429 bursts with Retry-After, "accepted but the reply is lost") are drawn from a
seeded RNG, so a run with the same seed and the same request sequence fails the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from aiohttp import web

from exchanges.emulator.engine import (
    STP_MODES,
    BadParameterError,
    CancelReplaceResult,
    EngineError,
    JournalEntry,
    MarketSpec,
    MatchingEngine,
    OrderInfo,
    TradeInfo,
    UnknownAccountError,
    UnknownOrderError,
)
from exchanges.emulator.market import SymbolDynamics, SyntheticMarket
from exchanges.emulator.market_streams import BookTickerHub
from exchanges.emulator.user_streams import PrivateStreamHub, UserDataHub

ADMIN_HEADER = "X-Emulator-Admin"
REQUEST_LOG_LENGTH = 100_000
JOURNAL_LENGTH = 200_000
"""Order journal entries kept per account (``GET /admin/journal``), ~150 bytes each: a demo bot's
account writes ~25 a second, so about two hours of it."""
"""Arrival times kept per API key (a bounded log: the emulator may run for days)."""

# tick, lot, min qty, min notional, initial mid of symbols the emulator knows; others get a default
KNOWN_SYMBOLS: dict[str, tuple[str, str, str, str, str]] = {
    "BTC/USDT": ("0.01", "0.00001", "0.00001", "5", "60000"),
    "ETH/USDT": ("0.01", "0.0001", "0.0001", "5", "3000"),
    "SOL/USDT": ("0.01", "0.001", "0.001", "5", "150"),
    "BNB/USDT": ("0.01", "0.001", "0.001", "5", "600"),
    "XRP/USDT": ("0.0001", "0.1", "0.1", "5", "0.5"),
    "ETH/BTC": ("0.00001", "0.0001", "0.0001", "0.0001", "0.05"),
}
_DEFAULT_SYMBOL = ("0.01", "0.001", "0.001", "5", "100")


def market_spec_for(symbol: str) -> MarketSpec:
    """The emulator's filters for a unified symbol like ``BTC/USDT``."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base.isalnum() or not quote.isalnum():
        raise ValueError(f"bad symbol {symbol!r}: expected BASE/QUOTE")
    tick, lot, min_qty, min_notional, _ = KNOWN_SYMBOLS.get(symbol, _DEFAULT_SYMBOL)
    return MarketSpec(symbol, base, quote, Decimal(tick), Decimal(lot), Decimal(min_qty), Decimal(min_notional))


def initial_mid_for(symbol: str) -> Decimal:
    """The default starting mid of a symbol."""
    return Decimal(KNOWN_SYMBOLS.get(symbol, _DEFAULT_SYMBOL)[4])


@dataclass(frozen=True)
class FaultConfig:
    """Injected faults. Rates are probabilities per request (0..1)."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_burst_rate: float = 0.0
    rate_limit_burst_length: int = 3
    retry_after_secs: int = 1
    lost_reply_rate: float = 0.0
    lost_reply_mode: str = "504"  # "504": order applied, reply is a 504; "drop": connection closed
    not_found_after_accept_ms: float = 0.0
    """Eventual consistency: for this long after acceptance an order is missing from queries, open
    orders and cancels ("order does not exist"), as some venues answer right after a placement."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "rate_limit_burst_rate", "lost_reply_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0 or self.not_found_after_accept_ms < 0:
            raise ValueError("latency must be >= 0")
        if self.lost_reply_mode not in ("504", "drop"):
            raise ValueError("lost_reply_mode must be '504' or 'drop'")
        if self.rate_limit_burst_length < 1 or self.retry_after_secs < 0:
            raise ValueError("rate_limit_burst_length must be >= 1 and retry_after_secs >= 0")


@dataclass(frozen=True)
class AccountConfig:
    """An API key pair and the starting balances of its account."""

    api_key: str
    secret: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    account_id: str | None = None
    passphrase: str = ""
    """Signs every request along with the secret on venues that use one (the OKX dialect)."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything a run of the emulator needs. ``port=0`` picks a free port."""

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 1
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
    accounts: tuple[AccountConfig, ...] = ()
    maker_fee_rate: Decimal = Decimal("0.001")
    taker_fee_rate: Decimal = Decimal("0.001")
    admin_token: str | None = None
    faults: FaultConfig = FaultConfig()
    market_step_ms: int = 100  # 0: no timer (the synthetic market only moves via the admin API)
    dynamics: dict[str, dict] = field(default_factory=dict)  # symbol -> SymbolDynamics overrides
    max_recv_window_ms: int = 60_000
    venue: str = "binance"
    """The REST dialect: ``binance`` (this module), ``okx`` or ``bybit`` (``exchanges.emulator.dialects``)."""
    first_id: int | None = None
    """First order, trade and book-ticker update id; None derives it from the start time, so a restarted
    emulator never hands out an id of its previous run (venues never reuse ids; clients key fills by trade id)."""
    mid_walk_seed: int | None = None
    """The mid follows the shared walk of this seed from ``mid_walk_epoch_ms`` (None: its own walk from
    ``seed``): emulators with the same two values are one market quoted on several venues
    (``exchanges.emulator.market``)."""
    mid_walk_epoch_ms: int | None = None
    self_trade_prevention: bool = True
    """The venue offers self-trade prevention (Binance ``selfTradePreventionMode``, OKX ``stpMode``, Bybit
    ``smpType``, each with the venue's default). False: a venue without it, the parameter is ignored and
    an account's orders match each other."""


class _Reject(Exception):
    """An HTTP error answer in Binance's shape."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None,
                 data: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.data = data


def _fmt(value: Decimal) -> str:
    return f"{value:f}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class EmulatorServer:
    """The engine, the synthetic market and the HTTP app of one emulator run."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        specs = [market_spec_for(symbol) for symbol in config.symbols]
        first_id = config.first_id if config.first_id is not None else _now_ms() * 1000
        self.engine = MatchingEngine(specs, config.maker_fee_rate, config.taker_fee_rate, first_id=first_id)
        dynamics = [
            SymbolDynamics(
                **{"symbol": s.symbol, "initial_mid": initial_mid_for(s.symbol), **config.dynamics.get(s.symbol, {})}
            )
            for s in specs
        ]
        self.market = SyntheticMarket(self.engine, dynamics, seed=config.seed, start_ms=_now_ms(),
                                      walk_seed=config.mid_walk_seed, walk_epoch_ms=config.mid_walk_epoch_ms)
        self.faults = config.faults
        self._fault_rng = random.Random(f"faults:{config.seed}")
        self._latency_rng = random.Random(f"latency:{config.seed}")
        self._burst_left = 0
        self._accepted_at: dict[int, float] = {}  # order id -> monotonic acceptance time (hidden-order fault)
        self._keys: dict[str, tuple[str, bytes]] = {}  # api key -> (account id, secret)
        self._passphrases: dict[str, str] = {}  # api key -> passphrase (dialects that sign with one)
        for account in config.accounts:
            self.add_account(account)
        self._stats: dict[str, dict] = {}
        for spec in specs:
            mid = initial_mid_for(spec.symbol)
            self._stats[spec.symbol] = {"open": mid, "high": mid, "low": mid, "last": mid, "last_qty": Decimal(0),
                                        "volume": Decimal(0), "quote_volume": Decimal(0), "count": 0,
                                        "first_id": -1, "last_id": -1}
        self.engine.trade_listener = self._on_trade
        self.started_ms = _now_ms()
        self.streams = BookTickerHub(self.engine, first_update_id=first_id)
        self.user_streams: PrivateStreamHub = UserDataHub(self.engine, self._keys.get)
        """The account pushes (the dialect's: Binance's user-data stream, OKX's / Bybit's private socket)."""
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._ticker_task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None
        self.request_count = 0
        self._request_times: dict[str, deque[float]] = {}  # api key -> monotonic arrival times
        self._placements: deque[str] = deque(maxlen=REQUEST_LOG_LENGTH)  # client order ids as sent
        self.faults_served: Counter[str] = Counter()  # "429", "503", "lost_reply"

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` once started."""
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> str:
        """Bind and serve on the current event loop; returns the base URL."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        server = site._server
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._loop = asyncio.get_running_loop()
        if self.config.market_step_ms > 0:
            self._ticker_task = asyncio.create_task(self._run_market())
        return self.base_url

    async def stop(self) -> None:
        """Stop the market timer and the HTTP server."""
        if self._ticker_task is not None:
            self._ticker_task.cancel()
            try:
                await self._ticker_task
            except asyncio.CancelledError:
                pass
            self._ticker_task = None
        await self.streams.close()
        await self.user_streams.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> str:
        """Serve from a daemon thread with its own event loop (for sync tests); returns the base URL."""
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as error:  # reported to the caller below
                errors.append(error)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="exchange-emulator", daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:
            raise errors[0]
        return self.base_url

    def stop_thread(self) -> None:
        """Stop a server started with ``start_in_thread``."""
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._thread = None

    def call(self, function: Callable[[], object]) -> object:
        """Run ``function`` on the server's loop (thread-safe access to engine/market from tests)."""
        if self._thread is None or self._loop is None:
            return function()

        async def wrapper() -> object:
            try:
                return function()
            finally:
                self.streams.books_changed()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(30)

    # --- accounts and state -------------------------------------------------------------------------

    def add_account(self, account: AccountConfig) -> str:
        """Register an API key; creates its engine account (or tops up an existing one)."""
        if not account.api_key or not account.secret:
            raise ValueError("api_key and secret are required")
        account_id = account.account_id or account.api_key
        if account.api_key in self._keys and self._keys[account.api_key][0] != account_id:
            raise ValueError(f"api key {account.api_key!r} is already bound to another account")
        if not self.engine.has_account(account_id):
            self.engine.create_account(account_id, {})
        self.engine.enable_journal(account_id, JOURNAL_LENGTH)
        for asset, amount in account.balances.items():
            self.engine.deposit(account_id, asset, Decimal(amount))
        self._keys[account.api_key] = (account_id, account.secret.encode())
        self._passphrases[account.api_key] = account.passphrase
        return account_id

    def passphrase_of(self, api_key: str) -> str:
        """The passphrase registered with ``api_key`` ("" when none)."""
        return self._passphrases.get(api_key, "")

    def request_times(self, api_key: str) -> list[float]:
        """Arrival times (``time.monotonic``) of the latest requests that carried ``api_key``: what a
        venue's per-key rate limit counts."""
        return list(self.call(lambda: list(self._request_times.get(api_key, ()))))  # type: ignore[arg-type]

    def placement_attempts(self) -> Counter[str]:
        """How many placement requests reached the matching engine per client order id (the latest
        ones; injected 429/503 answers come first and do not count): a client that re-sends without
        resolving an unknown outcome first shows up with a count above one."""
        return Counter(self.call(lambda: list(self._placements)))  # type: ignore[arg-type]

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault configuration (takes effect on the next request)."""
        self.faults = faults
        self._burst_left = 0

    def state(self) -> dict:
        """A JSON-able view: mids, best prices, balances, fees, faults."""
        symbols = {}
        for symbol in self.engine.markets:
            book = self.engine.book(symbol, 1)
            symbols[symbol] = {
                "mid": _fmt(self.market.mid(symbol)),
                "best_bid": _fmt(book.bids[0].price) if book.bids else None,
                "best_ask": _fmt(book.asks[0].price) if book.asks else None,
            }
        accounts = {}
        for account_id, _ in {v[0]: None for v in self._keys.values()}.items():
            accounts[account_id] = {
                asset: {"free": _fmt(b.free), "locked": _fmt(b.locked)}
                for asset, b in self.engine.balances(account_id).items()
            }
        return {
            "server_time": _now_ms(),
            "symbols": symbols,
            "accounts": accounts,
            "fees_collected": {a: _fmt(v) for a, v in self.engine.fees_collected.items()},
            "faults": asdict(self.faults),
            "requests": self.request_count,
        }

    async def _run_market(self) -> None:
        interval = self.config.market_step_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            self.market.step(_now_ms())
            self.streams.books_changed()

    def _on_trade(self, trade_id: int, maker_order_id: int, taker_order_id: int, maker_account: str,
                  taker_account: str, symbol: str, taker_side: int, price_ticks: int, lots: int) -> None:
        stats = self._stats[symbol]
        spec = self.engine.markets[symbol]
        price = spec.tick_size * price_ticks
        quantity = spec.lot_size * lots
        stats["last"] = price
        stats["last_qty"] = quantity
        stats["high"] = max(stats["high"], price)
        stats["low"] = min(stats["low"], price)
        stats["volume"] += quantity
        stats["quote_volume"] += price * quantity
        stats["count"] += 1
        if stats["first_id"] < 0:
            stats["first_id"] = trade_id
        stats["last_id"] = trade_id
        self.streams.feeds.on_trade(trade_id, symbol, taker_side, price_ticks, lots)  # <symbol>@trade

    # --- HTTP plumbing --------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        if self.config.venue != "binance":
            from exchanges.emulator.dialects.registry import dialect_for

            dialect = dialect_for(self.config.venue, self)
            dialect.install(app)
            self.streams = dialect.stream_hub(self.streams)
            for path in dialect.stream_paths:
                app.router.add_route("GET", path, self.streams.handle)
            self.user_streams = dialect.private_hub()
            app.router.add_route("GET", self.user_streams.path, self.user_streams.handle)
            self._add_admin_routes(app)
            return app
        routes = [
            ("GET", "/api/v3/ping", self._ping, False),
            ("GET", "/api/v3/time", self._time, False),
            ("GET", "/api/v3/exchangeInfo", self._exchange_info, False),
            ("GET", "/api/v3/depth", self._depth, False),
            ("GET", "/api/v3/ticker/24hr", self._ticker_24hr, False),
            ("GET", "/api/v3/ticker/bookTicker", self._book_ticker, False),
            ("GET", "/api/v3/ticker/price", self._ticker_price, False),
            ("GET", "/api/v3/account", self._account, True),
            ("POST", "/api/v3/order", self._new_order, True),
            ("POST", "/api/v3/order/cancelReplace", self._cancel_replace, True),
            ("POST", "/api/v3/order/test", self._test_order, True),
            ("GET", "/api/v3/order", self._query_order, True),
            ("DELETE", "/api/v3/order", self._cancel_order, True),
            ("GET", "/api/v3/openOrders", self._open_orders, True),
            ("DELETE", "/api/v3/openOrders", self._cancel_open_orders, True),
            ("GET", "/api/v3/myTrades", self._my_trades, True),
        ]
        for method, path, handler, signed in routes:
            is_placement = method == "POST" and path in ("/api/v3/order", "/api/v3/order/cancelReplace")
            app.router.add_route(method, path, self._wrap(handler, signed, is_placement))
        self._add_admin_routes(app)
        app.router.add_route("GET", "/ws", self.streams.handle)
        app.router.add_route("GET", "/ws/{stream_index}", self.streams.handle)
        app.router.add_route("GET", self.user_streams.path, self.user_streams.handle)
        return app

    def _add_admin_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/admin/state", self._admin(self._admin_state))
        app.router.add_route("POST", "/admin/accounts", self._admin(self._admin_create_account))
        app.router.add_route("POST", "/admin/deposit", self._admin(self._admin_deposit))
        app.router.add_route("POST", "/admin/mid", self._admin(self._admin_set_mid))
        app.router.add_route("POST", "/admin/faults", self._admin(self._admin_set_faults))
        app.router.add_route("GET", "/admin/orders", self._admin(self._admin_orders))
        app.router.add_route("GET", "/admin/journal", self._admin(self._admin_journal))

    def _wrap(
        self, handler: Callable[[dict, str | None], object], signed: bool, is_placement: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            self.request_count += 1
            api_key = request.headers.get("X-MBX-APIKEY")
            if api_key:
                times = self._request_times.get(api_key)
                if times is None:
                    times = self._request_times[api_key] = deque(maxlen=REQUEST_LOG_LENGTH)
                times.append(time.monotonic())
            faults = self.faults
            lost = False
            try:
                if faults.latency_ms or faults.latency_jitter_ms:
                    delay = faults.latency_ms + self._latency_rng.uniform(-1, 1) * faults.latency_jitter_ms
                    if delay > 0:
                        await asyncio.sleep(delay / 1000.0)
                if faults.rate_limit_burst_rate or faults.error_rate or faults.lost_reply_rate:
                    lost = self._draw_faults(faults, is_placement)
                body = await request.text() if request.method == "POST" else ""
                raw_path = request.raw_path
                raw_query = raw_path.partition("?")[2]
                params = dict(parse_qsl(raw_query, keep_blank_values=True))
                if body:
                    params.update(parse_qsl(body, keep_blank_values=True))
                account_id = self._authenticate(request, raw_query, body, params) if signed else None
                if is_placement:
                    self._placements.append(params.get("newClientOrderId") or "")
                try:
                    result = handler(params, account_id)
                finally:
                    if request.method != "GET":
                        self.streams.books_changed()
            except _Reject as reject:
                return _error_response(reject.status, reject.code, reject.message, reject.headers, reject.data)
            except EngineError as error:
                status = 401 if isinstance(error, UnknownAccountError) else error.http_status
                return _error_response(status, error.code, error.message)
            if lost:
                self.faults_served["lost_reply"] += 1
                if faults.lost_reply_mode == "drop" and request.transport is not None:
                    request.transport.close()
                return web.Response(status=504, text="Gateway Time-out")
            return web.Response(text=json.dumps(result, separators=(",", ":")), content_type="application/json")

        return endpoint

    def _draw_faults(self, faults: FaultConfig, is_placement: bool) -> bool:
        """Decide this request's fate; raises a _Reject for 429/5xx, returns True for a lost reply."""
        rng = self._fault_rng
        if self._burst_left > 0:
            self._burst_left -= 1
            self.faults_served["429"] += 1
            raise _too_many(faults)
        if faults.rate_limit_burst_rate and rng.random() < faults.rate_limit_burst_rate:
            self._burst_left = faults.rate_limit_burst_length - 1
            self.faults_served["429"] += 1
            raise _too_many(faults)
        if faults.error_rate and rng.random() < faults.error_rate:
            self.faults_served["503"] += 1
            raise _Reject(503, 0, "Service Unavailable")
        return bool(is_placement and faults.lost_reply_rate and rng.random() < faults.lost_reply_rate)

    def _authenticate(self, request: web.Request, raw_query: str, body: str, params: dict) -> str:
        api_key = request.headers.get("X-MBX-APIKEY")
        entry = self._keys.get(api_key or "")
        if entry is None:
            raise _Reject(401, -2015, "Invalid API-key, IP, or permissions for action.")
        account_id, secret = entry
        signature = params.get("signature")
        if not signature:
            raise _Reject(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = _strip_signature(raw_query) + _strip_signature(body)
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise _Reject(400, -1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise _Reject(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        if recv_window <= 0 or recv_window > self.config.max_recv_window_ms:
            raise _Reject(400, -1131, "recvWindow must be less than 60000")
        now = _now_ms()
        if timestamp > now + 1000 or now - timestamp > recv_window:
            raise _Reject(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return account_id

    # --- public endpoints -------------------------------------------------------------------------------

    def _ping(self, params: dict, account_id: str | None) -> dict:
        return {}

    def _time(self, params: dict, account_id: str | None) -> dict:
        return {"serverTime": _now_ms()}

    def _exchange_info(self, params: dict, account_id: str | None) -> dict:
        symbols = []
        for spec in self.engine.markets.values():
            symbols.append({
                "symbol": spec.exchange_symbol,
                "status": "TRADING",
                "baseAsset": spec.base,
                "baseAssetPrecision": 8,
                "quoteAsset": spec.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "icebergAllowed": False,
                "ocoAllowed": False,
                "otoAllowed": False,
                "quoteOrderQtyMarketAllowed": False,
                "allowTrailingStop": False,
                "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _fmt(spec.tick_size), "maxPrice": "1000000000.00000000",
                     "tickSize": _fmt(spec.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": _fmt(spec.min_qty), "maxQty": "9000000000.00000000",
                     "stepSize": _fmt(spec.lot_size)},
                    {"filterType": "NOTIONAL", "minNotional": _fmt(spec.min_notional), "applyMinToMarket": True,
                     "maxNotional": "9000000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "9000000000.00000000",
                     "stepSize": "0.00000000"},
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": self._default_stp(),
                "allowedSelfTradePreventionModes": (list(STP_MODES) if self.config.self_trade_prevention
                                                    else ["NONE"]),
            })
        return {"timezone": "UTC", "serverTime": _now_ms(), "rateLimits": [], "exchangeFilters": [], "symbols": symbols}

    def _symbol(self, params: dict) -> str:
        exchange_symbol = params.get("symbol")
        if not exchange_symbol:
            raise _Reject(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        return self.engine.symbol_for_exchange_id(exchange_symbol)

    def _depth(self, params: dict, account_id: str | None) -> dict:
        symbol = self._symbol(params)
        limit = _int_param(params, "limit", 100)
        book = self.engine.book(symbol, min(max(limit, 1), 5000))
        return {
            # the u of the depth-stream update that left the book as returned (public_streams)
            "lastUpdateId": self.streams.feeds.last_update_id(symbol),
            "bids": [[_fmt(level.price), _fmt(level.quantity)] for level in book.bids],
            "asks": [[_fmt(level.price), _fmt(level.quantity)] for level in book.asks],
        }

    def _ticker_for(self, symbol: str) -> dict:
        spec = self.engine.markets[symbol]
        stats = self._stats[symbol]
        book = self.engine.book(symbol, 1)
        last = stats["last"] if stats["count"] else self.market.mid(symbol)
        change = last - stats["open"]
        volume = stats["volume"]
        now = _now_ms()
        return {
            "symbol": spec.exchange_symbol,
            "priceChange": _fmt(change),
            "priceChangePercent": _fmt((change / stats["open"] * 100).quantize(Decimal("0.001"))),
            "weightedAvgPrice": _fmt((stats["quote_volume"] / volume).quantize(spec.tick_size) if volume else last),
            "prevClosePrice": _fmt(stats["open"]),
            "lastPrice": _fmt(last),
            "lastQty": _fmt(stats["last_qty"]),
            "bidPrice": _fmt(book.bids[0].price) if book.bids else "0",
            "bidQty": _fmt(book.bids[0].quantity) if book.bids else "0",
            "askPrice": _fmt(book.asks[0].price) if book.asks else "0",
            "askQty": _fmt(book.asks[0].quantity) if book.asks else "0",
            "openPrice": _fmt(stats["open"]),
            "highPrice": _fmt(max(stats["high"], last)),
            "lowPrice": _fmt(min(stats["low"], last)),
            "volume": _fmt(volume),
            "quoteVolume": _fmt(stats["quote_volume"]),
            "openTime": max(self.started_ms, now - 86_400_000),
            "closeTime": now,
            "firstId": stats["first_id"],
            "lastId": stats["last_id"],
            "count": stats["count"],
        }

    def _ticker_24hr(self, params: dict, account_id: str | None) -> dict | list:
        if params.get("symbol"):
            return self._ticker_for(self._symbol(params))
        return [self._ticker_for(symbol) for symbol in self.engine.markets]

    def _book_ticker_for(self, symbol: str) -> dict:
        book = self.engine.book(symbol, 1)
        return {
            "symbol": self.engine.markets[symbol].exchange_symbol,
            "bidPrice": _fmt(book.bids[0].price) if book.bids else "0",
            "bidQty": _fmt(book.bids[0].quantity) if book.bids else "0",
            "askPrice": _fmt(book.asks[0].price) if book.asks else "0",
            "askQty": _fmt(book.asks[0].quantity) if book.asks else "0",
        }

    def _book_ticker(self, params: dict, account_id: str | None) -> dict | list:
        if params.get("symbol"):
            return self._book_ticker_for(self._symbol(params))
        return [self._book_ticker_for(symbol) for symbol in self.engine.markets]

    def _ticker_price(self, params: dict, account_id: str | None) -> dict | list:
        def one(symbol: str) -> dict:
            stats = self._stats[symbol]
            last = stats["last"] if stats["count"] else self.market.mid(symbol)
            return {"symbol": self.engine.markets[symbol].exchange_symbol, "price": _fmt(last)}

        if params.get("symbol"):
            return one(self._symbol(params))
        return [one(symbol) for symbol in self.engine.markets]

    # --- signed endpoints ---------------------------------------------------------------------------------

    def _account(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        maker_bps = int(self.engine.maker_fee_rate * 10000)
        taker_bps = int(self.engine.taker_fee_rate * 10000)
        balances = [
            {"asset": asset, "free": _fmt(b.free), "locked": _fmt(b.locked)}
            for asset, b in sorted(self.engine.balances(account_id).items())
        ]
        return {
            "makerCommission": maker_bps,
            "takerCommission": taker_bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": _fmt(self.engine.maker_fee_rate), "taker": _fmt(self.engine.taker_fee_rate),
                                "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": _now_ms(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": abs(hash(account_id)) % 10**9,
        }

    def _order_params(self, params: dict) -> dict:
        symbol = self._symbol(params)
        side = params.get("side", "")
        order_type = params.get("type", "")
        if not side or not order_type:
            raise BadParameterError("Mandatory parameter 'side'/'type' was not sent, was empty/null, or malformed.")
        if order_type not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise _Reject(400, -1116, "Invalid orderType.")
        quantity = _decimal_param(params, "quantity")
        if quantity is None:
            raise BadParameterError("Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        price = _decimal_param(params, "price")
        time_in_force = params.get("timeInForce") or "GTC"
        if order_type == "LIMIT" and time_in_force not in ("GTC", "IOC"):
            raise _Reject(400, -1115, "Invalid timeInForce.")
        client_order_id = params.get("newClientOrderId") or ""
        if len(client_order_id) > 36:
            raise _Reject(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                          "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        return {"symbol": symbol, "side": side, "order_type": order_type, "quantity": quantity, "price": price,
                "time_in_force": time_in_force, "client_order_id": client_order_id or None,
                "self_trade_prevention": self._stp_mode(params)}

    def _default_stp(self) -> str:
        """Binance spot's default mode (EXPIRE_MAKER); NONE on an emulator run without STP."""
        return "EXPIRE_MAKER" if self.config.self_trade_prevention else "NONE"

    def _stp_mode(self, params: dict) -> str:
        """``selfTradePreventionMode`` of a new order (the default when absent; ignored without STP)."""
        mode = params.get("selfTradePreventionMode")
        if not self.config.self_trade_prevention:
            return "NONE"
        if not mode:
            return self._default_stp()
        if mode not in STP_MODES:
            raise _Reject(400, -1100, "Illegal characters found in parameter 'selfTradePreventionMode'; legal "
                          f"range is '{', '.join(STP_MODES)}'.")
        return str(mode)

    def _new_order(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        request = self._order_params(params)
        now = _now_ms()
        order, fills = self.engine.place_order(account_id, now_ms=now, **request)
        return self._placed_json(order, fills, now, params.get("newOrderRespType") or "FULL")

    def _placed_json(self, order: OrderInfo, fills: list[TradeInfo], now: int, response_type: str) -> dict:
        """A new order's answer in the ``newOrderRespType`` shape (ACK, RESULT or FULL)."""
        if self.faults.not_found_after_accept_ms:
            self._accepted_at[order.order_id] = time.monotonic()
        result = _order_json(self.engine, order)
        result["transactTime"] = now
        result["workingTime"] = now if order.is_open else -1
        for key in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty", "origQuoteOrderQty"):
            result.pop(key, None)
        if response_type == "ACK":
            return {k: result[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")}
        if response_type == "FULL":
            result["fills"] = [
                {"price": _fmt(f.price), "qty": _fmt(f.quantity), "commission": _fmt(f.fee),
                 "commissionAsset": f.fee_asset, "tradeId": f.trade_id}
                for f in fills
            ]
        return result

    def _cancel_replace(self, params: dict, account_id: str | None) -> dict:
        """``POST /api/v3/order/cancelReplace``: cancel one order and place another in one engine step.

        Binance's answers: both done -> 200 with both responses; the cancel failed and the new order
        was not attempted or failed too -> 400 -2022; one half failed -> 409 -2021 (the halves in
        ``data``). Bad parameters and filter failures are refused before either half.
        """
        assert account_id is not None
        mode = params.get("cancelReplaceMode")
        if not mode:
            raise _Reject(400, -1102, "Mandatory parameter 'cancelReplaceMode' was not sent, was empty/null, or "
                          "malformed.")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise _Reject(400, -1100, "Illegal characters found in parameter 'cancelReplaceMode'.")
        request = self._order_params(params)
        symbol = request.pop("symbol")
        cancel_id = _int_param(params, "cancelOrderId", None)
        cancel_client_id = params.get("cancelOrigClientOrderId") or None
        if cancel_id is None and cancel_client_id is None:
            raise BadParameterError(
                "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were empty/null!")
        allow_failure = mode == "ALLOW_FAILURE"
        now = _now_ms()
        result = None
        if self._accepted_at:
            try:
                hidden = self._hidden(self.engine.get_order(account_id, symbol, cancel_id, cancel_client_id).order_id)
            except EngineError:
                hidden = False  # the engine's cancel answers with its own error
            if hidden:
                result = self._replace_without_cancel(account_id, symbol, request, allow_failure, now)
        if result is None:
            result = self.engine.cancel_replace(
                account_id, symbol, cancel_order_id=cancel_id, cancel_client_order_id=cancel_client_id,
                allow_failure=allow_failure, now_ms=now, **request)
        response_type = params.get("newOrderRespType") or "FULL"
        cancel_response = (_cancel_json(self.engine, result.cancelled) if result.cancelled is not None
                           else _error_json(result.cancel_error))
        if result.new_order is not None:
            new_response: dict | None = self._placed_json(result.new_order, result.new_order_fills, now, response_type)
        else:
            new_response = _error_json(result.new_order_error) if result.new_order_attempted else None
        body = {
            "cancelResult": "SUCCESS" if result.cancelled is not None else "FAILURE",
            "newOrderResult": ("SUCCESS" if result.new_order is not None
                               else "FAILURE" if result.new_order_attempted else "NOT_ATTEMPTED"),
            "cancelResponse": cancel_response,
            "newOrderResponse": new_response,
        }
        if result.succeeded:
            return body
        if result.cancelled is None and result.new_order is None:
            raise _Reject(400, -2022, "Order cancel-replace failed.", data=body)
        raise _Reject(409, -2021, "Order cancel-replace partially failed.", data=body)

    def _replace_without_cancel(
        self, account_id: str, symbol: str, request: dict, allow_failure: bool, now: int
    ) -> CancelReplaceResult:
        """A cancel-replace whose old order the not-found-after-accept fault hides: the cancel fails."""
        cancel_error = UnknownOrderError("Unknown order sent.", code=-2011)
        if not allow_failure:
            return CancelReplaceResult(None, cancel_error, None, [], None, False)
        try:
            order, fills = self.engine.place_order(account_id, symbol, now_ms=now, **request)
        except EngineError as error:
            return CancelReplaceResult(None, cancel_error, None, [], error, True)
        return CancelReplaceResult(None, cancel_error, order, fills, None, True)

    def _test_order(self, params: dict, account_id: str | None) -> dict:
        self._order_params(params)
        return {}

    def _order_ref(self, params: dict) -> tuple[int | None, str | None]:
        order_id = params.get("orderId")
        client_id = params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise BadParameterError("Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        try:
            return (int(order_id) if order_id is not None else None), (client_id or None)
        except ValueError:
            raise _Reject(400, -1100, "Illegal characters found in parameter 'orderId'.") from None

    def _query_order(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        symbol = self._symbol(params)
        order_id, client_id = self._order_ref(params)
        order = self.engine.get_order(account_id, symbol, order_id, client_id)
        if self._hidden(order.order_id):
            raise _Reject(400, -2013, "Order does not exist.")
        return _order_json(self.engine, order)

    def _cancel_order(self, params: dict, account_id: str | None) -> dict:
        assert account_id is not None
        symbol = self._symbol(params)
        order_id, client_id = self._order_ref(params)
        if self._accepted_at:
            try:
                hidden = self._hidden(self.engine.get_order(account_id, symbol, order_id, client_id).order_id)
            except EngineError:
                hidden = False  # the cancel below answers with its own error
            if hidden:
                raise _Reject(400, -2011, "Unknown order sent.")
        order = self.engine.cancel_order(account_id, symbol, order_id, client_id, now_ms=_now_ms())
        return _cancel_json(self.engine, order)

    def _open_orders(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self._symbol(params) if params.get("symbol") else None
        return [_order_json(self.engine, order) for order in self.engine.open_orders(account_id, symbol)
                if not self._hidden(order.order_id)]

    def _hidden(self, order_id: int) -> bool:
        """True while the not-found-after-accept fault still hides this order."""
        accepted = self._accepted_at.get(order_id)
        if accepted is None:
            return False
        if (time.monotonic() - accepted) * 1000 < self.faults.not_found_after_accept_ms:
            return True
        del self._accepted_at[order_id]
        return False

    def _cancel_open_orders(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self._symbol(params)
        cancelled = self.engine.cancel_all(account_id, symbol, now_ms=_now_ms())
        if not cancelled:
            raise _Reject(400, -2011, "Unknown order sent.")
        return [_cancel_json(self.engine, order) for order in cancelled]

    def _my_trades(self, params: dict, account_id: str | None) -> list:
        assert account_id is not None
        symbol = self._symbol(params)
        limit = min(max(_int_param(params, "limit", 500), 1), 1000)
        from_id = _int_param(params, "fromId", None)
        start = _int_param(params, "startTime", None)
        end = _int_param(params, "endTime", None)
        order_id = _int_param(params, "orderId", None)
        trades = self.engine.account_trades(
            account_id, symbol, from_id=from_id, since_ms=start, until_ms=end, limit=limit, order_id=order_id
        )
        exchange_symbol = self.engine.markets[symbol].exchange_symbol
        return [_trade_json(exchange_symbol, trade) for trade in trades]

    # --- admin ------------------------------------------------------------------------------------------

    def _admin(self, handler: Callable[[dict], object]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            token = self.config.admin_token
            if not token:
                return web.json_response({"error": "the admin API is disabled (no admin token configured)"}, status=403)
            if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), token):
                return web.json_response({"error": "bad or missing admin token"}, status=401)
            try:
                payload = await request.json() if request.method == "POST" and request.can_read_body else {}
                if not isinstance(payload, dict):
                    raise ValueError("the body must be a JSON object")
                payload = {**dict(request.query), **payload}
                try:
                    return web.json_response(handler(payload))
                finally:
                    if request.method != "GET":
                        self.streams.books_changed()
            except (ValueError, TypeError, KeyError, InvalidOperation, EngineError) as error:
                return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=400)

        return endpoint

    def _admin_state(self, payload: dict) -> dict:
        return self.state()

    def _admin_create_account(self, payload: dict) -> dict:
        balances = {asset: Decimal(str(amount)) for asset, amount in (payload.get("balances") or {}).items()}
        account_id = self.add_account(AccountConfig(
            api_key=str(payload["api_key"]), secret=str(payload["secret"]), balances=balances,
            account_id=payload.get("account_id"), passphrase=str(payload.get("passphrase") or ""),
        ))
        return {"account_id": account_id}

    def _admin_deposit(self, payload: dict) -> dict:
        account_id = self._admin_account(payload)
        self.engine.deposit(account_id, str(payload["asset"]), Decimal(str(payload["amount"])))
        return {"account_id": account_id}

    def _admin_account(self, payload: dict) -> str:
        if payload.get("api_key"):
            entry = self._keys.get(str(payload["api_key"]))
            if entry is None:
                raise KeyError("unknown api_key")
            return entry[0]
        account_id = str(payload["account_id"])
        if not self.engine.has_account(account_id):
            raise KeyError("unknown account_id")
        return account_id

    def _admin_set_mid(self, payload: dict) -> dict:
        symbol = str(payload["symbol"])
        if symbol not in self.engine.markets:
            symbol = self.engine.symbol_for_exchange_id(symbol)
        self.market.set_mid(symbol, Decimal(str(payload["mid"])))
        # when the book moved, on the clock (ms) that stamps orders: tick-to-quote is measured on it
        return {"symbol": symbol, "mid": _fmt(self.market.mid(symbol)), "time_ms": _now_ms()}

    def _admin_set_faults(self, payload: dict) -> dict:
        self.set_faults(replace(self.faults, **payload))
        return asdict(self.faults)

    def _admin_orders(self, payload: dict) -> dict:
        account_id = self._admin_account(payload)
        return {"orders": [_order_json(self.engine, o) for o in self.engine.open_orders(account_id)]}

    def _admin_journal(self, payload: dict) -> dict:
        """``GET /admin/journal?account=KEY[&since=MS]``: the account's order journal (every accept, fill,
        partial fill, cancel and expiry, the engine's ms clock), oldest first. ``account`` is an API key
        or an account id."""
        key = str(payload.get("account") or payload.get("api_key") or "")
        account_id = self._keys[key][0] if key in self._keys else key
        if not self.engine.has_account(account_id):
            raise KeyError("unknown account")
        since = _int_param(payload, "since", None)
        return {"account": account_id, "server_time": _now_ms(),
                "entries": [_journal_json(self.engine, e) for e in self.engine.journal(account_id, since)]}


# --- JSON shapes -------------------------------------------------------------------------------------


def _journal_json(engine: MatchingEngine, entry: JournalEntry) -> dict:
    return {
        "seq": entry.seq, "time_ms": entry.time_ms, "event": entry.event, "order_id": entry.order_id,
        "client_order_id": entry.client_order_id, "symbol": engine.markets[entry.symbol].exchange_symbol,
        "pair": entry.symbol, "side": entry.side, "price": _fmt(entry.price), "quantity": _fmt(entry.quantity),
        "filled": _fmt(entry.filled), "remaining": _fmt(entry.remaining),
        "fill_quantity": _fmt(entry.fill_quantity), "fill_price": _fmt(entry.fill_price),
        "trade_id": entry.trade_id, "is_maker": entry.is_maker,
    }


def _order_json(engine: MatchingEngine, order: OrderInfo) -> dict:
    spec = engine.markets[order.symbol]
    result = {
        "symbol": spec.exchange_symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": _fmt(order.price),
        "origQty": _fmt(order.quantity),
        "executedQty": _fmt(order.filled),
        "cummulativeQuoteQty": _fmt(order.cumulative_quote),
        "status": order.status,
        "timeInForce": order.time_in_force if order.order_type != "LIMIT_MAKER" else "GTC",
        "type": order.order_type,
        "side": order.side,
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": order.created_ms,
        "updateTime": order.updated_ms,
        "isWorking": True,
        "workingTime": order.created_ms,
        "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": order.self_trade_prevention,
    }
    if order.status == "EXPIRED_IN_MATCH":  # as Binance reports an order self-trade prevention expired
        result["preventedMatchId"] = order.order_id
        result["preventedQuantity"] = _fmt(order.prevented_quantity)
    return result


def _cancel_json(engine: MatchingEngine, order: OrderInfo) -> dict:
    result = _order_json(engine, order)
    result["origClientOrderId"] = order.client_order_id
    result["transactTime"] = order.updated_ms
    for key in ("time", "updateTime", "isWorking", "workingTime", "stopPrice", "icebergQty", "origQuoteOrderQty"):
        result.pop(key, None)
    return result


def _trade_json(exchange_symbol: str, trade: TradeInfo) -> dict:
    return {
        "symbol": exchange_symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": _fmt(trade.price),
        "qty": _fmt(trade.quantity),
        "quoteQty": _fmt(trade.quote_quantity),
        "commission": _fmt(trade.fee),
        "commissionAsset": trade.fee_asset,
        "time": trade.time_ms,
        "isBuyer": trade.is_buyer,
        "isMaker": trade.is_maker,
        "isBestMatch": True,
    }


def _error_json(error: EngineError | None) -> dict:
    assert error is not None
    return {"code": error.code, "msg": error.message}


def _error_response(
    status: int, code: int, message: str, headers: dict[str, str] | None = None, data: dict | None = None
) -> web.Response:
    if code == 0:
        return web.Response(status=status, text=message, headers=headers)
    body: dict = {"code": code, "msg": message}
    if data is not None:
        body["data"] = data
    return web.Response(
        status=status, text=json.dumps(body, separators=(",", ":")), content_type="application/json", headers=headers,
    )


def _too_many(faults: FaultConfig) -> _Reject:
    return _Reject(
        429, -1003, "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
        headers={"Retry-After": str(faults.retry_after_secs)},
    )


def _strip_signature(raw: str) -> str:
    if "signature=" not in raw:
        return raw
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


def _int_param(params: dict, name: str, default: int | None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise _Reject(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _decimal_param(params: dict, name: str) -> Decimal | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise _Reject(400, -1100, f"Illegal characters found in parameter '{name}'.") from None
    if not result.is_finite():
        raise _Reject(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return result
