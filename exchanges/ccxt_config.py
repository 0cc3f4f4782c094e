"""ccxt client configs by venue, e.g. to talk to the local emulator: thin entry points over the venue
registry (``exchanges.venues``), where each venue's settings live.

Plain dicts only (no ccxt import) so tests, the gateway and the benchmarks share the same settings.
"""

from __future__ import annotations

from exchanges.venues import binance as _default_venue
from exchanges.venues import get_venue, websocket_url_for


def config_for(exchange_id: str, base_url: str | None, api_key: str, secret: str, passphrase: str = "", *,
               timeout_ms: int = 10_000) -> dict:
    """ccxt constructor config of ``exchange_id``; ``base_url`` points it at that host (the emulator),
    ``None`` keeps the venue's own URLs. ccxt's own throttle is off: the gateway keeps the budget."""
    return get_venue(exchange_id).config(base_url, api_key, secret, passphrase, timeout_ms)


def stream_config_for(exchange_id: str, base_url: str | None, *, timeout_ms: int = 10_000,
                      keepalive_ms: int = 10_000) -> dict:
    """ccxt.pro config of ``exchange_id`` for public market streams (no credentials)."""
    return get_venue(exchange_id).stream_config(base_url, timeout_ms, keepalive_ms)


# the default venue's configs under their historical names (tests and benchmarks use them)
_API_PATHS = _default_venue.API_PATHS


def binance_config_for(base_url: str | None, api_key: str, secret: str, *, timeout_ms: int = 10_000) -> dict:
    """``config_for`` of the default venue (kept for the callers written before the registry)."""
    return _default_venue.config_for(base_url, api_key, secret, "", timeout_ms)


def binance_stream_config_for(base_url: str | None, *, timeout_ms: int = 10_000, keepalive_ms: int = 10_000) -> dict:
    """``stream_config_for`` of the default venue (kept for the callers written before the registry)."""
    return _default_venue.stream_config_for(base_url, timeout_ms, keepalive_ms)


__all__ = ["binance_config_for", "binance_stream_config_for", "config_for", "stream_config_for", "websocket_url_for"]
