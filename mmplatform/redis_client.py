"""The process's Redis client (sync), from settings.REDIS_URL. Re-created after a fork."""

from __future__ import annotations

import os

import redis
from django.conf import settings

_client: redis.Redis | None = None
_pid: int | None = None


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
