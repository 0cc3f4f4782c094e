"""A 429 / DDoSProtection answer pauses the whole account, not only the call that got it: the gateway
moves the account's shared token bucket (Redis) past the Retry-After, so every caller of that key in
every process waits it out, while other accounts go on; after the pause the budget resumes at its
rate, with nothing saved up to burst."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from django.conf import settings

from exchanges.ccxt_gateway import RATE_LIMIT_LEASE_SECS, CcxtGateway
from exchanges.emulator.server import AccountConfig, FaultConfig
from exchanges.gateway import GatewayCredentials
from exchanges.ratelimit import LocalTokenBucket, RedisTokenBucket
from mmplatform.errors import RateLimitedError
from tests.bots.conftest import EMULATOR_SECRET
from tests.reliability.conftest import BALANCES, EMULATOR_KEY

OTHER_KEY, OTHER_SECRET = "backoff-other-key", "backoff-other-secret-xyz"
RETRY_AFTER_SECS = 1


def gateway(server: Any, api_key: str, api_secret: str, account_key: str) -> CcxtGateway:
    """The production gateway of one process: its own Redis limiter for the account."""
    credentials = GatewayCredentials(account_key, "binance", api_key, api_secret, api_base_url=server.base_url,
                                     rate_limit_per_sec=50.0)
    return CcxtGateway(credentials, redis_url=settings.REDIS_URL, read_attempts=1)


async def test_a_429_pauses_every_caller_of_the_account_in_every_process(frozen_emulator: Any) -> None:
    server = frozen_emulator
    server.call(lambda: server.add_account(AccountConfig(OTHER_KEY, OTHER_SECRET, dict(BALANCES))))
    account = f"backoff-{uuid.uuid4().hex[:8]}"
    throttled = gateway(server, EMULATOR_KEY, EMULATOR_SECRET, account)
    peer = gateway(server, EMULATOR_KEY, EMULATOR_SECRET, account)  # another worker, same key
    stranger = gateway(server, OTHER_KEY, OTHER_SECRET, f"{account}-other")
    try:
        for gw in (throttled, peer, stranger):
            await gw.load_markets()
        server.set_faults(FaultConfig(rate_limit_burst_rate=1.0, rate_limit_burst_length=1,
                                      retry_after_secs=RETRY_AFTER_SECS))
        with pytest.raises(RateLimitedError):
            await throttled.fetch_balance()
        server.set_faults(FaultConfig())
        answered_at = time.monotonic()
        seen, seen_other = len(server.request_times(EMULATOR_KEY)), len(server.request_times(OTHER_KEY))
        # the peer may hold tokens it leased before the 429 (exchanges/ratelimit.py): it hears of the pause
        # when that lease ends, at most RATE_LIMIT_LEASE_SECS later (test_ratelimit_batches bounds what it
        # sends meanwhile)
        await asyncio.sleep(RATE_LIMIT_LEASE_SECS)

        await asyncio.gather(peer.fetch_balance(), peer.fetch_open_orders("BTC/USDT"), throttled.fetch_balance(),
                             stranger.fetch_balance())

        held = [t - answered_at for t in server.request_times(EMULATOR_KEY)[seen:]]
        free = [t - answered_at for t in server.request_times(OTHER_KEY)[seen_other:]]
        print(f"\n429 with Retry-After {RETRY_AFTER_SECS} s: the account's next requests arrived after "
              f"{', '.join(f'{d:.2f}' for d in held)} s; another account's after {free[0]:.3f} s")
        assert len(held) == 3 and len(free) == 1
        assert min(held) >= RETRY_AFTER_SECS - 0.1, "a caller of the throttled account did not wait out the pause"
        assert free[0] < RETRY_AFTER_SECS / 2, "the pause of one account held another account"
    finally:
        for gw in (throttled, peer, stranger):
            await gw.close()


async def test_the_pause_drops_saved_up_tokens_and_never_shortens() -> None:
    now = [0.0]
    bucket = LocalTokenBucket(rate_per_sec=10, burst=10, clock=lambda: now[0])
    await bucket.pause(2.0)
    await bucket.pause(0.5)  # a shorter pause never cuts a longer one
    assert bucket.paused_for() == pytest.approx(2.0)
    # after the pause the budget resumes at its rate: the 10 saved-up tokens are gone
    assert [round(bucket.reserve(), 3) for _ in range(3)] == [2.1, 2.2, 2.3]
    now[0] = 10.0
    assert bucket.reserve() == 0.0 and bucket.paused_for() == 0.0

    shared = RedisTokenBucket(settings.REDIS_URL, f"mmplatform:test:pause:{uuid.uuid4().hex}", 10, 10)
    try:
        assert await shared.reserve() == 0.0
        await shared.pause(1.5)
        assert 1.4 < await shared.paused_for() <= 1.5
        first, second = await shared.reserve(), await shared.reserve()
        assert 1.4 + 0.1 < first <= 1.5 + 0.1 and second == pytest.approx(first + 0.1, abs=0.02)
    finally:
        await shared.close()
