"""Plain data passed into and out of the strategies (frozen, slotted dataclasses; floats inside).

The gateway turns exchange data into a ``MarketSnapshot``; the inventory manager builds an
``InventoryState``; the risk manager builds a ``RiskContext``. Strategies return ``OrderIntent``s
in floats; the gateway quantises them to the market's tick and lot (bids down, asks up) before
anything is sent, and ``round_to_tick`` gives the strategies the same rounding for their own
post-only guard.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields

BUY = "buy"
SELL = "sell"

Level = tuple[float, float]
"""One order-book level: (price in quote, size in base)."""
Trade = tuple[float, float, float, str]
"""One public trade: (timestamp in seconds, price in quote, size in base, aggressor side "buy"/"sell")."""


def _fast_init(cls: type) -> type:
    """Give a frozen slotted dataclass an ``__init__`` that sets slots directly.

    The generated frozen ``__init__`` calls ``object.__setattr__`` per field, which made the
    dataclasses of the quoting hot path (one snapshot, one inventory, two intents per quote) a
    third of its cost. Same signature and defaults; instances stay frozen afterwards.
    """
    names = [f.name for f in fields(cls)]
    namespace: dict[str, object] = {}
    params = []
    for f in fields(cls):
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
    body = "\n".join(f"    _set_{n}(self, {n})" for n in names)
    exec(f"def __init__(self, {', '.join(params)}):\n{body}\n", namespace)  # a fixed template
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    return cls


@_fast_init
@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The order book and recent trades of one symbol at time ``now`` (seconds since the epoch)."""

    symbol: str
    best_bid: float
    best_ask: float
    now: float
    bids: tuple[Level, ...] = ()
    """L2 bids, best first."""
    asks: tuple[Level, ...] = ()
    """L2 asks, best first."""
    trades: tuple[Trade, ...] = ()
    """Recent public trades, oldest first."""
    tick_size: float = 0.01
    lot_size: float = 1e-8
    min_notional: float = 0.0
    """Smallest order value the exchange accepts, in quote currency."""
    reference_mid: float = 0.0
    """The price quotes are centred on when it is not this book's own mid (a pair quoted on several
    venues: ``strategies.reference``); 0 = the book's mid."""

    @property
    def mid(self) -> float:
        """Mid price in quote currency: the reference when one is set, else the book's."""
        if self.reference_mid > 0.0:
            return self.reference_mid
        return (self.best_bid + self.best_ask) * 0.5

    def problem(self) -> str | None:
        """Why this snapshot cannot be quoted on (NaN, non-positive or crossed book), else None."""
        bid, ask = self.best_bid, self.best_ask
        if not (math.isfinite(bid) and math.isfinite(ask)):
            return f"{self.symbol}: best bid/ask not finite ({bid!r}/{ask!r})"
        if bid <= 0 or ask <= 0:
            return f"{self.symbol}: best bid/ask not positive ({bid!r}/{ask!r})"
        if bid >= ask:
            return f"{self.symbol}: crossed or locked book (bid {bid!r} >= ask {ask!r})"
        if not (self.tick_size > 0 and math.isfinite(self.tick_size)):
            return f"{self.symbol}: bad tick size {self.tick_size!r}"
        if not (self.lot_size > 0 and math.isfinite(self.lot_size)):
            return f"{self.symbol}: bad lot size {self.lot_size!r}"
        return None


@_fast_init
@dataclass(frozen=True, slots=True)
class InventoryState:
    """Balances of one pair's two assets and how far the base share is from its target."""

    base_balance: float
    """Base currency available to sell."""
    quote_balance: float
    """Quote currency available to buy with."""
    base_value_quote: float
    """base_balance valued at the mid, in quote currency."""
    ratio: float
    """base_value_quote / (base_value_quote + quote_balance); 0.5 when both are zero."""
    target_ratio: float = 0.5

    @classmethod
    def from_balances(
        cls, base_balance: float, quote_balance: float, price: float, target_ratio: float = 0.5
    ) -> InventoryState:
        """Value the base at ``price`` and compute the ratio (spec: 0.5 when total value is 0)."""
        base_value = base_balance * price
        total = base_value + quote_balance
        ratio = base_value / total if total > 0 else 0.5
        return cls(base_balance, quote_balance, base_value, ratio, target_ratio)

    @property
    def total_value_quote(self) -> float:
        """Portfolio value of the pair in quote currency."""
        return self.base_value_quote + self.quote_balance


