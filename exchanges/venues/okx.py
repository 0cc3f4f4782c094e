"""OKX (v5 API), spot: client ids (``clOrdId``) are 1-32 alphanumerics, so the platform's ids are
encoded (``-`` -> ``Y``, other characters escaped with ``Z``); requests are signed with key, secret
AND passphrase; no one-request cancel-replace for spot (amend keeps the order id, so a re-quote is a
cancel, then a placement); trades paged by ccxt's own pagination."""

from __future__ import annotations

from exchanges.venues.base import (
    ClientIdRules,
    Venue,
    base_config,
    private_stream_config,
    public_stream_config,
    websocket_url_for,
)


def config_for(base_url: str | None, api_key: str, secret: str, passphrase: str = "", timeout_ms: int = 10_000) -> dict:
    """ccxt ``okx`` config: spot markets only; ``base_url`` points REST (``urls['api']['rest']``) at it."""
    config = base_config(api_key, secret, passphrase, timeout_ms)
    config["options"] = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "adjustForTimeDifference": False}
    if base_url is not None:
        config["urls"] = {"api": {"rest": base_url.rstrip("/")}}
    return config


def stream_config_for(base_url: str | None, timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``okx`` public-stream config (``urls['api']['ws']`` at ``<base>/ws/v5`` for the emulator)."""
    config = public_stream_config(config_for(base_url, "", "", "", timeout_ms), timeout_ms, keepalive_ms)
    if base_url is not None:
        config["urls"]["api"]["ws"] = websocket_url_for(base_url, "/ws/v5")
    return config


def private_stream_config_for(base_url: str | None, api_key: str, secret: str, passphrase: str = "",
                              timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``okx`` config for the account's pushes (``watch_orders`` / ``watch_my_trades``: a ``login``
    on ``<ws>/private`` signed with key, secret and passphrase, then the ``orders`` channel); ``base_url``
    points ``urls['api']['ws']`` at ``<base>/ws/v5`` (ccxt adds ``/private``)."""
    config = private_stream_config(config_for(base_url, api_key, secret, passphrase, timeout_ms), timeout_ms,
                                   keepalive_ms)
    if base_url is not None:
        config["urls"]["api"]["ws"] = websocket_url_for(base_url, "/ws/v5")
    return config


def private_stream_subscribed(message: dict) -> bool:
    """OKX's answer to a subscription of the ``orders`` channel: ``{"event": "subscribe", "arg": {...}}``."""
    arg = message.get("arg")
    return message.get("event") == "subscribe" and isinstance(arg, dict) and arg.get("channel") == "orders"


VENUE = Venue(
    exchange_id="okx",
    label="OKX",
    client_ids=ClientIdRules(max_length=32, pattern=r"[A-Za-z0-9]{1,32}", charset=r"[A-Za-z0-9]",
                             escapes={"-": "Y"}, escape="Z"),
    default_rate_limit_per_sec=20.0,  # 60 orders / 2 s per instrument; reads 20 / 2 s: the budget is shared
    requires_passphrase=True,
    config=config_for,
    stream_config=stream_config_for,
    duplicate_client_id_markers=("51016",),
    my_trades_params={"paginate": True},
    quote_update_id_key="seqId",
    private_stream_methods=("watch_orders", "watch_my_trades"),
    private_stream_config=private_stream_config_for,
    private_stream_subscribed=private_stream_subscribed,
    pushed_fee_negated=True,
    emulator_dialect="okx",
    self_trade_prevention={"stpMode": "cancel_taker"},  # OKX's default is cancel_maker
)
