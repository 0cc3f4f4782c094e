"""Which positions' trades a fill sync must read, kept in Redis: the trades-pending mark (an order of the position
gained fills) and the recent-read flag whose expiry makes the periodic safety read by REST due
(``bots/engine/keys.py``: ``mm:trades:pending:*``, ``mm:trades:recent:*``). Read and written by the order sync
(``bots/engine/fills.py``, ``orders.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from bots.engine import keys
from mmplatform.redis_client import get_redis

FULL_TRADE_SYNC_SECS = 15.0
"""Trades are read at least this often even when no order of the position changed (safety net)."""


TRADE_SYNC_OVERLAP_MS = 5_000
"""Trades are re-read this far back so one arriving late at the venue is not skipped."""


def _trades_key(position_id: int) -> str:
    return keys.trades_pending(position_id)


def mark_trades_pending(position_id: int) -> None:
    """An order of the position gained fills: read the trades at the next sync."""
    get_redis().set(_trades_key(position_id), "1")


PUSHED_TRADE_SAFETY_SECS = 60.0
"""With the account's order stream live, the trades are read by REST at least this often (the pushed trades are
booked in between, each sync checking they account for every fill the venue reports on the position's orders)."""


def trade_sync_state(position_id: int, marks: Iterable[int] = ()) -> tuple[bool, bool]:
    """(fills seen on an order whose trades are not booked yet, the periodic safety read by REST is due (also
    the first time)); the positions in ``marks`` are marked trades-pending first, in the same round trip."""
    r = get_redis()
    pipe = r.pipeline()
    for marked in marks:
        pipe.set(_trades_key(marked), "1")
    pipe.exists(_trades_key(position_id))
    pipe.exists(keys.trades_recent(position_id))
    *_, pending, recent = pipe.execute()
    return bool(pending), not recent


def trades_synced(position_id: int, *, by_rest: bool = True, safety_secs: float = FULL_TRADE_SYNC_SECS) -> None:
    """The position's trades are booked: by a REST read (the safety read's clock restarts: ``safety_secs``) or
    from the order stream's pushes (the clock runs on)."""
    r = get_redis()
    pipe = r.pipeline()
    pipe.delete(_trades_key(position_id))
    if by_rest:
        pipe.set(keys.trades_recent(position_id), "1", px=int(safety_secs * 1000))
    pipe.execute()
