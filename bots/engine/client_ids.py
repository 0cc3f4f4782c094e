"""Client order ids: every order the engine sends carries one, unique and traceable to its bot, epoch,
cycle, position, side and level (the venue echoes it; a lost acknowledgement is matched by it)."""

from __future__ import annotations

import hashlib


def client_order_id(bot_id: int, epoch: int, cycle: int, position_id: int, tag: str) -> str:
    """Deterministic id from (bot, epoch, cycle, position, side+level): letters, digits and '-' (each venue's
    registry module encodes it for its own rules).

    ``tag`` starts with a letter (b/s/r), so the position id before it stays unambiguous.
    """
    cid = f"mm-{bot_id}-{epoch}-{cycle}-{position_id}{tag}"
    if len(cid) > 36:
        raise ValueError(f"client order id {cid!r} exceeds the exchange's 36 characters")
    return cid


def client_id_prefix(bot_id: int) -> str:
    return f"mm-{bot_id}-"


def side_tag(side: str, level: int) -> str:
    return f"{side[0]}{level}"


def hedge_client_order_id(bot_id: int, account_id: int, trade_id: str, attempt: int) -> str:
    """The hedge IOC of one maker fill, attempt ``attempt`` (1, 2, ... after a failure): derived from the fill's
    venue trade id and account, so a fill synced twice (a retried sync, another process) names the same
    order and the venue's duplicate check or a lookup by this id finds it. ``mm-<bot>-h<12 hex>r<attempt>``:
    the bot's prefix (the kill sweep finds it), within the strictest venue's 32 characters once dashes are escaped."""
    digest = hashlib.sha256(f"{account_id}:{trade_id}".encode()).hexdigest()[:12]
    cid = f"mm-{bot_id}-h{digest}r{attempt}"
    if len(cid) > 28:
        raise ValueError(f"hedge client order id {cid!r} exceeds 28 characters")
    return cid
