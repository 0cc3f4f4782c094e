"""``CcxtGateway.replace_order`` through ccxt's real ``binance`` class against the emulator (no mocks)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal as D

import aiohttp
import pytest
from exchanges_testkit import API_KEY, API_SECRET, START_BALANCES, emulator_config

from exchanges.ccxt_config import websocket_url_for
from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.server import AccountConfig, EmulatorServer, FaultConfig
from exchanges.gateway import GatewayCredentials, OrderRequest
from exchanges.ratelimit import LocalTokenBucket
from mmplatform.errors import (
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    ReplaceCancelFailedError,
)

BTC = "BTC/USDT"


def gateway_for(server: EmulatorServer, **options) -> CcxtGateway:
    credentials = GatewayCredentials("acct-replace", "binance", API_KEY, API_SECRET, api_base_url=server.base_url,
                                     rate_limit_per_sec=100_000.0)
    return CcxtGateway(credentials, rate_limiter=LocalTokenBucket(1e6), **options)


def orders_by_client_id(server: EmulatorServer) -> dict:
    return {o.client_order_id: o for o in server.engine.known_orders(API_KEY)}


async def test_replace_cancels_the_old_order_and_rests_the_new_one_in_one_request():
    async with EmulatorServer(emulator_config()) as server:
        gateway = gateway_for(server)
        try:
            await gateway.load_markets()
            bid = (await gateway.fetch_order_book(BTC, 1)).bids[0].price
            old = await gateway.place_order(OrderRequest(BTC, "buy", bid - 50, D("0.01"), "rq-old"))
            before = server.request_count
            new = await gateway.replace_order(BTC, cancel_exchange_order_id=old.exchange_order_id,
                                              cancel_client_order_id=None,
                                              new=OrderRequest(BTC, "buy", bid - D("40.009"), D("0.0200009"), "rq-new"))
            assert server.request_count == before + 1
            assert (new.client_order_id, new.price, new.amount, new.is_open) == ("rq-new", bid - D("40.01"),
                                                                                 D("0.02"), True)
            known = orders_by_client_id(server)
            assert known["rq-old"].status == "CANCELED" and known["rq-new"].status == "NEW"
            assert [o.client_order_id for o in await gateway.fetch_open_orders(BTC)] == ["rq-new"]
            # by client id, and a sell
            ask = (await gateway.fetch_order_book(BTC, 1)).asks[0].price
            await gateway.place_order(OrderRequest(BTC, "sell", ask + 30, D("0.01"), "rq-sell"))
            moved = await gateway.replace_order(BTC, cancel_exchange_order_id=None, cancel_client_order_id="rq-sell",
                                                new=OrderRequest(BTC, "sell", ask + 20, D("0.01"), "rq-sell2"))
            assert moved.price == ask + 20 and orders_by_client_id(server)["rq-sell"].status == "CANCELED"
            assert server.placement_attempts()["rq-sell2"] == 1
        finally:
            await gateway.close()


async def test_a_replace_hands_back_what_the_replaced_order_had_filled():
    """Binance answers a cancel-replace with both halves; ccxt's ``edit_order`` returns only the new order, so the
    gateway sends the request itself (``CancelReplace.request``) and hands back the cancelled half: what the old
    order had filled when it went, which the engine settles the old row with."""
    import time

    async with EmulatorServer(emulator_config(accounts=(
            AccountConfig(API_KEY, API_SECRET, dict(START_BALANCES)),
            AccountConfig("taker-key", "taker-secret", {"BTC": D("10"), "USDT": D("1000000")})))) as server:
        gateway = gateway_for(server)
        try:
            await gateway.load_markets()
            book = await gateway.fetch_order_book(BTC, 1)
            bid, ask = book.bids[0].price, book.asks[0].price
            price = bid + D("0.01")  # alone at the top of the bids
            assert price < ask
            old = await gateway.place_order(OrderRequest(BTC, "buy", price, D("0.01"), "pf-old"))
            taker = server._keys["taker-key"][0]
            server.engine.place_order(taker, BTC, "SELL", "LIMIT", D("0.004"), price, time_in_force="IOC",
                                      now_ms=int(time.time() * 1000))
            cancelled: list = []
            before = server.request_count
            new = await gateway.replace_order(BTC, cancel_exchange_order_id=old.exchange_order_id,
                                              cancel_client_order_id=None,
                                              new=OrderRequest(BTC, "buy", bid - 5, D("0.01"), "pf-new"),
                                              cancelled=cancelled)
            assert server.request_count == before + 1
            assert new.client_order_id == "pf-new" and new.is_open
            assert [(o.client_order_id, o.exchange_order_id, o.status, o.filled, o.amount) for o in cancelled] == [
                ("pf-old", old.exchange_order_id, "canceled", D("0.004"), D("0.01"))]
        finally:
            await gateway.close()


async def test_replace_of_a_filled_order_raises_and_places_nothing():
    async with EmulatorServer(emulator_config()) as server:
        gateway = gateway_for(server)
        try:
            await gateway.load_markets()
            ask = (await gateway.fetch_order_book(BTC, 1)).asks[0].price
            filled = await gateway.place_order(OrderRequest(BTC, "buy", ask, D("0.001"), "fl-old", post_only=False))
            assert filled.status == "closed"
            for ref in ({"cancel_exchange_order_id": filled.exchange_order_id, "cancel_client_order_id": None},
                        {"cancel_exchange_order_id": None, "cancel_client_order_id": "fl-old"}):
                with pytest.raises(ReplaceCancelFailedError) as info:
                    await gateway.replace_order(BTC, **ref, new=OrderRequest(BTC, "buy", ask - 100, D("0.001"),
                                                                             "fl-new"))
                assert isinstance(info.value, OrderNotFoundError) and info.value.cancel_error_code == -2011
                assert info.value.cancelled is False
            assert "fl-new" not in orders_by_client_id(server)
            assert await gateway.fetch_open_orders(BTC) == []
        finally:
            await gateway.close()


async def test_a_rejected_new_order_raises_with_the_cancel_done():
    async with EmulatorServer(emulator_config()) as server:
        gateway = gateway_for(server)
        try:
            await gateway.load_markets()
            book = await gateway.fetch_order_book(BTC, 1)
            bid, ask = book.bids[0].price, book.asks[0].price
            old = await gateway.place_order(OrderRequest(BTC, "buy", bid - 10, D("0.001"), "rj-old"))
            with pytest.raises(InvalidOrderError, match="immediately match") as info:
                await gateway.replace_order(BTC, cancel_exchange_order_id=old.exchange_order_id,
                                            cancel_client_order_id=None,
                                            new=OrderRequest(BTC, "buy", ask, D("0.001"), "rj-cross"))
            assert info.value.cancelled is True
            known = orders_by_client_id(server)
            assert known["rj-old"].status == "CANCELED" and "rj-cross" not in known
            other = await gateway.place_order(OrderRequest(BTC, "sell", ask + 10, D("0.001"), "rj-old2"))
            with pytest.raises(InsufficientFundsError) as info:
                await gateway.replace_order(BTC, cancel_exchange_order_id=other.exchange_order_id,
                                            cancel_client_order_id=None,
                                            new=OrderRequest(BTC, "sell", ask + 10, D("500"), "rj-funds"))
            assert info.value.cancelled is True and orders_by_client_id(server)["rj-old2"].status == "CANCELED"
            # minimums are checked before anything is sent: the old order stays
            kept = await gateway.place_order(OrderRequest(BTC, "buy", bid - 10, D("0.001"), "rj-kept"))
            before = server.request_count
            with pytest.raises(InvalidOrderError, match="below the minimum") as info:
                await gateway.replace_order(BTC, cancel_exchange_order_id=kept.exchange_order_id,
                                            cancel_client_order_id=None,
                                            new=OrderRequest(BTC, "buy", D("100"), D("0.001"), "rj-small"))
            assert info.value.cancelled is False and server.request_count == before
        finally:
            await gateway.close()


async def test_the_book_ticker_push_follows_a_replace():
    async with EmulatorServer(emulator_config()) as server:
        gateway = gateway_for(server)
        try:
            await gateway.load_markets()
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    websocket_url_for(server.base_url)) as ws:
                await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1})
                assert json.loads(await asyncio.wait_for(ws.receive_str(), 10)) == {"result": None, "id": 1}
                first = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
                top = D(first["b"]) + D("0.01")
                old = await gateway.place_order(OrderRequest(BTC, "buy", top, D("0.01"), "bt-old"))
                assert D(json.loads(await asyncio.wait_for(ws.receive_str(), 10))["b"]) == top
                await gateway.replace_order(BTC, cancel_exchange_order_id=old.exchange_order_id,
                                            cancel_client_order_id=None,
                                            new=OrderRequest(BTC, "buy", top + D("0.01"), D("0.02"), "bt-new"))
                frame = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
                assert (D(frame["b"]), D(frame["B"])) == (top + D("0.01"), D("0.02"))
        finally:
            await gateway.close()


class NoSleep:
    """Stands in for asyncio.sleep: counts the backoffs and yields once."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, seconds: float) -> None:
        self.calls += 1
        await asyncio.sleep(0)


