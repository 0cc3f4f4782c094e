"""Cross-venue hedging's decisions, pure (no Django, no ccxt, exact Decimals): what one maker fill owes the
hedge venue, the IOC's limit, how a rounded size splits into what is sent and what is carried, and what
an IOC's answer means.

The engine (``bots/engine/hedging.py``) does the I/O: it rounds through the hedge venue's gateway
(``gateway.quantize``, the one rounding place) and hands the rounded figures back here.

Conventions: a signed base amount is positive for base the hedge buys, negative for base it sells.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

BUY, SELL = "buy", "sell"
ZERO = Decimal(0)
BPS = Decimal(10_000)


def hedge_need(*, side: str, amount: Decimal, fee: Decimal, fee_currency: str, base: str) -> Decimal:
    """The signed base a hedge trades for one maker fill: minus the base the fill moved on the maker
    account (a buy of 1 BTC paying 0.001 BTC in fees moved +0.999 BTC, so the hedge sells 0.999)."""
    moved = amount if side == BUY else -amount
    if fee and fee_currency == base:
        moved -= fee
    return -moved


def hedge_side(signed_base: Decimal) -> str:
    """The hedge order's side for a signed amount (zero has none: nothing to send)."""
    return BUY if signed_base > 0 else SELL


def limit_price(side: str, reference_price: Decimal, max_slippage_bps: float) -> Decimal:
    """The IOC's limit: a hedge buy pays at most ``max_slippage_bps`` above the maker fill's price, a sell
    receives at least that far below it. Exact here; the gateway rounds it to the tick in the safe
    direction (a buy's limit down, a sell's up), so the hedge can never fill worse than this."""
    slippage = Decimal(repr(float(max_slippage_bps))) / BPS
    return reference_price * (1 + slippage) if side == BUY else reference_price * (1 - slippage)


@dataclass(frozen=True, slots=True)
class HedgePlan:
    """What to send for a signed amount, once the gateway rounded it: ``amount`` (unsigned, on the lot) on
    ``side`` when ``send``, else nothing; ``carry`` (signed) is left for the next fill's hedge: below the
    lot, or all of it when the rounded order is under the venue's minimum amount or notional."""

    side: str
    amount: Decimal
    carry: Decimal
    send: bool


def plan(signed_base: Decimal, *, rounded_amount: Decimal, rounded_price: Decimal, min_amount: Decimal,
         min_notional: Decimal) -> HedgePlan:
    """Split ``signed_base`` into the order the venue accepts and the remainder carried to the next hedge."""
    side = hedge_side(signed_base)
    if (rounded_amount <= 0 or rounded_amount < min_amount
            or (min_notional and rounded_amount * rounded_price < min_notional)):
        return HedgePlan(side, ZERO, signed_base, False)
    sent = rounded_amount if side == BUY else -rounded_amount
    return HedgePlan(side, rounded_amount, signed_base - sent, True)


@dataclass(frozen=True, slots=True)
class HedgeOutcome:
    """An IOC's answer: ``hedged`` when it filled in full, else a slippage breach with what is still open."""

    hedged: bool
    unfilled: Decimal
    reason: str


def outcome(*, amount: Decimal, filled: Decimal, limit: Decimal, side: str) -> HedgeOutcome:
    """What an answered IOC of ``amount`` at ``limit`` that filled ``filled`` means for the hedge."""
    unfilled = max(amount - filled, ZERO)
    if unfilled == 0:
        return HedgeOutcome(True, ZERO, "")
    book = "bids at or above" if side == SELL else "asks at or below"
    how = "filled nothing" if filled == 0 else f"filled {_plain(filled)} of {_plain(amount)}"
    return HedgeOutcome(False, unfilled, f"the IOC {side} limited to {_plain(limit)} {how}: the hedge venue had no "
                                         f"more {book} the limit (slippage beyond the maximum)")


def _plain(value: Decimal) -> str:
    """A decimal as a person reads it: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f") if value else "0"
    return text
