"""The venue half of a re-quote that moves its quotes by cancel-replace (``OrderManager.send`` with ``replacing``).

Where the venue cancels and places in one request (``Venue.cancel_replace``; the gateway's
``replace_order``), a re-quote sends one request per new quote, each naming the old quote it replaces
(``strategies.requote_order.replacements`` pairs them): half the requests of a cancel and a placement, one round
trip instead of two, and no moment with the side empty or the funds held twice. ``replace_one`` sends one and
says what became of both halves:

* done: the new order (acknowledged as a placement's answer), and the old one's final state from the venue's
  answer (what it had filled when it went), settled as a cancel's answer;
* the old order was no longer open (filled or cancelled meanwhile; nothing placed): the new one is placed on its
  own, and the old one is settled as a cancel that found nothing (looked up by client id);
* the cancel done, the new order refused (post-only would cross, funds): the new row is rejected as a placement's
  would be, the old one looked up;
* refused before either half (the new order fails the venue's rules): the old one is cancelled on its own;
* outcome unknown (timeouts, lost replies the gateway could not resolve): nothing is settled here; the next sync
  settles both rows by client id, as after any lost reply.
"""

from __future__ import annotations

from typing import Any

from bots.models import Order
from exchanges.gateway import ExchangeGateway, ExchangeOrder, OrderRequest
from mmplatform.errors import (
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    ReplaceCancelFailedError,
)


def request_of(order: Order) -> OrderRequest:
    """The placement request of a stored row."""
    return OrderRequest(pair=order.trading_pair, side=order.side, price=order.price, amount=order.amount,
                        client_order_id=order.client_order_id, post_only=order.post_only,
                        order_type=order.order_type, time_in_force=order.time_in_force)


def _old_ref(old: Order) -> dict[str, str | None]:
    return {"exchange_order_id": old.exchange_order_id or None,
            "client_order_id": None if old.exchange_order_id else old.client_order_id}


async def _settled(awaitable: Any) -> Any:
    """The answer or the error (a cancel's settlement takes either)."""
    try:
        return await awaitable
    except Exception as error:
        return error


async def replace_one(gateway: ExchangeGateway, new: Order, old: Order,
                      replaced: list[tuple[Order, Any]]) -> ExchangeOrder:
    """Replace ``old`` by ``new`` at the venue; returns the new order's answer (or raises as a placement would) and
    appends ``(old, its answer as a cancel's)`` to ``replaced`` when its fate is known (module docstring)."""
    request = request_of(new)
    cancelled: list[ExchangeOrder] = []
    ref = _old_ref(old)
    try:
        answer = await gateway.replace_order(
            new.trading_pair, cancel_exchange_order_id=ref["exchange_order_id"],
            cancel_client_order_id=ref["client_order_id"], new=request, cancelled=cancelled)
    except ReplaceCancelFailedError as error:  # the old one is gone (filled, cancelled): nothing was placed
        replaced.append((old, OrderNotFoundError(str(error))))
        return await gateway.place_order(request)
    except (InvalidOrderError, InsufficientFundsError) as error:
        if error.cancelled:  # the cancel half is done: what the old one had filled, from the venue
            replaced.append((old, await _settled(gateway.fetch_order(new.trading_pair,
                                                                     client_order_id=old.client_order_id))))
        else:  # refused before either half: the old one is still to go
            replaced.append((old, await _settled(gateway.cancel_order(new.trading_pair, **ref))))
        raise
    if cancelled:
        replaced.append((old, cancelled[0]))
    else:  # a venue whose answer does not carry the cancelled half
        replaced.append((old, await _settled(gateway.fetch_order(new.trading_pair,
                                                                 client_order_id=old.client_order_id))))
    return answer
