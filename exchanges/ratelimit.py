"""Request budgets per exchange account: a Redis token bucket shared by every worker process, and an
in-process fallback used only when no Redis is configured.

Both are reservation buckets: ``acquire()`` takes a token now (the balance may go negative) and sleeps
for the time the debt needs to refill, so concurrent callers queue fairly without polling Redis.

Requests of one process that ask at the same moment share one round trip (``RedisTokenBucket.acquire``):
a cancel-and-replace's cancels and placements, a fill sync's reads are sent together (``asyncio.gather``),
and the first of them reserves a token for each of the others in the same script call. Each gets its
own token and wait, exactly what one call each would have got.

A lease (``RedisTokenBucket(lease_secs=...)``, what the gateways use): while the account's shared bucket
is more than half full, the reservation also takes a few tokens for this process's next requests (at
most ``rate × lease_secs``, never below half the burst) and keeps them for ``lease_secs``; those requests
go without a round trip. Near the budget, or while the account is paused, nothing is leased and every
request reserves in Redis. The leased tokens are charged to the shared bucket when taken, and dropped
unused when the lease ends or this process sets a pause, so the account never sends more than the bucket
allows plus one lease (its requests use them at most ``lease_secs`` after they were counted), and a
pause another process sets reaches this one's requests within ``lease_secs``.

``pause(secs)`` is the account-wide back-off: after a 429 / DDoSProtection answer (Retry-After) the
bucket's clock moves past the pause with nothing saved up, so every caller of the account, in every
process, waits out the pause and then resumes at the budget's rate (no burst on resumption).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

# The shared first half of both scripts: KEYS[1] bucket; ARGV[1] rate per second, ARGV[2] burst.
# Uses the server clock (TIME) so workers on different machines agree, and refills the bucket up to
# now. ts is the bucket's clock: in the future while the account is paused (see _PAUSE_LUA).
_REFILL_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
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
  ts = now
end
"""

# ARGV[3] tokens requested. Returns the wait in milliseconds (as a string: Lua numbers returned to
# Redis are truncated to integers).
_TOKEN_BUCKET_LUA = _REFILL_LUA + """
tokens = tokens - tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
local wait = ts - now
if tokens < 0 then
  wait = wait - tokens * 1000 / rate
end
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate + wait) + 1000)
return tostring(wait)
"""

# ARGV[3] tokens to take, ARGV[4] most tokens to lease besides. Returns "<ms until the bucket's clock>
# <tokens before taking> <tokens leased>": token i (1-based) of the batch waits that many ms plus
# max(0, i - tokens before) / rate (what i calls in a row would get). Tokens are leased only from a bucket
# that is not paused and keeps at least half its burst after the batch and the lease.
_TOKEN_BATCH_LUA = _REFILL_LUA + """
local before = tokens
tokens = tokens - tonumber(ARGV[3])
local lease = 0
if ts <= now then
  lease = math.floor(math.min(tonumber(ARGV[4]), tokens - burst / 2))
  if lease < 0 then lease = 0 end
  tokens = tokens - lease
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
local wait = ts - now
local debt = 0
if tokens < 0 then debt = -tokens * 1000 / rate end
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate + wait + debt) + 1000)
return tostring(wait) .. ' ' .. tostring(before) .. ' ' .. tostring(lease)
"""

# ARGV[3] pause in ms. Moves the bucket's clock to now + pause (never back) and drops saved-up
# tokens, so every reservation waits out the pause. Returns the pause left in ms.
_PAUSE_LUA = _REFILL_LUA + """
local pause = tonumber(ARGV[3])
if now + pause > ts then
  ts = now + pause
  tokens = math.min(tokens, 0)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
local left = ts - now
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate + left) + 1000)
return tostring(left)
"""

# KEYS[1] bucket. The pause still ahead, in ms (0 when the account is not paused).
_PAUSE_LEFT_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts'))
if ts == nil or ts <= now then
  return '0'
