"""The emulator's cancel-replace: the engine step and ``POST /api/v3/order/cancelReplace``'s frames."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal as D
from urllib.parse import urlencode

import pytest
from exchanges_testkit import API_KEY, API_SECRET

from exchanges.emulator.engine import FilterError, MarketSpec, MatchingEngine, WouldMatchError
from exchanges.emulator.server import EmulatorServer

BTC = "BTC/USDT"
_ids = itertools.count()


def cid(prefix: str) -> str:
    return f"{prefix}{next(_ids)}x{int(time.time() * 1000) % 10**8}"


# --- the engine step (pure) -----------------------------------------------------------------------


def engine_with_account(usdt: str = "1000") -> MatchingEngine:
    spec = MarketSpec(BTC, "BTC", "USDT", D("0.01"), D("0.001"), D("0.001"), D("5"))
    engine = MatchingEngine([spec], D("0.001"), D("0.001"), first_id=1)
    engine.create_account("mm", {"USDT": D(usdt), "BTC": D("1")})
    engine.create_account("other", {"USDT": D("100000"), "BTC": D("100")})
    return engine


def test_engine_replace_uses_the_released_funds_and_keeps_the_cancel_when_the_new_order_fails():
    engine = engine_with_account(usdt="1000")
    old, _ = engine.place_order("mm", BTC, "BUY", "LIMIT", D("1"), D("990"), client_order_id="old")
    # the new bid needs the whole balance again: only possible because the cancel released it first
    result = engine.cancel_replace("mm", BTC, cancel_order_id=old.order_id, side="BUY", order_type="LIMIT_MAKER",
                                   quantity=D("1"), price=D("995"), client_order_id="new")
    assert result.succeeded and result.cancelled.status == "CANCELED" and result.new_order.is_open
    assert engine.balances("mm")["USDT"].locked == D("995")
    engine.place_order("other", BTC, "SELL", "LIMIT", D("1"), D("1000"), client_order_id="ask")
    crossing = engine.cancel_replace("mm", BTC, cancel_client_order_id="new", side="BUY", order_type="LIMIT_MAKER",
                                     quantity=D("0.01"), price=D("1000"), client_order_id="cross")
    assert crossing.cancelled is not None and crossing.new_order is None and crossing.new_order_attempted
    assert isinstance(crossing.new_order_error, WouldMatchError)
    assert engine.open_orders("mm") == [] and engine.balances("mm")["USDT"].locked == 0


def test_engine_replace_stops_on_a_failed_cancel_unless_failure_is_allowed():
    engine = engine_with_account()
    stopped = engine.cancel_replace("mm", BTC, cancel_order_id=999, side="BUY", order_type="LIMIT",
                                    quantity=D("0.01"), price=D("900"), client_order_id="a")
    assert (stopped.cancel_error.code, stopped.new_order_attempted, stopped.new_order) == (-2011, False, None)
    assert engine.open_orders("mm") == []
    allowed = engine.cancel_replace("mm", BTC, cancel_order_id=999, allow_failure=True, side="BUY",
                                    order_type="LIMIT", quantity=D("0.01"), price=D("900"), client_order_id="b")
    assert allowed.cancel_error is not None and allowed.new_order.client_order_id == "b"


def test_engine_replace_checks_the_new_orders_filters_before_cancelling():
    engine = engine_with_account()
    old, _ = engine.place_order("mm", BTC, "BUY", "LIMIT", D("0.01"), D("900"), client_order_id="old")
    with pytest.raises(FilterError, match="NOTIONAL"):
        engine.cancel_replace("mm", BTC, cancel_order_id=old.order_id, side="BUY", order_type="LIMIT",
                              quantity=D("0.001"), price=D("1"), client_order_id="tiny")
    assert [o.client_order_id for o in engine.open_orders("mm")] == ["old"]


# --- the emulator endpoint's frames ---------------------------------------------------------------


def signed(base_url: str, method: str, path: str, params: dict) -> tuple[int, dict]:
    """One signed request, parameters in the body of a POST and in the query otherwise (as ccxt sends
    them); returns (status, JSON)."""
    payload = urlencode({**params, "timestamp": int(time.time() * 1000)})
    payload += "&signature=" + hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if method == "POST":
        request = urllib.request.Request(base_url + path, data=payload.encode(), method=method)
    else:
        request = urllib.request.Request(f"{base_url}{path}?{payload}", method=method)
    request.add_header("X-MBX-APIKEY", API_KEY)
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def place(base_url: str, client_order_id: str, price: str, side: str = "BUY", quantity: str = "0.001") -> dict:
    status, order = signed(base_url, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": quantity,
        "price": price, "newClientOrderId": client_order_id})
    assert status == 200, order
    return order


def replace_params(**overrides) -> dict:
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "cancelReplaceMode": "STOP_ON_FAILURE",
              "quantity": "0.001", "price": "50000"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def test_endpoint_success_frame_has_both_responses(emulator: EmulatorServer):
    old = place(emulator.base_url, cid("o"), "50000")
    new_id = cid("n")
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace",
                          replace_params(cancelOrderId=old["orderId"], newClientOrderId=new_id, price="50001"))
    assert status == 200 and (body["cancelResult"], body["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert body["cancelResponse"]["orderId"] == old["orderId"] and body["cancelResponse"]["status"] == "CANCELED"
    new = body["newOrderResponse"]
    assert (new["clientOrderId"], new["status"], new["price"], new["type"], new["fills"]) == (
        new_id, "NEW", "50001.00", "LIMIT_MAKER", [])
    ack_id = cid("k")
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace",
                          replace_params(cancelOrigClientOrderId=new_id, newClientOrderId=ack_id,
                                         newOrderRespType="ACK"))
    assert status == 200 and set(body["newOrderResponse"]) == {
        "symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


def test_endpoint_failure_frames_follow_binance(emulator: EmulatorServer):
    gone = place(emulator.base_url, cid("g"), "50000")
    signed(emulator.base_url, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": gone["orderId"]})
    new_id = cid("n")
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace",
                          replace_params(cancelOrderId=gone["orderId"], newClientOrderId=new_id))
    assert (status, body) == (400, {"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None}})

    old = place(emulator.base_url, cid("o"), "50000")
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace",
                          replace_params(cancelOrderId=old["orderId"], newClientOrderId=cid("x"), price="90000"))
    assert (status, body["code"], body["msg"]) == (409, -2021, "Order cancel-replace partially failed.")
    data = body["data"]
    assert (data["cancelResult"], data["newOrderResult"]) == ("SUCCESS", "FAILURE")
    assert data["cancelResponse"]["orderId"] == old["orderId"] and data["cancelResponse"]["status"] == "CANCELED"
    assert data["newOrderResponse"] == {"code": -2010, "msg": "Order would immediately match and take."}

    # ALLOW_FAILURE: the new order goes in although the cancel failed; both failing is -2022
    allowed_id = cid("a")
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace", replace_params(
        cancelOrderId=gone["orderId"], newClientOrderId=allowed_id, cancelReplaceMode="ALLOW_FAILURE"))
    assert (status, body["code"], body["data"]["cancelResult"], body["data"]["newOrderResult"]) == (
        409, -2021, "FAILURE", "SUCCESS")
    assert body["data"]["newOrderResponse"]["clientOrderId"] == allowed_id
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace", replace_params(
        cancelOrderId=gone["orderId"], newClientOrderId=cid("b"), cancelReplaceMode="ALLOW_FAILURE", price="90000"))
    assert (status, body["code"], body["data"]["cancelResult"], body["data"]["newOrderResult"]) == (
        400, -2022, "FAILURE", "FAILURE")
    assert body["data"]["newOrderResponse"]["code"] == -2010


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"cancelReplaceMode": None}, -1102),
        ({"cancelReplaceMode": "SOMETIMES"}, -1100),
        ({"cancelOrderId": None}, -1102),
        ({"quantity": "0.0000001"}, -1013),  # filters are checked before either half
        ({"type": "STOP_LOSS"}, -1116),
    ],
)
def test_endpoint_refuses_bad_requests_before_either_half(emulator: EmulatorServer, overrides, code):
    old = place(emulator.base_url, cid("o"), "50000")
    params = replace_params(**{"cancelOrderId": old["orderId"], "newClientOrderId": cid("n"), **overrides})
    status, body = signed(emulator.base_url, "POST", "/api/v3/order/cancelReplace", params)
    assert status == 400 and body["code"] == code and "data" not in body
    status, still = signed(emulator.base_url, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": old["orderId"]})
    assert still["status"] == "NEW"
