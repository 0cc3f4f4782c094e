"""What every strategy shares: the order pipeline, adaptation, validation and the refresh diff.

A strategy subclass only decides a *plan*: the price its quotes centre on, the level-0 distance
of the bid and of the ask from that centre (fractions of the centre), and how many levels each
side gets. ``MarketMakingStrategy.calculate_orders`` then applies, in this order and in one place:

1. inventory skew (positive inventory above target moves the centre DOWN, below target UP);
2. minimum spread and maker fees (a level-0 round trip never loses after two maker fees), then
   the ``max_spread_bps`` cap, then the spread multiplier the risk manager forces;
3. levels spaced by ``level_spacing_bps``; price ceiling (no bid above) and floor (no ask below);
4. the post-only guard (a bid stays below the best ask, an ask above the best bid) and tick
   rounding (bids down, asks up);
5. sizes: level i is ``order_size_quote * level_size_multiplier**i * size_multiplier`` quote,
   clamped to the pair's min/max order size and min notional, rounded to the lot; bids stop at
   the quote balance and the position limit, asks at the base balance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil, floor
from typing import ClassVar

from strategies.analysis import MarketAnalysis
from strategies.config import OrderConfig, StrategyConfig
from strategies.types import (
    BUY,
    GRID_TOLERANCE,
    SELL,
    InventoryState,
    LiveOrder,
    MarketSnapshot,
    OrderIntent,
    RiskContext,
    StrategyParameters,
    grid_decimals,
)

BPS = 1e4
SECONDS_PER_DAY = 86400.0
INF = math.inf

Plan = tuple[float, float, float, int, int]
"""(centre price, bid distance, ask distance (fractions of the centre), bid levels, ask levels)."""


def parameters_from_config(config: StrategyConfig, analysis: MarketAnalysis | None = None) -> StrategyParameters:
    """The starting parameters: the config's values, with the measured market where given."""
    if analysis is None:
        sigma = config.volatility_fallback_bps_per_sqrt_sec
        return StrategyParameters(
            spread_bps=config.spread_bps,
            level_spacing_bps=config.level_spacing_bps,
            grid_levels=config.grid_levels,
            inventory_skew_bps=config.inventory_skew_bps,
            volatility_bps_per_sqrt_sec=sigma,
            volatility_daily=sigma / BPS * math.sqrt(SECONDS_PER_DAY),
            order_arrival_a_per_sec=config.order_arrival_a_per_sec,
            order_arrival_k_per_bps=config.order_arrival_k_per_bps,
            risk_aversion=config.risk_aversion,
        )
    return StrategyParameters(
        spread_bps=config.spread_bps,
        level_spacing_bps=config.level_spacing_bps,
        grid_levels=config.grid_levels,
        inventory_skew_bps=config.inventory_skew_bps,
        volatility_bps_per_sqrt_sec=analysis.volatility_bps_per_sqrt_sec,
        volatility_daily=analysis.volatility_daily,
        order_arrival_a_per_sec=analysis.order_arrival_a_per_sec,
        order_arrival_k_per_bps=analysis.order_arrival_k_per_bps,
        risk_aversion=config.risk_aversion,
        trend_strength=analysis.trend_strength,
        trend_direction=analysis.trend_direction,
    )


def _relative_change(new: float, old: float) -> float:
    if old == 0:
        return INF if new != 0 else 0.0
    return abs(new / old - 1.0)


