"""Pushed best bid/ask over the venue's websocket (ccxt.pro), for quoting that reacts within milliseconds,
and the account's own order updates (``OrderUpdateStream``).

With ``exchanges.ccxt_gateway`` the only module importing ccxt. ``BookTickerStream.watch`` subscribes
to ``<symbol>@bookTicker`` through ccxt.pro's ``watch_bids_asks`` and returns every symbol whose best
bid/ask changed since the previous call (the newest state per symbol: updates that arrive while
nobody awaits are kept by ccxt and picked up by the next call, never lost). Public data only: no
credentials. A dropped socket raises ``ExchangeUnavailableError`` from ``watch``; the next call
reconnects and re-subscribes, after an exponential backoff while the failures go on.

The ccxt client belongs to the event loop it first ran on (aiohttp sessions do); in Celery workers
that is the process's one I/O loop (``mmplatform.aio``). Called from another loop (a new loop after
a fork, a finished ``asyncio.run``), the stream builds a fresh client there.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, NamedTuple

import ccxt.pro as ccxt_pro
from ccxt.async_support.base.ws.cache import ArrayCacheBySymbolById

from exchanges.ccxt_gateway import map_ccxt_error
from exchanges.gateway import BestQuote
from exchanges.venues import UnknownVenueError, get_venue
from mmplatform.errors import BadSymbolError, ExchangeUnavailableError, RateLimitedError

_RECEIVED_AT = "_received_at"
"""Key under which the client stamps arrival time (epoch secs) into each raw bookTicker message."""

_stamped_classes: dict[type, type] = {}


def _stamped_class(base: type) -> type:
    """``base`` (a ccxt.pro class) with each bookTicker message stamped with its arrival time, so a
    quote read later still says when it came off the socket."""
    stamped = _stamped_classes.get(base)
    if stamped is None:

        def handle_bids_asks(self: Any, client: Any, message: Any) -> None:
            now = time.time()
            for item in message if isinstance(message, list) else (message,):
                if isinstance(item, dict):
                    item[_RECEIVED_AT] = now
            base.handle_bids_asks(self, client, message)

        stamped = _stamped_classes[base] = type(base.__name__, (base,), {"handle_bids_asks": handle_bids_asks})
    return stamped


def _decimal(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def best_quote_from_ticker(ticker: dict, received_at: float, update_id_key: str | None = None) -> BestQuote:
    """Map one of ccxt's unified bid/ask tickers to a ``BestQuote`` (Decimals via ``str``, exact)."""
    info = ticker.get("info") or {}
    update_id = info.get(update_id_key) if isinstance(info, dict) and update_id_key else None
    return BestQuote(
        symbol=ticker["symbol"],
        bid=_decimal(ticker.get("bid")),
        bid_size=_decimal(ticker.get("bidVolume")),
        ask=_decimal(ticker.get("ask")),
        ask_size=_decimal(ticker.get("askVolume")),
        received_at=float(info.get(_RECEIVED_AT, received_at)) if isinstance(info, dict) else received_at,
        update_id=int(update_id) if update_id is not None else None,
    )


