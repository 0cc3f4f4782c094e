"""In which order a re-quote acts: replace each old quote in one request where the venue can (``replacements``),
else place the new quotes before cancelling the old ones when it is safe.

A re-quote that cancels first leaves each side of the book empty for a round trip or two (issue 16
item 8: ~8 ms per re-quote, ~2.7 % of a side's uptime at three re-quotes a second). Placing first keeps
each side covered, at the price of holding both the old and the new quote for a moment, so it needs:

- free balance for the new orders on top of what already rests: the new buys' quote cost and the new
  sells' base amount, each times ``margin`` (the free balances are the venue's, a little old and shared
  with the account's other bots, so a single times-one check would race them);
- no new order crossing one of the bot's own orders it is about to cancel (a new bid at or above an
  old ask would trade with it, or be refused as post-only). Kept orders never cross the new ones: the
  strategy's quotes do not cross each other.

Pure: no Django, no I/O. Sides are "buy" / "sell"; prices and sizes in floats as the strategy's.
"""

from __future__ import annotations

from collections.abc import Sequence

from strategies.types import OrderIntent

OldQuote = tuple[str, float, float]
"""(side, price, remaining size) of an order the re-quote cancels."""


def place_first(place: Sequence[OrderIntent], cancel: Sequence[OldQuote], *, free_base: float | None,
                free_quote: float | None, margin: float) -> bool:
    """True when the new orders may go out before the old ones are cancelled. ``free_*`` None: unknown
    (never read), so cancel first. Nothing to place or nothing to cancel: the order does not matter
    (False: the plain path)."""
    if not place or not cancel or free_base is None or free_quote is None:
        return False
    old_asks = [price for side, price, _ in cancel if side == "sell"]
    old_bids = [price for side, price, _ in cancel if side == "buy"]
    lowest_old_ask = min(old_asks) if old_asks else None
    highest_old_bid = max(old_bids) if old_bids else None
    buy_cost = 0.0
    sell_amount = 0.0
    for intent in place:
        if intent.side == "buy":
            if lowest_old_ask is not None and intent.price >= lowest_old_ask:
                return False
            buy_cost += intent.price * intent.size
        else:
            if highest_old_bid is not None and intent.price <= highest_old_bid:
                return False
            sell_amount += intent.size
    return buy_cost * margin <= free_quote and sell_amount * margin <= free_base


def replacements(place: Sequence[OrderIntent], cancel: Sequence[OldQuote]) -> list[int | None] | None:
    """Where the venue cancels and places in one request (Binance's ``order/cancelReplace``: the cancel, then the
    placement, nothing in between, so the side is never empty and the new order has the funds the old one held):
    the old quote (its index in ``cancel``) each new one replaces, paired side by side in the order given (the
    strategy's level order); None for a new quote with no old one of its side left (placed on its own, alongside:
    a fill sync re-quotes the side whose quote filled). None when no new quote has an old one to replace, or when a
    new quote crosses an old quote of the other side (a re-quote's requests fly concurrently: that old quote may
    still rest when the new one lands); then the re-quote places first or cancels first. Old quotes left unpaired
    are cancelled on their own."""
    if not place or not cancel:
        return None
    old_asks = [price for side, price, _ in cancel if side == "sell"]
    old_bids = [price for side, price, _ in cancel if side == "buy"]
    for intent in place:
        if intent.side == "buy" and old_asks and intent.price >= min(old_asks):
            return None
        if intent.side == "sell" and old_bids and intent.price <= max(old_bids):
            return None
    left = {side: [i for i, (s, _, _) in enumerate(cancel) if s == side] for side in ("buy", "sell")}
    paired: list[int | None] = []
    for intent in place:
        queue = left.get(intent.side)
        paired.append(queue.pop(0) if queue else None)
    return paired if any(i is not None for i in paired) else None
