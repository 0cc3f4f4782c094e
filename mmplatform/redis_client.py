"""The process's Redis client (sync), from settings.REDIS_URL. Re-created after a fork. And an asyncio client per
event loop (``get_async_redis``: redis.asyncio connections are bound to the loop that opened them)."""

from __future__ import annotations

import asyncio
import os
import weakref

import redis
import redis.asyncio as redis_asyncio
from django.conf import settings

_client: redis.Redis | None = None
_pid: int | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_asyncio.Redis] = weakref.WeakKeyDictionary()


def get_async_redis() -> redis_asyncio.Redis:
    """The running event loop's asyncio client of settings.REDIS_URL."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis_asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
    return client


def get_redis() -> redis.Redis:
    global _client, _pid
    if _client is None or _pid != os.getpid():
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        _pid = os.getpid()
    return _client


def text(value: bytes | str) -> str:
    """A value read from Redis as text (the client answers bytes; its type stubs say bytes or str)."""
    return value.decode() if isinstance(value, bytes) else value


# One Lua program for many small writes, in ONE argument: operations separated by \x1e, each one's fields by
# \x1f: an op letter, the key, then its arguments. l: LPUSH value; t: LTRIM start stop; h: HINCRBY field
# amount; r: DEL the key if it holds the token (a token-checked release); d: DEL the key. Returns the number of
# operations.
SPLIT_LUA = """
local function fields(s)
  local out, start = {}, 1
  while true do
    local i = string.find(s, '\\31', start, true)
    if not i then out[#out + 1] = string.sub(s, start); return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
"""
_BATCH_LUA = SPLIT_LUA + """
local n = 0
for op in string.gmatch(ARGV[1], '[^\\30]+') do
  local f = fields(op)
  local kind, key = f[1], f[2]
  if kind == 'l' then
    redis.call('lpush', key, f[3])
  elseif kind == 't' then
    redis.call('ltrim', key, f[3], f[4])
  elseif kind == 'h' then
    redis.call('hincrby', key, f[3], f[4])
  elseif kind == 'r' then
    if redis.call('get', key) == f[3] then redis.call('del', key) end
  elseif kind == 'd' then
    redis.call('del', key)
  else
    return redis.error_reply('unknown batch operation ' .. tostring(kind))
  end
  n = n + 1
end
return n
"""
RECORD, FIELD = "\x1e", "\x1f"


def joined(*parts: object) -> str:
    """Fields of one record of a batch program (``WriteBatch``, ``lease.take_for_checks``): none may hold a
    separator (keys, tokens, pairs and numbers never do; a value that did would corrupt the program)."""
    text_ = FIELD.join(map(str, parts))
    if RECORD in text_ or text_.count(FIELD) != len(parts) - 1:
        raise ValueError(f"a batch field holds a separator: {parts!r}")
    return text_


class WriteBatch:
    """Many small writes to many keys as one ``EVAL`` with one argument (the program), instead of a
    pipeline of one command each: redis-py's cost is per command and per argument (its packing copies
    the buffer for every argument), so a tick's thousand writes cost about what one command does. Speaks
    the subset of the pipeline's interface the engine's record writers use (``lpush``, ``ltrim``,
    ``hincrby``, ``delete``), so the one function that writes a key (``lease.add_cycle_record``,
    ``performance.count_quoting``) writes it into either; ``release`` is the token-checked delete of a
    lease. The keys travel inside the program, not in KEYS (one Redis server, never a cluster). The
    script runs atomically in Redis: keep a batch to what one tick writes (a few thousand operations)."""

    def __init__(self) -> None:
        self.ops: list[str] = []

    def lpush(self, key: str, value: str) -> None:
        self.ops.append(joined("l", key, value))

    def ltrim(self, key: str, start: int, end: int) -> None:
        self.ops.append(joined("t", key, start, end))

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        self.ops.append(joined("h", key, field, amount))

    def release(self, key: str, token: str) -> None:
        """Delete ``key`` if it still holds ``token`` (a lease this process holds)."""
        self.ops.append(joined("r", key, token))

    def delete(self, key: str) -> None:
        """Delete ``key`` (``trade_marks.trades_synced_in``)."""
        self.ops.append(joined("d", key))

    def __len__(self) -> int:
        return len(self.ops)

    def execute(self) -> None:
        if self.ops:
            get_redis().eval(_BATCH_LUA, 0, RECORD.join(self.ops))
