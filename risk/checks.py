"""Pure risk math: pre-trade checks on order intents and the assessment of a bot's risk state.

No Django, no ccxt: plain dataclasses in, plain dataclasses out, every denial with a reason an
operator can read. The engine (bots/engine) gathers the state and acts on the results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from risk.limits import RiskLimits
from strategies.types import BUY, SELL, OrderIntent

BPS = 1e4

POSITION_LIMIT_EXCEEDED = "POSITION_LIMIT_EXCEEDED"
DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
INVENTORY_IMBALANCE = "INVENTORY_IMBALANCE"
MARKET_VOLATILITY = "MARKET_VOLATILITY"
MAX_DRAWDOWN = "MAX_DRAWDOWN"
SELF_TRADE = "SELF_TRADE"
"""The code of a denial: the order would trade with a resting order of the same exchange account."""

# The action each risk event type calls for (spec _handle_risk_event).
ACTIONS = {
    POSITION_LIMIT_EXCEEDED: "reduce_position_sizes",
    DAILY_LOSS_LIMIT: "pause_trading",
    MAX_DRAWDOWN: "pause_trading",
    INVENTORY_IMBALANCE: "force_rebalance",
    MARKET_VOLATILITY: "adjust_spreads_for_volatility",
}


@dataclass(frozen=True, slots=True)
class Denial:
    """An intent the risk gate refused, and why."""

    intent: OrderIntent
    reason: str
    code: str = ""
    """A machine-readable kind where one is needed (``SELF_TRADE``); empty for the others."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    allowed: list[OrderIntent]
    denied: list[Denial]


@dataclass(frozen=True, slots=True)
class PreTradeContext:
    """What the gate needs to know about one pair when checking new intents."""

    mid: float
    base_value_quote: float
    """Current base inventory of the pair valued at the mid."""
    open_orders_total: int
    """Orders of the bot that stay open (all pairs) besides the ones being checked."""
    min_order_size_quote: float
    max_order_size_quote: float


def check_intents(intents: Sequence[OrderIntent], limits: RiskLimits, context: PreTradeContext) -> CheckResult:
    """Pre-trade checks on every intent: sane numbers, size and notional, price collar around the
    mid, max open orders, and the position limit (bids stop where the position would exceed it)."""
    allowed: list[OrderIntent] = []
    denied: list[Denial] = []
    open_count = context.open_orders_total
    bid_exposure = context.base_value_quote
    mid = context.mid
    collar = limits.price_collar_bps / BPS
    slack = 1e-9
    for intent in sorted(intents, key=lambda i: (i.level, i.side)):
        price, size = intent.price, intent.size
        if not (math.isfinite(price) and math.isfinite(size)) or price <= 0 or size <= 0:
            denied.append(Denial(intent, f"price {price!r} and size {size!r} must be positive numbers"))
            continue
        notional = price * size
        if notional < context.min_order_size_quote * (1 - slack):
            denied.append(Denial(intent, f"notional {notional:.8g} below min_order_size_quote "
                                         f"{context.min_order_size_quote:.8g}"))
            continue
        if notional > context.max_order_size_quote * (1 + slack):
            denied.append(Denial(intent, f"notional {notional:.8g} above max_order_size_quote "
                                         f"{context.max_order_size_quote:.8g}"))
            continue
        if not (mid > 0 and math.isfinite(mid)):
            denied.append(Denial(intent, f"no valid mid price ({mid!r}) to check the price collar"))
            continue
        distance = abs(price - mid) / mid
        if distance > collar * (1 + slack):
            denied.append(Denial(intent, f"price {price:.8g} is {distance * BPS:.1f} bps from the mid "
                                         f"{mid:.8g}, beyond the {limits.price_collar_bps:g} bps collar"))
            continue
        if open_count >= limits.max_open_orders:
            denied.append(Denial(intent, f"max_open_orders {limits.max_open_orders} reached"))
            continue
        if intent.side == BUY:
            if bid_exposure + notional > limits.max_position_quote * (1 + slack):
                denied.append(Denial(intent, f"buying {notional:.8g} would take the position to "
                                             f"{bid_exposure + notional:.8g}, above max_position_quote "
                                             f"{limits.max_position_quote:.8g}"))
                continue
            bid_exposure += notional
        open_count += 1
        allowed.append(intent)
    return CheckResult(allowed, denied)


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """A resting order of the same exchange account on the pair: this bot's (kept) or another's."""

    side: str
    price: float
    owner: str
    """Whose it is, as an operator reads it ("this bot", "bot 12", "an order not placed by a bot")."""


