"""The OKX and Bybit dialects' private streams, read by ccxt.pro's real ``okx`` and ``bybit`` classes,
unmodified, with only their URLs pointed at an emulator process (``Venue.private_stream_config``;
orders sent by ccxt's REST classes from a second account too): signing in with good and bad
credentials, ``watch_orders`` following an order from NEW through a partial fill to filled and another
to its cancel, ``watch_my_trades`` seeing each trade with its price, amount, fee, order id and client id
-- every pushed structure checked with ccxt's own validators (``ccxt.test.exchange.base``). Then, on all
three dialects (Binance's user-data stream included), a resting order the venue's self-trade prevention
expired is pushed too. A raw websocket checks the protocols' refusals and ping / pong."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from ccxt.test.exchange.base.test_order import test_order as check_order
from ccxt.test.exchange.base.test_trade import test_trade as check_trade

from exchanges.ccxt_config import config_for
from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.child import emulator_process
from exchanges.gateway import GatewayCredentials, OrderRequest
from exchanges.streams import OrderUpdateStream
from exchanges.venues import get_venue
from exchanges.venues.base import websocket_url_for
from mmplatform.errors import AuthenticationFailedError, ExchangeError

BTC = "BTC/USDT"
PASSPHRASE = "Stream-Phrase-1"
MAKER = ("maker-key", "maker-secret")
TAKER = ("taker-key", "taker-secret")
MAKER_FEE = D("0.001")  # the buyer's fee is in base: 0.004 BTC bought as maker -> 0.000004 BTC
WATCH_SECS = 15.0  # a guard against hanging, not a speed assertion
PRIVATE_PATHS = {"okx": "/ws/v5/private", "bybit": "/v5/private"}


def passphrase(venue: str) -> str:
    return PASSPHRASE if get_venue(venue).requires_passphrase else ""


@pytest.fixture(scope="module", params=("okx", "bybit"))
def venue(request: Any) -> Iterator[tuple[str, str]]:
    yield from _emulator(request.param)


@pytest.fixture(scope="module", params=("binance", "okx", "bybit"))
def any_venue(request: Any) -> Iterator[tuple[str, str]]:
    yield from _emulator(request.param)


def _emulator(name: str) -> Iterator[tuple[str, str]]:
    args = ["--venue", name, "--maker-fee", str(MAKER_FEE), "--symbols", "BTC/USDT,ETH/USDT"]
    for key, secret in (MAKER, TAKER):
        args += ["--account", f"{key}:{secret}:BTC=10,USDT=1000000"]
    if passphrase(name):
        args += ["--passphrase", passphrase(name)]
    with emulator_process(*args) as base_url:
        yield name, base_url


def pro_client(venue: str, base_url: str, key: str = MAKER[0], secret: str = MAKER[1],
               phrase: str | None = None) -> Any:
    config = get_venue(venue).private_stream_config(
        base_url, key, secret, passphrase(venue) if phrase is None else phrase, 10_000, 10_000)
    return getattr(ccxt_pro, venue)(config)


def rest_client(venue: str, base_url: str, account: tuple[str, str]) -> Any:
    return getattr(ccxt_async, venue)(config_for(venue, base_url, account[0], account[1], passphrase(venue)))


class Collector:
    """Everything one ``watch_*`` method of a ccxt.pro client returns, gathered in the background."""

    def __init__(self, watch: Callable[[], Any]):
        self.items: list[dict] = []
        self._task = asyncio.ensure_future(self._run(watch))

    async def _run(self, watch: Callable[[], Any]) -> None:
        while True:  # copies: ccxt updates the cached structure of an order in place
            self.items += [copy.deepcopy(item) for item in await watch()]

    async def until(self, done: Callable[[dict], bool]) -> dict:
        deadline = time.monotonic() + WATCH_SECS
        while time.monotonic() < deadline:
            if self._task.done():
                self._task.result()  # the watch failed: raise its error
            for item in self.items:
                if done(item):
                    return item
            await asyncio.sleep(0.02)
        raise AssertionError(f"not pushed within {WATCH_SECS} s; pushed so far: {self.items}")

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass


async def live(orders: Collector, rest: Any, cid: str) -> None:
    """Until a probe order far from the market shows up on the stream: the subscription is confirmed."""
    book = await rest.fetch_order_book(BTC, 5)
    price = float(rest.price_to_precision(BTC, book["bids"][0][0] * 0.8))
    for attempt in range(20):
        probe = await rest.create_order(BTC, "limit", "buy", 0.001, price, {"clientOrderId": f"{cid}p{attempt}"})
        await rest.cancel_order(probe["id"], BTC)
        try:
            await asyncio.wait_for(orders.until(lambda o, i=probe["id"]: o["id"] == i), 1.0)
            return
        except (TimeoutError, AssertionError):
            continue
    raise AssertionError("the stream never showed a probe order")


def client_id_of(venue: str, trade: dict) -> str:
    """The trade's client order id as the venue pushes it (ccxt's trade structure has none)."""
    return trade["info"]["clOrdId" if venue == "okx" else "orderLinkId"]


def test_watch_orders_and_my_trades_follow_an_order_to_filled_and_another_to_cancelled(venue):
    name, base_url = venue

    async def scenario() -> None:
        pro = pro_client(name, base_url)
        rest, taker = rest_client(name, base_url, MAKER), rest_client(name, base_url, TAKER)
        now = rest.milliseconds()
        orders = trades = None
        try:
            await pro.load_markets()
            await rest.load_markets()
            orders = Collector(lambda: pro.watch_orders(BTC))
            trades = Collector(lambda: pro.watch_my_trades(BTC))
            await live(orders, rest, "live1")
            book = await rest.fetch_order_book(BTC, 5)
            # inside the spread: the best bid alone, first in line for the taker
            bid = float(rest.price_to_precision(BTC, (book["bids"][0][0] + book["asks"][0][0]) / 2))
            cid = f"fill{int(time.time() * 1000) % 10**8}"
            resting = await rest.create_order(BTC, "limit", "buy", 0.01, bid, {"clientOrderId": cid})
            new = await orders.until(lambda o: o["id"] == resting["id"])
            assert (new["status"], new["filled"], new["clientOrderId"]) == ("open", 0, cid)

            # another account sells into it twice: a partial fill, then the rest
            taker_ids = {(await taker.create_order(BTC, "limit", "sell", 0.004, bid, {"timeInForce": "IOC"}))["id"]}
            partial = await orders.until(lambda o: o["id"] == resting["id"] and o["filled"] == 0.004)
            assert partial["status"] == "open" and partial["remaining"] == pytest.approx(0.006)
            taker_ids.add((await taker.create_order(BTC, "limit", "sell", 0.006, bid, {"timeInForce": "IOC"}))["id"])
            filled = await orders.until(lambda o: o["id"] == resting["id"] and o["status"] == "closed")
            assert filled["filled"] == pytest.approx(0.01) and filled["average"] == pytest.approx(bid)
            steps = [(o["status"], o["filled"]) for o in orders.items if o["id"] == resting["id"]]
            assert steps == [("open", 0), ("open", 0.004), ("closed", 0.01)]

            mine = [t for t in await _trades_until(trades, resting["id"], 2)]
            listed = {t["id"]: t for t in await rest.fetch_my_trades(BTC, since=now - 1000)}
            for trade, amount in zip(mine, (0.004, 0.006), strict=True):
                assert trade["order"] == resting["id"] and client_id_of(name, trade) == cid
                assert trade["price"] == pytest.approx(bid) and trade["amount"] == pytest.approx(amount)
                assert trade["takerOrMaker"] == "maker" and trade["side"] == "buy"
                fee = float(D(str(amount)) * MAKER_FEE)
                # OKX pushes fillFee signed as it books it (negative: paid), and ccxt.pro's okx passes the
                # sign on; Bybit's execFee is the amount paid
                assert trade["fee"]["currency"] == "BTC"
                assert trade["fee"]["cost"] == pytest.approx(-fee if name == "okx" else fee)
                assert trade["id"] in listed and listed[trade["id"]]["amount"] == pytest.approx(amount)
                assert listed[trade["id"]]["fee"]["cost"] == pytest.approx(fee)  # the same trade by REST

            # a second order, cancelled by the account
            other = await rest.create_order(BTC, "limit", "buy", 0.002, bid - 50, {"clientOrderId": cid + "c"})
            await orders.until(lambda o: o["id"] == other["id"] and o["status"] == "open")
            await rest.cancel_order(other["id"], BTC)
            cancelled = await orders.until(lambda o: o["id"] == other["id"] and o["status"] == "canceled")
            assert cancelled["filled"] == 0 and cancelled["clientOrderId"] == cid + "c"

            for order in orders.items:
                check_order(pro, {}, "watchOrders", order, BTC, now)
            for trade in trades.items:
                check_trade(pro, {}, "watchMyTrades", trade, BTC, now, False)
            assert not taker_ids & {o["id"] for o in orders.items}, "another account's orders are not pushed"
            assert all(o["clientOrderId"].startswith(("live1", cid)) for o in orders.items)
        finally:
            for collector in (orders, trades):
                if collector is not None:
                    await collector.stop()
            await pro.close()
            await rest.close()
            await taker.close()

    asyncio.run(scenario())


async def _trades_until(trades: Collector, order_id: str, count: int) -> list[dict]:
    await trades.until(lambda _: len([t for t in trades.items if t["order"] == order_id]) >= count)
    return [t for t in trades.items if t["order"] == order_id]


@pytest.mark.parametrize(("venue", "wrong"), [("okx", "key"), ("okx", "secret"), ("okx", "passphrase"),
                                               ("bybit", "key"), ("bybit", "secret")], indirect=["venue"])
def test_bad_credentials_raise_authentication_error(venue, wrong):
    name, base_url = venue
    key, secret = MAKER
    phrase = passphrase(name)
    if wrong == "key":
        key = "nobody"
    elif wrong == "secret":
        secret = "not-the-secret"
    else:
        phrase = "Wrong-Phrase-9"

    async def scenario() -> None:
        pro = pro_client(name, base_url, key, secret, phrase)
        rest = rest_client(name, base_url, MAKER)
        try:
            pro.set_markets(await rest.load_markets())  # (a client with bad keys cannot load them: signed reads)
            # refused on the socket, in the venue's words (no REST call is made: the markets are set)
            refusal = '"event":"error"' if name == "okx" else '"op":"auth"'
            with pytest.raises(ccxt.AuthenticationError, match=refusal):
                await asyncio.wait_for(pro.watch_orders(BTC), WATCH_SECS)
        finally:
            await pro.close()
            await rest.close()

    asyncio.run(scenario())


def test_protocol_refusals_and_ping(venue):
    """Raw frames: a subscription before signing in is refused in the venue's shape; ping -> pong."""
    name, base_url = venue

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                websocket_url_for(base_url, PRIVATE_PATHS[name])) as ws:
            if name == "okx":
                await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]}))
                answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
                assert answer["event"] == "error" and answer["code"] == "60011"
                await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "tickers", "instId": "X"}]}))
                answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
                assert answer["event"] == "error" and answer["code"] == "60018"
                await ws.send_str("ping")
                assert (await ws.receive(timeout=WATCH_SECS)).data == "pong"
            else:
                await ws.send_str(json.dumps({"op": "subscribe", "req_id": "7", "args": ["order"]}))
                answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
                assert answer["success"] is False and answer["req_id"] == "7"
                assert answer["ret_msg"] == "Request not authorized"
                await ws.send_str(json.dumps({"op": "auth", "args": [MAKER[0], str(int(time.time() * 1000) - 1),
                                                                     "00"]}))
                answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
                assert answer["op"] == "auth" and answer["retCode"] == 10002  # expired
                await ws.send_str(json.dumps({"op": "ping", "req_id": "8"}))
                answer = json.loads((await ws.receive(timeout=WATCH_SECS)).data)
                assert answer["op"] == "pong" and answer["req_id"] == "8"

    asyncio.run(scenario())


