"""The ccxt gateway: error mapping, rounding, idempotent placement under faults, rate limiting."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from decimal import Decimal as D
from typing import Any

import ccxt
import pytest
import redis.asyncio as redis_asyncio
from exchanges_testkit import API_KEY, API_SECRET, emulator_config

from exchanges.ccxt_gateway import CcxtGateway, map_ccxt_error
from exchanges.emulator.server import EmulatorServer, FaultConfig
from exchanges.gateway import (
    GatewayCredentials,
    MarketRules,
    OrderRequest,
    quantize_to_rules,
)
from exchanges.ratelimit import LocalTokenBucket, RedisTokenBucket
from exchanges.registry import clear_gateway_cache, get_gateway
from mmplatform.errors import (
    AuthenticationFailedError,
    BadSymbolError,
    ExchangeError,
    ExchangeUnavailableError,
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    RateLimitedError,
)


@pytest.mark.parametrize(
    ("ccxt_error", "project_error"),
    [
        (ccxt.NetworkError, ExchangeUnavailableError),
        (ccxt.RequestTimeout, ExchangeUnavailableError),
        (ccxt.ExchangeNotAvailable, ExchangeUnavailableError),
        (ccxt.OnMaintenance, ExchangeUnavailableError),
        (ccxt.InvalidNonce, ExchangeUnavailableError),
        (ccxt.DDoSProtection, RateLimitedError),
        (ccxt.RateLimitExceeded, RateLimitedError),
        (ccxt.AuthenticationError, AuthenticationFailedError),
        (ccxt.PermissionDenied, AuthenticationFailedError),
        (ccxt.AccountSuspended, AuthenticationFailedError),
        (ccxt.InsufficientFunds, InsufficientFundsError),
        (ccxt.InvalidOrder, InvalidOrderError),
        (ccxt.OrderImmediatelyFillable, InvalidOrderError),
        (ccxt.OrderNotFillable, InvalidOrderError),
        (ccxt.DuplicateOrderId, InvalidOrderError),
        (ccxt.OrderNotFound, OrderNotFoundError),
        (ccxt.BadSymbol, BadSymbolError),
        (ccxt.BadRequest, InvalidOrderError),
        (ccxt.BadResponse, ExchangeUnavailableError),
        (ccxt.ExchangeError, ExchangeError),
        (ccxt.NotSupported, ExchangeError),
        (TimeoutError, ExchangeUnavailableError),
    ],
)
def test_error_mapping_table(ccxt_error, project_error):
    mapped = map_ccxt_error(ccxt_error("boom"), retry_after_secs=2.0)
    assert type(mapped) is project_error
    assert "boom" in str(mapped) or ccxt_error is TimeoutError
    if project_error is RateLimitedError:
        assert mapped.retry_after_secs == 2.0


RULES = MarketRules("BTC/USDT", "BTC", "USDT", D("0.01"), D("0.00001"), D("0.00001"), D("5"))


@pytest.mark.parametrize(
    ("side", "price", "amount", "expected"),
    [
        ("buy", D("100.019"), D("0.123456"), (D("100.01"), D("0.12345"))),
        ("sell", D("100.011"), D("0.123459"), (D("100.02"), D("0.12345"))),
        ("buy", 100.01, 0.1, (D("100.01"), D("0.10000"))),  # float already on grid stays put
        ("sell", D("100.01"), D("1"), (D("100.01"), D("1.00000"))),
    ],
)
def test_quantize_bids_down_asks_up_amount_down(side, price, amount, expected):
    assert quantize_to_rules(RULES, side, price, amount) == expected


def credentials(base_url: str, **overrides) -> GatewayCredentials:
    values = {"account_key": "acct-test", "exchange_id": "binance", "api_key": API_KEY, "api_secret": API_SECRET,
              "api_base_url": base_url, "rate_limit_per_sec": 100_000.0}
    values.update(overrides)
    return GatewayCredentials(**values)


class RecordingSleep:
    """Stands in for asyncio.sleep: records the delays the gateway asked for and yields once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def test_a_balance_read_started_after_the_moment_asked_for_is_shared():
    """``fetch_balance_since``: the fill syncs of a burst on one account share the process's read that started
    after their fill (one request for all of them); a read that started before the moment asked for is never
    taken (it may not hold the fill), and a read after an order placed shows the order."""
    async with EmulatorServer(emulator_config()) as server:
        gateway = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6))
        reads = 0
        real = gateway.fetch_balance

        async def counted() -> Any:
            nonlocal reads
            reads += 1
            return await real()

        gateway.fetch_balance = counted  # type: ignore[method-assign]  # the real read, counted
        try:
            await gateway.load_markets()
            fill_seen = time.time()
            together = await asyncio.gather(*(gateway.fetch_balance_since(fill_seen) for _ in range(10)))
            assert reads == 1 and all(b == together[0] for b in together)
            assert await gateway.fetch_balance_since(fill_seen) == together[0] and reads == 1  # made since then
            book = await gateway.fetch_order_book("BTC/USDT", 5)
            order = await gateway.place_order(OrderRequest("BTC/USDT", "buy", book.bids[0].price - D("100"),
                                                           D("0.01"), "since-1"))
            placed = time.time()
            after = await gateway.fetch_balance_since(placed)
            assert reads == 2, "the earlier read started before the moment asked for: a new one"
            assert after.get("USDT").used == order.price * order.amount
        finally:
            await gateway.close()


