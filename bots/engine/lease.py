"""A per-bot Redis lease: at most one cycle (or start/stop/kill) of a bot runs at a time, on any
number of worker processes and machines. Token-checked release, so a lease that expired and was
taken by another worker is never released by the old holder.

The send fence: a kill, stop or pause first fences the bot's sends in Redis (``fence_sends``: no order of
an epoch at or below the fenced one may be sent), then takes the bot's lease, so a cycle in flight
finishes before the kill commits. Every placement checks the fence and its own lease in one atomic step
right before it sends (``check_send``); a start's new epoch is above the fence, so nothing needs to be
cleared.

Queued and started: the driver's checks take their leases with a check token (``check_token``: ``q:``).
A cycle the driver hands to its pool marks its lease started when a pool thread picks it up
(``BotLease.start``, which sets ``keys.lease_started`` to the token). A halt (``hold_leases`` with a
``halt_token``: ``h:``) takes at once a check's lease that no cycle has started: that cycle has done
nothing yet and finds the halt's token at its start (``HaltedError``, before any row or venue call).
It waits only for a cycle that has started."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from bots.engine import keys
from mmplatform.errors import MarketMakingError
from mmplatform.redis_client import RECORD, SPLIT_LUA, WriteBatch, get_redis, joined, text

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class BotLease:
    def __init__(self, bot_id: int, ttl_secs: float, token: str | None = None):
        self.bot_id = bot_id
        self.key = keys.lease(bot_id)
        self.token = token or uuid.uuid4().hex  # a driver's tick shares one fresh token among its bots' leases
        self.ttl_ms = max(int(ttl_secs * 1000), 1000)
        self.held = False

    def acquire(self, wait_secs: float = 0.0) -> bool:
        r = get_redis()
        deadline = time.monotonic() + wait_secs
        while True:
            if r.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self.held = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def start(self) -> None:
        """A pool thread picks up the cycle this lease was taken for: mark it started (a halt waits for
        it from now on) if the lease is still this token's, in one atomic step. Raises HaltedError when a
        halt took the lease while the cycle was queued, LeaseLostError when anyone else holds it."""
        verdict = get_redis().eval(_START, 2, self.key, keys.lease_started(self.bot_id), self.token, self.ttl_ms,
                                   HALT_PREFIX)
        if verdict == -1:
            self.held = False
            raise HaltedError(f"bot {self.bot_id}: killed, stopped or paused while its cycle was queued; "
                              "the cycle does nothing")
        if verdict == 0:
            self.held = False
            raise LeaseLostError(f"bot {self.bot_id}: the queued cycle's lease is gone; the cycle does nothing")

    def extend(self) -> bool:
        return bool(get_redis().eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        if self.held:
            get_redis().eval(_RELEASE, 1, self.key, self.token)
            self.held = False

    def release_on(self, batch: WriteBatch) -> None:
        """Release with ``batch`` (the driver's quiet cycles: every lease of a tick in one round trip)."""
        if self.held:
            batch.release(self.key, self.token)
            self.held = False

    @staticmethod
    def is_held(bot_id: int) -> bool:
        return bool(get_redis().exists(keys.lease(bot_id)))


class LeaseLostError(MarketMakingError):
    """The cycle's lease expired (another worker may own the bot now): stop acting at once."""


class FencedError(MarketMakingError):
    """The bot was killed, stopped, paused or restarted since this cycle began: it sends nothing."""


class HaltedError(FencedError):
    """A kill, stop or pause took the lease of a cycle still queued on the pool: the cycle does nothing."""


CHECK_PREFIX = "q:"
"""The tokens of the driver's checks: a lease with one that no cycle has started (``keys.lease_started``)
is a check's or a queued cycle's, which a halt takes without waiting."""
HALT_PREFIX = "h:"
"""The tokens of a kill's, stop's or pause's leases (``services._halting``)."""


def check_token() -> str:
    """A fresh token for a driver tick's check leases."""
    return CHECK_PREFIX + uuid.uuid4().hex


def halt_token() -> str:
    """A fresh token for a halt's leases."""
    return HALT_PREFIX + uuid.uuid4().hex


HALTED_MARK_SECS = 600
"""How long a halt's mark on the lease it took from a queued cycle lives (``keys.lease_started``): that
cycle, however long it still waits in the queue, is told it was halted rather than that its lease is gone."""

# KEYS[1] the lease, KEYS[2] the started mark; ARGV[1] the cycle's token, ARGV[2] ttl ms, ARGV[3] the halt
# prefix. 1: the lease is the token's and is now marked started; -1: a halt took it (and may have released
# it since: its mark says so) or holds it; 0: the lease is gone or anyone else holds it.
_START = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then
  redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
if redis.call('get', KEYS[2]) == 'halted:' .. ARGV[1] then return -1 end
if v and string.sub(v, 1, string.len(ARGV[3])) == ARGV[3] then return -1 end
return 0
"""

# KEYS[1] the lease, KEYS[2] its started mark; ARGV[1] the halt's token, ARGV[2] ttl ms, ARGV[3] the check
# prefix, ARGV[4] the halted mark's ttl ms. 1: taken (free); 2: taken from a check or a queued cycle (a
# check token no cycle has started; the mark "halted:<its token>" tells that cycle at its start);
# 0: a started cycle or another holder keeps it.
_HOLD = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local v = redis.call('get', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[3])) == ARGV[3] and redis.call('get', KEYS[2]) ~= v then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('set', KEYS[2], 'halted:' .. v, 'PX', ARGV[4])
  return 2
end
return 0
"""


def fence_key(bot: Any) -> str:
    """One key per bot row's life (its id and creation time: an id a test database hands out again
    never inherits an old bot's fence)."""
    return keys.fence(bot.pk, int(bot.created_at.timestamp() * 1_000_000))


_FENCE = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('set', KEYS[1], ARGV[1]) end
return 1
"""

_CHECK_SEND = """
if ARGV[4] ~= '' and redis.call('get', KEYS[3]) == ARGV[4] then redis.call('del', KEYS[3]) end
if tonumber(ARGV[1]) <= tonumber(redis.call('get', KEYS[1]) or '-1') then return -1 end
if ARGV[2] ~= '' then
  if redis.call('get', KEYS[2]) ~= ARGV[2] then return 0 end
  redis.call('pexpire', KEYS[2], ARGV[3])
end
return 1
"""


def fence_sends(fences: Iterable[tuple[Any, int]]) -> None:
    """From now on no order of these bots at an epoch <= the given one is sent (one pipeline; a fence
    only ever rises)."""
    pipe = get_redis().pipeline(transaction=False)
    for bot, epoch in fences:
        pipe.eval(_FENCE, 1, fence_key(bot), int(epoch))
    pipe.execute()


def check_send(bot: Any, epoch: int, lease: BotLease | None, release: tuple[str, str] | None = None) -> None:
    """Right before orders are sent: the bot is not fenced at ``epoch`` and this cycle still holds its
    lease (extended here), checked in one atomic step. Raises FencedError or LeaseLostError.
    ``release``: a (key, token) the same step deletes first if it still holds the token, whatever the
    verdict (a quote guard whose rows are stored: ``self_trades.QuoteGuard.handed_over``)."""
    token, ttl = (lease.token, lease.ttl_ms) if lease is not None else ("", 0)
    guard_key, guard_token = release or (keys.lease(bot.pk), "")
    verdict = get_redis().eval(_CHECK_SEND, 3, fence_key(bot), keys.lease(bot.pk), guard_key, int(epoch), token, ttl,
                               guard_token)
    if verdict == -1:
        raise FencedError(f"bot {bot.pk}: killed, stopped or paused (epoch {epoch} is fenced); nothing is sent")
    if verdict == 0:
        raise LeaseLostError(f"bot {bot.pk}: the cycle lost its lease; nothing more is sent")


def hold_leases(leases: list[BotLease], wait_secs: float) -> list[BotLease]:
    """A halt's leases (fenced first, ``fence_sends``): take every lease, at once from a check or a cycle
    still queued on a driver's pool (one no pool thread has started: it finds the halt's token when it
    does, ``BotLease.start``), and waiting up to ``wait_secs`` in all for the started cycles that hold
    the others to end. Returns the leases held (the others' holders outlived the wait)."""
    r = get_redis()
    pending = list(leases)
    deadline = time.monotonic() + wait_secs
    while True:
        pipe = r.pipeline(transaction=False)
        for lease in pending:
            pipe.eval(_HOLD, 2, lease.key, keys.lease_started(lease.bot_id), lease.token, lease.ttl_ms, CHECK_PREFIX,
                      HALTED_MARK_SECS * 1000)
        for lease, got in zip(pending, pipe.execute(), strict=True):
            lease.held = bool(got)
        pending = [lease for lease in pending if not lease.held]
        if not pending or time.monotonic() >= deadline:
            return [lease for lease in leases if lease.held]
        time.sleep(0.005)


# ARGV[1] the token; ARGV[2] one record per bot (``redis_client.joined``): lease key, chain key, flag key,
# ttl ms. One line per bot, "<got><flag><chain>": got 1 when the lease was taken (SET NX PX), flag 1 when
# the flag key exists, then the chain ('' if none).
_TAKE_FOR_CHECKS = SPLIT_LUA + """
local out = {}
for record in string.gmatch(ARGV[2], '[^\\30]+') do
  local f = fields(record)
  local got = redis.call('set', f[1], ARGV[1], 'NX', 'PX', f[4])
  local chain = redis.call('get', f[2]) or ''
  out[#out + 1] = (got and '1' or '0') .. redis.call('exists', f[3]) .. chain
end
return table.concat(out, '\\n')
"""


# ARGV[1] one record per lease (``redis_client.joined``): key, token, ttl ms, started-mark key. Returns one
# character per lease: 1 when it still held the token (and was extended, with its started mark), 0 when not.
_EXTEND_MANY = SPLIT_LUA + """
local out = {}
for record in string.gmatch(ARGV[1], '[^\\30]+') do
  local f = fields(record)
  if redis.call('get', f[1]) == f[2] then
    redis.call('pexpire', f[1], f[3])
    if redis.call('get', f[4]) == f[2] then redis.call('pexpire', f[4], f[3]) end
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
return table.concat(out)
"""


def extend_leases(leases: list[BotLease]) -> list[bool]:
    """Extend every lease still held by its token, in one command (the driver's heartbeat for the cycles
    queued on its pool: a cycle keeps the lease its check took until it has run, however long it
    waited; a started cycle's mark lives as long, so a halt keeps waiting for it). Returns, per lease,
    whether it was still held."""
    if not leases:
        return []
    program = RECORD.join(joined(lease.key, lease.token, lease.ttl_ms, keys.lease_started(lease.bot_id))
                          for lease in leases)
    reply = text(get_redis().eval(_EXTEND_MANY, 0, program))
    return [flag == "1" for flag in reply]


def take_for_checks(leases: list[BotLease], flags: list[str]) -> list[tuple[bool, str | None, bool]]:
    """The engine driver's tick: each due bot's lease (SET NX; ``held`` set on the ones taken), its chain and
    whether its ``flags`` key exists (the daily reset), for every bot in one command, one argument and
    one reply (the leases share one token). Returns (taken, chain or None, flag set) per lease."""
    if not leases:
        return []
    token = leases[0].token
    if any(lease.token != token for lease in leases):
        raise ValueError("take_for_checks: the leases of one call share one token")
    program = RECORD.join(joined(lease.key, chain_key(lease.bot_id), flag, lease.ttl_ms)
                          for lease, flag in zip(leases, flags, strict=True))
    lines = text(get_redis().eval(_TAKE_FOR_CHECKS, 0, token, program)).split("\n")
    out = []
    for lease, line in zip(leases, lines, strict=True):
        lease.held = line[0] == "1"
        out.append((lease.held, line[2:] or None, line[1] == "1"))
    return out


def chain_key(bot_id: int) -> str:
    return keys.chain(bot_id)


def new_chain(bot_id: int) -> str:
    """Start a new cycle chain for the bot; any older chain dies at its next cycle."""
    chain = uuid.uuid4().hex[:16]
    get_redis().set(chain_key(bot_id), chain)
    return chain


def current_chain(bot_id: int) -> str | None:
    raw = get_redis().get(chain_key(bot_id))
    return text(raw) if raw else None


def record_cycle(bot_id: int, scheduled_at: float, started_at: float, finished_at: float, worker: str) -> None:
    """Cycle start/end records (capped list) for overlap checks and lag benchmarks."""
    pipe = get_redis().pipeline()
    add_cycle_record(pipe, bot_id, scheduled_at, started_at, finished_at, worker)
    pipe.execute()


def add_cycle_record(pipe: Any, bot_id: int, scheduled_at: float, started_at: float, finished_at: float,
                     worker: str) -> None:
    """The one writer of ``keys.cycles``, on ``pipe`` (a cycle's ``record_cycle``, or the driver's quiet
    cycles in one pipeline)."""
    key = keys.cycles(bot_id)
    pipe.lpush(key, f"{scheduled_at:.6f} {started_at:.6f} {finished_at:.6f} {worker}")  # (or a WriteBatch)
    pipe.ltrim(key, 0, keys.CYCLE_RECORDS - 1)


def cycle_records(bot_id: int) -> list[tuple[float, float, float, str]]:
    rows = get_redis().lrange(keys.cycles(bot_id), 0, -1)
    out = []
    for row in reversed(rows):
        scheduled, started, finished, worker = text(row).split(" ", 3)
        out.append((float(scheduled), float(started), float(finished), worker))
    return out
