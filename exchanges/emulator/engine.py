"""A Binance-like spot matching engine: price-time priority, integer ticks/lots, exact balances.

Pure Python, no I/O: the emulator's HTTP server and the strategies backtester share this one
implementation. Prices are held as integer ticks, quantities as integer lots and balances as integer
units of 10^-E of each asset, so matching is exact and fast; ``Decimal`` appears only at the public
boundary (``place_order`` and the read methods).

Two APIs:

* the Decimal API (``place_order``, ``cancel_order``, ``cancel_replace``, ``get_order``, ``open_orders``,
  ``account_trades``, ``balances``, ``book``) used by the HTTP server and tests;
* the int fast path for the backtester (``place_limit_fast``, ``place_market_fast``,
  ``cancel_fast``, ``best_bid_ask_ticks``): ticks and lots in, order ids out, no Decimal and no
  result objects. Filters (min qty, min notional, balance, post-only) are still enforced. Fills are
  observed by setting ``engine.trade_listener`` (called once per fill, see ``TradeListener``) or by
  reading ``order_state_fast``.

Conservation: per asset, the sum of every account's free + locked balance plus ``fees_collected``
changes only through ``deposit``. Fees are charged in the asset received, at the maker rate for the
resting order and the taker rate for the incoming one, rounded down to the asset's unit.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

# --- public constants -----------------------------------------------------------------------------

BUY = 0
SELL = 1
SIDE_NAMES = ("BUY", "SELL")

# fast-path time-in-force codes
GTC = 0
IOC = 1
POST_ONLY = 2

ORDER_TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER")
TIME_IN_FORCES = ("GTC", "IOC")

# order status codes (index into STATUS_NAMES); < _FILLED means the order rests on the book
_NEW = 0
_PARTIALLY_FILLED = 1
_FILLED = 2
_CANCELED = 3
_EXPIRED = 4
_EXPIRED_IN_MATCH = 5
STATUS_NAMES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH")

# self-trade prevention (per account: an order never matches a resting order of its own account
# unless the taker's mode is NONE); the taker's mode decides, as on Binance, OKX and Bybit
STP_NONE = 0
STP_EXPIRE_TAKER = 1
STP_EXPIRE_MAKER = 2
STP_EXPIRE_BOTH = 3
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
"""Binance's names; an order that STP took off the book ends ``EXPIRED_IN_MATCH``."""

_MIN_ASSET_DECIMALS = 8

TradeListener = Callable[[int, int, int, str, str, str, int, int, int], None]
"""``(trade_id, maker_order_id, taker_order_id, maker_account, taker_account, symbol, taker_side,
price_ticks, quantity_lots) -> None``, called synchronously for every fill."""

OrderListener = Callable[[str, "OrderInfo", "TradeInfo | None"], None]
"""``(event, order, trade) -> None``, called synchronously for every step of an order of an account
``report_orders`` switched on: ``event`` is one of ``JOURNAL_EVENTS``, ``order`` the order as it stands
right after that step (status ``NEW`` on accept, ``PARTIALLY_FILLED`` / ``FILLED`` on a fill,
``CANCELED``, ``EXPIRED`` or ``EXPIRED_IN_MATCH``), ``trade`` the account's side of the fill (fills only)."""


# --- errors ---------------------------------------------------------------------------------------


class EngineError(Exception):
    """A request the engine refuses; ``code`` is the Binance error code the HTTP layer returns."""

    code = -1000
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InsufficientBalanceError(EngineError):
    """The account's free balance cannot fund the order (Binance -2010)."""

    code = -2010

    def __init__(self, message: str = "Account has insufficient balance for requested action."):
        super().__init__(message)


class WouldMatchError(EngineError):
    """A LIMIT_MAKER (post-only) order would cross the book (Binance -2010)."""

    code = -2010

    def __init__(self, message: str = "Order would immediately match and take."):
        super().__init__(message)


class DuplicateOrderError(EngineError):
    """The account already has an open order with this client order id (Binance -2010)."""

    code = -2010

    def __init__(self, message: str = "Duplicate order sent."):
        super().__init__(message)


class FilterError(EngineError):
    """Price/quantity break a symbol filter or is malformed (Binance -1013)."""

    code = -1013


class BadParameterError(EngineError):
    """A parameter has an illegal value (Binance -1100/-1102 family)."""

    code = -1102


class UnknownSymbolError(EngineError):
    """The symbol is not listed (Binance -1121)."""

    code = -1121

    def __init__(self, message: str = "Invalid symbol."):
        super().__init__(message)


class UnknownOrderError(EngineError):
    """No such order for this account (Binance -2013 on query, -2011 on cancel)."""

    code = -2013

    def __init__(self, message: str = "Order does not exist.", code: int = -2013):
        super().__init__(message)
        self.code = code


class UnknownAccountError(EngineError):
    """No such account."""

    code = -2015

    def __init__(self, message: str = "Invalid API-key, IP, or permissions for action."):
        super().__init__(message)


# --- public value types ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """A listed symbol and its filters. ``symbol`` is unified (``BTC/USDT``)."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal
    min_notional: Decimal

    @property
    def exchange_symbol(self) -> str:
        """The Binance id, e.g. ``BTCUSDT``."""
        return self.base + self.quote


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """A snapshot of one order at the API boundary."""

    order_id: int
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    price: Decimal
    quantity: Decimal
    filled: Decimal
    cumulative_quote: Decimal
    status: str
    created_ms: int
    updated_ms: int
    self_trade_prevention: str = "NONE"
    """The order's STP mode (``STP_MODES``)."""
    prevented_quantity: Decimal = Decimal(0)
    """What self-trade prevention took off this order (0 unless it ended ``EXPIRED_IN_MATCH``)."""

    @property
    def is_open(self) -> bool:
        """True while the order rests on the book."""
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass(frozen=True, slots=True)
class TradeInfo:
    """One fill as seen by one account (each match yields one for the maker and one for the taker)."""

    trade_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool


JOURNAL_EVENTS = ("accept", "fill", "partial_fill", "cancel", "expire")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One step of an order's life on the venue, stamped with the engine's clock (ms): ``accept``
    (it entered the engine), ``fill`` / ``partial_fill`` (one trade; ``fill_quantity`` at
    ``fill_price``), ``cancel``, ``expire`` (an IOC or market remainder, or an order self-trade
    prevention took off, resting or incoming). ``filled`` and ``remaining``
    are the order's after this step; ``remaining`` is 0 once it left the book."""

    seq: int
    time_ms: int
    event: str
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    filled: Decimal
    remaining: Decimal
    fill_quantity: Decimal
    fill_price: Decimal
    trade_id: int
    is_maker: bool


