"""Request budgets per exchange account: a Redis token bucket shared by every worker process, and an
in-process fallback used only when no Redis is configured.

Both are reservation buckets: ``acquire()`` takes a token now (the balance may go negative) and sleeps
for the time the debt needs to refill, so concurrent callers queue fairly without polling Redis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

# KEYS[1] bucket; ARGV rate per second, burst, tokens requested. Uses the server clock (TIME) so
# workers on different machines agree. Returns the wait in milliseconds (as a string: Lua numbers
# returned to Redis are truncated to integers).
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
end
tokens = tokens - requested
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local wait = 0
if tokens < 0 then
  wait = -tokens * 1000 / rate
end
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate + wait) + 1000)
return tostring(wait)
"""


class RateLimiter(Protocol):
    """Waits until one more request fits in the account's budget."""

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, sleeping as long as needed; returns the seconds waited."""
        ...


def _check(rate_per_sec: float, burst: float) -> None:
    if not rate_per_sec > 0:
        raise ValueError(f"rate_per_sec must be > 0, got {rate_per_sec}")
    if not burst >= 1:
        raise ValueError(f"burst must be >= 1, got {burst}")


class RedisTokenBucket:
    """A token bucket in Redis (atomic Lua), keyed by account, shared by every process using ``key``.

    ``redis`` is a ``redis.asyncio.Redis`` client or a URL; with a URL a client is made per event loop
    (redis.asyncio connections are bound to the loop that opened them).
    """

    def __init__(self, redis: object, key: str, rate_per_sec: float, burst: float | None = None):
        burst = burst if burst is not None else max(1.0, rate_per_sec)
        _check(rate_per_sec, burst)
        self.key = key
        self.rate_per_sec = rate_per_sec
        self.burst = burst
        self._url = redis if isinstance(redis, str) else None
        self._client = None if isinstance(redis, str) else redis
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, object]] = {}
        self._scripts: dict[int, object] = {}

    def _redis(self):
        if self._client is not None:
            return self._client
        import redis.asyncio as redis_asyncio

        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        for key in [k for k, (other, _) in self._clients.items() if other.is_closed()]:
            self._scripts.pop(id(self._clients.pop(key)[1]), None)
        client = redis_asyncio.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5)
        self._clients[id(loop)] = (loop, client)
        return client

    async def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens without sleeping; returns the seconds the caller must wait."""
        client = self._redis()
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(_TOKEN_BUCKET_LUA)  # EVALSHA
        wait_ms = await script(keys=[self.key], args=[self.rate_per_sec, self.burst, cost])
        return float(wait_ms) / 1000.0

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, sleeping as long as the bucket says; returns the seconds waited."""
        wait = await self.reserve(cost)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def close(self) -> None:
        """Close the clients this bucket opened from a URL (not a client passed in)."""
        clients, self._clients = self._clients, {}
        self._scripts = {}
        current = asyncio.get_running_loop()
        for loop, client in clients.values():
            if loop is current:
                await client.aclose()


class LocalTokenBucket:
    """The same reservation bucket in process memory (no Redis configured: one process only)."""

    def __init__(self, rate_per_sec: float, burst: float | None = None, clock=time.monotonic):
        burst = burst if burst is not None else max(1.0, rate_per_sec)
        _check(rate_per_sec, burst)
        self.rate_per_sec = rate_per_sec
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens now; returns the seconds the caller must wait."""
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_sec)
            self._stamp = now
        self._tokens -= cost
        return -self._tokens / self.rate_per_sec if self._tokens < 0 else 0.0

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, sleeping as needed; returns the seconds waited."""
        wait = self.reserve(cost)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait
