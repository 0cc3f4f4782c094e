"""Every Redis setting derived from one ``REDIS_URL``, in the spelling each consumer needs.

redis-py (the cache, Channels, ``mmplatform.redis_client``, the rate limiters) reads ``redis://``,
``rediss://`` and ``unix://`` URLs; Celery's broker and result backend (kombu) spell a unix socket
``redis+socket://`` and fail with "No such transport: unix" on ``unix://``. The settings and anything
that points a running process at another Redis (tests) take the values from here, never by hand.
"""

from __future__ import annotations

import hashlib
from typing import Any


def celery_url(redis_url: str) -> str:
    """The URL kombu / Celery accept for ``redis_url``: ``unix://`` becomes ``redis+socket://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://"):]
    return redis_url


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