@dataclass(frozen=True, slots=True)
class CancelReplaceResult:
    """What ``cancel_replace`` did: each half is either done (its order) or failed (its error);
    ``new_order_attempted`` is False when a failed cancel stopped the new order (``STOP_ON_FAILURE``)."""

    cancelled: OrderInfo | None
    cancel_error: EngineError | None
    new_order: OrderInfo | None
    new_order_fills: list[TradeInfo]
    new_order_error: EngineError | None
    new_order_attempted: bool

    @property
    def succeeded(self) -> bool:
        """Both halves done."""
        return self.cancelled is not None and self.new_order is not None


@dataclass(frozen=True, slots=True)
class BookLevel:
    """An aggregated price level."""

    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Aggregated levels, best first on each side."""

    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]


@dataclass(frozen=True, slots=True)
class AssetBalance:
    """Free and locked amounts of one asset."""

    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        """free + locked."""
        return self.free + self.locked


# --- internals ------------------------------------------------------------------------------------


class _Market:
    __slots__ = (
        "base",
        "base_exp",
        "base_per_lot",
        "book",
        "lot_size",
        "min_notional_units",
        "min_qty_lots",
        "quote",
        "quote_exp",
        "quote_per_tick_lot",
        "spec",
        "symbol",
        "tick_size",
    )

    def __init__(self, spec: MarketSpec, base_exp: int, quote_exp: int):
        self.spec = spec
        self.symbol = spec.symbol
        self.base = spec.base
        self.quote = spec.quote
        self.tick_size = spec.tick_size
        self.lot_size = spec.lot_size
        self.base_exp = base_exp
        self.quote_exp = quote_exp
        self.base_per_lot = _exact_int(spec.lot_size.scaleb(base_exp))
        self.quote_per_tick_lot = _exact_int((spec.tick_size * spec.lot_size).scaleb(quote_exp))
        self.min_qty_lots = _ceil_div_decimal(spec.min_qty, spec.lot_size)
        self.min_notional_units = _ceil_int(spec.min_notional.scaleb(quote_exp))
        self.book = _Book()


class _Level:
    __slots__ = ("live_count", "live_lots", "orders")

    def __init__(self) -> None:
        self.orders: deque[_Order] = deque()
        self.live_lots = 0
        self.live_count = 0


class _Book:
    """Bids: ascending prices, best at the end. Asks: ascending *negated* prices, best at the end."""

    __slots__ = ("ask_keys", "ask_levels", "bid_keys", "bid_levels")

    def __init__(self) -> None:
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        self.bid_levels: dict[int, _Level] = {}
        self.ask_levels: dict[int, _Level] = {}


class _Order:
    __slots__ = (
        "account",
        "client_order_id",
        "created_ms",
        "filled_lots",
        "lock_ticks",
        "market",
        "order_id",
        "order_type",
        "prevented_lots",
        "price_ticks",
        "quantity_lots",
        "quote_units",
        "side",
        "status",
        "stp",
        "time_in_force",
        "updated_ms",
    )

    def __init__(
        self,
        order_id: int,
        account: _Account,
        market: _Market,
        side: int,
        order_type: int,
        time_in_force: int,
        price_ticks: int,
        quantity_lots: int,
        client_order_id: str,
        now_ms: int,
    ):
        self.order_id = order_id
        self.account = account
        self.market = market
        self.side = side
        self.order_type = order_type  # index into ORDER_TYPES
        self.time_in_force = time_in_force  # GTC / IOC
        self.price_ticks = price_ticks  # 0 for market orders
        self.quantity_lots = quantity_lots
        self.filled_lots = 0
        self.quote_units = 0  # cumulative quote, in quote units
        self.status = _NEW
        self.client_order_id = client_order_id
        self.created_ms = now_ms
        self.updated_ms = now_ms
        self.lock_ticks = price_ticks  # quote locked per lot for buys (market buys: fill price)
        self.stp = STP_NONE
        self.prevented_lots = 0  # lots self-trade prevention expired


class _Account:
    __slots__ = ("account_id", "balances", "client_ids", "journal", "open_orders", "reported", "trades")

    def __init__(self, account_id: str):
        self.account_id = account_id
        self.reported = False  # its order steps go to ``MatchingEngine.order_listener`` (``report_orders``)
        # (time_ms, event, order, filled_lots after, fill lots, fill price ticks, trade id, is maker); the
        # order's fixed fields are copied out when the entry is written (``_note``)
        # for accounts that keep a journal (``enable_journal``); None for the rest (the synthetic market)
        self.journal: deque[tuple] | None = None
        self.balances: dict[str, list[int]] = {}  # asset -> [free units, locked units]
        self.open_orders: dict[int, _Order] = {}
        self.client_ids: dict[str, _Order] = {}  # latest order per client id
        # symbol -> list of (trade_id, order_id, client_id, side, price_ticks, lots, fee_units,
        #                     fee_is_base, time_ms, is_maker)
        self.trades: dict[str, list[tuple]] = {}

    def balance(self, asset: str) -> list[int]:
        row = self.balances.get(asset)
        if row is None:
            row = self.balances[asset] = [0, 0]
        return row


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _exact_int(value: Decimal) -> int:
    integral = value.to_integral_value()
    if integral != value:
        raise ValueError(f"{value} is not an integer")
    return int(integral)


def _ceil_int(value: Decimal) -> int:
    integral = int(value.to_integral_value(rounding="ROUND_CEILING"))
    return integral


def _ceil_div_decimal(numerator: Decimal, denominator: Decimal) -> int:
    return _ceil_int(numerator / denominator) if numerator > 0 else 0


# --- the engine -----------------------------------------------------------------------------------


class MatchingEngine:
    """The order books, accounts and trade history of one emulated exchange."""

    def __init__(
        self,
        markets: Iterable[MarketSpec],
        maker_fee_rate: Decimal,
        taker_fee_rate: Decimal,
        *,
        record_trades: bool = True,
        closed_order_capacity: int = 200_000,
        first_id: int = 1,
    ):
        markets = list(markets)
        if not markets:
            raise ValueError("at least one market is required")
        if maker_fee_rate < 0 or taker_fee_rate < 0:
            raise ValueError("fee rates must be >= 0")
        exps: dict[str, int] = {}
        for spec in markets:
            if spec.tick_size <= 0 or spec.lot_size <= 0:
                raise ValueError(f"{spec.symbol}: tick_size and lot_size must be > 0")
            exps[spec.base] = max(exps.get(spec.base, _MIN_ASSET_DECIMALS), _decimals(spec.lot_size))
            exps[spec.quote] = max(
                exps.get(spec.quote, _MIN_ASSET_DECIMALS), _decimals(spec.tick_size) + _decimals(spec.lot_size)
            )
        self._asset_exp = exps
        self._markets: dict[str, _Market] = {}
        self._by_exchange_symbol: dict[str, str] = {}
        for spec in markets:
            if spec.symbol in self._markets:
                raise ValueError(f"duplicate market {spec.symbol}")
            self._markets[spec.symbol] = _Market(spec, exps[spec.base], exps[spec.quote])
            self._by_exchange_symbol[spec.exchange_symbol] = spec.symbol
        self.maker_fee_rate = maker_fee_rate
        self.taker_fee_rate = taker_fee_rate
        self._maker_fee = maker_fee_rate.as_integer_ratio()
        self._taker_fee = taker_fee_rate.as_integer_ratio()
        self.record_trades = record_trades
        self._closed_capacity = closed_order_capacity
        self._accounts: dict[str, _Account] = {}
        self._open: dict[int, _Order] = {}
        self._closed: dict[int, _Order] = {}
        self._fees: dict[str, int] = {}
        if first_id < 1:
            raise ValueError("first_id must be >= 1")
        self._next_order_id = first_id  # order and trade ids count up from here
        self._next_trade_id = first_id
        self.trade_listener: TradeListener | None = None
        self.order_listener: OrderListener | None = None

    # --- markets and accounts -----------------------------------------------------------------

    @property
    def markets(self) -> dict[str, MarketSpec]:
        """Listed markets by unified symbol."""
        return {symbol: market.spec for symbol, market in self._markets.items()}

    def symbol_for_exchange_id(self, exchange_symbol: str) -> str:
        """``BTCUSDT`` -> ``BTC/USDT``; raises ``UnknownSymbolError``."""
        try:
            return self._by_exchange_symbol[exchange_symbol]
        except KeyError:
            raise UnknownSymbolError() from None

    def asset_decimals(self, asset: str) -> int:
        """The number of decimals balances of ``asset`` are held with."""
        return self._asset_exp.get(asset, _MIN_ASSET_DECIMALS)

    def create_account(self, account_id: str, balances: dict[str, Decimal] | None = None) -> None:
        """Open an account with starting balances; an existing id is an error."""
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} already exists")
        self._accounts[account_id] = _Account(account_id)
        for asset, amount in (balances or {}).items():
            self.deposit(account_id, asset, amount)

    def enable_journal(self, account_id: str, capacity: int = 1_000_000) -> None:
        """Keep the order journal of ``account_id`` (its newest ``capacity`` entries; see ``journal``)."""
        account = self._account(account_id)
        if account.journal is None:
            account.journal = deque(maxlen=capacity)

    def report_orders(self, account_id: str, on: bool = True) -> None:
        """Have (or stop having) every step of ``account_id``'s orders reported to ``order_listener``
        (what a venue's private stream pushes: accept, each fill, cancel, expiry -- self-trade
        prevention's included)."""
        self._account(account_id).reported = on

    def _step(self, account: _Account, time_ms: int, event: int, order: _Order, filled_lots: int = 0,
              fill_lots: int = 0, fill_ticks: int = 0, trade_id: int = 0, is_maker: bool = False,
              trade_row: tuple | None = None) -> None:
        """One step of an order's life: into the account's journal (if it keeps one) and to the order
        listener (if the account is reported)."""
        if account.journal is not None:
            self._note(account.journal, time_ms, event, order, filled_lots, fill_lots, fill_ticks, trade_id, is_maker)
        listener = self.order_listener
        if account.reported and listener is not None:
            status = (_NEW, _FILLED, _PARTIALLY_FILLED, _CANCELED, order.status)[event]
            trade = self._trade_info(order.market, trade_row) if trade_row is not None else None
            listener(JOURNAL_EVENTS[event], self._order_info(order, status, time_ms), trade)

    @staticmethod
    def _note(journal: deque, time_ms: int, event: int, order: _Order, filled_lots: int = 0, fill_lots: int = 0,
              fill_ticks: int = 0, trade_id: int = 0, is_maker: bool = False) -> None:
        """One journal entry; the order's fields are copied (a journal never keeps an order alive)."""
        journal.append((time_ms, event, order.order_id, order.client_order_id, order.market, order.side,
                        order.price_ticks, order.quantity_lots, filled_lots, fill_lots, fill_ticks, trade_id, is_maker))

    def journal(self, account_id: str, since_ms: int | None = None) -> list[JournalEntry]:
        """Every accept, fill, partial fill, cancel and expiry of the account's orders, oldest first,
        from ``since_ms`` (inclusive) on. Empty for an account without a journal."""
        account = self._account(account_id)
        entries = []
        for seq, row in enumerate(account.journal or ()):
            (time_ms, event, order_id, client_id, market, side, price_ticks, quantity_lots, filled_lots, fill_lots,
             fill_ticks, trade_id, is_maker) = row
            if since_ms is not None and time_ms < since_ms:
                continue
            remaining = quantity_lots - filled_lots if event in (0, 2) else 0
            entries.append(JournalEntry(
                seq=seq, time_ms=time_ms, event=JOURNAL_EVENTS[event], order_id=order_id,
                client_order_id=client_id, symbol=market.symbol, side=SIDE_NAMES[side],
                price=market.tick_size * price_ticks, quantity=market.lot_size * quantity_lots,
                filled=market.lot_size * filled_lots, remaining=market.lot_size * remaining,
                fill_quantity=market.lot_size * fill_lots, fill_price=market.tick_size * fill_ticks,
                trade_id=trade_id, is_maker=is_maker,
            ))
        return entries

    def has_account(self, account_id: str) -> bool:
        """True if the account exists."""
        return account_id in self._accounts

    def deposit(self, account_id: str, asset: str, amount: Decimal) -> None:
        """Credit (or, with a negative amount, debit) the free balance of ``asset``."""
        account = self._account(account_id)
        exp = self._asset_exp.setdefault(asset, _MIN_ASSET_DECIMALS)
        units = amount.scaleb(exp)
        if units != units.to_integral_value():
            raise ValueError(f"{amount} {asset} has more than {exp} decimals")
        row = account.balance(asset)
        if row[0] + int(units) < 0:
            raise InsufficientBalanceError()
        row[0] += int(units)

    def deposit_units_fast(self, account_id: str, asset: str, units: int) -> None:
        """Fast-path deposit in the asset's integer units (10^-asset_decimals)."""
        self._accounts[account_id].balance(asset)[0] += units

    def balances(self, account_id: str) -> dict[str, AssetBalance]:
        """Free/locked per asset of an account."""
        account = self._account(account_id)
        result = {}
        for asset, (free, locked) in account.balances.items():
            exp = self._asset_exp[asset]
            result[asset] = AssetBalance(Decimal(free).scaleb(-exp), Decimal(locked).scaleb(-exp))
        return result

    def balance_units(self, account_id: str, asset: str) -> tuple[int, int]:
        """Fast-path ``(free, locked)`` in integer units."""
        row = self._accounts[account_id].balances.get(asset)
        return (row[0], row[1]) if row else (0, 0)

    @property
    def sequence(self) -> int:
        """Grows with every accepted order and trade (the Bybit dialect's book sequence)."""
        return self._next_order_id + self._next_trade_id

    @property
    def fees_collected(self) -> dict[str, Decimal]:
        """Total fees charged per asset since the engine started."""
        return {asset: Decimal(units).scaleb(-self._asset_exp[asset]) for asset, units in self._fees.items()}

    def asset_totals_units(self) -> dict[str, int]:
        """Per asset: every account's free + locked + fees collected, in units (the conserved sum)."""
        totals: dict[str, int] = dict(self._fees)
        for account in self._accounts.values():
            for asset, (free, locked) in account.balances.items():
                totals[asset] = totals.get(asset, 0) + free + locked
        return totals

    # --- Decimal API ----------------------------------------------------------------------------

    def place_order(
        self,
        account_id: str,
        symbol: str,
        side: str,
        order_type: str,
        quantity: Decimal,
        price: Decimal | None = None,
        time_in_force: str = "GTC",
        client_order_id: str | None = None,
        now_ms: int = 0,
        cancel_crossing_post_only: bool = False,
        self_trade_prevention: str = "NONE",
    ) -> tuple[OrderInfo, list[TradeInfo]]:
        """Validate, match and (if resting) book an order; returns it and the taker-side fills.

        A post-only order that would take is refused (``WouldMatchError``, as Binance does) or, with
        ``cancel_crossing_post_only`` (as OKX and Bybit do), accepted and cancelled at once: it exists,
        unfilled, with status ``CANCELED``, and never touches the book or the balances.

        ``self_trade_prevention`` (``STP_MODES``): what happens when the order would match a resting
        order of its own account: ``EXPIRE_TAKER`` expires this order's remainder, ``EXPIRE_MAKER``
        expires the resting order and matching goes on, ``EXPIRE_BOTH`` both; an expired order ends
        ``EXPIRED_IN_MATCH``. ``NONE`` lets the account trade with itself."""
        account = self._account(account_id)
        market = self._market(symbol)
        side_code = _parse_side(side)
        order_type = order_type.upper()
        if order_type not in ORDER_TYPES:
            raise BadParameterError(f"Invalid order type {order_type}.")
        type_code = ORDER_TYPES.index(order_type)
        quantity_lots = self._to_lots(market, quantity)
        if order_type == "MARKET":
            price_ticks = 0
            tif_code = IOC
        else:
            if price is None:
                raise BadParameterError("Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            price_ticks = self._to_ticks(market, price)
            if order_type == "LIMIT_MAKER":
                tif_code = POST_ONLY
            else:
                tif = (time_in_force or "GTC").upper()
                if tif not in TIME_IN_FORCES:
                    raise BadParameterError(f"Invalid timeInForce {time_in_force}.")
                tif_code = TIME_IN_FORCES.index(tif)
        stp = _parse_stp(self_trade_prevention)
        trades_before = self._next_trade_id
        order = self._submit(
            account, market, side_code, type_code, tif_code, price_ticks, quantity_lots,
            client_order_id or "", now_ms, cancel_crossing_post_only, stp,
        )
        fills: list[TradeInfo] = []
        if self.record_trades and self._next_trade_id != trades_before:
            history = account.trades.get(market.symbol, ())
            for row in reversed(history):
                if row[0] < trades_before:
                    break
                if row[1] == order.order_id:
                    fills.append(self._trade_info(market, row))
            fills.reverse()
        return self._order_info(order), fills

    def cancel_order(
        self, account_id: str, symbol: str, order_id: int | None = None, client_order_id: str | None = None,
        now_ms: int = 0,
    ) -> OrderInfo:
        """Cancel an open order by id or client id, stamped ``now_ms`` (never before its last update);
        unknown or closed orders raise -2011."""
        account = self._account(account_id)
        market = self._market(symbol)
        order = self._lookup(account, market, order_id, client_order_id)
        if order is None or order.status >= _FILLED:
            raise UnknownOrderError("Unknown order sent.", code=-2011)
        self._cancel(order, now_ms)
        return self._order_info(order)

    def cancel_all(self, account_id: str, symbol: str, now_ms: int = 0) -> list[OrderInfo]:
        """Cancel every open order of the account on ``symbol``, stamped ``now_ms``."""
        account = self._account(account_id)
        market = self._market(symbol)
        cancelled = []
        for order in [o for o in account.open_orders.values() if o.market is market]:
            self._cancel(order, now_ms)
            cancelled.append(self._order_info(order))
        return cancelled

    def cancel_replace(
        self,
        account_id: str,
        symbol: str,
        *,
        cancel_order_id: int | None = None,
        cancel_client_order_id: str | None = None,
        allow_failure: bool = False,
        side: str,
        order_type: str,
        quantity: Decimal,
        price: Decimal | None = None,
        time_in_force: str = "GTC",
        client_order_id: str | None = None,
        now_ms: int = 0,
        self_trade_prevention: str = "NONE",
    ) -> CancelReplaceResult:
        """Cancel one open order and place a new one in one step (Binance ``order/cancelReplace``).

        Nothing happens between the two halves. The new order sees the cancel's released funds and
        book. A failed cancel stops the new order unless ``allow_failure`` (``ALLOW_FAILURE``); a
        rejected new order (post-only cross, balance, duplicate client id) leaves the cancel done. As on
        Binance the new order's filters are checked first: a filter failure, like an unknown account or
        symbol, raises before either half.
        """
        self._account(account_id)
        market = self._market(symbol)
        if cancel_order_id is None and not cancel_client_order_id:
            raise BadParameterError(
                "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were empty/null!")
        self._check_filters(market, order_type, quantity, price)
        _parse_stp(self_trade_prevention)
        cancelled: OrderInfo | None = None
        cancel_error: EngineError | None = None
        try:
            cancelled = self.cancel_order(account_id, symbol, cancel_order_id, cancel_client_order_id, now_ms)
        except EngineError as error:
            cancel_error = error
        if cancel_error is not None and not allow_failure:
            return CancelReplaceResult(None, cancel_error, None, [], None, False)
        try:
            placed, fills = self.place_order(
                account_id, symbol, side, order_type, quantity, price, time_in_force, client_order_id, now_ms,
                self_trade_prevention=self_trade_prevention)
        except EngineError as error:
            return CancelReplaceResult(cancelled, cancel_error, None, [], error, True)
        return CancelReplaceResult(cancelled, cancel_error, placed, fills, None, True)

    def get_order(
        self, account_id: str, symbol: str, order_id: int | None = None, client_order_id: str | None = None
    ) -> OrderInfo:
        """An order (open or recently closed) by id or client id; raises -2013 if unknown."""
        account = self._account(account_id)
        market = self._market(symbol)
        order = self._lookup(account, market, order_id, client_order_id)
        if order is None:
            raise UnknownOrderError()
        return self._order_info(order)

    def open_orders(self, account_id: str, symbol: str | None = None) -> list[OrderInfo]:
        """The account's resting orders, oldest first, optionally for one symbol."""
        account = self._account(account_id)
        market = self._market(symbol) if symbol is not None else None
        return [
            self._order_info(o)
            for o in account.open_orders.values()
            if market is None or o.market is market
        ]

    def known_orders(self, account_id: str) -> list[OrderInfo]:
        """Every order of the account the engine still holds (open + retained closed), by id."""
        account = self._account(account_id)
        orders = [o for o in self._closed.values() if o.account is account]
        orders.extend(account.open_orders.values())
        orders.sort(key=lambda o: o.order_id)
        return [self._order_info(o) for o in orders]

    def account_trades(
        self,
        account_id: str,
        symbol: str,
        from_id: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 500,
        order_id: int | None = None,
    ) -> list[TradeInfo]:
        """The account's fills on ``symbol`` in trade-id order (Binance ``myTrades`` semantics)."""
        account = self._account(account_id)
        market = self._market(symbol)
        history = account.trades.get(market.symbol, [])
        start = 0
        if from_id is not None:
            start = bisect_left(history, from_id, key=lambda row: row[0])
        elif since_ms is not None:
            start = bisect_left(history, since_ms, key=lambda row: row[8])
        result = []
        for row in history[start:]:
            if until_ms is not None and row[8] > until_ms:
                break
            if order_id is not None and row[1] != order_id:
                continue
            result.append(self._trade_info(market, row))
            if len(result) >= limit:
                break
        return result

    def book(self, symbol: str, depth: int = 100) -> BookSnapshot:
        """Aggregated bid and ask levels, best first."""
        market = self._market(symbol)
        book = market.book
        tick, lot = market.tick_size, market.lot_size
        bids = tuple(
            BookLevel(tick * p, lot * book.bid_levels[p].live_lots) for p in reversed(book.bid_keys[-depth:])
        )
        asks = tuple(
            BookLevel(tick * -k, lot * book.ask_levels[-k].live_lots) for k in reversed(book.ask_keys[-depth:])
        )
        return BookSnapshot(symbol, bids, asks)

    def book_ticks(self, symbol: str, depth: int = 100) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Fast-path aggregated levels as ``(price_ticks, lots)``, best first."""
        book = self._markets[symbol].book
        bids = [(p, book.bid_levels[p].live_lots) for p in reversed(book.bid_keys[-depth:])]
        asks = [(-k, book.ask_levels[-k].live_lots) for k in reversed(book.ask_keys[-depth:])]
        return bids, asks

    # --- int fast path --------------------------------------------------------------------------

    def best_bid_ask_ticks(self, symbol: str) -> tuple[int | None, int | None]:
        """Best bid and ask in ticks (``None`` on an empty side)."""
        book = self._markets[symbol].book
        bid = book.bid_keys[-1] if book.bid_keys else None
        ask = -book.ask_keys[-1] if book.ask_keys else None
        return bid, ask

    def place_limit_fast(
        self,
        account_id: str,
        symbol: str,
        side: int,
        price_ticks: int,
        quantity_lots: int,
        time_in_force: int = GTC,
        client_order_id: str = "",
        now_ms: int = 0,
    ) -> int:
        """Place a limit order in ticks/lots (``side`` BUY/SELL, ``time_in_force`` GTC/IOC/POST_ONLY).

        Returns the order id; the order may already be (partly) filled. Raises ``EngineError``.
        """
        type_code = 2 if time_in_force == POST_ONLY else 0
        order = self._submit(
            self._accounts[account_id], self._markets[symbol], side, type_code, time_in_force,
            price_ticks, quantity_lots, client_order_id, now_ms,
        )
        return order.order_id

    def place_market_fast(
        self, account_id: str, symbol: str, side: int, quantity_lots: int, now_ms: int = 0
    ) -> int:
        """Place a market order in lots; returns the filled lots."""
        order = self._submit(
            self._accounts[account_id], self._markets[symbol], side, 1, IOC, 0, quantity_lots, "", now_ms
        )
        return order.filled_lots

    def cancel_fast(self, account_id: str, order_id: int, now_ms: int = 0) -> int:
        """Cancel an order by id; returns the lots cancelled (0 if it was not open or not the account's)."""
        order = self._open.get(order_id)
        if order is None or order.account.account_id != account_id:
            return 0
        remaining = order.quantity_lots - order.filled_lots
        self._cancel(order, now_ms)
        return remaining

    def order_state_fast(self, order_id: int) -> tuple[int, int, bool] | None:
        """``(quantity_lots, filled_lots, is_open)`` of an order still known to the engine."""
        order = self._open.get(order_id) or self._closed.get(order_id)
        if order is None:
            return None
        return order.quantity_lots, order.filled_lots, order.status < _FILLED

    def price_to_ticks(self, symbol: str, price: Decimal) -> int:
        """Exact conversion of a price to ticks (raises ``FilterError`` off-tick)."""
        return self._to_ticks(self._market(symbol), price)

    def quantity_to_lots(self, symbol: str, quantity: Decimal) -> int:
        """Exact conversion of a quantity to lots (raises ``FilterError`` off-lot)."""
        return self._to_lots(self._market(symbol), quantity)

    # --- core -----------------------------------------------------------------------------------

    def _check_filters(self, market: _Market, order_type: str, quantity: Decimal, price: Decimal | None) -> None:
        """The book-independent filters of a new order (LOT_SIZE, PRICE_FILTER, NOTIONAL of a limit)."""
        lots = self._to_lots(market, quantity)
        if lots <= 0 or lots < market.min_qty_lots:
            raise FilterError("Filter failure: LOT_SIZE")
        if order_type.upper() == "MARKET":
            return
        if price is None:
            raise BadParameterError("Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        ticks = self._to_ticks(market, price)
        if ticks <= 0:
            raise FilterError("Filter failure: PRICE_FILTER")
        if ticks * lots * market.quote_per_tick_lot < market.min_notional_units:
            raise FilterError("Filter failure: NOTIONAL")

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise UnknownAccountError()
        return account

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            market = self._markets.get(self._by_exchange_symbol.get(symbol, ""))
            if market is None:
                raise UnknownSymbolError()
        return market

    @staticmethod
    def _to_ticks(market: _Market, price: Decimal) -> int:
        if not price.is_finite() or price <= 0:
            raise FilterError("Filter failure: PRICE_FILTER")
        ticks = price / market.tick_size
        if ticks != ticks.to_integral_value():
            raise FilterError("Filter failure: PRICE_FILTER")
        return int(ticks)

    @staticmethod
    def _to_lots(market: _Market, quantity: Decimal) -> int:
        if not quantity.is_finite() or quantity <= 0:
            raise FilterError("Filter failure: LOT_SIZE")
        lots = quantity / market.lot_size
        if lots != lots.to_integral_value():
            raise FilterError("Filter failure: LOT_SIZE")
        return int(lots)

    def _lookup(
        self, account: _Account, market: _Market, order_id: int | None, client_order_id: str | None
    ) -> _Order | None:
        if order_id is not None:
            order = self._open.get(order_id) or self._closed.get(order_id)
            if order is None or order.account is not account or order.market is not market:
                return None
            if client_order_id and order.client_order_id != client_order_id:
                return None
            return order
        if client_order_id:
            order = account.client_ids.get(client_order_id)
            if order is None or order.market is not market:
                return None
            return order
        raise BadParameterError("Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")

    def _submit(
        self,
        account: _Account,
        market: _Market,
        side: int,
        type_code: int,
        tif: int,
        price_ticks: int,
        quantity_lots: int,
        client_order_id: str,
        now_ms: int,
        cancel_crossing_post_only: bool = False,
        stp: int = STP_NONE,
    ) -> _Order:
        if quantity_lots <= 0 or quantity_lots < market.min_qty_lots:
            raise FilterError("Filter failure: LOT_SIZE")
        book = market.book
        is_market = type_code == 1
        crossing = False
        if not is_market:
            if price_ticks <= 0:
                raise FilterError("Filter failure: PRICE_FILTER")
            if price_ticks * quantity_lots * market.quote_per_tick_lot < market.min_notional_units:
                raise FilterError("Filter failure: NOTIONAL")
            if tif == POST_ONLY:
                if side == BUY:
                    crossing = bool(book.ask_keys) and -book.ask_keys[-1] <= price_ticks
                else:
                    crossing = bool(book.bid_keys) and book.bid_keys[-1] >= price_ticks
                if crossing and not cancel_crossing_post_only:
                    raise WouldMatchError()
        if client_order_id:
            previous = account.client_ids.get(client_order_id)
            if previous is not None and previous.status < _FILLED:
                raise DuplicateOrderError()
        if crossing:  # accepted, then cancelled by the venue: no funds, no book
            order_id = self._next_order_id
            self._next_order_id = order_id + 1
            order = _Order(order_id, account, market, side, type_code, GTC, price_ticks, quantity_lots,
                           client_order_id, now_ms)
            if client_order_id:
                account.client_ids[client_order_id] = order
            order.status = _CANCELED
            self._step(account, now_ms, 0, order)
            self._step(account, now_ms, 3, order)
            self._retire(order)
            return order
        # lock funds
        if side == BUY:
            quote_row = account.balance(market.quote)
            if is_market:
                cost = self._market_buy_cost(market, quantity_lots, account if stp >= STP_EXPIRE_MAKER else None)
                if cost < market.min_notional_units:
                    raise FilterError("Filter failure: NOTIONAL")
            else:
                cost = price_ticks * quantity_lots * market.quote_per_tick_lot
            if quote_row[0] < cost:
                raise InsufficientBalanceError()
            quote_row[0] -= cost
            quote_row[1] += cost
            account.balance(market.base)
        else:
            base_row = account.balance(market.base)
            amount = quantity_lots * market.base_per_lot
            if base_row[0] < amount:
                raise InsufficientBalanceError()
            if is_market and self._market_sell_proceeds(market, quantity_lots) < market.min_notional_units:
                raise FilterError("Filter failure: NOTIONAL")
            base_row[0] -= amount
            base_row[1] += amount
            account.balance(market.quote)
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        order = _Order(
            order_id, account, market, side, type_code, tif if tif != POST_ONLY else GTC,
            price_ticks, quantity_lots, client_order_id, now_ms,
        )
        order.stp = stp
        if client_order_id:
            account.client_ids[client_order_id] = order
        self._step(account, now_ms, 0, order)
        if tif != POST_ONLY:
            self._match(order, now_ms)
            if is_market and side == BUY and order.quote_units < cost:  # STP stopped the walk early
                leftover = cost - order.quote_units
                quote_row[1] -= leftover
                quote_row[0] += leftover
        if order.filled_lots == order.quantity_lots:
            order.status = _FILLED
            self._retire(order)
        elif order.prevented_lots:  # self-trade prevention expired the taker's remainder
            self._release(order)
            order.status = _EXPIRED_IN_MATCH
            order.updated_ms = now_ms
            self._step(account, now_ms, 4, order, order.filled_lots)
            self._retire(order)
        elif tif == GTC or tif == POST_ONLY:
            self._rest(order)
        else:  # IOC / market remainder expires
            self._release(order)
            order.status = _EXPIRED
            order.updated_ms = now_ms
            self._step(account, now_ms, 4, order, order.filled_lots)
            self._retire(order)
        return order

    def _market_buy_cost(self, market: _Market, quantity_lots: int, skip: _Account | None = None) -> int:
        """What a market buy of ``quantity_lots`` walks, in quote units (``skip``: an account whose
        resting orders self-trade prevention takes off instead of matching)."""
        book = market.book
        remaining = quantity_lots
        cost = 0
        for key in reversed(book.ask_keys):
            price = -key
            level = book.ask_levels[price]
            lots = level.live_lots
            if skip is not None:
                lots -= sum(o.quantity_lots - o.filled_lots for o in level.orders
                            if o.account is skip and o.status < _FILLED)
            take = lots if lots < remaining else remaining
            cost += price * take
            remaining -= take
            if not remaining:
                break
        return cost * market.quote_per_tick_lot

    def _market_sell_proceeds(self, market: _Market, quantity_lots: int) -> int:
        book = market.book
        remaining = quantity_lots
        proceeds = 0
        for price in reversed(book.bid_keys):
            lots = book.bid_levels[price].live_lots
            take = lots if lots < remaining else remaining
            proceeds += price * take
            remaining -= take
            if not remaining:
                break
        return proceeds * market.quote_per_tick_lot

    def _match(self, taker: _Order, now_ms: int) -> None:
        market = taker.market
        book = market.book
        taker_buys = taker.side == BUY
        if taker_buys:
            keys, levels, sign = book.ask_keys, book.ask_levels, -1
        else:
            keys, levels, sign = book.bid_keys, book.bid_levels, 1
        limit = taker.price_ticks
        is_market = taker.order_type == 1
        remaining = taker.quantity_lots - taker.filled_lots
        bpl = market.base_per_lot
        qptl = market.quote_per_tick_lot
        maker_num, maker_den = self._maker_fee
        taker_num, taker_den = self._taker_fee
        fees = self._fees
        base, quote = market.base, market.quote
        taker_account = taker.account
        t_base = taker_account.balances[base]
        t_quote = taker_account.balances[quote]
        listener = self.trade_listener
        record = self.record_trades
        stp = taker.stp
        while remaining and keys:
            price = keys[-1] * sign
            if not is_market and (price > limit if taker_buys else price < limit):
                break
            level = levels[price]
            orders = level.orders
            while remaining and orders:
                maker = orders[0]
                if maker.status >= _FILLED:
                    orders.popleft()
                    continue
                if stp and maker.account is taker_account:
                    if stp != STP_EXPIRE_TAKER:  # EXPIRE_MAKER / EXPIRE_BOTH
                        orders.popleft()
                        self._expire_maker(maker, level, now_ms)
                    if stp != STP_EXPIRE_MAKER:  # EXPIRE_TAKER / EXPIRE_BOTH: the taker's remainder
                        taker.prevented_lots = remaining
                        break
                    continue
                maker_remaining = maker.quantity_lots - maker.filled_lots
                fill = remaining if remaining < maker_remaining else maker_remaining
                base_units = fill * bpl
                quote_units = price * fill * qptl
                maker_account = maker.account
                m_base = maker_account.balances[base]
                m_quote = maker_account.balances[quote]
                if taker_buys:
                    # taker buys base (taker fee in base), maker sells base (maker fee in quote)
                    lock_ticks = taker.lock_ticks if not is_market else price
                    t_quote[1] -= lock_ticks * fill * qptl
                    t_quote[0] += (lock_ticks - price) * fill * qptl
                    fee_taker = base_units * taker_num // taker_den
                    t_base[0] += base_units - fee_taker
                    m_base[1] -= base_units
                    fee_maker = quote_units * maker_num // maker_den
                    m_quote[0] += quote_units - fee_maker
                    if fee_taker:
                        fees[base] = fees.get(base, 0) + fee_taker
                    if fee_maker:
                        fees[quote] = fees.get(quote, 0) + fee_maker
                else:
                    # taker sells base (taker fee in quote), maker buys base (maker fee in base)
                    t_base[1] -= base_units
                    fee_taker = quote_units * taker_num // taker_den
                    t_quote[0] += quote_units - fee_taker
                    m_quote[1] -= quote_units  # maker buys at its own limit price
                    fee_maker = base_units * maker_num // maker_den
                    m_base[0] += base_units - fee_maker
                    if fee_taker:
                        fees[quote] = fees.get(quote, 0) + fee_taker
                    if fee_maker:
                        fees[base] = fees.get(base, 0) + fee_maker
                trade_id = self._next_trade_id
                self._next_trade_id = trade_id + 1
                remaining -= fill
                taker.filled_lots += fill
                taker.quote_units += quote_units
                maker.filled_lots += fill
                maker.quote_units += quote_units
                maker.updated_ms = now_ms
                level.live_lots -= fill
                taker_row = maker_row = None
                if record or taker_account.reported or maker_account.reported:
                    taker_row = (trade_id, taker.order_id, taker.client_order_id, taker.side, price, fill,
                                 fee_taker, taker_buys, now_ms, False)
                    maker_row = (trade_id, maker.order_id, maker.client_order_id, maker.side, price, fill,
                                 fee_maker, not taker_buys, now_ms, True)
                    if record:
                        taker_account.trades.setdefault(market.symbol, []).append(taker_row)
                        maker_account.trades.setdefault(market.symbol, []).append(maker_row)
                if taker_account.journal is not None or taker_account.reported:
                    self._step(taker_account, now_ms, 1 if taker.filled_lots == taker.quantity_lots else 2,
                               taker, taker.filled_lots, fill, price, trade_id, False, taker_row)
                if maker_account.journal is not None or maker_account.reported:
                    self._step(maker_account, now_ms, 1 if maker.filled_lots == maker.quantity_lots else 2,
                               maker, maker.filled_lots, fill, price, trade_id, True, maker_row)
                if fill == maker_remaining:
                    orders.popleft()
                    level.live_count -= 1
                    maker.status = _FILLED
                    del maker_account.open_orders[maker.order_id]
                    del self._open[maker.order_id]
                    self._retire(maker)
                else:
                    maker.status = _PARTIALLY_FILLED
                if listener is not None:
                    listener(
                        trade_id, maker.order_id, taker.order_id, maker_account.account_id,
                        taker_account.account_id, market.symbol, taker.side, price, fill,
                    )
            if not level.live_count:
                keys.pop()
                del levels[price]
            if taker.prevented_lots:
                break
        taker.updated_ms = now_ms
        if taker.filled_lots:
            taker.status = _PARTIALLY_FILLED

    def _expire_maker(self, maker: _Order, level: _Level, now_ms: int) -> None:
        """Self-trade prevention took a resting order (already popped from its level) off the book."""
        remaining = maker.quantity_lots - maker.filled_lots
        self._release(maker)
        maker.prevented_lots = remaining
        maker.status = _EXPIRED_IN_MATCH
        maker.updated_ms = max(now_ms, maker.updated_ms)
        level.live_lots -= remaining
        level.live_count -= 1
        del maker.account.open_orders[maker.order_id]
        del self._open[maker.order_id]
        self._step(maker.account, maker.updated_ms, 4, maker, maker.filled_lots)
        self._retire(maker)

    def _rest(self, order: _Order) -> None:
        book = order.market.book
        price = order.price_ticks
        if order.side == BUY:
            levels = book.bid_levels
            level = levels.get(price)
            if level is None:
                level = levels[price] = _Level()
                insort(book.bid_keys, price)
        else:
            levels = book.ask_levels
            level = levels.get(price)
            if level is None:
                level = levels[price] = _Level()
                insort(book.ask_keys, -price)
        level.orders.append(order)
        level.live_lots += order.quantity_lots - order.filled_lots
        level.live_count += 1
        order.account.open_orders[order.order_id] = order
        self._open[order.order_id] = order

    def _release(self, order: _Order) -> None:
        """Return the locked funds of an order's unfilled remainder to free."""
        market = order.market
        remaining = order.quantity_lots - order.filled_lots
        if order.side == BUY:
            row = order.account.balances[market.quote]
            if order.order_type == 1:  # market buy: locked exactly the walked cost, all consumed
                return
            amount = order.lock_ticks * remaining * market.quote_per_tick_lot
        else:
            row = order.account.balances[market.base]
            amount = remaining * market.base_per_lot
        row[1] -= amount
        row[0] += amount

    def _cancel(self, order: _Order, now_ms: int) -> None:
        market = order.market
        book = market.book
        remaining = order.quantity_lots - order.filled_lots
        self._release(order)
        order.status = _CANCELED
        order.updated_ms = max(now_ms, order.updated_ms)
        self._step(order.account, order.updated_ms, 3, order, order.filled_lots)
        price = order.price_ticks
        if order.side == BUY:
            levels, keys, key = book.bid_levels, book.bid_keys, price
        else:
            levels, keys, key = book.ask_levels, book.ask_keys, -price
        level = levels[price]
        level.live_lots -= remaining
        level.live_count -= 1
        if not level.live_count:
            del levels[price]
            index = bisect_left(keys, key)
            del keys[index]
        elif len(level.orders) > 2 * level.live_count + 16:
            level.orders = deque(o for o in level.orders if o.status < _FILLED)
        del order.account.open_orders[order.order_id]
        del self._open[order.order_id]
        self._retire(order)

    def _retire(self, order: _Order) -> None:
        closed = self._closed
        closed[order.order_id] = order
        if len(closed) > self._closed_capacity:
            oldest = closed.pop(next(iter(closed)))
            if oldest.client_order_id:
                account = oldest.account
                if account.client_ids.get(oldest.client_order_id) is oldest:
                    del account.client_ids[oldest.client_order_id]

    # --- conversions ----------------------------------------------------------------------------

    def _order_info(self, order: _Order, status: int | None = None, updated_ms: int | None = None) -> OrderInfo:
        market = order.market
        return OrderInfo(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            account_id=order.account.account_id,
            symbol=market.symbol,
            side=SIDE_NAMES[order.side],
            order_type=ORDER_TYPES[order.order_type],
            time_in_force=TIME_IN_FORCES[order.time_in_force],
            price=market.tick_size * order.price_ticks,
            quantity=market.lot_size * order.quantity_lots,
            filled=market.lot_size * order.filled_lots,
            cumulative_quote=Decimal(order.quote_units).scaleb(-market.quote_exp),
            status=STATUS_NAMES[order.status if status is None else status],
            created_ms=order.created_ms,
            updated_ms=order.updated_ms if updated_ms is None else max(updated_ms, order.created_ms),
            self_trade_prevention=STP_MODES[order.stp],
            prevented_quantity=market.lot_size * order.prevented_lots,
        )

    def _trade_info(self, market: _Market, row: tuple) -> TradeInfo:
        trade_id, order_id, client_id, side, price, lots, fee, is_buyer, time_ms, is_maker = row
        fee_asset = market.base if is_buyer else market.quote
        return TradeInfo(
            trade_id=trade_id,
            order_id=order_id,
            client_order_id=client_id,
            symbol=market.symbol,
            side=SIDE_NAMES[side],
            price=market.tick_size * price,
            quantity=market.lot_size * lots,
            quote_quantity=Decimal(price * lots * market.quote_per_tick_lot).scaleb(-market.quote_exp),
            fee=Decimal(fee).scaleb(-self._asset_exp[fee_asset]),
            fee_asset=fee_asset,
            time_ms=time_ms,
            is_buyer=is_buyer,
            is_maker=is_maker,
        )


def _parse_stp(mode: str) -> int:
    try:
        return STP_MODES.index((mode or "NONE").upper())
    except ValueError:
        raise BadParameterError(f"Invalid selfTradePreventionMode {mode}.") from None


def _parse_side(side: str) -> int:
    side = side.upper()
    if side == "BUY":
        return BUY
    if side == "SELL":
        return SELL
    raise BadParameterError(f"Invalid side {side}.")