async def test_gateway_reads_and_order_lifecycle():
    async with EmulatorServer(emulator_config()) as server:
        gateway = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6))
        try:
            assert await gateway.validate_connection()
            assert gateway.supports_trading_pair("BTC/USDT") and not gateway.supports_trading_pair("DOGE/USDT")
            with pytest.raises(BadSymbolError):
                gateway.market_rules("DOGE/USDT")
            book = await gateway.fetch_order_book("BTC/USDT", 5)
            best_bid, _ = book.bids[0]
            assert book.asks[0].price > best_bid and isinstance(best_bid, D)
            ticker = await gateway.fetch_ticker("BTC/USDT")
            assert ticker.bid == best_bid
            # prices round bid-down before sending; the order is found again by client id
            order = await gateway.place_order(OrderRequest("BTC/USDT", "buy", best_bid - D("10.005"), D("0.0100009"),
                                                           "life-1"))
            assert order.price == best_bid - D("10.01") and order.amount == D("0.01") and order.is_open
            assert (await gateway.fetch_order("BTC/USDT", client_order_id="life-1")).exchange_order_id == (
                order.exchange_order_id)
            assert [o.client_order_id for o in await gateway.fetch_open_orders("BTC/USDT")] == ["life-1"]
            balance = await gateway.fetch_balance()
            assert balance.get("USDT").used == order.price * order.amount
            cancelled = await gateway.cancel_order("BTC/USDT", exchange_order_id=order.exchange_order_id)
            assert cancelled.status == "canceled"
            with pytest.raises(OrderNotFoundError):
                await gateway.cancel_order("BTC/USDT", client_order_id="life-1")
            taker = await gateway.place_order(OrderRequest("BTC/USDT", "buy", book.asks[0].price, D("0.01"),
                                                           "life-2", post_only=False))
            assert taker.status == "closed" and taker.average_price == book.asks[0].price
            trades = await gateway.fetch_my_trades("BTC/USDT")
            assert [(t.client_order_id, t.amount, t.is_maker) for t in trades] == [("life-2", D("0.01"), False)]
        finally:
            await gateway.close()


async def test_rejections_map_to_project_errors_and_minimums_are_checked_before_sending():
    async with EmulatorServer(emulator_config()) as server:
        gateway = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6))
        try:
            await gateway.load_markets()
            ask = (await gateway.fetch_order_book("BTC/USDT", 1)).asks[0].price
            with pytest.raises(InvalidOrderError, match="immediately match"):
                await gateway.place_order(OrderRequest("BTC/USDT", "buy", ask, D("0.001"), "rej-1", post_only=True))
            with pytest.raises(InsufficientFundsError):
                await gateway.place_order(OrderRequest("BTC/USDT", "sell", ask * 2, D("50"), "rej-2"))
            before = server.request_count
            with pytest.raises(InvalidOrderError, match=r"notional .* below the minimum 5"):
                await gateway.place_order(OrderRequest("BTC/USDT", "buy", D("100"), D("0.001"), "rej-3"))
            with pytest.raises(InvalidOrderError, match="amount rounds to 0"):
                await gateway.place_order(OrderRequest("BTC/USDT", "buy", D("100"), D("0.000001"), "rej-4"))
            with pytest.raises(InvalidOrderError, match="client order id"):
                await gateway.place_order(OrderRequest("BTC/USDT", "buy", D("100"), D("1"), "bad id!"))
            assert server.request_count == before  # nothing was sent
            bad = CcxtGateway(credentials(server.base_url, api_secret="wrong", account_key="bad"),
                              rate_limiter=LocalTokenBucket(1e6))
            try:
                assert await bad.validate_connection() is False
                with pytest.raises(AuthenticationFailedError):
                    await bad.fetch_balance()
            finally:
                await bad.close()
        finally:
            await gateway.close()


