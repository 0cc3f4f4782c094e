"""Why a running bot does not quote a pair, as the engine last decided it.

The engine decides per pair and per cycle whether it quotes (``MarketMakingBot.decide_quotes``, the
same function for a full cycle and the driver's quiet check, and ``_quote`` for a bad book). At each
decision it calls ``note(bot, pair, reason)``: a reason when the pair gets no order, ``None`` when it
does. The current reasons live in one Redis hash per bot (``mm:quoting:<bot>``, pair -> reason); a
change is written and pushed to the dashboard (kind ``quoting``) at once, an unchanged reason is
re-written every ``REFRESH_SECS`` (so the hash's TTL never lapses while a bot runs; the process's due
re-writes go together, at most every ``REFRESH_BATCH_SECS``), and the
hash expires ``TTL_SECS`` after the last decision (a bot no longer run by any engine shows nothing).

A config change is a full cycle on a new engine object, which decides again: a reason that no longer
holds is cleared within one cycle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bots.engine import keys
from bots.wire import slot_name

__all__ = ["current", "forget", "key", "note", "reason_for", "slot_name"]
from mmplatform.redis_client import get_redis

REFRESH_SECS = 20.0
TTL_SECS = 120
NO_ORDER = "no order fits the balances and the order size limits"

REFRESH_BATCH_SECS = 5.0
"""Unchanged reasons due for their re-write are gathered and written together, at most this often (one
round trip for all of them instead of one per pair: on the engine driver's thread each round trip also
gives up the GIL, ~a third of that thread at calm N=1,500)."""

_lock = threading.Lock()
_written: dict[tuple[int, str], tuple[str | None, float]] = {}
"""(bot, pair) -> (reason, when this process wrote it): the process's memory of what Redis holds."""
_refresh: dict[tuple[int, str], str | None] = {}
"""(bot, pair) -> the unchanged reason to re-write with the next batch (``REFRESH_BATCH_SECS``)."""
_refresh_sent = [0.0]  # when the last batch of re-writes left (monotonic)


def key(bot_id: int) -> str:
    return keys.quoting(bot_id)


def reason_for(*, pause_reason: str | None, intents: Sequence[Any], valid: Sequence[Any],
               allowed: Sequence[Any], denied: Sequence[Any]) -> str | None:
    """Why a decision quotes nothing (None when it quotes at least one order): the strategy's own
    reason, the validation, or the pre-trade checks' first denial."""
    if allowed:
        return None
    if not intents:
        return pause_reason or NO_ORDER
    if not valid:
        return "every order the strategy wants is outside the min/max order size"
    if denied:
        first = getattr(denied[0], "reason", str(denied[0]))
        return f"every order was denied by the risk checks ({first})"
    return NO_ORDER


def note(bot: Any, pair: str, reason: str | None) -> None:
    """Record the engine's decision for one pair; on a change, push the bot's current reasons."""
    now = time.monotonic()
    cache_key = (bot.pk, pair)
    with _lock:
        previous = _written.get(cache_key)
        if previous is not None and previous[0] == reason:
            if now - previous[1] < REFRESH_SECS:
                return
            # unchanged, only due for its re-write (the hash's TTL): with the next batch
            _written[cache_key] = (reason, now)
            _refresh[cache_key] = reason
            if now - _refresh_sent[0] < REFRESH_BATCH_SECS:
                return
            batch = dict(_refresh)
            _refresh.clear()
            _refresh_sent[0] = now
        else:
            _written[cache_key] = (reason, now)
            _refresh.pop(cache_key, None)  # a change is written now: never an older reason after it
            batch = None
    if batch is not None:
        _rewrite(batch)
        return
    pipe = get_redis().pipeline()
    pipe.hget(key(bot.pk), pair)
    if reason is None:
        pipe.hdel(key(bot.pk), pair)
    else:
        pipe.hset(key(bot.pk), pair, reason[:500])
    pipe.expire(key(bot.pk), TTL_SECS)
    pipe.hgetall(key(bot.pk))
    stored, *_, current = pipe.execute()
    if (stored.decode() if stored is not None else None) != reason:
        from bots.events import push

        push(tenant_id=bot.tenant_id, bot_id=bot.pk, kind="quoting",
             data={"reasons": {k.decode(): v.decode() for k, v in current.items()}})


def _rewrite(batch: dict[tuple[int, str], str | None]) -> None:
    """Re-write unchanged reasons (and their hashes' TTL) in one round trip. No read-back and no push: a
    reason another process wrote meanwhile is set right here, and the dashboard's live counters, which
    read the hash every few seconds, show it."""
    pipe = get_redis().pipeline(transaction=False)
    for (bot_id, pair), reason in batch.items():
        if reason is None:
            pipe.hdel(key(bot_id), pair)
        else:
            pipe.hset(key(bot_id), pair, reason[:500])
        pipe.expire(key(bot_id), TTL_SECS)
    pipe.execute()


def forget(bot: Any) -> None:
    """The bot stopped: no reason is current any more (pushed so an open page clears at once)."""
    with _lock:
        for cache_key in [k for k in _written if k[0] == bot.pk]:
            del _written[cache_key]
        for cache_key in [k for k in _refresh if k[0] == bot.pk]:
            del _refresh[cache_key]
    if get_redis().delete(key(bot.pk)):
        from bots.events import push

        push(tenant_id=bot.tenant_id, bot_id=bot.pk, kind="quoting", data={"reasons": {}})


def current(bot_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """bot -> {pair: reason} for the bots that do not quote some pair now: one Redis round trip.
    Redis unreachable: nothing (the pages still render)."""
    ids = list(bot_ids)
    if not ids:
        return {}
    try:
        pipe = get_redis().pipeline()
        for bot_id in ids:
            pipe.hgetall(key(bot_id))
        rows = pipe.execute()
    except Exception:
        return {}
    return {bot_id: {k.decode(): v.decode() for k, v in row.items()} for bot_id, row in zip(ids, rows, strict=True)
            if row}