def self_trade_denials(intents: Sequence[OrderIntent], resting: Sequence[RestingOrder],
                       ) -> tuple[list[OrderIntent], list[Denial]]:
    """No self-trades: an intent that would cross a resting order of the same account (a bid at or above
    its lowest resting ask, an ask at or below its highest resting bid) is denied (``SELF_TRADE``). The
    intents allowed join the resting ones in turn, so two new orders never cross each other either.
    Returns (allowed, denied)."""
    bid = max((o for o in resting if o.side == BUY), key=lambda o: o.price, default=None)
    ask = min((o for o in resting if o.side == SELL), key=lambda o: o.price, default=None)
    allowed: list[OrderIntent] = []
    denied: list[Denial] = []
    for intent in sorted(intents, key=lambda i: (i.level, i.side)):
        price = intent.price
        if intent.side == BUY and ask is not None and price >= ask.price * (1 - 1e-12):
            denied.append(Denial(intent, f"bid {price:.8g} would trade with the account's own resting ask "
                                         f"{ask.price:.8g} ({ask.owner})", SELF_TRADE))
            continue
        if intent.side == SELL and bid is not None and price <= bid.price * (1 + 1e-12):
            denied.append(Denial(intent, f"ask {price:.8g} would trade with the account's own resting bid "
                                         f"{bid.price:.8g} ({bid.owner})", SELF_TRADE))
            continue
        allowed.append(intent)
        mine = RestingOrder(intent.side, price, "this bot")
        if intent.side == BUY and (bid is None or price > bid.price):
            bid = mine
        elif intent.side == SELL and (ask is None or price < ask.price):
            ask = mine
    return allowed, denied


def self_trade_limit_price(side: str, price: float, resting: Sequence[RestingOrder], tick: float) -> float:
    """A taking order's limit price kept one tick short of the account's own resting orders on the other
    side (a buy below its lowest resting ask, a sell above its highest resting bid): it takes only what
    others offer at better prices. 0.0 when no such price is left (a buy at or below one tick)."""
    if side == BUY:
        asks = [o.price for o in resting if o.side == SELL]
        if asks and price >= min(asks) * (1 - 1e-12):
            price = min(asks) - tick
        return price if price > 0 else 0.0
    bids = [o.price for o in resting if o.side == BUY]
    if bids and price <= max(bids) * (1 + 1e-12):
        price = max(bids) + tick
    return price


def taking_limit_price(side: str, price: float, resting: Sequence[RestingOrder], tick: float, *,
                       best_bid: float, best_ask: float) -> float:
    """A taking order's limit on one venue (``self_trade_limit_price``), or 0.0 when that venue leaves it
    nothing to take: the limit no longer reaches the venue's best price on the other side (the account's
    own order is that best price or in front of it, or the limit was short of it to begin with). Where
    it is 0.0 the order would only expire: a rebalancing trade goes to another venue instead."""
    limit = self_trade_limit_price(side, price, resting, tick)
    if side == BUY:
        return limit if best_ask > 0 and limit >= best_ask * (1 - 1e-12) else 0.0
    return limit if best_bid > 0 and limit > 0 and limit <= best_bid * (1 + 1e-12) else 0.0


def growing_side(base_value_quote: float) -> str:
    """The side that grows a position of this (signed) value: buying a long, selling a short."""
    return BUY if base_value_quote >= 0 else SELL


def reduce_growing_side(intents: Sequence[OrderIntent], side: str, factor: float,
                        min_order_size_quote: float) -> list[OrderIntent]:
    """POSITION_LIMIT_EXCEEDED: the orders on ``side`` (the one that grows the position) at ``factor``
    of their size; an order that falls below the minimum order size is dropped (as the strategy drops a
    level it cannot fund). The other side, which unwinds the position, is left as it is."""
    if not side or factor >= 1.0:
        return list(intents)
    reduced: list[OrderIntent] = []
    for intent in intents:
        if intent.side != side:
            reduced.append(intent)
            continue
        size = intent.size * factor
        if size * intent.price >= min_order_size_quote * (1 - 1e-9):
            reduced.append(replace(intent, size=size))
    return reduced


