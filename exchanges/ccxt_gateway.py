"""The ccxt implementation of ``ExchangeGateway`` -- the only module (with the emulator tests) that
imports ccxt.

What it adds on top of ccxt: ccxt exceptions mapped to ``mmplatform.errors`` (cause kept); reads
retried with backoff on network errors, timeouts and 429 (honouring Retry-After); placements made
idempotent by client order id (an unknown outcome is resolved by fetching the order by client id
before anything is re-sent); a per-account request budget shared by every process (Redis token
bucket) that a 429 / DDoSProtection pauses for the whole account (Retry-After, every process); a
timeout on every call; one ccxt client per event loop with markets loaded once.

Venue-neutral: ccxt's unified params (``clientOrderId``, ``postOnly``, ``timeInForce``) and the venue
registry (``exchanges.venues``) decide everything venue-specific -- the client config, how client order
ids are encoded on the way out and decoded on the way back, whether a cancel-replace is one request,
how trades are paged and which rejection means "duplicate client id".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import ccxt
import ccxt.async_support as ccxt_async

from exchanges.gateway import (
    CANCELED,
    OPEN,
    AssetBalance,
    Balance,
    BookLevel,
    ExchangeGateway,
    ExchangeOrder,
    MarketRules,
    OrderBook,
    OrderRequest,
    Ticker,
    Trade,
    check_order_against_rules,
    quantize_to_rules,
)
from exchanges.ratelimit import LocalTokenBucket, RateLimiter, RedisTokenBucket
from exchanges.venues import PLATFORM_CLIENT_ID, ClientIdError, ReplaceFailure, UnknownVenueError, Venue, get_venue
from mmplatform.errors import (
    AuthenticationFailedError,
    BadSymbolError,
    ExchangeError,
    ExchangeUnavailableError,
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    RateLimitedError,
    ReplaceCancelFailedError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_ORDER_ID_PATTERN = PLATFORM_CLIENT_ID
_TRADES_PAGE = 1000
RATE_LIMIT_PAUSE_SECS = 1.0
# how long a process may hold tokens it leased from the account's shared budget (exchanges/ratelimit.py)
RATE_LIMIT_LEASE_SECS = 0.1
"""Account-wide pause after a 429 / DDoSProtection that names no Retry-After."""

# most specific first: the first isinstance match wins
ERROR_MAP: tuple[tuple[type[Exception], type[ExchangeError]], ...] = (
    (ccxt.OrderNotFound, OrderNotFoundError),
    (ccxt.InvalidOrder, InvalidOrderError),  # incl. OrderImmediatelyFillable (post-only would cross)
    (ccxt.InsufficientFunds, InsufficientFundsError),
    (ccxt.BadSymbol, BadSymbolError),
    (ccxt.AuthenticationError, AuthenticationFailedError),  # incl. PermissionDenied, AccountSuspended
    (ccxt.DDoSProtection, RateLimitedError),
    (ccxt.RateLimitExceeded, RateLimitedError),
    (ccxt.NetworkError, ExchangeUnavailableError),  # RequestTimeout, ExchangeNotAvailable, InvalidNonce
    (ccxt.BadRequest, InvalidOrderError),  # filter failures, bad parameters
    (ccxt.OperationFailed, ExchangeUnavailableError),  # BadResponse, NullResponse, -1000/-1001
    (asyncio.TimeoutError, ExchangeUnavailableError),
    (ConnectionError, ExchangeUnavailableError),
)


def map_ccxt_error(error: BaseException, retry_after_secs: float | None = None) -> ExchangeError:
    """The project error for a ccxt (or transport) exception; the caller raises it ``from error``."""
    if isinstance(error, ExchangeError):
        return error
    message = f"{type(error).__name__}: {error}"[:1000]
    for source, target in ERROR_MAP:
        if isinstance(error, source):
            if target is RateLimitedError:
                return RateLimitedError(message, retry_after_secs=retry_after_secs)
            return target(message)
    return ExchangeError(message)


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def _retry_after(exchange: Any) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class CcxtGateway(ExchangeGateway):
    """An ``ExchangeGateway`` over ccxt's async client for one account."""

    def __init__(
        self,
        credentials: Any,
        *,
        rate_limiter: RateLimiter | None = None,
        redis: Any = None,
        redis_url: str | None = None,
        rate_limit_burst: float | None = None,
        timeout_secs: float = 10.0,
        read_attempts: int = 4,
        place_attempts: int = 4,
        backoff_secs: float = 0.05,
        backoff_max_secs: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pause_account_on_rate_limit: bool | None = None,
    ):
        """``pause_account_on_rate_limit`` (default: on when the gateway builds its own limiter, off for
        an injected one, which the caller controls): a throttled answer pauses the account's budget."""
        if read_attempts < 1 or place_attempts < 1:
            raise ValueError("read_attempts and place_attempts must be >= 1")
        self.account_key = credentials.account_key
        self.exchange_id = credentials.exchange_id
        if not hasattr(ccxt_async, self.exchange_id):
            raise BadSymbolError(f"ccxt does not know the exchange {self.exchange_id!r}")
        try:
            self.venue: Venue = get_venue(self.exchange_id)
        except UnknownVenueError as error:
            raise BadSymbolError(str(error)) from None
        self._credentials = credentials
        self.timeout_secs = timeout_secs
        self.read_attempts = read_attempts
        self.place_attempts = place_attempts
        self.backoff_secs = backoff_secs
        self.backoff_max_secs = backoff_max_secs
        self._sleep = sleep
        self._jitter = random.Random()
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}
        self._markets: dict | None = None
        self._rules: dict[str, MarketRules] = {}
        self._active: set[str] = set()
        self._client_ids: OrderedDict[str, str] = OrderedDict()  # exchange order id -> client id
        self._balance_read: tuple[float, asyncio.Future[Balance]] | None = None  # (started, read): fetch_balance_since
        rate = float(getattr(credentials, "rate_limit_per_sec", 0.0) or self.venue.default_rate_limit_per_sec)
        self._own_limiter = rate_limiter is None
        if rate_limiter is None:
            target = redis if redis is not None else (redis_url or os.environ.get("REDIS_URL") or None)
            key = f"mmplatform:ratelimit:{self.exchange_id}:{self.account_key}"
            if target is not None:
                rate_limiter = RedisTokenBucket(target, key, rate, rate_limit_burst, lease_secs=RATE_LIMIT_LEASE_SECS)
            else:
                rate_limiter = LocalTokenBucket(rate, rate_limit_burst)
        self.rate_limiter = rate_limiter
        self._fallback_limiter = LocalTokenBucket(rate, rate_limit_burst)
        self.pause_account_on_rate_limit = (
            self._own_limiter if pause_account_on_rate_limit is None else pause_account_on_rate_limit)

    # --- clients ----------------------------------------------------------------------------------

    def _config(self) -> dict:
        creds = self._credentials
        return self.venue.config(creds.api_base_url or None, creds.api_key, creds.api_secret,
                                 getattr(creds, "passphrase", "") or "", int(self.timeout_secs * 1000))

    def _client(self) -> Any:
        """This event loop's ccxt client (aiohttp sessions are bound to the loop that made them)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        for key, (other, dead) in list(self._clients.items()):  # a copy: another thread's loop may add its client
            if other.is_closed():
                self._clients.pop(key, None)  # a finished asyncio.run(): its sessions died with it
                _forget(dead)
        client = getattr(ccxt_async, self.exchange_id)(self._config())
        if self._markets is not None:
            client.set_markets(self._markets)
        self._clients[id(loop)] = (loop, client)
        return client

    async def close(self) -> None:
        """Close every ccxt client (the current loop's awaited, others scheduled) and owned Redis links."""
        current = asyncio.get_running_loop()
        clients, self._clients = self._clients, {}
        for loop, client in clients.values():
            if loop is current:
                await client.close()
            elif not loop.is_closed():
                asyncio.run_coroutine_threadsafe(client.close(), loop)
            else:
                _forget(client)
        if self._own_limiter and isinstance(self.rate_limiter, RedisTokenBucket):
            await self.rate_limiter.close()

    def discard(self, wait_secs: float = 0.0) -> None:
        """Close every ccxt client from sync code (a cached gateway replaced after a credential rotation): a client
        on a running loop is closed there (scheduled; ``wait_secs`` > 0: waited for that long, unless called on
        that loop's own thread), one on a loop that is not running is closed on it here, one whose loop is gone
        is let go (its sockets died with the loop)."""
        clients, self._clients = self._clients, {}
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, client in clients.values():
            if loop.is_closed():
                _forget(client)
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(client.close(), loop)
                if wait_secs > 0 and loop is not here:
                    try:
                        done.result(timeout=wait_secs)
                    except Exception as error:  # (closing is best effort: the gateway is dropped either way)
                        logger.info("closing the %s client of %s: %s", self.exchange_id, self.account_key, error)
            elif here is None:
                loop.run_until_complete(client.close())
            else:
                _forget(client)

    # --- plumbing ---------------------------------------------------------------------------------

    async def _throttle(self) -> None:
        try:
            await self.rate_limiter.acquire()
        except ExchangeError:
            raise
        except Exception as error:  # Redis down: keep trading on the in-process budget, say so
            logger.warning("rate limiter unavailable for %s (%s); using the in-process bucket",
                           self.account_key, error)
            await self._fallback_limiter.acquire()

    async def _pause_account(self, error: RateLimitedError) -> None:
        """The venue throttled this key: hold every request of the account (all processes) for its
        Retry-After, not only the call that got the answer."""
        secs = error.retry_after_secs if error.retry_after_secs is not None else RATE_LIMIT_PAUSE_SECS
        await self._fallback_limiter.pause(secs)
        try:
            await self.rate_limiter.pause(secs)
        except Exception as failure:  # Redis down: the in-process bucket above holds this process
            logger.warning("could not pause the budget of %s: %s", self.account_key, failure)

    async def _request(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """One throttled, time-limited ccxt call; raises mapped project errors."""
        client = self._client()
        await self._throttle()
        try:
            return await asyncio.wait_for(call(client), timeout=self.timeout_secs + 1.0)
        except Exception as error:
            mapped = map_ccxt_error(error, _retry_after(client))
            if isinstance(mapped, RateLimitedError) and self.pause_account_on_rate_limit:
                await self._pause_account(mapped)
            raise mapped from error

    def _delay(self, attempt: int, error: ExchangeError) -> float:
        if isinstance(error, RateLimitedError) and error.retry_after_secs is not None:
            return error.retry_after_secs
        backoff = min(self.backoff_max_secs, self.backoff_secs * (2 ** attempt))
        return backoff * (0.5 + 0.5 * self._jitter.random())

    async def _read(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """A read, retried with backoff on unavailability and rate limiting."""
        for attempt in range(self.read_attempts):
            try:
                return await self._request(call)
            except (ExchangeUnavailableError, RateLimitedError) as error:
                if attempt == self.read_attempts - 1:
                    raise
                await self._sleep(self._delay(attempt, error))
        raise AssertionError("unreachable")

    def _wire_id(self, client_order_id: str) -> str:
        """The platform's client order id as this venue accepts it (``InvalidOrderError`` if it cannot)."""
        try:
            return self.venue.client_ids.encode(client_order_id)
        except ClientIdError as error:
            raise InvalidOrderError(str(error)) from None

    def _remember(self, exchange_order_id: str, client_order_id: str | None) -> None:
        if client_order_id:
            self._client_ids[exchange_order_id] = client_order_id
            if len(self._client_ids) > 50_000:
                self._client_ids.popitem(last=False)

    # --- markets ----------------------------------------------------------------------------------

    async def load_markets(self, reload: bool = False) -> dict[str, MarketRules]:
        """Fetch markets once per gateway (shared by the clients of every loop)."""
        if self._markets is not None and not reload:
            return self._rules
        markets = await self._read(lambda client: client.load_markets(reload))
        client = self._client()
        tick_mode = client.precisionMode == ccxt.TICK_SIZE
        rules: dict[str, MarketRules] = {}
        active: set[str] = set()
        for symbol, market in markets.items():
            if not market.get("spot"):
                continue
            precision = market.get("precision") or {}
            limits = market.get("limits") or {}
            price_precision = _dec(precision.get("price"))
            amount_precision = _dec(precision.get("amount"))
            if price_precision is None or amount_precision is None:
                continue
            tick = price_precision if tick_mode else Decimal(1).scaleb(-int(price_precision))
            lot = amount_precision if tick_mode else Decimal(1).scaleb(-int(amount_precision))
            rules[symbol] = MarketRules(
                pair=symbol,
                base=market["base"],
                quote=market["quote"],
                tick_size=tick,
                lot_size=lot,
                min_amount=_dec((limits.get("amount") or {}).get("min")) or Decimal(0),
                min_notional=_dec((limits.get("cost") or {}).get("min")) or Decimal(0),
            )
            if market.get("active") is not False:
                active.add(symbol)
        self._markets = markets
        self._rules = rules
        self._active = active
        for _, other in list(self._clients.values()):
            if other is not client:
                other.set_markets(markets)
        return rules

    def supports_trading_pair(self, pair: str) -> bool:
        """True if ``pair`` is an active spot market (markets must be loaded)."""
        return pair in self._active

    def market_rules(self, pair: str) -> MarketRules:
        """Tick, lot and minimums of ``pair`` (markets must be loaded)."""
        if self._markets is None:
            raise ExchangeError(f"{self.account_key}: markets are not loaded; call load_markets() first")
        rules = self._rules.get(pair)
        if rules is None:
            raise BadSymbolError(f"{self.exchange_id} does not list {pair}")
        return rules

    async def validate_connection(self) -> bool:
        """Markets load and a private read (balance) succeeds; False with a logged reason otherwise."""
        try:
            await self.load_markets()
            await self.fetch_balance()
        except ExchangeError as error:
            logger.warning("connection check failed for %s: %s", self.account_key, error)
            return False
        return True

    # --- market data and account ------------------------------------------------------------------

    async def fetch_order_book(self, pair: str, depth: int = 20) -> OrderBook:
        """Aggregated levels as Decimals, best first."""
        await self.load_markets()
        raw = await self._read(lambda client: client.fetch_order_book(pair, depth))
        return OrderBook(
            pair=pair,
            bids=tuple(BookLevel(_dec(p), _dec(a)) for p, a, *_ in raw.get("bids", [])),
            asks=tuple(BookLevel(_dec(p), _dec(a)) for p, a, *_ in raw.get("asks", [])),
            timestamp_ms=raw.get("timestamp"),
        )

    async def fetch_ticker(self, pair: str) -> Ticker:
        """Best bid/ask and last price."""
        await self.load_markets()
        raw = await self._read(lambda client: client.fetch_ticker(pair))
        return Ticker(pair, _dec(raw.get("bid")), _dec(raw.get("ask")), _dec(raw.get("last")),
                      _dec(raw.get("baseVolume")), raw.get("timestamp"))

    async def fetch_balance_since(self, not_before: float) -> Balance:
        held = self._balance_read
        if held is None or held[0] < not_before or (held[1].done() and (held[1].cancelled()
                                                                      or held[1].exception() is not None)):
            held = self._balance_read = (time.time(), asyncio.ensure_future(self.fetch_balance()))
        return await asyncio.shield(held[1])

    async def fetch_balance(self) -> Balance:
        """Free/used/total per asset."""
        raw = await self._read(lambda client: client.fetch_balance())
        assets = {}
        for asset, total in (raw.get("total") or {}).items():
            free = _dec(raw["free"].get(asset)) or Decimal(0)
            used = _dec(raw["used"].get(asset)) or Decimal(0)
            assets[asset] = AssetBalance(asset, free, used, _dec(total) or free + used)
        return Balance(assets)

    # --- orders -----------------------------------------------------------------------------------

    def private_stream_config(self, timeout_secs: float, keepalive_secs: float) -> dict | None:
        """ccxt.pro config of this account's own order pushes (``exchanges.streams.OrderUpdateStream``);
        None when the venue does not serve them."""
        make = self.venue.private_stream_config
        if make is None:
            return None
        creds = self._credentials
        return make(creds.api_base_url or None, creds.api_key, creds.api_secret,
                    getattr(creds, "passphrase", "") or "", int(timeout_secs * 1000), int(keepalive_secs * 1000))

    @property
    def loaded_markets(self) -> dict | None:
        """ccxt's markets as ``load_markets`` fetched them (None before), to seed another client."""
        return self._markets

    def parse_order(self, raw: dict) -> ExchangeOrder:
        """One of ccxt's unified orders (REST or pushed) as an ``ExchangeOrder``."""
        return self._order(raw, raw.get("symbol") or "")

    def parse_trade(self, raw: dict) -> Trade:
        """One of ccxt's unified trades pushed by the account's stream (``watch_my_trades``) as a ``Trade``;
        its client order id as the order's pushes or placement taught it (None if neither did)."""
        trade = self._trade(raw, raw.get("symbol") or "", self._client_ids.get(str(raw.get("order"))))
        if self.venue.pushed_fee_negated and trade.fee is not None:
            trade = dataclasses.replace(trade, fee=-trade.fee)
        return trade

    @staticmethod
    def _trade(raw: dict, pair: str, client_id: str | None) -> Trade:
        fee = raw.get("fee") or {}
        return Trade(
            trade_id=str(raw.get("id")),
            exchange_order_id=str(raw.get("order")),
            client_order_id=client_id,
            pair=raw.get("symbol") or pair,
            side=raw.get("side") or "",
            price=_dec(raw.get("price")) or Decimal(0),
            amount=_dec(raw.get("amount")) or Decimal(0),
            fee=_dec(fee.get("cost")),
            fee_currency=fee.get("currency"),
            timestamp_ms=int(raw.get("timestamp") or 0),
            is_maker=(raw.get("takerOrMaker") == "maker") if raw.get("takerOrMaker") else None,
        )

    def _order(self, raw: dict, pair: str) -> ExchangeOrder:
        exchange_order_id = str(raw.get("id"))
        client_order_id = self.venue.client_ids.decode(raw.get("clientOrderId") or None)
        self._remember(exchange_order_id, client_order_id)
        amount = _dec(raw.get("amount")) or Decimal(0)
        filled = _dec(raw.get("filled")) or Decimal(0)
        remaining = _dec(raw.get("remaining"))
        return ExchangeOrder(
            exchange_order_id=exchange_order_id,
            client_order_id=client_order_id,
            pair=raw.get("symbol") or pair,
            side=raw.get("side") or "",
            order_type=raw.get("type") or "",
            price=_dec(raw.get("price")),
            amount=amount,
            filled=filled,
            remaining=remaining if remaining is not None else amount - filled,
            average_price=_dec(raw.get("average")),
            status=raw.get("status") or OPEN,
            timestamp_ms=raw.get("timestamp"),
            updated_ms=raw.get("lastUpdateTimestamp"),
        )

    async def place_order(self, request: OrderRequest) -> ExchangeOrder:
        """Round, check minimums, then place exactly once per client order id.

        A timeout, 5xx or lost reply leaves the outcome unknown: the order is looked up by client id
        before anything is re-sent; a re-send reuses the client id, so a duplicate is rejected by the
        exchange and that rejection resolves by lookup too. Raises ``OrderOutcomeUnknownError`` when the
        lookups themselves keep failing (the engine reconciles later).
        """
        cid = request.client_order_id
        amount, price_arg, params = await self._prepared(request)
        if request.time_in_force == "IOC" and request.order_type == "limit":
            params["timeInForce"] = "IOC"

        async def create(client: Any) -> dict:
            raw = await client.create_order(request.pair, request.order_type, request.side, amount, price_arg,
                                            dict(params))
            # venues that answer a placement with its ids only: the rest is what was asked for
            for key, value in (("amount", amount), ("price", price_arg), ("side", request.side),
                               ("type", request.order_type), ("clientOrderId", params["clientOrderId"])):
                if raw.get(key) is None:
                    raw[key] = value
            return raw

        async def duplicate(error: ExchangeError, _outcome_was_unknown: bool) -> ExchangeOrder | None:
            # a duplicate means an order with this client id is open: that one is ours
            markers = self.venue.duplicate_client_id_markers
            if isinstance(error, InvalidOrderError) and any(marker in str(error) for marker in markers):
                return await self._find_by_client_id(request.pair, cid)
            return None

        return await self._send_exactly_once(request.pair, cid, create, "not placed", duplicate)

    async def _send_exactly_once(
        self, pair: str, cid: str, send: Callable[[Any], Awaitable[dict]], failed: str,
        settle: Callable[[ExchangeError, bool], Awaitable[ExchangeOrder | None]],
    ) -> ExchangeOrder:
        """Send a request that creates the order ``cid`` until its outcome is known, never creating it
        twice: a 429 waits and re-sends; an unknown outcome (timeout, 5xx, lost reply) looks the order up
        by client id before any re-send. ``settle(error, outcome_was_unknown)`` first gets every other
        venue error: it returns the order, or raises, or returns None (then an unknown outcome is
        resolved as above and anything else is raised). After ``place_attempts``: the last 429, else
        ``OrderOutcomeUnknownError``."""
        outcome_was_unknown = False
        last_error: ExchangeError | None = None
        for attempt in range(self.place_attempts):
            try:
                return self._order(await self._request(send), pair)
            except RateLimitedError as error:  # rejected before processing: wait and re-send
                last_error = error
            except ExchangeError as error:
                settled = await settle(error, outcome_was_unknown)
                if settled is not None:
                    return settled
                if not isinstance(error, ExchangeUnavailableError):
                    raise
                outcome_was_unknown = True  # resolve before any retry
                last_error = error
                found = await self._find_by_client_id(pair, cid)
                if found is not None:
                    return found
            if attempt < self.place_attempts - 1:
                await self._sleep(self._delay(attempt, last_error))
        if isinstance(last_error, RateLimitedError):
            raise last_error
        raise OrderOutcomeUnknownError(
            f"{pair} {cid}: {failed} after {self.place_attempts} attempts ({last_error})"
        ) from last_error

    async def _prepared(self, request: OrderRequest) -> tuple[str, str | None, dict[str, Any]]:
        """Check, round and check minimums: ``(amount, price or None for market, params)`` to send."""
        cid = request.client_order_id
        if not cid or not CLIENT_ORDER_ID_PATTERN.match(cid):
            raise InvalidOrderError(f"client order id {cid!r} must match {CLIENT_ORDER_ID_PATTERN.pattern}")
        wire_id = self._wire_id(cid)
        if request.order_type not in ("limit", "market"):
            raise InvalidOrderError(f"unsupported order type {request.order_type!r}")
        if request.time_in_force not in ("GTC", "IOC") or (request.time_in_force == "IOC" and request.post_only):
            raise InvalidOrderError(f"unsupported time in force {request.time_in_force!r} for this order")
        await self.load_markets()
        rules = self.market_rules(request.pair)
        price, amount = quantize_to_rules(rules, request.side, request.price, request.amount)
        check_order_against_rules(rules, price, amount, request.order_type)
        params: dict[str, Any] = {"clientOrderId": wire_id, **self.venue.self_trade_prevention}
        if request.post_only and request.order_type == "limit":
            params["postOnly"] = True
        return str(amount), (str(price) if request.order_type == "limit" else None), params

    async def replace_order(
        self,
        pair: str,
        *,
        cancel_exchange_order_id: str | None,
        cancel_client_order_id: str | None,
        new: OrderRequest,
        cancelled: list[ExchangeOrder] | None = None,
    ) -> ExchangeOrder:
        """Cancel an open order and place ``new``: in one request (ccxt's ``edit_order`` with the
        venue's cancel-replace params, one request of the budget; the venue's own request where its dialect
        keeps the cancelled half, ``CancelReplace.request``) where the venue does it in one request, else a
        cancel, then a placement. ``cancelled``: the replaced order's final state is appended when known.

        ``new`` is rounded and checked as ``place_order`` does. Outcomes:

        * done: the new order;
        * the old order is not open (filled, cancelled, unknown): ``ReplaceCancelFailedError``, nothing
          was placed;
        * cancel done, new order rejected: the error ``place_order`` would raise (``InvalidOrderError``,
          ``InsufficientFundsError``) with ``cancelled = True``;
        * unknown outcome (timeout, 5xx, lost reply): the new order is looked up by client id and
          returned if found (the venue applied both halves). Otherwise the request is re-sent with the
          same client id: if the first one was applied after all, the re-sent cancel fails, so nothing
          is placed twice, and that failure is resolved by one more lookup. ``OrderOutcomeUnknownError``
          after ``place_attempts``, as ``place_order``.

        Venues without a one-request cancel-replace: the same outcomes from a cancel, then a placement.
        """
        if new.pair != pair:
            raise InvalidOrderError(f"replace on {pair} with a new order on {new.pair}")
        if not cancel_exchange_order_id and not cancel_client_order_id:
            raise ValueError("cancel_exchange_order_id or cancel_client_order_id is required")
        dialect = self.venue.cancel_replace
        if dialect is None:
            return await self._replace_in_two_requests(pair, cancel_exchange_order_id, cancel_client_order_id, new,
                                                       cancelled)
        cid = new.client_order_id
        amount, price_arg, params = await self._prepared(new)
        cancel_wire_id = self._wire_id(cancel_client_order_id) if cancel_client_order_id else None
        params.update(dialect.params(cancel_exchange_order_id or None, cancel_wire_id))
        if new.order_type == "limit" and not new.post_only and dialect.time_in_force_param:
            params["timeInForce"] = new.time_in_force

        def edit(client: Any) -> Awaitable[dict]:
            if dialect.request is None:
                return client.edit_order(cancel_exchange_order_id or None, pair, new.order_type, new.side, amount,
                                         price_arg, dict(params))
            return both_halves(client)

        async def both_halves(client: Any) -> dict:
            assert dialect.request is not None and dialect.halves is not None
            answer = await dialect.request(client, cancel_exchange_order_id or None, pair, new.order_type, new.side,
                                           amount, price_arg, dict(params))
            new_half, cancelled_half = dialect.halves(answer)
            market = client.market(pair)
            if cancelled is not None and cancelled_half:
                cancelled.append(self._order(client.parse_order(cancelled_half, market), pair))
            return client.parse_order(new_half, market)

        async def cancel_failed(error: ExchangeError, outcome_was_unknown: bool) -> ExchangeOrder | None:
            failure = dialect.failure(error.__cause__)
            if failure is None:
                return None  # refused before either half (filters, parameters, credentials), or unknown
            return await self._replace_failed(pair, cid, failure, outcome_was_unknown, error)

        return await self._send_exactly_once(pair, cid, edit, "replace not resolved", cancel_failed)

    async def _replace_failed(
        self, pair: str, cid: str, failure: ReplaceFailure, outcome_was_unknown: bool, error: ExchangeError
    ) -> ExchangeOrder:
        """Resolve a refused cancel-replace: the new order if an earlier attempt placed it, else raise."""
        if not failure.cancel_succeeded:
            # STOP_ON_FAILURE: nothing placed by this request; an earlier, unanswered one may have
            if outcome_was_unknown:
                found = await self._find_by_client_id(pair, cid)
                if found is not None:
                    return found
            raise ReplaceCancelFailedError(
                f"{pair} {cid}: the order to replace is not open ({failure.cancel_code} {failure.cancel_message}); "
                "nothing placed", failure.cancel_code,
            ) from error
        rejected = self._rejection(failure.new_order_response)
        rejected.cancelled = True
        raise rejected from error

    def _rejection(self, response: dict) -> ExchangeError:
        """The project error for a new-order rejection inside a cancel-replace answer, mapped by ccxt's
        own error table as the same answer from ``POST /order`` would be."""
        client = self._client()
        body = json.dumps(response, separators=(",", ":"))
        assert self.venue.cancel_replace is not None
        url = self.venue.cancel_replace.rejection_url(client.urls)
        try:
            client.handle_errors(400, "Bad Request", url, "POST", {}, body, response, None, None)
        except Exception as error:
            mapped = map_ccxt_error(error)
            mapped.__cause__ = error
            return mapped
        return InvalidOrderError(f"new order rejected: {body}")

    async def _replace_in_two_requests(
        self, pair: str, cancel_exchange_order_id: str | None, cancel_client_order_id: str | None,
        new: OrderRequest, cancelled: list[ExchangeOrder] | None = None,
    ) -> ExchangeOrder:
        """``replace_order``'s outcomes from a cancel and a placement, for venues without cancel-replace."""
        try:
            old = await self.cancel_order(pair, cancel_exchange_order_id, cancel_client_order_id)
        except OrderNotFoundError as error:
            raise ReplaceCancelFailedError(f"{pair}: the order to replace is not open ({error})") from error
        if old.status != CANCELED:
            raise ReplaceCancelFailedError(f"{pair}: the order to replace is {old.status}; nothing placed")
        if cancelled is not None:
            cancelled.append(old)
        try:
            return await self.place_order(new)
        except (InvalidOrderError, InsufficientFundsError) as error:
            error.cancelled = True
            raise

    async def _find_by_client_id(self, pair: str, client_order_id: str) -> ExchangeOrder | None:
        """The order with this client id, None if the exchange says it does not exist."""
        try:
            return await self.fetch_order(pair, client_order_id=client_order_id)
        except OrderNotFoundError:
            return None
        except (ExchangeUnavailableError, RateLimitedError) as error:
            raise OrderOutcomeUnknownError(
                f"{pair} {client_order_id}: placement outcome unknown and the lookup failed: {error}"
            ) from error

    @staticmethod
    def _ref(exchange_order_id: str | None, client_order_id: str | None) -> tuple[str | None, dict]:
        if exchange_order_id:
            return exchange_order_id, {}
        if client_order_id:
            return None, {"clientOrderId": client_order_id}
        raise ValueError("exchange_order_id or client_order_id is required")

    def _venue_ref(self, exchange_order_id: str | None, client_order_id: str | None) -> tuple[str | None, dict]:
        """``_ref`` with the client id as this venue knows it."""
        if exchange_order_id or not client_order_id:
            return self._ref(exchange_order_id, client_order_id)
        return None, {self.venue.client_id_param: self._wire_id(client_order_id)}

    async def cancel_order(
        self, pair: str, exchange_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder:
        """Cancel; a retry that finds the order gone returns its final state instead of failing."""
        order_id, params = self._venue_ref(exchange_order_id, client_order_id)
        await self.load_markets()
        for attempt in range(self.read_attempts):
            try:
                raw = await self._request(lambda client: client.cancel_order(order_id, pair, dict(params)))
                if raw.get("status") is None:  # an answer with the ids only: the venue cancelled it
                    raw["status"] = CANCELED
                return self._order(raw, pair)
            except OrderNotFoundError:
                if attempt == 0:
                    raise
                final = await self.fetch_order(pair, exchange_order_id, client_order_id)
                if final.is_open:
                    raise
                return final
            except (ExchangeUnavailableError, RateLimitedError) as error:
                if attempt == self.read_attempts - 1:
                    raise
                await self._sleep(self._delay(attempt, error))
        raise AssertionError("unreachable")

    async def fetch_order(
        self, pair: str, exchange_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder:
        """One order, open or closed."""
        order_id, params = self._venue_ref(exchange_order_id, client_order_id)
        await self.load_markets()
        raw = await self._read(lambda client: client.fetch_order(order_id, pair, dict(params)))
        return self._order(raw, pair)

    async def fetch_open_orders(self, pair: str | None = None) -> list[ExchangeOrder]:
        """Resting orders for one pair, or every pair."""
        await self.load_markets()
        raw = await self._read(lambda client: client.fetch_open_orders(pair))
        return [self._order(item, pair or item.get("symbol") or "") for item in raw]

    async def fetch_my_trades(self, pair: str, since_ms: int | None = None) -> list[Trade]:
        """Every fill on ``pair`` since ``since_ms`` (paged as the venue pages), with client ids filled in."""
        await self.load_markets()
        raws: list[dict] = []
        first = dict(self.venue.my_trades_params)
        page = await self._read(lambda client: client.fetch_my_trades(pair, since_ms, _TRADES_PAGE, dict(first)))
        raws.extend(page)
        next_page = self.venue.next_trades_page
        params = next_page(page, _TRADES_PAGE) if next_page is not None else None
        while params is not None:
            page = await self._read(
                lambda client, params=params: client.fetch_my_trades(pair, None, _TRADES_PAGE, dict(params))
            )
            raws.extend(page)
            params = next_page(page, _TRADES_PAGE) if next_page is not None else None
        seen: set[str] = set()
        raws = [raw for raw in raws if not (str(raw.get("id")) in seen or seen.add(str(raw.get("id"))))]
        trades = []
        for raw in raws:
            order_id = str(raw.get("order"))
            client_id = self._client_ids.get(order_id)
            if client_id is None:
                try:
                    client_id = (await self.fetch_order(pair, exchange_order_id=order_id)).client_order_id
                except ExchangeError as error:
                    logger.info("client id of order %s unknown: %s", order_id, error)
            trades.append(self._trade(raw, pair, client_id))
        trades.sort(key=lambda t: (t.timestamp_ms, int(t.trade_id) if t.trade_id.isdigit() else 0))
        return trades


def _forget(client: Any) -> None:
    """Let go of a ccxt client whose event loop is gone (a finished ``asyncio.run``): its aiohttp session is closed
    here without a loop (on a closed loop aiohttp's close has nothing to wait for: it only marks the connector
    closed), so neither ccxt nor aiohttp logs at the client's collection that it was never closed -- at a
    process's exit, to a stream already closed."""
    session, client.session = client.session, None
    client.tcp_connector = None
    client.socks_proxy_sessions = None
    if session is None:
        return
    closing = session.close()
    try:
        closing.send(None)  # (a coroutine that returns at once: StopIteration)
    except StopIteration:
        return
    except Exception as error:  # (letting go is best effort)
        logger.info("letting go of a %s client: %s", client.id, error)
        return
    closing.close()  # it wanted to wait on a loop: abandoned, the session is dropped as it is