class MarketMakingStrategy:
    """Base of the four spec strategies. Subclasses implement ``_plan`` (and may extend checks).

    ``calculate_orders`` is deterministic: same parameters and inputs, same intents. When it
    returns no intents on purpose (pause, pulled side, bad snapshot) ``pause_reason`` says why.
    """

    strategy_type: ClassVar[str] = ""
    adapts_to: ClassVar[tuple[str, ...]] = ()
    """MarketAnalysis quantities whose change makes ``should_adapt`` true."""
    own_inventory_skew: ClassVar[bool] = False
    """True when ``_plan`` already accounts for inventory (Avellaneda-Stoikov)."""

    def __init__(
        self,
        trading_pair: str,
        config: StrategyConfig,
        order_config: OrderConfig,
        analysis: MarketAnalysis | None = None,
        parameters: StrategyParameters | None = None,
    ):
        self.trading_pair = trading_pair
        self.config = config
        self.order_config = order_config
        self.pause_reason: str | None = None
        self._parameters = parameters if parameters is not None else parameters_from_config(config, analysis)
        self._prepare()

    # --- parameters -------------------------------------------------------------------------

    @property
    def parameters(self) -> StrategyParameters:
        """The parameters the strategy currently quotes with."""
        return self._parameters

    @parameters.setter
    def parameters(self, value: StrategyParameters) -> None:
        self._parameters = value
        self._prepare()

    def _prepare(self) -> None:
        """Precompute the constants of the hot path from the parameters and configs."""
        p = self._parameters
        oc = self.order_config
        levels = max(0, int(p.grid_levels)) if isinstance(p.grid_levels, int) else 0
        self._levels = levels
        self._level_sizes_quote = [oc.order_size_quote * oc.level_size_multiplier**i for i in range(levels)]
        self._spacing = p.level_spacing_bps / BPS
        self._skew = p.inventory_skew_bps / BPS
        self._fee = oc.maker_fee_bps / BPS
        self._min_total = oc.min_spread_bps / BPS
        self._max_total = oc.max_spread_bps / BPS
        self._ceiling = oc.price_ceiling if oc.price_ceiling is not None else INF
        self._floor = oc.price_floor if oc.price_floor is not None else 0.0
        self._post_only = oc.post_only

    @property
    def decides_on_clock(self) -> bool:
        """Whether ``calculate_orders`` moves with ``snapshot.now`` alone (not only with the book, the
        inventory and the risk context): such a strategy's decision is never reused unchanged."""
        return False

    # --- the spec's interface ---------------------------------------------------------------

    def should_adapt(self, analysis: MarketAnalysis) -> bool:
        """True when adaptation is on and a quantity this strategy uses moved enough."""
        if not self.config.adaptation_enabled:
            return False
        p = self._parameters
        limit = self.config.adapt_volatility_change_ratio
        for name in self.adapts_to:
            if name == "volatility":
                if _relative_change(analysis.volatility_bps_per_sqrt_sec, p.volatility_bps_per_sqrt_sec) > limit:
                    return True
            elif name == "arrival":
                if _relative_change(analysis.order_arrival_k_per_bps, p.order_arrival_k_per_bps) > limit:
                    return True
                if _relative_change(analysis.order_arrival_a_per_sec, p.order_arrival_a_per_sec) > limit:
                    return True
            elif name == "trend":
                if analysis.trend_direction != p.trend_direction:
                    return True
                if abs(analysis.trend_strength - p.trend_strength) > 0.1:
                    return True
        return False

    def adapt_to_conditions(self, analysis: MarketAnalysis) -> StrategyParameters:
        """Adopt the measured market (sigma, A, k, trend) and return the new parameters."""
        self.parameters = dataclasses.replace(
            self._parameters,
            volatility_bps_per_sqrt_sec=analysis.volatility_bps_per_sqrt_sec,
            volatility_daily=analysis.volatility_daily,
            order_arrival_a_per_sec=analysis.order_arrival_a_per_sec,
            order_arrival_k_per_bps=analysis.order_arrival_k_per_bps,
            trend_strength=analysis.trend_strength,
            trend_direction=analysis.trend_direction,
        )
        return self._parameters

    def parameter_problems(self) -> list[str]:
        """Human-readable reasons the strategy cannot quote with its configs and parameters."""
        problems = [
            f"{name}: {message}"
            for errors in (self.config.validate(), self.order_config.validate())
            for name, messages in errors.items()
            for message in messages
        ]
        p = self._parameters
        for field in dataclasses.fields(p):
            value = getattr(p, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"parameter {field.name} must be a finite number, got {value!r}")
        if problems:
            return problems
        if not isinstance(p.grid_levels, int) or p.grid_levels < 1:
            problems.append(f"parameter grid_levels must be a whole number >= 1, got {p.grid_levels!r}")
        for name in ("spread_bps", "volatility_bps_per_sqrt_sec", "order_arrival_a_per_sec",
                     "order_arrival_k_per_bps", "risk_aversion"):
            if getattr(p, name) <= 0:
                problems.append(f"parameter {name} must be greater than 0, got {getattr(p, name)!r}")
        for name in ("level_spacing_bps", "inventory_skew_bps", "volatility_daily"):
            if getattr(p, name) < 0:
                problems.append(f"parameter {name} must not be negative, got {getattr(p, name)!r}")
        if not 0.0 <= p.trend_strength <= 1.0:
            problems.append(f"parameter trend_strength must be between 0 and 1, got {p.trend_strength!r}")
        if p.trend_direction not in (-1, 0, 1):
            problems.append(f"parameter trend_direction must be -1, 0 or 1, got {p.trend_direction!r}")
        return problems + self._strategy_problems()

    def _strategy_problems(self) -> list[str]:
        """Extra checks of one strategy (override)."""
        return []

    def validate_parameters(self) -> bool:
        """The spec's check: True when ``parameter_problems()`` is empty."""
        return not self.parameter_problems()

    def _plan(self, snapshot: MarketSnapshot, inventory: InventoryState, risk: RiskContext) -> Plan | None:
        """Centre, level-0 distances and level counts; None (with ``pause_reason``) to quote nothing."""
        raise NotImplementedError

    # --- the pipeline -----------------------------------------------------------------------

    def calculate_orders(
        self, snapshot: MarketSnapshot, inventory: InventoryState, risk: RiskContext
    ) -> list[OrderIntent]:
        """The orders this strategy wants resting now (spec ``calculate_orders``)."""
        best_bid = snapshot.best_bid
        best_ask = snapshot.best_ask
        tick = snapshot.tick_size
        if not (0.0 < best_bid < best_ask < INF and 0.0 < tick < INF and 0.0 < snapshot.lot_size < INF):
            self.pause_reason = snapshot.problem() or f"{snapshot.symbol}: unusable snapshot"
            return []
        self.pause_reason = None
        plan = self._plan(snapshot, inventory, risk)
        if plan is None:
            return []
        centre, bid_dist, ask_dist, bid_levels, ask_levels = plan
        if snapshot.reference_mid > 0.0:  # centred on another venue's (or a composite) mid
            centre *= snapshot.reference_mid / ((best_bid + best_ask) * 0.5)

        if not self.own_inventory_skew and self._skew:
            deviation = inventory.ratio - inventory.target_ratio
            if deviation > 0.0:
                target_room = 1.0 - inventory.target_ratio
                norm = deviation / target_room if target_room > 0.0 else 1.0
            elif deviation < 0.0:
                norm = deviation / inventory.target_ratio if inventory.target_ratio > 0.0 else -1.0
            else:
                norm = 0.0
            centre *= 1.0 - self._skew * (norm if norm < 1.0 else 1.0)

        # minimum spread, the max_spread cap, then maker fees (which win over the cap):
        # a*(1-f) + b*(1+f) >= 2f  <=>  ask*(1-f) >= bid*(1+f), a round trip never loses.
        widen = (self._min_total - bid_dist - ask_dist) * 0.5
        if widen > 0.0:
            bid_dist += widen
            ask_dist += widen
        total = bid_dist + ask_dist
        if total > self._max_total:
            scale = self._max_total / total
            bid_dist *= scale
            ask_dist *= scale
        fee = self._fee
        widen = fee - (ask_dist * (1.0 - fee) + bid_dist * (1.0 + fee)) * 0.5
        if widen > 0.0:
            bid_dist += widen
            ask_dist += widen
        multiplier = risk.spread_multiplier
        if multiplier != 1.0:
            bid_dist *= multiplier
            ask_dist *= multiplier

        if not (centre > 0.0 and centre < INF and bid_dist == bid_dist and ask_dist == ask_dist):
            self.pause_reason = f"{snapshot.symbol}: quote computation gave no finite price (centre {centre!r})"
            return []
        return self._orders(snapshot, inventory, risk, centre, bid_dist, ask_dist, bid_levels, ask_levels)

    def _orders(
        self,
        snapshot: MarketSnapshot,
        inventory: InventoryState,
        risk: RiskContext,
        centre: float,
        bid_dist: float,
        ask_dist: float,
        bid_levels: int,
        ask_levels: int,
    ) -> list[OrderIntent]:
        """Place the levels, guard, round and size them (steps 3-5 of the module doc).

        Tick and lot rounding are inlined (same rule as ``round_to_tick``/``floor_to_lot``): this
        is the hot path of the backtester.
        """
        tick = snapshot.tick_size
        lot = snapshot.lot_size
        tick_places = grid_decimals(tick)
        lot_places = grid_decimals(lot)
        post_only = self._post_only
        spacing = self._spacing
        sizes = self._level_sizes_quote
        size_multiplier = risk.size_multiplier
        min_quote = risk.min_order_size_quote
        if snapshot.min_notional > min_quote:
            min_quote = snapshot.min_notional
        max_quote = risk.max_order_size_quote
        intents: list[OrderIntent] = []

        highest_bid = 0.0
        if bid_levels:
            budget = risk.max_position_quote - inventory.base_value_quote
            if inventory.quote_balance < budget:
                budget = inventory.quote_balance
            ceiling = self._ceiling
            top = snapshot.best_ask - tick
            for level in range(bid_levels):
                price = centre * (1.0 - bid_dist - level * spacing)
                if price > ceiling:
                    continue
                if post_only and price > top:
                    price = top
                price = round(floor(price / tick + GRID_TOLERANCE) * tick, tick_places)
                if price <= 0.0:
                    break
                size = _size(sizes[level] * size_multiplier, price, lot, lot_places, min_quote, max_quote)
                if size <= 0.0:
                    continue
                value = size * price
                if value > budget:
                    size = round(floor(budget / price / lot + GRID_TOLERANCE) * lot, lot_places)
                    value = size * price
                    if size <= 0.0 or value < min_quote:
                        break
                budget -= value
                if price > highest_bid:
                    highest_bid = price
                intents.append(OrderIntent(BUY, price, size, level, post_only))

        if ask_levels:
            available = inventory.base_balance
            floor_price = self._floor
            bottom = snapshot.best_bid + tick
            for level in range(ask_levels):
                price = centre * (1.0 + ask_dist + level * spacing)
                if price < floor_price:
                    continue
                if post_only and price < bottom:
                    price = bottom
                price = round(ceil(price / tick - GRID_TOLERANCE) * tick, tick_places)
                if price <= highest_bid:
                    price = round(highest_bid + tick, tick_places)
                size = _size(sizes[level] * size_multiplier, price, lot, lot_places, min_quote, max_quote)
                if size <= 0.0:
                    continue
                if size > available:
                    size = round(floor(available / lot + GRID_TOLERANCE) * lot, lot_places)
                    if size <= 0.0 or size * price < min_quote:
                        break
                available -= size
                intents.append(OrderIntent(SELL, price, size, level, post_only))
        return intents


