"""No self-trades: what the pipeline's check (``risk.checks.self_trade_denials``) is handed, and the guard
that makes it hold between bots.

The account's resting orders on a pair come from two places: the driver's account view (every open
order the venue listed, hand-placed ones included: ``from_view``, what a quiet check decides on, no
I/O) and the Order rows of the account's other bots (``from_rows``: PENDING ones too, stored before
they are sent). A bot reads the rows, decides and stores its new orders under ``QuoteGuard``, one
Redis lock per (account, pair), so two bots of one account never both place orders that cross each
other. The venue's self-trade prevention (``exchanges.venues``, sent with every placement) is the
backstop where the venue offers one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from bots.engine import keys
from bots.engine.client_ids import client_id_prefix
from bots.engine.rows import other_bots_open_orders
from mmplatform.redis_client import get_redis
from risk.checks import RestingOrder

GUARD_WAIT_SECS = 2.0

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


def from_rows(bot_id: int, account_id: int, pair: str) -> list[RestingOrder]:
    """The open Order rows of the account's other bots on ``pair`` (stored, sent or being cancelled)."""
    return [RestingOrder(side, float(price), f"bot {other}")  # type: ignore[arg-type]
            for side, price, other in other_bots_open_orders(bot_id, account_id, pair)]


def from_view(bot_id: int, orders: Iterable[Any], pair: str) -> tuple[RestingOrder, ...]:
    """The venue's open orders of the account on ``pair`` (an account view's ``ExchangeOrder``s) that are
    not this bot's."""
    mine = client_id_prefix(bot_id)
    return tuple(resting_of(order) for order in orders if order.pair == pair and order.price is not None
                 and not (order.client_order_id or "").startswith(mine))


def resting_of(order: Any) -> RestingOrder:
    """A listed order (``ExchangeOrder``, with a price) as the no-self-trade check reads it, with its owner
    as an operator reads it (the bot its client id names, or not a bot's). The driver groups these once
    per account view for all its bots (``shared_views.AccountIndex``)."""
    cid = order.client_order_id or ""
    owner = f"bot {cid.split('-')[1]}" if cid.startswith("mm-") else "an order not placed by a bot"
    return RestingOrder(order.side, float(order.price), owner)


def merged(*groups: Iterable[RestingOrder]) -> tuple[RestingOrder, ...]:
    """Resting orders of several sources, each (side, price, owner) once."""
    return tuple(dict.fromkeys(order for group in groups for order in group))


_local_locks: dict[str, threading.Lock] = {}
_local_locks_lock = threading.Lock()


def _local_lock(key: str) -> threading.Lock:
    """The process's own lock for a guard key (created once, kept: one per account and pair)."""
    lock = _local_locks.get(key)
    if lock is None:
        with _local_locks_lock:
            lock = _local_locks.setdefault(key, threading.Lock())
    return lock


class QuoteGuard:
    """One bot at a time decides and stores new orders on an (account, pair): SET NX PX, token-checked
    release (``keys.quote_guard``). ``release`` may be called any number of times.

    The bots of one (account, pair) in one worker process queue on a ``threading.Lock`` of the process
    first, so only one thread per process polls Redis for the guard (the others sleep in the lock, costing
    no CPU and no Redis round trips); the poll backs off from 2 ms to 20 ms."""

    def __init__(self, account_id: int, pair: str):
        self.key = keys.quote_guard(account_id, pair)
        self.token = uuid.uuid4().hex
        self.held = False
        self._local: threading.Lock | None = None

    def acquire(self, wait_secs: float = GUARD_WAIT_SECS) -> bool:
        deadline = time.monotonic() + wait_secs
        local = _local_lock(self.key)
        if not local.acquire(timeout=wait_secs):
            return False
        r = get_redis()
        pause = 0.002
        while not r.set(self.key, self.token, nx=True, px=keys.GUARD_TTL_MS):
            if time.monotonic() >= deadline:
                local.release()
                return False
            time.sleep(pause)
            pause = min(pause * 1.5, 0.02)
        self._local = local
        self.held = True
        return True

    def handed_over(self) -> tuple[str, str] | None:
        """(key, token) for another Redis step to delete the guard with (``lease.check_send``); None if not
        held. ``released_elsewhere`` once that step ran."""
        return (self.key, self.token) if self.held else None

    def released_elsewhere(self) -> None:
        """The key was deleted (by the step ``handed_over`` fed, or by ``release``): the hold is forgotten and
        the process's lock released."""
        if self.held:
            self.held = False
            local, self._local = self._local, None
            if local is not None:
                local.release()

    def release(self) -> None:
        if self.held:
            try:
                get_redis().eval(_RELEASE, 1, self.key, self.token)
            finally:
                self.released_elsewhere()  # (not held any more, the process's lock released, even if it failed)