async def test_reads_retry_through_errors_and_honour_retry_after():
    async with EmulatorServer(emulator_config()) as server:
        sleep = RecordingSleep()
        gateway = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6), sleep=sleep,
                              read_attempts=3)
        try:
            await gateway.load_markets()
            server.set_faults(FaultConfig(rate_limit_burst_rate=1.0, rate_limit_burst_length=2, retry_after_secs=7))
            # every request starts a burst of 2 => attempts 1 and 2 are 429, attempt 3 starts a new burst
            with pytest.raises(RateLimitedError) as info:
                await gateway.fetch_ticker("BTC/USDT")
            assert info.value.retry_after_secs == 7 and sleep.delays == [7.0, 7.0]
            server.set_faults(FaultConfig(error_rate=0.5))
            patient = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6), sleep=sleep,
                                  read_attempts=10)
            try:
                sleep.delays.clear()
                for _ in range(10):
                    assert (await patient.fetch_order_book("BTC/USDT", 5)).bids
                assert len(sleep.delays) >= 5  # about one failure per read at 50%, each retried
                assert all(0 < d <= patient.backoff_max_secs for d in sleep.delays)
            finally:
                await patient.close()
        finally:
            await gateway.close()


async def test_exactly_one_order_per_client_id_and_every_fill_recorded_under_faults():
    """Thousands of placements through 503s, 429 bursts and lost replies: no duplicates, no lost fills."""
    config = emulator_config(seed=5)
    async with EmulatorServer(config) as server:
        sleep = RecordingSleep()
        gateway = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6), sleep=sleep,
                              read_attempts=8, place_attempts=8)
        try:
            await gateway.load_markets()
            book = await gateway.fetch_order_book("BTC/USDT", 1)
            bid, ask = book.bids[0].price, book.asks[0].price
            server.set_faults(FaultConfig(error_rate=0.08, rate_limit_burst_rate=0.02, rate_limit_burst_length=2,
                                          retry_after_secs=1, lost_reply_rate=0.15))
            intended = []
            results = []
            for batch in range(100):
                requests = []
                for i in range(20):
                    n = batch * 20 + i
                    side = "buy" if n % 2 == 0 else "sell"
                    crossing = n % 5 == 0  # some take liquidity (fills), the rest rest on the book
                    if side == "buy":
                        price = ask + D(5) if crossing else bid - D(1) - D(n % 50)
                    else:
                        price = bid - D(5) if crossing else ask + D(1) + D(n % 50)
                    cid = f"f{n}"
                    intended.append(cid)
                    requests.append(OrderRequest("BTC/USDT", side, price, D("0.001"), cid, post_only=not crossing))
                results.extend(await asyncio.gather(*(gateway.place_order(r) for r in requests),
                                                    return_exceptions=True))
            errors = [r for r in results if isinstance(r, Exception)]
            assert not errors, errors[:3]
            assert any(d == 1.0 for d in sleep.delays)  # a Retry-After was honoured
            server.set_faults(FaultConfig())
            stats = server.request_count
            known = server.engine.known_orders(API_KEY)
            per_cid = Counter(o.client_order_id for o in known)
            assert all(per_cid[cid] == 1 for cid in intended), [c for c in intended if per_cid[c] != 1][:5]
            assert sum(per_cid.values()) == len(intended)
            by_cid = {o.client_order_id: o for o in known}
            for result in results:
                assert by_cid[result.client_order_id].order_id == int(result.exchange_order_id)
            engine_trades = server.engine.account_trades(API_KEY, "BTC/USDT", limit=10**6)
            assert len(engine_trades) >= 400
            recorded = await gateway.fetch_my_trades("BTC/USDT")
            assert sorted((t.trade_id, t.client_order_id, t.amount) for t in recorded) == sorted(
                (str(t.trade_id), by_cid_of(known, t.order_id), t.quantity) for t in engine_trades
            )
            assert stats > len(intended)  # faults did force retries and lookups
        finally:
            await gateway.close()


def by_cid_of(known, order_id):
    return next(o.client_order_id for o in known if o.order_id == order_id)


# --- rate limiting and the cache -----------------------------------------------------------------