# the venue's own parameter that makes an incoming order expire the account's resting one
EXPIRE_MAKER = {"binance": {"selfTradePreventionMode": "EXPIRE_MAKER"}, "okx": {"stpMode": "cancel_maker"},
                "bybit": {"smpType": "CancelMaker"}}


def test_a_resting_order_self_trade_prevention_expired_is_pushed(any_venue):
    name, base_url = any_venue

    async def scenario() -> None:
        pro = pro_client(name, base_url)
        rest = rest_client(name, base_url, MAKER)
        orders = None
        try:
            await pro.load_markets()
            await rest.load_markets()
            orders = Collector(lambda: pro.watch_orders(BTC))
            await live(orders, rest, "stp")
            book = await rest.fetch_order_book(BTC, 5)
            ask = float(rest.price_to_precision(BTC, (book["bids"][0][0] + book["asks"][0][0]) / 2))
            resting = await rest.create_order(BTC, "limit", "sell", 0.003, ask, {"clientOrderId": "stpmaker1"})
            await orders.until(lambda o: o["id"] == resting["id"] and o["status"] == "open")
            # the account's own buy reaches it: the venue expires the resting sell, the buy rests
            crossing = await rest.create_order(BTC, "limit", "buy", 0.003, ask,
                                               {"clientOrderId": "stptaker1", **EXPIRE_MAKER[name]})
            gone = await orders.until(lambda o: o["id"] == resting["id"] and o["status"] != "open")
            assert gone["status"] == ("expired" if name == "binance" else "canceled") and gone["filled"] == 0
            reason = {"binance": ("x", "TRADE_PREVENTION"), "okx": ("cancelSource", "32"),
                      "bybit": ("cancelType", "CancelBySmp")}[name]
            assert gone["info"][reason[0]] == reason[1]
            taker = await orders.until(lambda o: o["id"] == crossing["id"])
            assert taker["status"] == "open" and taker["filled"] == 0
            await rest.cancel_order(crossing["id"], BTC)
        finally:
            if orders is not None:
                await orders.stop()
            await pro.close()
            await rest.close()

    asyncio.run(scenario())


