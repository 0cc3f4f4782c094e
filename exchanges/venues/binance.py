"""Binance spot: client ids up to 36 of ``[.A-Za-z0-9:/_-]`` (sent as they are), cancel-replace in one
request (``order/cancelReplace``), trades paged by ``fromId``, no passphrase."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from exchanges.venues.base import (
    CancelReplace,
    ClientIdRules,
    ReplaceFailure,
    Venue,
    base_config,
    private_stream_config,
    public_stream_config,
    websocket_url_for,
)

# every entry of ccxt binance's ``urls['api']`` (ccxt 4.5); a test checks none is left unpointed
API_PATHS = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}


def config_for(base_url: str | None, api_key: str, secret: str, passphrase: str = "", timeout_ms: int = 10_000) -> dict:
    """ccxt ``binance`` constructor config: spot only, one request to load markets, no ccxt throttle.

    ``base_url`` (e.g. ``http://127.0.0.1:8900``) points every API family at that host; ``None`` keeps
    Binance's own URLs."""
    config = base_config(api_key, secret, passphrase, timeout_ms)
    config["options"] = {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "adjustForTimeDifference": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    }
    if base_url is not None:
        root = base_url.rstrip("/")
        config["urls"] = {"api": {name: root + path for name, path in API_PATHS.items()}}
    return config


def stream_config_for(base_url: str | None, timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``binance`` config for public market streams: REST (markets) and
    ``urls['api']['ws']['spot']`` pointed at ``base_url`` (``None``: Binance's own URLs; ccxt's default
    keepalive there is 3 minutes)."""
    config = public_stream_config(config_for(base_url, "", "", "", timeout_ms), timeout_ms, keepalive_ms)
    if base_url is not None:
        config["urls"]["api"]["ws"] = {"spot": websocket_url_for(base_url)}
    return config


def private_stream_config_for(base_url: str | None, api_key: str, secret: str, passphrase: str = "",
                              timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``binance`` config for the account's user-data stream (``watch_orders`` /
    ``watch_my_trades``: spot subscribes with a signed ``userDataStream.subscribe.signature`` on the
    WebSocket API); ``base_url`` points ``urls['api']['ws']`` (``spot`` and ``ws-api``) at that host."""
    config = private_stream_config(config_for(base_url, api_key, secret, passphrase, timeout_ms), timeout_ms,
                                   keepalive_ms)
    if base_url is not None:
        config["urls"]["api"]["ws"] = {"spot": websocket_url_for(base_url),
                                       "ws-api": {"spot": websocket_url_for(base_url, "/ws-api/v3")}}
    return config


def private_stream_subscribed(message: dict) -> bool:
    """The WebSocket API's answer to ``userDataStream.subscribe.signature``: ``{"result": {"subscriptionId"}}``."""
    result = message.get("result")
    return isinstance(result, dict) and "subscriptionId" in result


def private_stream_balances(message: dict) -> dict[str, tuple[Decimal, Decimal]] | None:
    """The account's balances in an ``outboundAccountPosition`` push (``{"subscriptionId", "event": {"e":
    "outboundAccountPosition", "B": [{"a", "f", "l"}]}}``): venue asset -> (free, locked); None for any other
    message."""
    event = message.get("event")
    if not isinstance(event, dict) or event.get("e") != "outboundAccountPosition":
        return None
    return {str(entry["a"]): (Decimal(str(entry["f"])), Decimal(str(entry["l"])))
            for entry in event.get("B") or () if isinstance(entry, dict) and "a" in entry}


def _replace_params(cancel_order_id: str | None, cancel_client_id: str | None) -> dict:
    params: dict = {"cancelReplaceMode": "STOP_ON_FAILURE"}
    if not cancel_order_id:  # ccxt then sends cancelOrigClientOrderId instead of cancelOrderId
        params["cancelOrigClientOrderId"] = cancel_client_id
    return params


def replace_failure(error: BaseException | None) -> ReplaceFailure | None:
    """The -2021 / -2022 body (with its ``data``) a ccxt exception carries in its message
    (``"binance {...}"``); None for any other error."""
    if error is None:
        return None
    text = str(error)
    start = text.find("{")
    if start < 0 or "-202" not in text:
        return None
    try:
        body = json.loads(text[start:])
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("code") not in (-2021, -2022) or not isinstance(body.get("data"), dict):
        return None
    data = body["data"]
    cancel = data.get("cancelResponse") or {}
    return ReplaceFailure(
        cancel_succeeded=data.get("cancelResult") == "SUCCESS",
        cancel_code=cancel.get("code"),
        cancel_message=str(cancel.get("msg") or ""),
        new_order_response=data.get("newOrderResponse") or {},
    )


async def _replace_request(client: Any, cancel_order_id: str | None, pair: str, order_type: str, side: str,
                           amount: str, price: str | None, params: dict) -> dict:
    """``POST /api/v3/order/cancelReplace`` as ccxt's ``edit_order`` sends it (``edit_spot_order_request``), the
    answer kept whole: ``edit_order`` returns only ``newOrderResponse`` and drops ``cancelResponse``, whose
    ``executedQty`` is what the replaced order had filled when it was cancelled."""
    return await client.privatePostOrderCancelReplace(
        client.edit_spot_order_request(cancel_order_id, pair, order_type, side, amount, price, params))


def _replace_halves(answer: dict) -> tuple[dict, dict]:
    return answer.get("newOrderResponse") or {}, answer.get("cancelResponse") or {}


def _next_trades_page(page: list[dict], page_size: int) -> dict | None:
    if len(page) < page_size:
        return None
    return {"fromId": int(page[-1]["id"]) + 1}


VENUE = Venue(
    exchange_id="binance",
    label="Binance",
    client_ids=ClientIdRules(max_length=36, pattern=r"[.A-Za-z0-9:/_-]{1,36}"),
    default_rate_limit_per_sec=20.0,
    requires_passphrase=False,
    config=config_for,
    stream_config=stream_config_for,
    cancel_replace=CancelReplace(
        params=_replace_params,
        failure=replace_failure,
        rejection_url=lambda urls: str(urls["api"]["private"]) + "/order",
        request=_replace_request,
        halves=_replace_halves,
    ),
    duplicate_client_id_markers=("Duplicate order",),
    next_trades_page=_next_trades_page,
    quote_update_id_key="u",
    private_stream_methods=("watch_orders", "watch_my_trades"),
    private_stream_config=private_stream_config_for,
    private_stream_subscribed=private_stream_subscribed,
    private_stream_balances=private_stream_balances,
    emulator_dialect="binance",
    # the new order expires, the resting one stays (what the pipeline's own check does); ccxt passes it as is
    self_trade_prevention={"selfTradePreventionMode": "EXPIRE_TAKER"},
)
