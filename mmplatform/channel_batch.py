"""Many Channels group sends in one Redis round trip.

A quoting engine pushes every order change, fill and event to two groups (the tenant's and the bot's):
at a few hundred bots that is over a thousand ``group_send`` calls a second, each a Redis ``PUBLISH``
awaited on its own on the process's I/O loop, the same loop that carries every venue request. The
dashboard sender (``bots.events``) hands its whole backlog here instead: on the project's channel layer
(``channels_redis.pubsub.RedisPubSubChannelLayer``, see ``mmplatform.redis_config``) the messages go as
one pipeline per Redis shard, in order, with the layer's own group channel names and serializer, so a
subscriber cannot tell them from ``group_send``'s. Any other layer gets one ``group_send`` per message.

The pub/sub layer's shard objects are channels_redis internals (``_get_layer``, ``_get_group_channel_name``,
``_get_shard``, a shard's ``_lock``, ``_ensure_redis`` and ``_redis``): the version is pinned in
requirements.txt and ``tests/dashboard/test_push_batches.py`` holds the batch to one round trip and its
messages to what a subscriber of each group receives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer


async def group_send_batch(layer: Any, sends: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Send each ``(group, message)`` of ``sends`` as ``layer.group_send`` would, in order; returns the
    number of Redis round trips (or ``group_send`` calls) it took."""
    if not sends:
        return 0
    if not isinstance(layer, RedisPubSubChannelLayer):
        for group, message in sends:
            await layer.group_send(group, message)
        return len(sends)
    loop_layer = layer._get_layer()  # this event loop's connections
    by_shard: dict[int, tuple[Any, list[tuple[str, bytes]]]] = {}
    for group, message in sends:
        channel = loop_layer._get_group_channel_name(group)
        shard = loop_layer._get_shard(channel)
        by_shard.setdefault(id(shard), (shard, []))[1].append((channel, layer.serialize(message)))
    for shard, items in by_shard.values():
        async with shard._lock:  # as the shard's own publish: one user of its connection at a time
            shard._ensure_redis()
            pipe = shard._redis.pipeline(transaction=False)
            for channel, payload in items:
                pipe.publish(channel, payload)
            await pipe.execute()
    return len(by_shard)