def _size(
    size_quote: float, price: float, lot: float, lot_places: int, min_quote: float, max_quote: float
) -> float:
    """Base size for ``size_quote`` at ``price``: lot-rounded down, raised to ``min_quote`` (rounded
    up), 0 when no lot multiple fits between ``min_quote`` and ``max_quote``."""
    if size_quote > max_quote:
        size_quote = max_quote
    size = round(floor(size_quote / price / lot + GRID_TOLERANCE) * lot, lot_places)
    if size * price < min_quote:
        size = round(ceil(min_quote / price / lot - GRID_TOLERANCE) * lot, lot_places)
        if size * price > max_quote * (1.0 + 1e-9):
            return 0.0
    return size


# --- the engine's refresh diff -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderDiff:
    """What the engine should do to move from the live orders to the intents."""

    keep: list[LiveOrder]
    cancel: list[LiveOrder]
    place: list[OrderIntent]


def diff_orders(
    live: Sequence[LiveOrder],
    intents: Sequence[OrderIntent],
    *,
    tolerance_bps: float,
    refresh_secs: float,
    now: float,
) -> OrderDiff:
    """Decide which live orders to keep (order-refresh tolerance), cancel and place.

    A live order is kept when an intent of the same side and level exists whose price differs by
    at most ``tolerance_bps`` of the intent's price and the order is younger than
    ``refresh_secs``; the intent is then not placed. Every other live order is cancelled (one
    per side and level at most is kept) and every other intent placed. A kept order that would
    cross a newly placed order of the other side is replaced too. Sizes are not compared: a partly
    filled order keeps its place in the queue until it is refreshed.
    """
    wanted: dict[tuple[str, int], OrderIntent] = {(i.side, i.level): i for i in intents}
    kept_keys: set[tuple[str, int]] = set()
    keep: list[LiveOrder] = []
    cancel: list[LiveOrder] = []
    tolerance = tolerance_bps / BPS
    for order in live:
        key = (order.side, order.level)
        intent = wanted.get(key)
        if (
            intent is not None
            and key not in kept_keys
            and abs(order.price - intent.price) <= tolerance * intent.price
            and now - order.placed_at < refresh_secs
        ):
            keep.append(order)
            kept_keys.add(key)
        else:
            cancel.append(order)
    place = [i for i in intents if (i.side, i.level) not in kept_keys]
    if keep and place:
        # A kept order must not cross a new order of the other side (post-only would reject it).
        highest_new_bid = max((i.price for i in place if i.side == BUY), default=-INF)
        lowest_new_ask = min((i.price for i in place if i.side == SELL), default=INF)
        crossing = [
            o for o in keep
            if (o.side == SELL and o.price <= highest_new_bid) or (o.side == BUY and o.price >= lowest_new_ask)
        ]
        if crossing:
            for order in crossing:
                keep.remove(order)
                cancel.append(order)
                kept_keys.discard((order.side, order.level))
            place = [i for i in intents if (i.side, i.level) not in kept_keys]
    return OrderDiff(keep=keep, cancel=cancel, place=place)