@dataclass(frozen=True, slots=True)
class RiskContext:
    """The pair limits the risk manager imposes on the strategy (spec ``get_pair_limits``)."""

    min_order_size_quote: float = 10.0
    """Orders smaller than this are raised to it (spec MarketMakingConfig.min_order_size)."""
    max_order_size_quote: float = 10000.0
    """Orders larger than this are cut to it (spec MarketMakingConfig.max_order_size)."""
    max_position_quote: float = 100000.0
    """Bids stop once base value + resting bid value would exceed this (spec max_position_size)."""
    volatility_pause_threshold: float = 0.1
    """Daily realised volatility (fraction) above which VOLATILITY_ADAPTIVE stops quoting."""
    spread_multiplier: float = 1.0
    """Forced widening of every spread (e.g. MARKET_VOLATILITY); applied after max_spread_bps."""
    size_multiplier: float = 1.0
    """Forced scaling of every order size (e.g. POSITION_LIMIT_EXCEEDED reduces it)."""


@dataclass(frozen=True, slots=True)
class StrategyParameters:
    """The adaptable parameters of a running strategy (spec ``StrategyParameters``).

    Built from the config and refreshed from each ``MarketAnalysis`` by ``adapt_to_conditions``.
    """

    spread_bps: float
    level_spacing_bps: float
    grid_levels: int
    inventory_skew_bps: float
    volatility_bps_per_sqrt_sec: float
    """sigma of the mid's log return, in bps per sqrt(second)."""
    volatility_daily: float
    """The same sigma as a daily fraction (sigma_sec * sqrt(86400) / 10^4)."""
    order_arrival_a_per_sec: float
    order_arrival_k_per_bps: float
    risk_aversion: float
    trend_strength: float = 0.0
    """0..1, see ``strategies.analysis.trend_strength``."""
    trend_direction: int = 0
    """+1 up, -1 down, 0 none."""


@_fast_init
@dataclass(frozen=True, slots=True)
class OrderIntent:
    """One order the strategy wants resting: a limit order of ``size`` base at ``price`` quote."""

    side: str
    price: float
    size: float
    level: int
    post_only: bool = True
    order_type: str = "limit"


@_fast_init
@dataclass(frozen=True, slots=True)
class LiveOrder:
    """An order resting on the exchange, as the engine knows it (for the refresh-tolerance diff)."""

    order_id: str | int
    """The client order id (live bot) or the engine's order id (backtester)."""
    side: str
    price: float
    size: float
    level: int
    placed_at: float
    """Seconds since the epoch."""


GRID_TOLERANCE = 1e-7
"""A value within this fraction of a step of a grid point counts as on it (float noise)."""


def round_to_tick(price: float, tick: float, side: str) -> float:
    """Round a price to the tick grid: bids down, asks up, so rounding never makes a quote tighter.

    A price already on the grid (within ``GRID_TOLERANCE`` of a tick, float noise) stays there.
    """
    if side == BUY:
        steps = math.floor(price / tick + GRID_TOLERANCE)
    else:
        steps = math.ceil(price / tick - GRID_TOLERANCE)
    return round(steps * tick, grid_decimals(tick))


_DECIMALS_CACHE: dict[float, int] = {}


def grid_decimals(step: float) -> int:
    """Decimal places that strip float noise from ``n * step`` (e.g. 100.03000000000001 -> 100.03)."""
    places = _DECIMALS_CACHE.get(step)
    if places is None:
        places = max(0, min(15, -math.floor(math.log10(step)) + 3))
        _DECIMALS_CACHE[step] = places
    return places


def floor_to_lot(size: float, lot: float) -> float:
    """Round a size down to the lot grid (never more than asked for)."""
    return round(math.floor(size / lot + GRID_TOLERANCE) * lot, grid_decimals(lot))


def ceil_to_lot(size: float, lot: float) -> float:
    """Round a size up to the lot grid (used to reach a minimum order value)."""
    return round(math.ceil(size / lot - GRID_TOLERANCE) * lot, grid_decimals(lot))
