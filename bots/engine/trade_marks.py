"""Which positions' trades a fill sync must read, kept in Redis: the trades-pending mark (an order of the position
gained fills) and the recent-read flag whose expiry makes the periodic safety read by REST due
(``bots/engine/keys.py``: ``mm:trades:pending:*``, ``mm:trades:recent:*``). Read and written by the order sync
(``bots/engine/fills.py``, ``orders.py``).

Under a live order stream the safety read is one per exchange account and pair, not one per position: the ~10
bots quoting a pair on one account each read the same trade history by REST every minute before. The position
whose sync finds the pair's check due (``mm:trades:checked:<account>:<pair>`` expired) reads the pair's trades
from the pair's check mark on (``mm:trades:through:<account>:<pair>``: every trade of the pair before it is
booked or owed), books its own and looks up the others': a trade of another bot's order that has no Fill row
``OWED_GRACE_MS`` after it happened makes that bot's position owe a REST read from where that check's read
started (``mm:trades:owed:<position>``, with the pending mark). So every trade of the pair is still read by REST within
a minute and a trade the pushes missed is booked by its own bot, with a tenth of the reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from bots.engine import keys
from bots.engine.lease import _RELEASE
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


OWED_GRACE_MS = 30_000
"""A trade of another bot's order is judged by a pair's shared safety read only once it is this old (its own fill
sync books a pushed trade within milliseconds; a younger one is read again by the next check)."""

PAIR_THROUGH_TTL_SECS = 3600
"""The pair's check mark is kept this long after the last check (without it a read starts at its position's own
last REST read)."""


class TradeSyncState(NamedTuple):
    """What a fill sync owes its position's trades (``trade_sync_state``)."""

    pending: bool  # an order of the position gained fills whose trades are not booked yet
    safety_due: bool  # the periodic safety read by REST is due (also the first time)
    mark_ms: int | None  # the pair's check mark (``shared`` only): every trade of the pair before it is booked or owed
    owed_ms: int | None  # another bot's check found a trade of this position unbooked: read from here (by REST)


def trade_sync_state(position_id: int, marks: Iterable[int] = (), shared: tuple[int, str] | None = None
                     ) -> TradeSyncState:
    """The position's state; the positions in ``marks`` are marked trades-pending first, in the same round trip.
    ``shared``: (exchange account, pair) of a position under a live order stream, whose safety read is the
    pair's: due when the position owes a read, or when neither the pair was checked nor the position read its own
    trades within their intervals -- then this sync claims the pair's check, which no other sync finds due."""
    r = get_redis()
    pipe = r.pipeline()
    for marked in marks:
        pipe.set(_trades_key(marked), "1")
    pipe.exists(_trades_key(position_id))
    if shared is None:
        pipe.exists(keys.trades_recent(position_id))
        *_, pending, recent = pipe.execute()
        return TradeSyncState(bool(pending), not recent, None, None)
    pipe.get(keys.trades_owed(position_id))
    # the pair's check is claimed by the first sync that finds it due: a burst of fills syncs the pair's ~10 bots at
    # once, and each would read it (the claim lapses after CLAIM_MS if that sync fails before its read is done)
    pipe.eval(_CLAIM_SCRIPT, 2, keys.trades_recent(position_id), keys.trades_checked(*shared), CLAIM_MS)
    pipe.get(keys.trades_through(*shared))
    *_, pending, owed, claimed, through = pipe.execute()
    return TradeSyncState(bool(pending), owed is not None or bool(claimed), None if through is None else int(through),
                          None if owed is None else int(owed))


CLAIM_MS = 30_000
"""A claimed pair check not done (``pair_checked``) within this is due again."""

_CLAIM_SCRIPT = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
if redis.call('set', KEYS[2], 'claimed', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""


def pair_checked(account_id: int, pair: str, since_ms: int, through_ms: int, owed: Iterable[int]) -> None:
    """A position's REST read from ``since_ms`` checked every trade of the account's pair before ``through_ms``:
    the pair's next safety read is due in ``PUSHED_TRADE_SAFETY_SECS`` and starts there; the positions ``owed``
    (another bot's trade without a Fill row) read theirs by REST from ``since_ms`` at their next sync (an earlier
    check's debt, older, is kept)."""
    r = get_redis()
    pipe = r.pipeline()
    for position_id in owed:
        pipe.set(keys.trades_owed(position_id), str(since_ms), nx=True)
        pipe.set(_trades_key(position_id), "1")
    pipe.set(keys.trades_checked(account_id, pair), "1", px=int(PUSHED_TRADE_SAFETY_SECS * 1000))
    pipe.set(keys.trades_through(account_id, pair), str(through_ms), ex=PAIR_THROUGH_TTL_SECS)
    pipe.execute()


def trades_synced_in(batch: Any, position_id: int) -> None:
    """``trades_synced`` of pushed trades (no REST read, no debt paid: only the trades-pending mark goes) written
    into ``batch`` (a ``WriteBatch`` or a pipeline): a fill sync on a kept engine sends it with the cycle's record
    and its lease's release (``gate.end_kept_cycle``), one Redis round trip fewer per fill sync. The mark goes
    later than the booking, in the same cycle: whatever sets it meanwhile (another bot's pair check owing this
    position a read) also leaves its own debt key (``trades_owed``), which the next sync reads."""
    batch.delete(_trades_key(position_id))


def trades_synced(position_id: int, *, by_rest: bool = True, safety_secs: float = FULL_TRADE_SYNC_SECS,
                  owed_paid: int | None = None) -> None:
    """The position's trades are booked: by a REST read (the safety read's clock restarts: ``safety_secs``) or
    from the order stream's pushes (the clock runs on). ``owed_paid``: the debt (``TradeSyncState.owed_ms``) a
    REST read from there paid (deleted unless another check set a new one meanwhile)."""
    r = get_redis()
    pipe = r.pipeline()
    pipe.delete(_trades_key(position_id))
    if owed_paid is not None:
        pipe.eval(_RELEASE, 1, keys.trades_owed(position_id), str(owed_paid))  # (only the debt it paid)
    if by_rest:
        pipe.set(keys.trades_recent(position_id), "1", px=int(safety_secs * 1000))
    pipe.execute()
