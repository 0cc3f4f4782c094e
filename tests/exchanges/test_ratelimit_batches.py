"""Requests of one process that ask the Redis token bucket at the same moment share one round trip
(exchanges/ratelimit.py ``RedisTokenBucket.acquire``), and each still gets exactly the token and wait it
would have got alone: the shared budget is charged one token per request, no token is held for later.
Against the test session's Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.conf import settings

from exchanges.ratelimit import RedisTokenBucket


def bucket(rate: float, burst: float, key: str | None = None) -> RedisTokenBucket:
    return RedisTokenBucket(settings.REDIS_URL, key or f"mmplatform:test:batch:{uuid.uuid4().hex}", rate, burst)


async def test_requests_sent_together_share_one_reservation() -> None:
    limiter = bucket(1000.0, 1000.0)
    try:
        # (a wait of a few microseconds: the bucket's clock is stored with 0.1 ms resolution)
        assert all(w < 0.001 for w in await asyncio.gather(*(limiter.acquire() for _ in range(6))))
        assert limiter.reservations == 1
        await limiter.acquire()
        await limiter.acquire()  # one after the other: one reservation each, as before
        assert limiter.reservations == 3
    finally:
        await limiter.close()


async def test_each_request_of_a_shared_reservation_gets_the_wait_it_would_have_got_alone() -> None:
    key = f"mmplatform:test:batch:{uuid.uuid4().hex}"
    together, alone = bucket(10.0, 2.0, key), bucket(10.0, 2.0, key)
    try:
        # 5 requests at once on a 2-token bucket at 10/s: 0, 0, then 0.1, 0.2, 0.3 s (the debt each adds)
        loop_waits = await asyncio.gather(*(together._reserve_together() for _ in range(5)))
        assert together.reservations == 1
        assert all(w < 0.001 for w in loop_waits[:2])
        assert [round(w, 1) for w in loop_waits[2:]] == [0.1, 0.2, 0.3]
        # the shared bucket was charged all five: the next caller anywhere waits behind them
        assert 0.3 < await alone.reserve() <= 0.4
    finally:
        for limiter in (together, alone):
            await limiter.close()


async def test_a_pause_holds_requests_sent_together() -> None:
    limiter = bucket(1000.0, 1000.0)
    try:
        await limiter.pause(0.3)
        waits = await asyncio.gather(*(limiter._reserve_together() for _ in range(3)))
        assert limiter.reservations == 1 and all(w > 0.2 for w in waits)
    finally:
        await limiter.close()


async def test_when_redis_fails_every_request_of_the_group_hears_it() -> None:
    limiter = RedisTokenBucket("redis://127.0.0.1:1/0", "mmplatform:test:batch:down", 10.0, 10.0)
    results = await asyncio.gather(*(limiter.acquire() for _ in range(3)), return_exceptions=True)
    assert len(results) == 3 and all(isinstance(r, Exception) for r in results), results
    await limiter.close()


async def test_a_cancelled_first_request_leaves_the_others_to_reserve_for_themselves() -> None:
    limiter = bucket(1000.0, 1000.0)
    try:
        first = asyncio.ensure_future(limiter.acquire())
        others = [asyncio.ensure_future(limiter.acquire()) for _ in range(2)]
        await asyncio.sleep(0)  # the first holds the group open, the others join it
        first.cancel()
        assert all(w < 0.001 for w in await asyncio.wait_for(asyncio.gather(*others), 10))
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await limiter.close()