@pytest.fixture
async def redis_client():
    """The test session's Redis (REDIS_URL, or the embedded one), never a server nobody named."""
    from django.conf import settings

    client = redis_asyncio.Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


async def test_redis_bucket_is_shared_between_instances(redis_client):
    from django.conf import settings

    key = "mmplatform:test:bucket"
    await redis_client.delete(key)
    first = RedisTokenBucket(redis_client, key, rate_per_sec=10, burst=5)
    second = RedisTokenBucket(settings.REDIS_URL, key, rate_per_sec=10, burst=5)  # another "process"
    waits = []
    for i in range(20):
        waits.append(await (first if i % 2 else second).reserve())
    await second.close()
    assert waits[:5] == [0.0] * 5
    # the 20th token is 15 beyond the burst: 1.5 s of refill at 10/s, less the time the 20 calls took
    assert 1.0 < waits[-1] <= 1.5
    assert all(b >= a for a, b in itertools.pairwise(waits[5:]))
    assert await redis_client.pttl(key) > 0


def test_local_bucket_reserves_in_order():
    now = [100.0]
    bucket = LocalTokenBucket(rate_per_sec=2, burst=2, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.5, 1.0]
    now[0] += 10
    assert bucket.reserve() == 0.0


def test_get_gateway_caches_per_account_and_rebuilds_on_rotation():
    clear_gateway_cache()
    creds = credentials("http://127.0.0.1:1")
    first = get_gateway(creds, rate_limiter=LocalTokenBucket(10))
    assert get_gateway(creds) is first
    rotated = credentials("http://127.0.0.1:1", api_secret="rotated")
    assert get_gateway(rotated, rate_limiter=LocalTokenBucket(10)) is not first
    other = credentials("http://127.0.0.1:1", account_key="acct-other")
    assert get_gateway(other, rate_limiter=LocalTokenBucket(10)) is not get_gateway(rotated)
    clear_gateway_cache()


def test_a_discarded_gateway_closes_its_clients_and_lets_a_dead_loops_client_go(caplog: pytest.LogCaptureFixture):
    """``discard`` (a credential rotation; every cached gateway at a test session's end): the client on the
    process's running I/O loop is closed there, and one whose loop is gone (a finished ``asyncio.run``) is let go
    quietly -- before, ccxt logged at its collection that it was never closed, at an xdist worker's exit to a
    closed stream (``--- Logging error``)."""
    import gc

    from mmplatform import aio

    gateway = CcxtGateway(credentials("http://127.0.0.1:1"), rate_limiter=LocalTokenBucket(10))

    async def opened() -> Any:
        client = gateway._client()
        client.open()  # its aiohttp session, as a first request makes it (no request: nothing listens there)
        return client

    live = aio.run(opened())
    dead = asyncio.run(opened())
    session = live.session
    assert dead.session is not None and session is not None
    gc.collect()  # what earlier tests of this worker left unclosed warns now, not in the count below
    caplog.clear()
    with caplog.at_level("WARNING"):
        gateway.discard(wait_secs=5)
        assert live.session is None and session.closed, "the live loop's client is closed on its loop"
        assert dead.session is None, "the dead loop's client is let go"
        del dead
        gc.collect()
    assert not [r.getMessage() for r in caplog.records if "release all resources" in r.getMessage()
                or "Unclosed" in r.getMessage()]


async def test_dropped_connections_after_acceptance_resolve_to_the_one_order():
    async with EmulatorServer(emulator_config(seed=9)) as server:
        gateway = CcxtGateway(credentials(server.base_url), rate_limiter=LocalTokenBucket(1e6),
                              sleep=RecordingSleep(), place_attempts=6, read_attempts=6)
        try:
            await gateway.load_markets()
            server.set_faults(FaultConfig(lost_reply_rate=0.5, lost_reply_mode="drop"))
            placed = [await gateway.place_order(OrderRequest("BTC/USDT", "buy", D(20000) + i, D("0.001"), f"drop{i}"))
                      for i in range(60)]
            server.set_faults(FaultConfig())
            per_cid = Counter(o.client_order_id for o in server.engine.known_orders(API_KEY))
            assert [per_cid[f"drop{i}"] for i in range(60)] == [1] * 60
            assert {o.client_order_id for o in placed} == {f"drop{i}" for i in range(60)}
            assert server.request_count > 61 + 10  # markets + placements + a lookup per dropped reply
        finally:
            await gateway.close()
