"""The one decide -> check -> diff step: what a bot quotes on one pair, given immutable inputs.

``decide`` is the only place a quote is decided. The live engine calls it for a full cycle, a
re-quote and the driver's quiet check (``bots.engine`` ``MarketMakingBot.decide_quotes``); a backtest
calls it with the same inputs built from its recorded data, so both apply the same pre-trade checks.

    strategy.calculate_orders(snapshot, inventory, risk)        decide
    -> risk.checks.reduce_growing_side  (POSITION_LIMIT_EXCEEDED adjustment, when set)
    -> order-parameter validation        (positive, within min/max order size)
    -> risk.checks.check_intents          (numbers, notional, price collar, open orders, position)
    -> strategies.base.diff_orders        (refresh tolerance against the live orders)
    -> risk.checks.self_trade_denials     (no new order crosses a resting one of the same account:
                                          the bot's kept quotes and the account's other orders on the pair)

Pure: no Django, no ccxt, no I/O, no clock (``now`` is an input). Every input is a frozen dataclass
or a sequence of them, and the result is a frozen ``Decision``. The strategy object is the only
stateful input: ``calculate_orders`` is deterministic for the same parameters and inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from risk import checks
from risk.limits import RiskLimits
from strategies.base import MarketMakingStrategy, OrderDiff, diff_orders
from strategies.types import InventoryState, LiveOrder, MarketSnapshot, OrderIntent, RiskContext

SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class QuotingRules:
    """The bot's order settings the decision applies (from ``MarketMakingConfig``)."""

    min_order_size_quote: float
    max_order_size_quote: float
    order_refresh_tolerance_bps: float
    order_refresh_secs: float


@dataclass(frozen=True, slots=True)
class SideReduction:
    """A POSITION_LIMIT_EXCEEDED adjustment: sizes on ``side`` (the growing side) times ``factor``."""

    side: str = ""
    factor: float = 1.0


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """Everything one pair's decision reads; nothing else is read."""

    snapshot: MarketSnapshot
    inventory: InventoryState
    risk: RiskContext
    """The strategy's per-pair limits (spread multiplier of a volatility adjustment included)."""
    limits: RiskLimits
    rules: QuotingRules
    live: tuple[LiveOrder, ...]
    """The pair's live quotes (cancel-pending ones left out)."""
    others_open: int
    """The bot's open orders on its other pairs (max_open_orders counts them)."""
    now: float
    reduction: SideReduction = SideReduction()
    position_value_quote: float | None = None
    """The base position's value the position limit is checked against; None: the inventory's
    (the live engine passes its last assessment, which may be valued at an earlier mid)."""
    account_resting: tuple[checks.RestingOrder, ...] = ()
    """The exchange account's other resting orders on this pair (other bots' of the tenant, or placed by
    hand): no new quote may cross one (nor the bot's own kept quotes)."""
    halt: str = ""
    """Why this slot quotes nothing whatever the strategy wants (an unresolved hedge of a fill on it): no
    intent, every live quote cancelled, this reason the pause reason."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One pair's decision: the intents at each stage, the denials with reasons, and the diff."""

    intents: tuple[OrderIntent, ...]
    """What the strategy wants (after the growing-side reduction)."""
    valid: tuple[OrderIntent, ...]
    """The intents within the order-parameter rules."""
    checked: checks.CheckResult
    """The pre-trade checks' verdict on ``valid``: allowed and denied (each with its reason)."""
    diff: OrderDiff
    """Against the live quotes: keep, cancel, place (place is a subset of ``checked.allowed``)."""
    pause_reason: str | None
    """The strategy's own reason for quoting nothing, if it gave one."""

    @property
    def allowed(self) -> list[OrderIntent]:
        return self.checked.allowed

    @property
    def denied(self) -> list[checks.Denial]:
        return self.checked.denied

    @property
    def quotes_both_sides(self) -> bool:
        return {i.side for i in self.checked.allowed} == {"buy", "sell"}


def valid_order(intent: OrderIntent, rules: QuotingRules) -> bool:
    """Spec ``_validate_order_parameters``: positive size and price, notional within min/max size."""
    if intent.size <= 0 or intent.price <= 0:
        return False
    notional = intent.size * intent.price
    if notional < rules.min_order_size_quote * (1 - SLACK):
        return False
    return notional <= rules.max_order_size_quote * (1 + SLACK)


def decide(strategy: MarketMakingStrategy, inputs: DecisionInputs) -> Decision:
    """decide -> check -> diff for one pair (see the module's docstring)."""
    intents: Sequence[OrderIntent] = [] if inputs.halt else strategy.calculate_orders(
        inputs.snapshot, inputs.inventory, inputs.risk)
    if inputs.reduction.side:
        intents = checks.reduce_growing_side(intents, inputs.reduction.side, inputs.reduction.factor,
                                             inputs.rules.min_order_size_quote)
    valid = [i for i in intents if valid_order(i, inputs.rules)]
    checked = checks.check_intents(valid, inputs.limits, checks.PreTradeContext(
        mid=inputs.snapshot.mid,
        base_value_quote=(inputs.inventory.base_value_quote if inputs.position_value_quote is None
                          else inputs.position_value_quote),
        open_orders_total=inputs.others_open,
        min_order_size_quote=inputs.rules.min_order_size_quote,
        max_order_size_quote=inputs.rules.max_order_size_quote,
    ))
    diff = diff_orders(
        inputs.live, checked.allowed,
        tolerance_bps=inputs.rules.order_refresh_tolerance_bps,
        refresh_secs=inputs.rules.order_refresh_secs, now=inputs.now,
    )
    if diff.place:
        # the cancels are answered before anything is placed: what rests then is the kept quotes and the
        # account's other orders
        resting = [*inputs.account_resting, *(checks.RestingOrder(o.side, o.price, "this bot") for o in diff.keep)]
        place, crossing = checks.self_trade_denials(diff.place, resting)
        if crossing:
            refused = {id(d.intent) for d in crossing}
            diff = replace(diff, place=place)
            checked = checks.CheckResult([i for i in checked.allowed if id(i) not in refused],
                                         [*checked.denied, *crossing])
    return Decision(intents=tuple(intents), valid=tuple(valid), checked=checked, diff=diff,
                    pause_reason=inputs.halt or strategy.pause_reason)
