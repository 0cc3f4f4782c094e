"""A per-bot Redis lease: at most one cycle (or start/stop/kill) of a bot runs at a time, on any
number of worker processes and machines. Token-checked release, so a lease that expired and was
taken by another worker is never released by the old holder."""

from __future__ import annotations

import time
import uuid

from mmplatform.redis_client import get_redis

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class BotLease:
    def __init__(self, bot_id: int, ttl_secs: float):
        self.key = f"mm:lease:bot:{bot_id}"
        self.token = uuid.uuid4().hex
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

    def extend(self) -> bool:
        return bool(get_redis().eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        if self.held:
            get_redis().eval(_RELEASE, 1, self.key, self.token)
            self.held = False

    @staticmethod
    def is_held(bot_id: int) -> bool:
        return bool(get_redis().exists(f"mm:lease:bot:{bot_id}"))


def chain_key(bot_id: int) -> str:
    return f"mm:chain:bot:{bot_id}"


def new_chain(bot_id: int) -> str:
    """Start a new cycle chain for the bot; any older chain dies at its next cycle."""
    chain = uuid.uuid4().hex[:16]
    get_redis().set(chain_key(bot_id), chain)
    return chain


def current_chain(bot_id: int) -> str | None:
    raw = get_redis().get(chain_key(bot_id))
    return raw.decode() if raw else None


def record_cycle(bot_id: int, scheduled_at: float, started_at: float, finished_at: float, worker: str) -> None:
    """Cycle start/end records (capped list) for overlap checks and lag benchmarks."""
    r = get_redis()
    key = f"mm:cycles:bot:{bot_id}"
    pipe = r.pipeline()
    pipe.lpush(key, f"{scheduled_at:.6f} {started_at:.6f} {finished_at:.6f} {worker}")
    pipe.ltrim(key, 0, 999)
    pipe.execute()


def cycle_records(bot_id: int) -> list[tuple[float, float, float, str]]:
    rows = get_redis().lrange(f"mm:cycles:bot:{bot_id}", 0, -1)
    out = []
    for row in reversed(rows):
        scheduled, started, finished, worker = row.decode().split(" ", 3)
        out.append((float(scheduled), float(started), float(finished), worker))
    return out
