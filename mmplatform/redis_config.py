"""Every Redis setting derived from one ``REDIS_URL``, in the spelling each consumer needs.

redis-py (the cache, Channels, ``mmplatform.redis_client``, the rate limiters) reads ``redis://``,
``rediss://`` and ``unix://`` URLs; Celery's broker and result backend (kombu) spell a unix socket
``redis+socket://`` and fail with "No such transport: unix" on ``unix://``. The settings and anything
that points a running process at another Redis (tests) take the values from here, never by hand.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def _unix_parts(redis_url: str) -> tuple[str, list[tuple[str, str]]]:
    """``unix:///path?a=b`` -> ``("/path", [("a", "b")])``."""
    path, _, query = redis_url[len("unix://"):].partition("?")
    return path, parse_qsl(query)


def celery_url(redis_url: str) -> str:
    """The URL kombu / Celery accept for ``redis_url``: ``unix://`` becomes ``redis+socket://``, and its
    database (redis-py's ``?db=N``) is also given as ``?virtual_host=N``, where kombu's broker reads it
    (it ignores ``db`` on a socket URL and would use database 0)."""
    if not redis_url.startswith("unix://"):
        return redis_url
    path, query = _unix_parts(redis_url)
    names = dict(query)
    if "db" in names and "virtual_host" not in names:
        query.append(("virtual_host", names["db"]))
    return "redis+socket://" + path + (f"?{urlencode(query)}" if query else "")


def with_database(redis_url: str, db: int) -> str:
    """``redis_url`` naming database ``db`` instead (``redis://h:p/N``, or ``unix://path?db=N``)."""
    if redis_url.startswith("unix://"):
        path, query = _unix_parts(redis_url)
        query = [(k, v) for k, v in query if k not in ("db", "virtual_host")] + [("db", str(db))]
        return f"unix://{path}?{urlencode(query)}"
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URL: {redis_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def database_of(redis_url: str) -> int:
    """The database number ``redis_url`` names (0 when it names none)."""
    if redis_url.startswith("unix://"):
        return int(dict(_unix_parts(redis_url)[1]).get("db", 0))
    path = urlsplit(redis_url).path.strip("/")
    return int(path) if path else 0


def channel_prefix(redis_url: str) -> str:
    """The Channels prefix of the deployment on ``redis_url`` (pub/sub is server-wide, not per database)."""
    return "asgi-" + hashlib.sha256(redis_url.encode()).hexdigest()[:12]


def redis_settings(redis_url: str) -> dict[str, Any]:
    """The Django settings that name a Redis server, all pointing at ``redis_url``."""
    return {
        "REDIS_URL": redis_url,
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": "mmp",
            }
        },
        "CHANNEL_LAYERS": {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                # Redis pub/sub ignores the database number: without a prefix of its own, two deployments
                # (or test runs) on one Redis server would receive each other's pushes for the same groups
                "CONFIG": {"hosts": [redis_url], "prefix": channel_prefix(redis_url)},
            }
        },
        "CELERY_BROKER_URL": celery_url(redis_url),
        "CELERY_RESULT_BACKEND": celery_url(redis_url),
    }
