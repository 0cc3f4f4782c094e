"""Requests of one process that ask the Redis token bucket at the same moment share one round trip
(exchanges/ratelimit.py ``RedisTokenBucket.acquire``), and each still gets exactly the token and wait it
would have got alone: the shared budget is charged one token per request. Without a lease no token is held
for later; with one (what the gateways use) a roomy bucket lends a process a few tokens for a short time,
charged to the shared budget when taken. Against the test session's Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from django.conf import settings

from exchanges.ratelimit import RedisTokenBucket


def bucket(rate: float, burst: float, key: str | None = None, lease_secs: float = 0.0) -> RedisTokenBucket:
    return RedisTokenBucket(settings.REDIS_URL, key or f"mmplatform:test:batch:{uuid.uuid4().hex}", rate, burst,
                            lease_secs=lease_secs)


def tokens_left(key: str) -> float:
    from mmplatform.redis_client import get_redis

    return float(get_redis().hget(key, "tokens"))


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


async def test_a_lease_lets_the_next_requests_go_without_a_round_trip_and_is_charged_to_the_shared_bucket() -> None:
    key = f"mmplatform:test:batch:{uuid.uuid4().hex}"
    limiter = bucket(100.0, 100.0, key, lease_secs=0.5)  # at most 100/s x 0.5 s = 50 tokens a lease
    try:
        assert await limiter.acquire() < 0.001
        # 1 token for the request and 49 leased: never below half the burst (100 - 1 - 49 = 50)
        assert limiter.reservations == 1 and 50.0 <= tokens_left(key) < 51.0
        for _ in range(49):
            assert await limiter.acquire() == 0.0
        assert limiter.reservations == 1 and limiter.leased == 49
        await limiter.acquire()  # the lease is used up: a round trip, and no new lease from a half-full bucket
        assert limiter.reservations == 2
        await limiter.acquire()
        assert limiter.reservations == 3 and limiter.leased == 49
    finally:
        await limiter.close()


@contextlib.asynccontextmanager
async def leased_and_peer(lease_secs: float) -> AsyncIterator[tuple[RedisTokenBucket, RedisTokenBucket]]:
    """Two processes' buckets on one account (100/s, burst 100): the first leases, the second does not."""
    key = f"mmplatform:test:batch:{uuid.uuid4().hex}"
    leased, peer = bucket(100.0, 100.0, key, lease_secs=lease_secs), bucket(100.0, 100.0, key)
    try:
        yield leased, peer
    finally:
        for each in (leased, peer):
            await each.close()


async def test_near_the_budget_nothing_is_leased() -> None:
    async with leased_and_peer(0.5) as (limiter, peer):
        assert await peer.reserve(50) == 0.0  # another process took half the burst
        for expected in range(1, 6):
            await limiter.acquire()
            assert limiter.reservations == expected and limiter.leased == 0


async def test_a_lease_ends_after_lease_secs() -> None:
    limiter = bucket(100.0, 100.0, lease_secs=0.05)
    try:
        await limiter.acquire()
        await limiter.acquire()
        assert (limiter.reservations, limiter.leased) == (1, 1)
        await asyncio.sleep(0.06)
        await limiter.acquire()  # the 4 tokens left of the lease (100/s x 0.05 s = 5) are gone with it
        assert (limiter.reservations, limiter.leased) == (2, 1)
    finally:
        await limiter.close()


async def test_a_pause_this_process_sets_drops_its_lease() -> None:
    limiter = bucket(100.0, 100.0, lease_secs=0.5)
    try:
        await limiter.acquire()
        await limiter.pause(0.3)
        assert await limiter.acquire() > 0.2 and limiter.leased == 0
    finally:
        await limiter.close()


async def test_a_pause_another_process_sets_holds_a_leased_process_once_its_lease_ends() -> None:
    async with leased_and_peer(0.5) as (leased, throttled):
        await leased.acquire()  # leases 49 tokens (at most 100/s x 0.5 s, never below half the burst)
        await throttled.pause(1.0)  # that process got a 429
        assert [await leased.acquire() for _ in range(3)] == [0.0] * 3 and leased.leased == 3
        await asyncio.sleep(0.5)
        assert await leased.acquire() > 0.3, "a pause set elsewhere did not reach the process after its lease"


async def test_during_a_pause_set_elsewhere_a_leased_process_sends_no_more_than_its_lease() -> None:
    async with leased_and_peer(1.0) as (leased, throttled):
        await leased.acquire()  # leases 49 tokens
        await throttled.pause(1.0)
        assert [await leased.acquire() for _ in range(49)] == [0.0] * 49 and leased.leased == 49
        assert await leased.acquire() > 0.5, "a leased process sent more than its lease during a pause set elsewhere"