@pytest.mark.parametrize("lost_reply_mode", ["504", "drop"])
async def test_three_hundred_replaces_under_faults_place_each_new_order_once(lost_reply_mode):
    """30 ladders of 10 replaces each, concurrently, through 503s, 429 bursts and lost replies (fixed
    seed): every new client id is one order on the emulator and every replaced order is cancelled."""
    async with EmulatorServer(emulator_config(seed=23)) as server:
        gateway = gateway_for(server, sleep=NoSleep(), read_attempts=8, place_attempts=8)
        try:
            await gateway.load_markets()
            bid = (await gateway.fetch_order_book(BTC, 1)).bids[0].price
            firsts = [await gateway.place_order(OrderRequest(BTC, "buy", bid - 100 - i, D("0.001"), f"L{i}-0"))
                      for i in range(30)]
            server.set_faults(FaultConfig(error_rate=0.1, rate_limit_burst_rate=0.02, rate_limit_burst_length=2,
                                          retry_after_secs=0, lost_reply_rate=0.2, lost_reply_mode=lost_reply_mode))

            async def ladder(i: int, order) -> list:
                chain = [order]
                for step in range(1, 11):
                    by_client_id = step % 3 == 0
                    order = await gateway.replace_order(
                        BTC, cancel_exchange_order_id=None if by_client_id else order.exchange_order_id,
                        cancel_client_order_id=order.client_order_id if by_client_id else None,
                        new=OrderRequest(BTC, "buy", bid - 100 - i - step * D("0.5"), D("0.001"), f"L{i}-{step}"))
                    chain.append(order)
                return chain

            chains = await asyncio.gather(*(ladder(i, first) for i, first in enumerate(firsts)))
            server.set_faults(FaultConfig())
            assert server.faults_served["lost_reply"] > 20 and server.faults_served["503"] > 20
            per_cid = Counter(o.client_order_id for o in server.engine.known_orders(API_KEY))
            known = orders_by_client_id(server)
            for i, chain in enumerate(chains):
                ids = [f"L{i}-{step}" for step in range(11)]
                assert [o.client_order_id for o in chain] == ids
                assert [per_cid[c] for c in ids] == [1] * 11
                assert [known[c].status for c in ids] == ["CANCELED"] * 10 + ["NEW"]
                assert all(known[o.client_order_id].order_id == int(o.exchange_order_id) for o in chain)
            open_ids = {o.client_order_id for o in await gateway.fetch_open_orders(BTC)}
            assert open_ids == {f"L{i}-10" for i in range(30)}
            # a lost reply was resolved by lookup, never by a blind re-send (503s never reach the engine)
            attempts = server.placement_attempts()
            assert {attempts[f"L{i}-{step}"] for i in range(30) for step in range(1, 11)} == {1}
        finally:
            await gateway.close()


