"""The exchange gateway interface and its domain types (frozen dataclasses of Decimals).

The bot engine talks to exchanges only through ``ExchangeGateway``; the ccxt implementation lives in
``exchanges.ccxt_gateway`` (the only module importing ccxt). This module is pure: no ccxt, no Django.

``load_markets()`` (or ``validate_connection()``) must run once before the synchronous helpers
``supports_trading_pair``, ``market_rules`` and ``quantize``, which read the cached markets.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, NamedTuple

from mmplatform.errors import InvalidOrderError

BUY = "buy"
SELL = "sell"

# ExchangeOrder.status values (ccxt's unified statuses)
OPEN = "open"
CLOSED = "closed"
CANCELED = "canceled"
EXPIRED = "expired"
REJECTED = "rejected"


@dataclass(frozen=True, repr=False)
class GatewayCredentials:
    """Plain credentials of one exchange account (decrypted, in memory only)."""

    account_key: str
    exchange_id: str
    api_key: str
    api_secret: str
    passphrase: str = ""
    api_base_url: str = ""
    rate_limit_per_sec: float = 20.0

    def __repr__(self) -> str:
        return f"GatewayCredentials(account_key={self.account_key!r}, exchange_id={self.exchange_id!r})"

    @property
    def fingerprint(self) -> str:
        """Changes when any credential changes, so a cached client is rebuilt after a rotation."""
        return credentials_fingerprint(self)


def credentials_fingerprint(credentials: Any) -> str:
    """A short hash of everything that identifies a client (works for any credentials-like object)."""
    material = "\0".join(
        str(getattr(credentials, name, "") or "")
        for name in ("exchange_id", "api_key", "api_secret", "passphrase", "api_base_url", "rate_limit_per_sec")
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MarketRules:
    """A pair's trading filters: prices on ``tick_size``, amounts on ``lot_size``, and minimums."""

    pair: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_amount: Decimal
    min_notional: Decimal


class BookLevel(NamedTuple):
    """One aggregated level; unpacks as ``price, amount``."""

    price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class OrderBook:
    """Bids (best first, descending) and asks (best first, ascending)."""

    pair: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    timestamp_ms: int | None


@dataclass(frozen=True)
class Ticker:
    """Top of book and last trade price."""

    pair: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    base_volume: Decimal | None
    timestamp_ms: int | None


@dataclass(frozen=True)
class BestQuote:
    """One pushed best bid/ask (``exchanges.streams``). An empty book side arrives as price and size 0."""

    symbol: str
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    received_at: float
    """Epoch seconds (``time.time()``) when the frame was read off the socket."""
    update_id: int | None
    """The venue's per-symbol update id (e.g. the ``u`` of a bookTicker push), increasing; None if the
    venue sends none."""


@dataclass(frozen=True)
class AssetBalance:
    """One asset's balance: ``used`` is locked in open orders."""

    asset: str
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True)
class Balance:
    """Balances per asset (assets absent from the map are zero)."""

    assets: dict[str, AssetBalance]

    def get(self, asset: str) -> AssetBalance:
        """The balance of ``asset`` (zero if the exchange did not list it)."""
        return self.assets.get(asset) or AssetBalance(asset, Decimal(0), Decimal(0), Decimal(0))

    def free(self, asset: str) -> Decimal:
        """Free amount of ``asset``."""
        return self.get(asset).free

    def totals(self) -> dict[str, Decimal]:
        """Total amount per listed asset."""
        return {asset: b.total for asset, b in self.assets.items()}

    def free_amounts(self) -> dict[str, Decimal]:
        """Free (not locked) amount per listed asset."""
        return {asset: b.free for asset, b in self.assets.items()}


@dataclass(frozen=True)
class OrderRequest:
    """An order to place. ``client_order_id`` is mandatory: it makes a retried placement idempotent."""

    pair: str
    side: str
    price: Decimal
    amount: Decimal
    client_order_id: str
    post_only: bool = True
    order_type: str = "limit"
    time_in_force: str = "GTC"
    """"GTC" rests; "IOC" (limit only) fills what it can at the price or better and expires the rest."""


@dataclass(frozen=True)
class ExchangeOrder:
    """An order as the exchange reports it. ``status`` is one of open/closed/canceled/expired/rejected."""

    exchange_order_id: str
    client_order_id: str | None
    pair: str
    side: str
    order_type: str
    price: Decimal | None
    amount: Decimal
    filled: Decimal
    remaining: Decimal
    average_price: Decimal | None
    status: str
    timestamp_ms: int | None
    updated_ms: int | None = None
    """The venue's time of the order's latest change (a cancel answer: when it was cancelled), if it says."""

    @property
    def is_open(self) -> bool:
        """True while the order rests on the book."""
        return self.status == OPEN


@dataclass(frozen=True)
class Trade:
    """One fill of one of our orders."""

    trade_id: str
    exchange_order_id: str
    client_order_id: str | None
    pair: str
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal | None
    fee_currency: str | None
    timestamp_ms: int
    is_maker: bool | None