class BookTickerStream:
    """Best bid/ask pushes of one venue (``exchange_id`` of the venue registry; ``api_base_url`` points
    it at the emulator, empty for the venue itself). One consumer per stream: concurrent ``watch``
    calls would share out the updates between them."""

    def __init__(
        self,
        exchange_id: str,
        api_base_url: str | None = None,
        *,
        timeout_secs: float = 10.0,
        keepalive_secs: float = 10.0,
        backoff_secs: float = 0.1,
        backoff_max_secs: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        """``timeout_secs`` bounds the markets request and the websocket handshake; ``keepalive_secs``:
        a socket that answers no ping for twice this long counts as dropped."""
        if not hasattr(ccxt_pro, exchange_id):
            raise BadSymbolError(f"ccxt.pro has no websocket client for {exchange_id!r}")
        try:
            self.venue = get_venue(exchange_id)
        except UnknownVenueError as error:
            raise BadSymbolError(str(error)) from None
        self.exchange_id = exchange_id
        self.api_base_url = api_base_url or None
        self.timeout_secs = timeout_secs
        self.keepalive_secs = keepalive_secs
        self.backoff_secs = backoff_secs
        self.backoff_max_secs = backoff_max_secs
        self._sleep = sleep
        self._jitter = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exchange: Any = None
        self._delivered: dict[str, Any] = {}  # symbol -> the ccxt ticker object last returned
        self._failures = 0
        self._retry_at = 0.0  # time.monotonic() before which the next reconnect waits

    def _config(self) -> dict:
        timeout_ms = int(self.timeout_secs * 1000)
        keepalive_ms = int(self.keepalive_secs * 1000)
        return self.venue.stream_config(self.api_base_url, timeout_ms, keepalive_ms)

    def _client(self) -> Any:
        """This loop's ccxt.pro client; a client of another (or a closed) loop is dropped."""
        loop = asyncio.get_running_loop()
        if self._exchange is not None and self._loop is loop:
            return self._exchange
        self._discard()
        self._exchange = _stamped_class(getattr(ccxt_pro, self.exchange_id))(self._config())
        self._loop = loop
        self._delivered = {}
        return self._exchange

    def _discard(self) -> None:
        exchange, loop = self._exchange, self._loop
        self._exchange = self._loop = None
        if exchange is not None and loop is not None and loop.is_running() and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(exchange.close(), loop)

    def _new_quotes(self, exchange: Any, symbols: list[str]) -> list[BestQuote]:
        now = time.time()
        cache = exchange.bidsasks or {}
        quotes = []
        for symbol in symbols:
            ticker = cache.get(symbol)
            if ticker is None or ticker is self._delivered.get(symbol):
                continue
            self._delivered[symbol] = ticker
            quotes.append(best_quote_from_ticker(ticker, now, self.venue.quote_update_id_key))
        return quotes

    def _backoff_secs(self) -> float:
        delay = min(self.backoff_max_secs, self.backoff_secs * (2 ** min(self._failures - 1, 16)))
        return delay * (0.5 + 0.5 * self._jitter.random())

    async def watch(self, symbols: list[str]) -> list[BestQuote]:
        """The best bid/ask of each of ``symbols`` that changed since the last call (at least one;
        waits for it). Raises ``ExchangeUnavailableError`` when the socket drops (the next call
        reconnects), ``BadSymbolError`` for a symbol the venue does not list."""
        if not symbols:
            raise ValueError("watch() needs at least one symbol")
        symbols = list(dict.fromkeys(symbols))
        exchange = self._client()
        while True:
            quotes = self._new_quotes(exchange, symbols)
            if quotes:
                return quotes
            if self._failures:
                wait_secs = self._retry_at - time.monotonic()
                if wait_secs > 0:
                    await self._sleep(wait_secs)
            try:
                await exchange.watch_bids_asks(symbols)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                mapped = map_ccxt_error(error)
                if isinstance(mapped, ExchangeUnavailableError | RateLimitedError):
                    self._failures += 1
                    self._retry_at = time.monotonic() + self._backoff_secs()
                raise mapped from error
            self._failures = 0

    async def close(self) -> None:
        """Close the websocket(s) and the HTTP session (call on the loop the stream ran on)."""
        exchange, loop = self._exchange, self._loop
        self._exchange = self._loop = None
        if exchange is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is current:
            await exchange.close()
        elif loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(exchange.close(), loop)


_confirming_classes: dict[tuple[type, Callable[[dict], bool], Any], type] = {}


def _confirming_class(base: type, confirms: Callable[[dict], bool],
                      balances: Callable[[dict], Any] | None = None) -> type:
    """``base`` (a ccxt.pro class) that resolves its ``_subscribed`` future on the venue's confirmation of
    the order subscription (``confirms``: ``Venue.private_stream_subscribed``): ccxt itself only waits
    for the first update, which says nothing about when updates start being pushed. ``balances``
    (``Venue.private_stream_balances``): a pushed balance message goes to the instance's ``_on_balances``
    instead of ccxt's own balance cache."""
    key = (base, confirms, balances)
    confirming = _confirming_classes.get(key)
    if confirming is None:

        def handle_message(self: Any, client: Any, message: Any) -> None:
            if balances is not None and isinstance(message, dict):
                pushed = balances(message)
                if pushed is not None:
                    self._on_balances(pushed)
                    return
            confirmed = isinstance(message, dict) and confirms(message)
            base.handle_message(self, client, message)
            waiter = getattr(self, "_subscribed", None)
            if confirmed and waiter is not None and not waiter.done():
                waiter.set_result(True)

        confirming = _confirming_classes[key] = type(base.__name__, (base,), {"handle_message": handle_message})
    return confirming


class _Recording(ArrayCacheBySymbolById):
    """ccxt.pro's cache of an account's orders or trades (what its ``handle_*`` methods append every parsed
    update to) that also hands each update to a list: nothing ccxt parsed is lost between two ``watch`` calls."""

    def __init__(self, limit: int, sink: list[dict], arrived: asyncio.Event, last: list[bool]):
        super().__init__(limit)
        self._sink = sink
        self._arrived = arrived
        self._last = last  # [whether pushed balances came after every update so far], shared by the stream

    def append(self, item: dict) -> None:
        super().append(item)
        self._sink.append(item)
        self._arrived.set()
        self._last[0] = False  # an order or trade update came last


BALANCES_GRACE_SECS = 0.005
"""How long ``OrderUpdateStream.watch`` waits for the balances a venue that pushes them sends after an update."""


class PushedUpdates(NamedTuple):
    """What one ``OrderUpdateStream.watch`` call returns."""

    orders: list[Any]  # ExchangeOrder
    trades: list[Any]  # exchanges.gateway.Trade
    balances: tuple[dict[str, tuple[Decimal, Decimal]], ...] = ()
    """Pushed balances (currency -> (free, locked)), oldest first; each lists only the assets it moved."""
    balances_last: bool = False
    """The venue pushed balances after every order and trade update of this batch: they include them all."""


class OrderUpdateStream:
    """The account's own order updates pushed by the venue (ccxt.pro ``watch_orders`` over the venue's
    private stream; ``Venue.private_stream_config`` says where), for an account a ``CcxtGateway``
    trades. ``subscribe`` returns once the venue confirmed the subscription
    (``Venue.private_stream_subscribed``; updates from then on are never lost: ccxt keeps them until
    the next ``watch``); ``watch`` returns the orders changed, the trades made and the balances pushed
    (``Venue.private_stream_balances``) since the last call (waits).
    A dropped socket raises ``ExchangeUnavailableError``; the caller subscribes again and reads the
    account by REST, since updates while disconnected are gone. One consumer per stream."""

    def __init__(self, gateway: Any, *, timeout_secs: float = 10.0, keepalive_secs: float = 10.0):
        config = self.config_of(gateway, timeout_secs, keepalive_secs)
        if config is None:
            raise BadSymbolError(f"{getattr(gateway, 'exchange_id', gateway)!r}: no pushed order updates")
        self.gateway = gateway
        self.timeout_secs = timeout_secs
        self._config = config
        self._confirms: Callable[[dict], bool] = gateway.venue.private_stream_subscribed
        self._exchange: Any = None
        self._pending: asyncio.Future | None = None
        """The ``watch_orders`` call kept waiting between ``watch`` calls: ccxt hands an update only to a
        call already waiting (one arriving between two calls would wait for the next update)."""
        self._pending_trades: asyncio.Future | None = None
        """The same for ``watch_my_trades`` (None: the venue's class pushes no trades)."""
        self._orders_in: list[dict] = []  # every order update ccxt parsed since the last ``watch`` (``_Recording``)
        self._trades_in: list[dict] = []  # every trade likewise
        self._balances_in: list[dict[str, tuple[Decimal, Decimal]]] = []  # pushed balances (``_record_balances``)
        self._balances_last = [False]  # the last thing pushed was balances (after every update before them)
        self._arrived = asyncio.Event()  # set by the recordings (a new one per subscription, on its loop)
        self.pushes_trades = "watch_my_trades" in getattr(gateway.venue, "private_stream_methods", ())
        self._balances_of: Callable[[dict], Any] | None = getattr(gateway.venue, "private_stream_balances", None)
        self.pushes_balances = self._balances_of is not None

    @staticmethod
    def config_of(gateway: Any, timeout_secs: float = 10.0, keepalive_secs: float = 10.0) -> dict | None:
        """The ccxt.pro config of ``gateway``'s account pushes; None when there are none (another
        gateway, a venue without them or without a ccxt.pro class)."""
        make = getattr(gateway, "private_stream_config", None)
        confirms = getattr(getattr(gateway, "venue", None), "private_stream_subscribed", None)
        if make is None or confirms is None or not hasattr(ccxt_pro, getattr(gateway, "exchange_id", "")):
            return None
        return make(timeout_secs, keepalive_secs)

    async def subscribe(self) -> None:
        """Connect, sign in and subscribe; returns when the venue confirmed the subscription. Raises the
        mapped error (``AuthenticationError`` for refused credentials), or ``ExchangeUnavailableError``
        when no confirmation came within ``timeout_secs``."""
        await self.close()
        await self.gateway.load_markets()
        exchange = _confirming_class(getattr(ccxt_pro, self.gateway.exchange_id), self._confirms,
                                     self._balances_of)(self._config)
        exchange.set_markets(self.gateway.loaded_markets)
        self._orders_in.clear()
        self._trades_in.clear()
        self._balances_in.clear()
        self._balances_last[0] = False
        self._arrived = asyncio.Event()
        exchange.orders = _Recording(exchange.safe_integer(exchange.options, "ordersLimit", 1000), self._orders_in,
                                     self._arrived, self._balances_last)
        exchange.myTrades = _Recording(exchange.safe_integer(exchange.options, "tradesLimit", 1000), self._trades_in,
                                       self._arrived, self._balances_last)
        exchange._on_balances = self._record_balances
        self._exchange = exchange
        subscribed = exchange._subscribed = asyncio.get_running_loop().create_future()
        first = self._pending = asyncio.ensure_future(exchange.watch_orders())
        await asyncio.wait((subscribed, first), timeout=self.timeout_secs, return_when=asyncio.FIRST_COMPLETED)
        if subscribed.done():
            self._watch_trades(exchange)
            return
        if first.done():
            error = first.exception()
            if error is not None:
                self._pending = None
                raise map_ccxt_error(error) from error
            self._watch_trades(exchange)
            return  # an update before the confirmation: the venue pushes; ``watch`` returns it first
        raise ExchangeUnavailableError(f"order stream: {self.gateway.exchange_id} did not confirm the "
                                       f"subscription within {self.timeout_secs:g} s")

    def _record_balances(self, pushed: dict[str, tuple[Decimal, Decimal]]) -> None:
        """A pushed balance message (``Venue.private_stream_balances``), its assets as ccxt's currency codes."""
        exchange = self._exchange
        codes = {exchange.safe_currency_code(asset) if exchange is not None else asset: amounts
                 for asset, amounts in pushed.items()}
        self._balances_in.append(codes)
        self._balances_last[0] = True
        self._arrived.set()

    def _watch_trades(self, exchange: Any) -> None:
        """Start watching the account's trades on the subscribed socket (most venues push them with the orders;
        one whose trades come on a topic of their own subscribes it now: a trade before that is not pushed, which
        the fill sync's per-order check catches and reads by REST)."""
        if self.pushes_trades:
            self._pending_trades = asyncio.ensure_future(exchange.watch_my_trades())

    async def watch(self) -> PushedUpdates:
        """The account's order updates (``ExchangeOrder``, oldest first) and its trades
        (``Trade``) that were pushed since the last call (waits for at least one). Every update ccxt parsed is
        taken from its caches as it was added (``_Recording``), not from the ``watch_*`` calls' answers: ccxt
        answers only a call already waiting, and an update arriving between two calls would wait for the next
        one (an order's second fill, hidden until the account's next update)."""
        if self._exchange is None:
            raise ExchangeUnavailableError("order stream: not subscribed")
        exchange = self._exchange
        while not (self._orders_in or self._trades_in or self._balances_in):
            if self._pending is None:
                self._pending = asyncio.ensure_future(exchange.watch_orders())
            if self._pending_trades is None and self.pushes_trades:
                self._pending_trades = asyncio.ensure_future(exchange.watch_my_trades())
            # woken by a recording (an update ccxt parsed while no call of its was waiting, too) or by a
            # ``watch_*`` call ending (a dropped socket's error)
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            waiting = [f for f in (arrived, self._pending, self._pending_trades) if f is not None]
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                arrived.cancel()
            if self._pending.done():  # what it carried is in the recordings
                done, self._pending = self._pending, None
                self._result(done)
            if self._pending_trades is not None and self._pending_trades.done():
                done, self._pending_trades = self._pending_trades, None
                self._result(done)
        if self.pushes_balances:
            await self._balances_after(exchange)
        raw_orders = list(self._orders_in)  # each state as pushed, oldest first (the feeder applies them in turn)
        raw_trades = list(self._trades_in)
        balances = tuple(self._balances_in)
        self._orders_in.clear()
        self._trades_in.clear()
        self._balances_in.clear()
        # orders first: a trade's client id is learnt from its order's push
        orders = [self.gateway.parse_order(item) for item in raw_orders]
        return PushedUpdates(orders, [self.gateway.parse_trade(item) for item in raw_trades], balances,
                             bool(balances) and self._balances_last[0])

    async def _balances_after(self, exchange: Any) -> None:
        """The venue pushes the balances an update moved right after it (``Venue.private_stream_balances``), mostly
        already in the socket's buffer: wait for them up to ``BALANCES_GRACE_SECS``, so that the batch carries the
        balances after its last update (a fill sync then takes them instead of reading them by REST)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BALANCES_GRACE_SECS
        while not self._balances_last[0] and self._exchange is exchange:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    @staticmethod
    def _result(future: asyncio.Future) -> Any:
        try:
            return future.result()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise map_ccxt_error(error) from error

    async def close(self) -> None:
        for pending in (self._pending, self._pending_trades):
            if pending is None:
                continue
            if pending.done():
                if not pending.cancelled():
                    pending.exception()  # retrieved: a dropped socket's error is not worth a warning
            else:
                pending.cancel()
        self._pending = self._pending_trades = None
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            await exchange.close()
