"""Strategy and order configuration: frozen dataclasses with the spec's defaults, units in names.

Pure module (no Django, no ccxt). The lead mirrors these fields in Django models; the bot, the
backtester and the simulator all build a ``StrategyConfig`` / ``OrderConfig`` and hand them to
``strategies.selection.create_strategy``.

Unit conventions used across ``strategies/``:

* ``*_bps``: basis points of the mid price (1 bps = 0.0001 = 0.01 %).
* ``*_secs``: seconds. ``*_quote``: quote-currency amount. ``*_ratio``: a fraction in 0..1.
* Avellaneda-Stoikov parameters are expressed in bps so they do not depend on the asset's price:
  sigma in bps per sqrt(second), delta (distance of a quote from the mid) in bps, inventory ``q`` in "lots"
  (inventory deviation from target divided by the level-0 order size), gamma in 1/(bps*lot),
  k in 1/bps and A in fills per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from decimal import Decimal

STRATEGY_TYPES: tuple[str, ...] = (
    "GRID_TRADING",
    "VOLATILITY_ADAPTIVE",
    "INVENTORY_BASED",
    "TREND_FOLLOWING",
)
AS_HORIZON_MODES: tuple[str, ...] = ("finite", "infinite")


def _coerce_numbers(obj: object) -> None:
    """Turn ints/Decimals given for float fields into floats (Django hands Decimals), in place."""
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.type in ("float", "float | None") and isinstance(value, (int, Decimal)) and not isinstance(
            value, bool
        ):
            try:
                object.__setattr__(obj, f.name, float(value))
            except (ValueError, OverflowError):  # sNaN, or an int beyond float: validate() reports it
                continue


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Collects field -> messages; each check is skipped once a field already has an error."""

    def __init__(self, obj: object):
        self.obj = obj
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def number(self, name: str, *, allow_none: bool = False) -> float | None:
        """Return the field as a finite number, or record why it is not one."""
        value = getattr(self.obj, name)
        if value is None and allow_none:
            return None
        if not _is_number(value):
            self.add(name, f"must be a number, got {value!r}")
            return None
        if math.isnan(value) or math.isinf(value):
            self.add(name, f"must be a finite number, got {value!r}")
            return None
        return float(value)

    def positive(self, name: str) -> float | None:
        value = self.number(name)
        if value is not None and value <= 0:
            self.add(name, f"must be greater than 0, got {value!r}")
            return None
        return value

    def non_negative(self, name: str) -> float | None:
        value = self.number(name)
        if value is not None and value < 0:
            self.add(name, f"must not be negative, got {value!r}")
            return None
        return value

    def ratio(self, name: str) -> float | None:
        value = self.number(name)
        if value is not None and not 0.0 <= value <= 1.0:
            self.add(name, f"must be between 0 and 1, got {value!r}")
            return None
        return value

    def integer(self, name: str, minimum: int, maximum: int) -> int | None:
        value = getattr(self.obj, name)
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(name, f"must be a whole number, got {value!r}")
            return None
        if not minimum <= value <= maximum:
            self.add(name, f"must be between {minimum} and {maximum}, got {value!r}")
            return None
        return value

    def boolean(self, name: str) -> None:
        value = getattr(self.obj, name)
        if not isinstance(value, bool):
            self.add(name, f"must be true or false, got {value!r}")

    def choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self.obj, name)
        if value not in choices:
            self.add(name, f"must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    """The strategy engine's settings (spec ``StrategyConfig``) plus each strategy's parameters."""

    # --- spec fields -------------------------------------------------------------------------
    default_strategy: str = "GRID_TRADING"
    """Strategy used when adaptation is off; one of ``STRATEGY_TYPES``."""
    adaptation_enabled: bool = True
    """Select the strategy from market analysis (spec ``_select_strategy_type``) and re-tune it."""
    high_volatility_threshold: float = 0.05
    """Daily realised volatility (std of daily log return, a fraction: 0.05 = 5 %/day) above which
    VOLATILITY_ADAPTIVE is selected."""
    low_liquidity_threshold_quote: float = 1000.0
    """Book depth (quote currency, both sides, within ``analysis_band_bps`` of the mid) below which
    INVENTORY_BASED is selected."""
    strong_trend_threshold: float = 0.7
    """Trend strength (0..1, see ``strategies.analysis.trend_strength``) above which
    TREND_FOLLOWING is selected."""
    grid_levels: int = 10
    """Orders per side."""
    spread_bps: float = 20.0
    """Base total spread between the level-0 bid and ask (spec spread_percentage 0.002 = 20 bps)."""
    inventory_target_ratio: float = 0.5
    """Target base value / total value (0..1)."""

    # --- common to all strategies -------------------------------------------------------------
    level_spacing_bps: float = 10.0
    """Distance between consecutive levels on one side."""
    inventory_skew_bps: float = 20.0
    """Shift of both quotes at full imbalance (ratio 0 or 1): inventory above target moves quotes
    down, below target moves them up; linear in (ratio - target)."""

    # --- VOLATILITY_ADAPTIVE -------------------------------------------------------------------
    volatility_spread_multiplier: float = 2.0
    """Total spread added = multiplier * sigma over ``volatility_horizon_secs`` (in bps)."""
    volatility_horizon_secs: float = 60.0
    """Horizon over which volatility is measured for the spread widening (sqrt-time scaling)."""

    # --- INVENTORY_BASED (Avellaneda-Stoikov) -------------------------------------------------
    risk_aversion: float = 0.01
    """gamma, in 1/(bps*lot): reservation offset = q*gamma*sigma^2*(T-t) bps."""
    as_horizon_mode: str = "infinite"
    """"finite": T-t counts down to the end of each ``as_horizon_secs`` session (time measured from
    the epoch, so all bots agree); "infinite": rolling window, T-t is always ``as_horizon_secs``."""
    as_horizon_secs: float = 900.0
    """Length of the trading session (finite) or of the rolling window (infinite)."""
    order_arrival_k_per_bps: float = 0.1
    """Fallback k of lambda(delta) = A*e^(-kdelta), delta in bps, used when too few trades to fit it."""
    order_arrival_a_per_sec: float = 1.0
    """Fallback A of lambda(delta) = A*e^(-kdelta), fills per second at the mid."""
    volatility_fallback_bps_per_sqrt_sec: float = 0.7
    """sigma used when too few observations to measure it (0.7 ~ 2 %/day)."""

    # --- TREND_FOLLOWING ------------------------------------------------------------------------
    trend_skew_bps: float = 10.0
    """Shift of both quotes along the trend at trend strength 1 (linear in strength)."""
    trend_against_widen_bps: float = 20.0
    """Extra distance of the against-trend side at trend strength 1 (linear in strength)."""
    trend_pull_threshold: float = 0.85
    """Trend strength (0..1) above which the against-trend side is not quoted at all."""

    # --- market analysis and adaptation --------------------------------------------------------
    analysis_band_bps: float = 100.0
    """Band around the mid within which book depth counts as liquidity."""
    volatility_half_life_secs: float = 300.0
    """Half-life of the EWMA of squared log returns."""
    adapt_volatility_change_ratio: float = 0.25
    """``should_adapt`` is true when measured sigma differs from the sigma in use by more than this
    fraction (or trend/regime thresholds are crossed)."""

    def __post_init__(self) -> None:
        _coerce_numbers(self)

    def validate(self) -> dict[str, list[str]]:
        """Return field name -> human-readable problems; an empty dict means the config is valid."""
        c = _Checker(self)
        c.choice("default_strategy", STRATEGY_TYPES)
        c.boolean("adaptation_enabled")
        c.positive("high_volatility_threshold")
        c.non_negative("low_liquidity_threshold_quote")
        c.ratio("strong_trend_threshold")
        c.integer("grid_levels", 1, 100)
        spread = c.positive("spread_bps")
        if spread is not None and spread >= 20000:
            c.add("spread_bps", f"must be below 20000 bps (a bid at or below zero), got {spread!r}")
        c.ratio("inventory_target_ratio")
        c.non_negative("level_spacing_bps")
        c.non_negative("inventory_skew_bps")
        c.non_negative("volatility_spread_multiplier")
        c.positive("volatility_horizon_secs")
        c.positive("risk_aversion")
        c.choice("as_horizon_mode", AS_HORIZON_MODES)
        c.positive("as_horizon_secs")
        c.positive("order_arrival_k_per_bps")
        c.positive("order_arrival_a_per_sec")
        c.positive("volatility_fallback_bps_per_sqrt_sec")
        c.non_negative("trend_skew_bps")
        c.non_negative("trend_against_widen_bps")
        pull = c.ratio("trend_pull_threshold")
        strong = self.strong_trend_threshold
        if pull is not None and _is_number(strong) and pull < strong:
            c.add(
                "trend_pull_threshold",
                f"must not be below strong_trend_threshold ({strong!r}), got {pull!r}",
            )
        c.positive("analysis_band_bps")
        c.positive("volatility_half_life_secs")
        c.positive("adapt_volatility_change_ratio")
        return c.errors


@dataclass(frozen=True, slots=True)
class OrderConfig:
    """How orders are sized, refreshed and bounded (spec ``OrderConfig`` / order settings)."""

    order_size_quote: float = 100.0
    """Size of level 0 in quote currency (converted to base at the quoted price)."""
    level_size_multiplier: float = 1.0
    """Level i size = order_size_quote * multiplier^i."""
    order_refresh_secs: float = 30.0
    """Orders older than this are re-placed even if still within tolerance."""
    order_refresh_tolerance_bps: float = 5.0
    """A live order whose price is within this distance of the new intent's price is kept."""
    min_spread_bps: float = 5.0
    """Smallest total spread quoted (raised further to 2 * maker fee so a round trip never loses)."""
    max_spread_bps: float = 1000.0
    """Largest total spread quoted; wider computed spreads are capped."""
    maker_fee_bps: float = 10.0
    """Maker fee per fill; may be negative for a rebate."""
    price_ceiling: float | None = None
    """The bot never buys above this price (quote currency): higher bids are dropped. None = off."""
    price_floor: float | None = None
    """The bot never sells below this price (quote currency): lower asks are dropped. None = off."""
    post_only: bool = True
    """Send orders post-only, and never quote a price that crosses the snapshot's book."""

    def __post_init__(self) -> None:
        _coerce_numbers(self)

    def validate(self) -> dict[str, list[str]]:
        """Return field name -> human-readable problems; an empty dict means the config is valid."""
        c = _Checker(self)
        c.positive("order_size_quote")
        c.positive("level_size_multiplier")
        c.positive("order_refresh_secs")
        c.non_negative("order_refresh_tolerance_bps")
        low = c.non_negative("min_spread_bps")
        high = c.positive("max_spread_bps")
        if low is not None and high is not None and low > high:
            c.add("min_spread_bps", f"must not exceed max_spread_bps ({high!r}), got {low!r}")
        if high is not None and high >= 20000:
            c.add("max_spread_bps", f"must be below 20000 bps (a bid at or below zero), got {high!r}")
        fee = c.number("maker_fee_bps")
        if fee is not None and not -100.0 <= fee <= 100.0:
            c.add("maker_fee_bps", f"must be between -100 and 100 bps, got {fee!r}")
        if fee is not None and high is not None and 2 * fee > high:
            c.add(
                "maker_fee_bps",
                f"two maker fees ({2 * fee!r} bps) exceed max_spread_bps ({high!r}): every quote would lose",
            )
        ceiling = c.number("price_ceiling", allow_none=True)
        floor = c.number("price_floor", allow_none=True)
        if ceiling is not None and ceiling <= 0:
            c.add("price_ceiling", f"must be greater than 0, got {ceiling!r}")
            ceiling = None
        if floor is not None and floor <= 0:
            c.add("price_floor", f"must be greater than 0, got {floor!r}")
            floor = None
        if ceiling is not None and floor is not None and floor >= ceiling:
            c.add("price_floor", f"must be below price_ceiling ({ceiling!r}), got {floor!r}")
        c.boolean("post_only")
        return c.errors


# Public names for the other pure config modules (risk.limits, bots.config) that reuse these.
FieldChecker = _Checker
coerce_numbers = _coerce_numbers
