"""Pure position accounting (average cost on a cost basis) and the performance figures derived from fills.

No Django: the engine feeds fills in, the ORM stores the resulting numbers.

The identity (exact, Decimal)
-----------------------------
For one pair and the fills of one bot, with every balance valued at the same mid and in quote::

    realised + unrealised(mid) - fees  ==  Δbase_balance × mid + Δquote_balance (+ Δfee_asset × its price)

where the Δ are what those fills did to the account's balances: a buy of ``a`` at ``p`` adds ``a`` base
and takes ``a·p`` quote, a sell the reverse, and the fee is taken out of the asset it is charged in.

The convention that makes it hold, and counts each fee once
-----------------------------------------------------------
* The open position is ``base_position`` (base bought − base sold − base paid as fees) and its
  ``cost_basis_quote``: the signed quote the open position cost (positive long, negative short). The
  average cost is ``cost_basis_quote / base_position`` — shown, never used to compute anything.
* A trade that grows the position (or opens one) adds ``signed amount × price`` to the basis. A trade
  against the position closes ``min(|amount|, |position|)`` first: it releases that share of the basis
  (pro rata, the one rounded figure: to ``QUANTUM``; the remaining basis is the exact rest, so no
  rounding ever leaks out of the identity) and realises ``closed × price − released`` (signed); a
  remainder opens a new position at ``price`` (a flip through flat).
* A fee in the quote asset is a fee: ``fees_paid_quote += fee``.
* A fee in the base asset is, as the balances see it, base that left the account at no proceeds.
  It is booked as two things at the fill price ``p``: a disposal of ``fee`` base at ``p`` through the
  same average-cost book (it closes part of a long at its average cost and realises ``fee × (p − avg)``,
  or grows a short — so a buy that brings a short exactly to flat leaves the short of the fee, as on
  the venue), and a fee of ``fee × p``. The disposal's proceeds and the fee cancel, so nothing is
  counted twice; the fee shows in ``fees_paid_quote`` at the price it was paid at; the average cost of
  what is still held does not move.
* A fee in a third asset (BNB on Binance) moves neither balance of the pair. It is counted as a fee
  of ``fee × fee_price_quote`` when the caller gives the asset's price in the pair's quote (then the
  identity holds with that asset's balance valued at that price); without a price it is left out of
  the P&L here and kept as charged on the ``Fill`` row (``fee``, ``fee_currency``, ``fee_quote`` = 0).
  The engine gives no such price today (the emulator and the venues it trades charge base or quote).

Exactness: every figure is a sum of products of the inputs, except the released basis (quantized to
``QUANTUM`` = the database's 12 decimal places), so stored figures are exact whenever each
price × amount and fee × price fit in 12 decimal places (any venue's tick × lot does). On Postgres;
SQLite (the fresh-machine demo) keeps decimal columns as 64-bit floats, good to about 1e-12 there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

ZERO = Decimal(0)
QUANTUM = Decimal("1e-12")
"""The released basis of a partial close is rounded to this (the money columns' decimal places)."""


@dataclass(frozen=True, slots=True)
class PositionAccount:
    base_position: Decimal = ZERO
    cost_basis_quote: Decimal = ZERO
    realised_pnl_quote: Decimal = ZERO
    fees_paid_quote: Decimal = ZERO
    volume_quote: Decimal = ZERO
    fill_count: int = 0

    @property
    def average_cost(self) -> Decimal:
        """Quote per base of the open position (display only; 0 when flat)."""
        if self.base_position == 0:
            return ZERO
        return (self.cost_basis_quote / self.base_position).quantize(QUANTUM)

    def unrealised_pnl_quote(self, mid: Decimal) -> Decimal:
        """The open position marked to the mid against what it cost."""
        return unrealised_pnl_quote(self.base_position, self.cost_basis_quote, mid)

    def net_pnl_quote(self, mid: Decimal) -> Decimal:
        return self.realised_pnl_quote + self.unrealised_pnl_quote(mid) - self.fees_paid_quote


def unrealised_pnl_quote(base_position: Decimal, cost_basis_quote: Decimal, mid: Decimal) -> Decimal:
    """``base_position × mid − cost_basis_quote``: exact, and 0 when flat."""
    return base_position * mid - cost_basis_quote


def fee_in_quote(fee: Decimal, fee_currency: str, price: Decimal, base: str, quote: str,
                 fee_price_quote: Decimal | None = None) -> Decimal:
    """The fee valued in quote currency: a base fee at the fill price, a third asset's at
    ``fee_price_quote`` (0 when no price is given: kept raw on the fill, see the module docstring)."""
    if fee_currency == quote:
        return fee
    if fee_currency == base:
        return fee * price
    if fee_price_quote is not None:
        return fee * fee_price_quote
    return ZERO


def _trade(account: PositionAccount, signed_amount: Decimal, price: Decimal) -> PositionAccount:
    """Move the position by ``signed_amount`` at ``price``: close against the cost basis first, then
    open the remainder at ``price``."""
    q, basis, realised = account.base_position, account.cost_basis_quote, account.realised_pnl_quote
    if signed_amount == 0:
        return account
    if q == 0 or (q > 0) == (signed_amount > 0):
        return replace(account, base_position=q + signed_amount, cost_basis_quote=basis + signed_amount * price)
    closing = min(abs(signed_amount), abs(q))
    direction = 1 if q > 0 else -1
    released = basis if closing == abs(q) else (basis * closing / abs(q)).quantize(QUANTUM)
    realised += direction * closing * price - released
    q -= direction * closing
    basis -= released
    rest = abs(signed_amount) - closing
    if rest > 0:  # through flat: the rest opens a position on the other side at this price
        opened = rest if signed_amount > 0 else -rest
        q, basis = opened, opened * price
    return replace(account, base_position=q, cost_basis_quote=basis, realised_pnl_quote=realised)


def apply_fill(
    account: PositionAccount,
    *,
    side: str,
    price: Decimal,
    amount: Decimal,
    fee: Decimal,
    fee_currency: str,
    base: str,
    quote: str,
    fee_price_quote: Decimal | None = None,
) -> PositionAccount:
    """The account after one fill (see the module docstring for the convention)."""
    updated = _trade(account, amount if side == "buy" else -amount, price)
    if fee and fee_currency == base:
        # base that left the account for nothing: disposed of at the fill price, that price paid as fee
        updated = _trade(updated, -fee, price)
    return replace(
        updated,
        fees_paid_quote=updated.fees_paid_quote + fee_in_quote(fee, fee_currency, price, base, quote,
                                                               fee_price_quote),
        volume_quote=updated.volume_quote + amount * price,
        fill_count=updated.fill_count + 1,
    )