end
return tostring(ts - now)
"""


class RateLimiter(Protocol):
    """Waits until one more request fits in the account's budget."""

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, sleeping as long as needed; returns the seconds waited."""
        ...

    async def pause(self, secs: float) -> None:
        """Hold every request of the account for ``secs`` (the venue said so: 429 / Retry-After)."""
        ...


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _check(rate_per_sec: float, burst: float) -> None:
    if not rate_per_sec > 0:
        raise ValueError(f"rate_per_sec must be > 0, got {rate_per_sec}")
    if not burst >= 1:
        raise ValueError(f"burst must be >= 1, got {burst}")


class RedisTokenBucket:
    """A token bucket in Redis (atomic Lua), keyed by account, shared by every process using ``key``.

    ``redis`` is a ``redis.asyncio.Redis`` client or a URL; with a URL a client is made per event loop
    (redis.asyncio connections are bound to the loop that opened them). ``lease_secs`` > 0 lets a
    reservation lease tokens for this process's next requests (the module's docstring); 0 leases none.
    """

    def __init__(self, redis: object, key: str, rate_per_sec: float, burst: float | None = None,
                 lease_secs: float = 0.0):
        burst = burst if burst is not None else max(1.0, rate_per_sec)
        _check(rate_per_sec, burst)
        if lease_secs < 0:
            raise ValueError(f"lease_secs must be >= 0, got {lease_secs}")
        self.key = key
        self.rate_per_sec = rate_per_sec
        self.burst = burst
        self.lease_secs = lease_secs
        self._lease_most = int(rate_per_sec * lease_secs)  # tokens one reservation may lease
        # per event loop: [tokens leased and not used yet, monotonic time the lease ends]
        self._leases: dict[asyncio.AbstractEventLoop, list[float]] = {}
        self.leased = 0  # requests that went on a leased token (no round trip)
        self._url = redis if isinstance(redis, str) else None
        self._client = None if isinstance(redis, str) else redis
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, object]] = {}
        self._scripts: dict[int, dict[str, Any]] = {}
        # per event loop, the requests waiting for the reservation one of them is about to make
        self._joining: dict[asyncio.AbstractEventLoop, list[asyncio.Future[float | None]]] = {}
        self.reservations = 0  # script calls made by ``acquire`` (requests that shared one count once)

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

    def _script(self, client: object, source: str) -> Any:
        scripts = self._scripts.setdefault(id(client), {})
        script = scripts.get(source)
        if script is None:
            script = scripts[source] = client.register_script(source)  # type: ignore[attr-defined]  # EVALSHA
        return script

    async def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens without sleeping; returns the seconds the caller must wait."""
        client = self._redis()
        wait_ms = await self._script(client, _TOKEN_BUCKET_LUA)(
            keys=[self.key], args=[self.rate_per_sec, self.burst, cost])
        return float(wait_ms) / 1000.0

    async def _reserve_together(self) -> float:
        """One token for this request and for every request of this event loop that asks before the
        reservation leaves (they join it), in one script call; returns this request's wait in seconds."""
        loop = asyncio.get_running_loop()
        joining = self._joining.get(loop)
        if joining is not None:  # another request of this moment is about to reserve: join it
            future: asyncio.Future[float | None] = loop.create_future()
            joining.append(future)
            wait = await future
            return await self.reserve() if wait is None else wait  # None: that request was cancelled
        joining = self._joining[loop] = []

        def close_group() -> None:  # later requests start a group of their own
            if self._joining.get(loop) is joining:
                del self._joining[loop]

        try:
            await asyncio.sleep(0)  # the requests sent together with this one (a gather) ask now
            close_group()
            client = self._redis()
            reply = await self._script(client, _TOKEN_BATCH_LUA)(
                keys=[self.key], args=[self.rate_per_sec, self.burst, 1 + len(joining), self._lease_most])
            self.reservations += 1
            wait_ms, before, leased = (float(part) for part in text_of(reply).split())
            if leased > 0:
                self._leases[loop] = [leased, time.monotonic() + self.lease_secs]
        except Exception as error:  # (Redis down: each request's caller falls back as it would have alone)
            close_group()
            for future in joining:
                if not future.done():
                    future.set_exception(error)
            raise
        except BaseException:  # this request was cancelled: the others reserve for themselves
            close_group()
            for future in joining:
                if not future.done():
                    future.set_result(None)
            raise
        waits = [(wait_ms + max(0.0, index - before) * 1000.0 / self.rate_per_sec) / 1000.0
                 for index in range(1, len(joining) + 2)]
        for future, wait in zip(joining, waits[1:], strict=True):
            if not future.done():
                future.set_result(wait)
        return waits[0]

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, sleeping as long as the bucket says; returns the seconds waited. Requests of
        one token asking at the same moment share one reservation (``_reserve_together``).

        After a sleep the account may have been paused meanwhile (another caller got a 429): the pause
        is waited out too before the request goes. A request of one token goes at once on a token this
        process leased, while the lease lasts."""
        if cost == 1.0 and self._leases and self._take_leased():
            return 0.0
        waited = wait = await (self._reserve_together() if cost == 1.0 else self.reserve(cost))
        while wait > 0:
            await asyncio.sleep(wait)
            wait = await self.paused_for()
            waited += wait
        return waited

    def _take_leased(self) -> bool:
        """One token of this loop's lease, if it has one left and has not ended."""
        lease = self._leases.get(asyncio.get_running_loop())
        if lease is None:
            return False
        if lease[0] < 1 or time.monotonic() >= lease[1]:
            del self._leases[asyncio.get_running_loop()]
            return False
        lease[0] -= 1
        self.leased += 1
        return True

    async def pause(self, secs: float) -> None:
        """Hold every request of the account, in every process, for ``secs`` (never shortens a pause).
        This process's leased tokens are dropped."""
        if secs <= 0:
            return
        self._leases.clear()
        client = self._redis()
        await self._script(client, _PAUSE_LUA)(keys=[self.key], args=[self.rate_per_sec, self.burst, secs * 1000])

    async def paused_for(self) -> float:
        """Seconds of account-wide pause still ahead (0 when none)."""
        client = self._redis()
        return float(await self._script(client, _PAUSE_LEFT_LUA)(keys=[self.key])) / 1000.0

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

    def _refill(self) -> float:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_sec)
            self._stamp = now
        return now

    def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens now; returns the seconds the caller must wait (incl. a pause)."""
        now = self._refill()
        self._tokens -= cost
        wait = self._stamp - now
        return wait - self._tokens / self.rate_per_sec if self._tokens < 0 else wait

    def paused_for(self) -> float:
        """Seconds of pause still ahead (0 when none)."""
        return max(0.0, self._stamp - self._clock())

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, sleeping as needed (and through a pause set meanwhile); returns the
        seconds waited."""
        waited = wait = self.reserve(cost)
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self.paused_for()
            waited += wait
        return waited

    async def pause(self, secs: float) -> None:
        """Hold every request through this bucket for ``secs``; saved-up tokens are dropped."""
        now = self._refill()
        if secs > 0 and now + secs > self._stamp:
            self._stamp = now + secs
            self._tokens = min(self._tokens, 0.0)
