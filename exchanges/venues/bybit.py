"""Bybit (v5 API, unified account), spot: client ids (``orderLinkId``) up to 36 of
``[A-Za-z0-9_-]`` (other characters escaped); header-signed requests, no passphrase; no one-request
cancel-replace (amend keeps the order id): a cancel, then a placement; trades paged by ccxt's cursor."""

from __future__ import annotations

from exchanges.venues.base import (
    ClientIdRules,
    Venue,
    base_config,
    private_stream_config,
    public_stream_config,
    websocket_url_for,
)

API_NAMES = ("spot", "futures", "v2", "public", "private")
"""Every entry of ccxt bybit's ``urls['api']`` (ccxt 4.5)."""


def config_for(base_url: str | None, api_key: str, secret: str, passphrase: str = "", timeout_ms: int = 10_000) -> dict:
    """ccxt ``bybit`` config: spot markets only; ``base_url`` points every REST family at it."""
    config = base_config(api_key, secret, passphrase, timeout_ms)
    config["options"] = {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "adjustForTimeDifference": False,
        "fetchOrder": {"acknowledged": True},  # v5 unified: the last 500 orders by id or link id
    }
    if base_url is not None:
        root = base_url.rstrip("/")
        config["urls"] = {"api": {name: root for name in API_NAMES}}
    return config


def stream_config_for(base_url: str | None, timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``bybit`` public-stream config (``<base>/v5/public/spot`` for the emulator)."""
    config = public_stream_config(config_for(base_url, "", "", "", timeout_ms), timeout_ms, keepalive_ms)
    if base_url is not None:
        config["urls"]["api"]["ws"] = {"public": {"spot": websocket_url_for(base_url, "/v5/public/spot")},
                                       "private": {"spot": {"unified": websocket_url_for(base_url, "/v5/private")}}}
    return config


def private_stream_config_for(base_url: str | None, api_key: str, secret: str, passphrase: str = "",
                              timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``bybit`` config for the account's pushes (``watch_orders`` / ``watch_my_trades``: ``auth``
    on the v5 private socket, then the ``order`` / ``execution`` topics); ``base_url`` points every
    private socket ccxt may pick (a unified account's is ``urls['api']['ws']['private']['contract']``) at
    ``<base>/v5/private``."""
    config = private_stream_config(config_for(base_url, api_key, secret, passphrase, timeout_ms), timeout_ms,
                                   keepalive_ms)
    # a unified trading account (v5's private socket): ccxt would otherwise ask by two signed REST reads
    # on every connect which socket to use
    config["options"].update({"enableUnifiedMargin": False, "enableUnifiedAccount": True})
    if base_url is not None:
        private = websocket_url_for(base_url, "/v5/private")
        config["urls"]["api"]["ws"] = {
            "public": {"spot": websocket_url_for(base_url, "/v5/public/spot")},
            "private": {"spot": {"unified": private, "nonUnified": private}, "contract": private, "usdc": private},
        }
    return config


def private_stream_subscribed(message: dict) -> bool:
    """Bybit's answer to a topic subscription: ``{"success": true, "op": "subscribe"}``."""
    return message.get("op") == "subscribe" and message.get("success") is True


VENUE = Venue(
    exchange_id="bybit",
    label="Bybit",
    client_ids=ClientIdRules(max_length=36, pattern=r"[A-Za-z0-9_-]{1,36}", charset=r"[A-Za-z0-9_-]",
                             escapes={}, escape="Z"),
    default_rate_limit_per_sec=10.0,  # spot order endpoints: 20/s per UID; reads 10/s per key
    requires_passphrase=False,
    config=config_for,
    stream_config=stream_config_for,
    duplicate_client_id_markers=("170141",),
    client_id_param="orderLinkId",  # ccxt bybit's fetch_order / cancel_order pass params through as they are
    my_trades_params={"paginate": True},
    private_stream_methods=("watch_orders", "watch_my_trades"),
    private_stream_config=private_stream_config_for,
    private_stream_subscribed=private_stream_subscribed,
    emulator_dialect="bybit",
    self_trade_prevention={"smpType": "CancelTaker"},  # Bybit's default is None (off)
)