async def test_a_resend_whose_cancel_fails_resolves_to_the_order_the_first_attempt_placed():
    """The reply is lost and the new order is briefly invisible to the lookup, so the replace is re-sent;
    its cancel fails (the first attempt did it) and nothing is placed twice: a last lookup finds it."""
    async with EmulatorServer(emulator_config()) as server:

        async def pause(seconds: float) -> None:
            await asyncio.sleep(0.15)  # longer than the order stays hidden

        gateway = gateway_for(server, sleep=pause)
        try:
            await gateway.load_markets()
            bid = (await gateway.fetch_order_book(BTC, 1)).bids[0].price
            old = await gateway.place_order(OrderRequest(BTC, "buy", bid - 10, D("0.001"), "hd-old"))
            server.set_faults(FaultConfig(lost_reply_rate=1.0, not_found_after_accept_ms=60))
            new = await gateway.replace_order(BTC, cancel_exchange_order_id=old.exchange_order_id,
                                              cancel_client_order_id=None,
                                              new=OrderRequest(BTC, "buy", bid - 9, D("0.001"), "hd-new"))
            server.set_faults(FaultConfig())
            assert new.client_order_id == "hd-new" and new.is_open
            assert server.placement_attempts()["hd-new"] == 2  # re-sent once, placed once
            per_cid = Counter(o.client_order_id for o in server.engine.known_orders(API_KEY))
            assert per_cid["hd-new"] == 1 and orders_by_client_id(server)["hd-old"].status == "CANCELED"
            assert orders_by_client_id(server)["hd-new"].status == "NEW"
        finally:
            await gateway.close()


def test_replace_needs_an_order_to_cancel_and_the_same_pair():
    gateway = CcxtGateway(GatewayCredentials("acct-x", "binance", "k", "s", api_base_url="http://127.0.0.1:1"),
                          rate_limiter=LocalTokenBucket(10))
    request = OrderRequest(BTC, "buy", D("1"), D("1"), "x1")
    with pytest.raises(ValueError):
        asyncio.run(gateway.replace_order(BTC, cancel_exchange_order_id=None, cancel_client_order_id=None,
                                          new=request))
    with pytest.raises(InvalidOrderError, match="ETH/USDT"):
        asyncio.run(gateway.replace_order("ETH/USDT", cancel_exchange_order_id="1", cancel_client_order_id=None,
                                          new=request))