@dataclass(frozen=True, slots=True)
class PairRiskState:
    trading_pair: str
    base_value_quote: float
    ratio: float
    target_ratio: float
    volatility_daily: float


@dataclass(frozen=True, slots=True)
class BotRiskState:
    """A bot's risk-relevant state at one moment (money in quote currency)."""

    daily_pnl_quote: float
    equity_quote: float
    equity_high_water_quote: float
    pairs: tuple[PairRiskState, ...] = ()


@dataclass(frozen=True, slots=True)
class RiskStatus:
    """One breach (spec RiskStatus): its type, the action it calls for, and a readable message."""

    event_type: str
    action_taken: str
    message: str
    trading_pair: str = ""
    details: dict[str, float] = field(default_factory=dict)

    @property
    def requires_action(self) -> bool:
        return True


def assess_risk(state: BotRiskState, limits: RiskLimits) -> list[RiskStatus]:
    """Every breached limit, most severe first (loss and drawdown pause everything)."""
    found: list[RiskStatus] = []
    if state.daily_pnl_quote <= -limits.max_daily_loss_quote:
        found.append(RiskStatus(
            DAILY_LOSS_LIMIT, ACTIONS[DAILY_LOSS_LIMIT],
            f"daily P&L {state.daily_pnl_quote:.2f} reached the max daily loss {limits.max_daily_loss_quote:.2f}",
            details={"daily_pnl_quote": state.daily_pnl_quote, "limit": limits.max_daily_loss_quote},
        ))
    peak = state.equity_high_water_quote
    if peak > 0:
        drawdown = (peak - state.equity_quote) / peak
        if drawdown >= limits.max_drawdown_ratio:
            found.append(RiskStatus(
                MAX_DRAWDOWN, ACTIONS[MAX_DRAWDOWN],
                f"equity {state.equity_quote:.2f} is {drawdown:.1%} below its peak {peak:.2f} "
                f"(limit {limits.max_drawdown_ratio:.1%})",
                details={"drawdown_ratio": drawdown, "limit": limits.max_drawdown_ratio},
            ))
    for pair in state.pairs:
        if pair.base_value_quote > limits.max_position_quote:
            found.append(RiskStatus(
                POSITION_LIMIT_EXCEEDED, ACTIONS[POSITION_LIMIT_EXCEEDED],
                f"{pair.trading_pair}: position {pair.base_value_quote:.2f} above max_position_quote "
                f"{limits.max_position_quote:.2f}",
                pair.trading_pair, {"base_value_quote": pair.base_value_quote, "limit": limits.max_position_quote},
            ))
        deviation = abs(pair.ratio - pair.target_ratio)
        if deviation > limits.inventory_deviation_limit:
            found.append(RiskStatus(
                INVENTORY_IMBALANCE, ACTIONS[INVENTORY_IMBALANCE],
                f"{pair.trading_pair}: inventory ratio {pair.ratio:.3f} is {deviation:.3f} from target "
                f"{pair.target_ratio:.3f} (limit {limits.inventory_deviation_limit:.3f})",
                pair.trading_pair, {"ratio": pair.ratio, "target_ratio": pair.target_ratio},
            ))
        if pair.volatility_daily > limits.volatility_pause_threshold:
            found.append(RiskStatus(
                MARKET_VOLATILITY, ACTIONS[MARKET_VOLATILITY],
                f"{pair.trading_pair}: daily volatility {pair.volatility_daily:.1%} above the "
                f"{limits.volatility_pause_threshold:.1%} threshold",
                pair.trading_pair, {"volatility_daily": pair.volatility_daily},
            ))
    return found


def startup_problems(limits: RiskLimits, *, kill_switch: bool, daily_pnl_quote: float) -> list[str]:
    """Reasons a bot may not start (spec validate_startup_conditions); empty when it may."""
    problems = [f"{name}: {', '.join(msgs)}" for name, msgs in limits.validate().items()]
    if kill_switch:
        problems.append("the kill switch is engaged; release it first")
    if daily_pnl_quote <= -limits.max_daily_loss_quote:
        problems.append(f"today's loss {daily_pnl_quote:.2f} already reached max_daily_loss_quote")
    return problems
