"""Client order ids: every order the engine sends carries one, unique and traceable to its bot, epoch,
cycle, position, side and level (the venue echoes it; a lost acknowledgement is matched by it)."""

from __future__ import annotations


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
