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
from bots.engine.lease import _RELEASE
from bots.engine.rows import other_bots_open_orders
from mmplatform.redis_client import get_redis
from risk.checks import RestingOrder

GUARD_WAIT_SECS = 2.0


def from_rows(bot_id: int, account_id: int, pair: str) -> list[RestingOrder]:
    """The open Order rows of the account's other bots on ``pair`` (stored, sent or being cancelled)."""
    return resting_from(other_bots_open_orders(bot_id, account_id, pair))


def resting_from(rows: Iterable[tuple[str, object, int]]) -> list[RestingOrder]:
    """(side, price, bot id) of other bots' open rows (``rows.other_bots_open_orders``) as the check reads them."""
    return [RestingOrder(side, float(price), f"bot {other}")  # type: ignore[arg-type]
            for side, price, other in rows]


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


_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""

HANDOFFS_MAX = 8
"""A process hands its hold of an (account, pair)'s guard key from one of its bots to the next at most this many
times in a row; then the key is deleted and taken again (another process's bots get their turn)."""


class _ProcessHold:
    """One (account, pair) guard in this process: the lock its threads queue on, how many queue, and the Redis
    key's token while the process holds the key across bots (the lock's holder alone reads or writes it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = 0  # threads waiting for ``lock`` (under ``_holds_lock``)
        self.token: str | None = None  # the key's token while this process holds it between two of its bots
        self.since = 0.0  # when the key was set or its TTL renewed (monotonic)
        self.takes = 0  # bots that took the key since it was set


_holds: dict[str, _ProcessHold] = {}
_holds_lock = threading.Lock()


def _process_hold(key: str) -> _ProcessHold:
    """The process's state for a guard key (created once, kept: one per account and pair)."""
    hold = _holds.get(key)
    if hold is None:
        with _holds_lock:
            hold = _holds.setdefault(key, _ProcessHold())
    return hold


class QuoteGuard:
    """One bot at a time decides and stores new orders on an (account, pair): SET NX PX, token-checked
    release (``keys.quote_guard``). ``release`` may be called any number of times.

    The bots of one (account, pair) in one worker process queue on a ``threading.Lock`` of the process
    first, so only one thread per process polls Redis for the guard (the others sleep in the lock, costing
    no CPU and no Redis round trips); the poll backs off from 2 ms to 20 ms. A bot whose rows are stored hands
    the process's hold of the key to the next bot of the process waiting for it (``hand_over_locally``):
    the key stays set, no Redis round trip on either side, up to ``HANDOFFS_MAX`` bots in a row."""

    def __init__(self, account_id: int, pair: str):
        self.key = keys.quote_guard(account_id, pair)
        self.token = uuid.uuid4().hex
        self.held = False
        self._hold: _ProcessHold | None = None

    def acquire(self, wait_secs: float = GUARD_WAIT_SECS) -> bool:
        deadline = time.monotonic() + wait_secs
        hold = _process_hold(self.key)
        with _holds_lock:
            hold.waiting += 1
        try:
            if not hold.lock.acquire(timeout=wait_secs):
                return False
        finally:
            with _holds_lock:
                hold.waiting -= 1
        r = get_redis()
        if hold.token is not None:  # handed over by the process's previous holder: the key is the process's
            young = time.monotonic() - hold.since < keys.GUARD_TTL_MS / 2000
            if young or r.eval(_REFRESH, 1, self.key, hold.token, keys.GUARD_TTL_MS):
                if not young:  # its TTL renewed by token
                    hold.since = time.monotonic()
                self.token, hold.takes = hold.token, hold.takes + 1
                self._hold, self.held = hold, True
                return True
            hold.token = None  # expired meanwhile (a stalled thread): taken again like any other
        pause = 0.002
        while not r.set(self.key, self.token, nx=True, px=keys.GUARD_TTL_MS):
            if time.monotonic() >= deadline:
                hold.lock.release()
                return False
            time.sleep(pause)
            pause = min(pause * 1.5, 0.02)
        hold.token, hold.since, hold.takes = self.token, time.monotonic(), 1
        self._hold, self.held = hold, True
        return True

    def hand_over_locally(self) -> bool:
        """The new rows are stored: if another bot of this process waits for the guard, it takes the process's
        hold of the key now (nothing deleted, nothing set again); False (still held) when none waits or the
        process handed it over ``HANDOFFS_MAX`` times in a row (then it goes as usual: the send gate's step
        or ``release`` deletes it)."""
        hold = self._hold
        if not self.held or hold is None or hold.waiting == 0 or hold.takes >= HANDOFFS_MAX:
            return False
        self.held, self._hold = False, None
        hold.lock.release()  # (hold.token stays: the next holder in this process takes it over)
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
            hold, self._hold = self._hold, None
            if hold is not None:
                hold.token = None
                hold.lock.release()

    def release(self) -> None:
        if self.held and not self.hand_over_locally():
            try:
                get_redis().eval(_RELEASE, 1, self.key, self.token)
            finally:
                self.released_elsewhere()  # (not held any more, the process's lock released, even if it failed)
