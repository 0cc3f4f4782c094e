"""Pure position accounting (average cost) and the performance figures derived from fills.

No Django: the engine feeds fills in, the ORM stores the resulting numbers. Identity kept exact
with Decimals: realised + unrealised - fees = change of (cash + base × mid) since the start.
A fee charged in the base asset reduces the position (that base never arrived); a fee in the
quote asset reduces cash; either way it is counted once in ``fees_paid_quote``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PositionAccount:
    base_position: Decimal = ZERO
    average_cost: Decimal = ZERO
    realised_pnl_quote: Decimal = ZERO
    fees_paid_quote: Decimal = ZERO
    volume_quote: Decimal = ZERO
    fill_count: int = 0

    def unrealised_pnl_quote(self, mid: Decimal) -> Decimal:
        """Open position marked to the mid against its average cost."""
        return self.base_position * (mid - self.average_cost)

    def net_pnl_quote(self, mid: Decimal) -> Decimal:
        return self.realised_pnl_quote + self.unrealised_pnl_quote(mid) - self.fees_paid_quote


def fee_in_quote(fee: Decimal, fee_currency: str, price: Decimal, base: str, quote: str) -> Decimal:
    """The fee valued in quote currency (a fee in a third asset has no price here: 0, kept raw)."""
    if fee_currency == quote:
        return fee
    if fee_currency == base:
        return fee * price
    return ZERO


def _trade(account: PositionAccount, signed_amount: Decimal, price: Decimal) -> PositionAccount:
    """Move the position by ``signed_amount`` at ``price``: close against the average cost first,
    then open the remainder at ``price``."""
    q, cost, realised = account.base_position, account.average_cost, account.realised_pnl_quote
    if q == 0 or (q > 0) == (signed_amount > 0):
        new_q = q + signed_amount
        cost = (q * cost + signed_amount * price) / new_q if new_q != 0 else ZERO
        return replace(account, base_position=new_q, average_cost=cost)
    closing = min(abs(signed_amount), abs(q))
    direction = 1 if q > 0 else -1
    realised += closing * (price - cost) * direction
    q_after = q + (closing if signed_amount > 0 else -closing)
    rest = abs(signed_amount) - closing
    if rest > 0:
        return replace(
            account, base_position=rest if signed_amount > 0 else -rest, average_cost=price, realised_pnl_quote=realised
        )
    return replace(account, base_position=q_after, average_cost=cost if q_after != 0 else ZERO,
                   realised_pnl_quote=realised)


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
) -> PositionAccount:
    """The account after one fill."""
    signed = amount if side == "buy" else -amount
    updated = _trade(account, signed, price)
    if fee and fee_currency == base:
        # the fee was taken out of the base we received (or had): the position shrinks at no proceeds
        updated = replace(updated, base_position=updated.base_position - fee)
        if updated.base_position == 0:
            updated = replace(updated, average_cost=ZERO)
    return replace(
        updated,
        fees_paid_quote=updated.fees_paid_quote + fee_in_quote(fee, fee_currency, price, base, quote),
        volume_quote=updated.volume_quote + amount * price,
        fill_count=updated.fill_count + 1,
    )