class ExchangeGateway(abc.ABC):
    """Everything the bot engine may ask of one exchange account. Raises only ``mmplatform.errors``."""

    exchange_id: str
    account_key: str

    @abc.abstractmethod
    async def validate_connection(self) -> bool:
        """Load markets and check the credentials with one private read; False (not raise) on failure."""

    @abc.abstractmethod
    async def load_markets(self, reload: bool = False) -> dict[str, MarketRules]:
        """Fetch the exchange's markets once (again with ``reload``); returns rules by pair."""

    @abc.abstractmethod
    def supports_trading_pair(self, pair: str) -> bool:
        """True if the (loaded) markets list ``pair`` as an active spot market."""

    @abc.abstractmethod
    def market_rules(self, pair: str) -> MarketRules:
        """The pair's tick, lot and minimums; raises ``BadSymbolError`` for an unlisted pair."""

    def quantize(
        self, pair: str, side: str, price: Decimal | float, amount: Decimal | float
    ) -> tuple[Decimal, Decimal]:
        """Round to the market grid: bid prices down, ask prices up, amounts down (the ONE place)."""
        return quantize_to_rules(self.market_rules(pair), side, price, amount)

    @abc.abstractmethod
    async def fetch_order_book(self, pair: str, depth: int = 20) -> OrderBook:
        """Aggregated levels, best first."""

    @abc.abstractmethod
    async def fetch_ticker(self, pair: str) -> Ticker:
        """Best bid/ask and last price."""

    @abc.abstractmethod
    async def fetch_balance(self) -> Balance:
        """Free/used/total per asset."""

    async def fetch_balance_since(self, not_before: float) -> Balance:
        """The balances as a read that started at or after ``not_before`` (``time.time()``) found them: a
        read already made or under way since then is shared (a burst of fills on one account has each
        of its bots' fill syncs want the balances after its fill), otherwise a new one is made."""
        return await self.fetch_balance()

    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> ExchangeOrder:
        """Place exactly one order per client order id, even across timeouts and lost replies."""

    @abc.abstractmethod
    async def replace_order(
        self,
        pair: str,
        *,
        cancel_exchange_order_id: str | None,
        cancel_client_order_id: str | None,
        new: OrderRequest,
        cancelled: list[ExchangeOrder] | None = None,
    ) -> ExchangeOrder:
        """Cancel one open order and place ``new`` in one request; returns the new order. ``cancelled``: the
        replaced order's final state is appended to it when the venue's answer carries it (what it had filled).

        Both halves or neither: ``ReplaceCancelFailedError`` (an ``OrderNotFoundError``) when the old
        order is no longer open -- nothing was placed; ``InvalidOrderError`` / ``InsufficientFundsError``
        with ``cancelled = True`` when the cancel is done but the new order was rejected. Exactly one
        order per ``new.client_order_id``, as ``place_order``.
        """

    @abc.abstractmethod
    async def cancel_order(
        self, pair: str, exchange_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder:
        """Cancel by exchange id or client id; ``OrderNotFoundError`` if the exchange has no open order."""

    @abc.abstractmethod
    async def fetch_order(
        self, pair: str, exchange_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder:
        """One order (open or closed) by exchange id or client id."""

    @abc.abstractmethod
    async def fetch_open_orders(self, pair: str | None = None) -> list[ExchangeOrder]:
        """Resting orders, for one pair or all."""

    @abc.abstractmethod
    async def fetch_my_trades(self, pair: str, since_ms: int | None = None) -> list[Trade]:
        """Our fills on ``pair`` since ``since_ms`` (all pages), oldest first."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release network resources."""


def quantize_to_rules(
    rules: MarketRules, side: str, price: Decimal | float, amount: Decimal | float
) -> tuple[Decimal, Decimal]:
    """Bid prices round down and ask prices up to the tick; amounts round down to the lot."""
    price_d = _to_decimal(price, "price")
    amount_d = _to_decimal(amount, "amount")
    if side not in (BUY, SELL):
        raise InvalidOrderError(f"side must be 'buy' or 'sell', got {side!r}")
    rounding = ROUND_FLOOR if side == BUY else ROUND_CEILING
    ticks = (price_d / rules.tick_size).to_integral_value(rounding=rounding)
    lots = (amount_d / rules.lot_size).to_integral_value(rounding=ROUND_FLOOR)
    return (ticks * rules.tick_size).quantize(rules.tick_size), (lots * rules.lot_size).quantize(rules.lot_size)


def check_order_against_rules(rules: MarketRules, price: Decimal, amount: Decimal, order_type: str) -> None:
    """Raise ``InvalidOrderError`` with the reason when a rounded order breaks a market minimum."""
    if amount <= 0:
        raise InvalidOrderError(f"{rules.pair}: amount rounds to {amount} on lot size {rules.lot_size}")
    if amount < rules.min_amount:
        raise InvalidOrderError(f"{rules.pair}: amount {amount} is below the minimum {rules.min_amount}")
    if order_type == "limit":
        if price <= 0:
            raise InvalidOrderError(f"{rules.pair}: price {price} must be > 0")
        if price * amount < rules.min_notional:
            raise InvalidOrderError(
                f"{rules.pair}: notional {price * amount} is below the minimum {rules.min_notional}"
            )


def _to_decimal(value: Decimal | float, name: str) -> Decimal:
    result = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    if not result.is_finite():
        raise InvalidOrderError(f"{name} must be a finite number, got {value}")
    return result
