"""The one place that configures a ccxt ``binance`` client, e.g. to talk to the local emulator.

Plain dicts only (no ccxt import) so tests, the gateway and the benchmarks share the same settings.
"""

from __future__ import annotations

# every entry of ccxt binance's ``urls['api']`` (ccxt 4.5); a test checks none is left unpointed
_API_PATHS = {
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


def binance_config_for(
    base_url: str | None,
    api_key: str,
    secret: str,
    *,
    timeout_ms: int = 10_000,
) -> dict:
    """ccxt ``binance`` constructor config: spot only, one request to load markets, no ccxt throttle.

    ``base_url`` (e.g. ``http://127.0.0.1:8900``) points every API family at that host; ``None`` keeps
    Binance's own URLs. The gateway does its own rate limiting, so ccxt's ``enableRateLimit`` is off.
    """
    config: dict = {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "adjustForTimeDifference": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        },
    }
    if base_url is not None:
        root = base_url.rstrip("/")
        config["urls"] = {"api": {name: root + path for name, path in _API_PATHS.items()}}
    return config


def websocket_url_for(base_url: str) -> str:
    """The market-stream root for an API base URL: ``http://h:p`` -> ``ws://h:p/ws``
    (``https`` -> ``wss``)."""
    root = base_url.rstrip("/")
    scheme, separator, rest = root.partition("://")
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if not separator or scheme.lower() not in schemes:
        raise ValueError(f"api base url {base_url!r}: expected http(s)://host[:port]")
    return f"{schemes[scheme.lower()]}://{rest}/ws"


def binance_stream_config_for(base_url: str | None, *, timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro ``binance`` config for public market streams: no credentials, REST (markets) and
    ``urls['api']['ws']['spot']`` pointed at ``base_url`` (``None``: Binance's own URLs).

    ``keepalive_ms``: ccxt pings this often and drops a socket that misses two pongs, so a silently
    dead connection is noticed within ``2 * keepalive_ms`` (ccxt's Binance default is 3 minutes).
    """
    config = binance_config_for(base_url, "", "", timeout_ms=timeout_ms)
    del config["apiKey"], config["secret"]
    config["newUpdates"] = True
    config["streaming"] = {"keepAlive": keepalive_ms, "connectionTimeout": timeout_ms}
    if base_url is not None:
        config["urls"]["api"]["ws"] = {"spot": websocket_url_for(base_url)}
    return config