async def next_orders(stream: OrderUpdateStream):
    """The next batch that carries order updates (Binance also pushes the balances an update moved, alone)."""
    while True:
        pushed = await asyncio.wait_for(stream.watch(), WATCH_SECS)
        if pushed.orders or pushed.trades:
            return pushed


def test_the_platforms_order_stream_on_each_venue(any_venue):
    """``exchanges.streams.OrderUpdateStream`` (what the engine's feeder runs per account) over each venue:
    ``subscribe`` returns once the venue confirmed the subscription, so an order placed right after it is
    pushed; the platform's client ids come back decoded (OKX's are sent without dashes); bad credentials
    are refused; an order's fills come with its trades, each equal to the trade the REST read lists (OKX's
    pushed fee sign normalised)."""
    name, base_url = any_venue

    def gateway(secret: str = MAKER[1]) -> CcxtGateway:
        return CcxtGateway(GatewayCredentials(
            account_key=f"{name}-stream-{secret}", exchange_id=name, api_key=MAKER[0], api_secret=secret,
            passphrase=passphrase(name), api_base_url=base_url, rate_limit_per_sec=1000))

    async def scenario() -> None:
        good, bad = gateway(), gateway("not-the-secret")
        stream, refused = OrderUpdateStream(good), OrderUpdateStream(bad)
        try:
            # ccxt.pro 4.5's binance loses a refused subscription's own error (it deletes its subscription
            # twice: KeyError 'spot'), so there the platform sees an ExchangeError it retries with backoff
            with pytest.raises(ExchangeError if name == "binance" else AuthenticationFailedError):
                await refused.subscribe()
            await stream.subscribe()
            book = await good.fetch_order_book(BTC, 5)
            mine = f"mm-7-1-{int(time.time() * 1000) % 10**6}-9b0"
            price = book.bids[0].price - D("100")
            placed = await good.place_order(OrderRequest(BTC, "buy", price=price, amount=D("0.002"),
                                                         client_order_id=mine))
            pushed = await next_orders(stream)
            assert [(o.client_order_id, o.exchange_order_id, o.is_open) for o in pushed.orders] == [
                (mine, placed.exchange_order_id, True)]
            assert pushed.trades == []
            await good.cancel_order(BTC, exchange_order_id=placed.exchange_order_id)
            pushed = await next_orders(stream)
            assert [(o.client_order_id, o.status) for o in pushed.orders] == [(mine, "canceled")]

            # a resting bid filled in two parts by another account: each trade pushed is the trade the REST
            # read lists, to the last digit of price, amount and fee (what the engine books from the push)
            bid = (book.bids[0].price + book.asks[0].price) / 2
            filled_cid = f"mm-7-1-{int(time.time() * 1000) % 10**6}-9b1"
            resting = await good.place_order(OrderRequest(BTC, "buy", price=bid, amount=D("0.01"),
                                                          client_order_id=filled_cid))
            taker = rest_client(name, base_url, TAKER)
            try:
                await taker.load_markets()
                for amount in (0.004, 0.006):
                    await taker.create_order(BTC, "limit", "sell", amount, float(bid), {"timeInForce": "IOC"})
            finally:
                await taker.close()
            orders: list = []
            trades: list = []
            deadline = time.monotonic() + WATCH_SECS
            while (len(trades) < 2 or not any(o.status == "closed" for o in orders)) and time.monotonic() < deadline:
                pushed = await asyncio.wait_for(stream.watch(), WATCH_SECS)
                orders += pushed.orders
                trades += pushed.trades
            listed = [t for t in await good.fetch_my_trades(BTC) if t.exchange_order_id == resting.exchange_order_id]
            assert len(listed) == 2 and sorted(trades, key=lambda t: t.trade_id) == sorted(
                listed, key=lambda t: t.trade_id)
            assert {t.client_order_id for t in trades} == {filled_cid}
            assert sum(t.amount for t in trades) == D("0.01") and all(t.fee and t.fee > 0 for t in trades)
            assert [o.filled for o in orders if o.client_order_id == filled_cid][-1] == D("0.01")
        finally:
            await stream.close()
            await refused.close()
            await good.close()
            await bad.close()

    asyncio.run(scenario())
