"""Get the gateway: the process's one ``ExchangeGateway`` per exchange account (``CcxtGateway``), rebuilt
when the account's credentials change. Above both ``exchanges.gateway`` (the interface, pure) and
``exchanges.ccxt_gateway`` (its ccxt implementation), so neither imports the other back."""

from __future__ import annotations

import os
import threading
from typing import Any

from exchanges.ccxt_gateway import CcxtGateway
from exchanges.gateway import ExchangeGateway, credentials_fingerprint

_cache: dict[str, tuple[str, ExchangeGateway]] = {}
_cache_lock = threading.Lock()
_cache_pid = os.getpid()


def get_gateway(credentials: Any, **options: Any) -> ExchangeGateway:
    """The process's gateway for an account, rebuilt when its credentials change.

    ``credentials`` is a ``GatewayCredentials`` or any object with the same attributes (e.g.
    ``exchanges.models.AccountCredentials``). ``options`` go to ``CcxtGateway`` on creation
    (e.g. ``redis_url=``); by default the Redis limiter uses ``$REDIS_URL`` when it is set.
    """
    global _cache_pid
    fingerprint = credentials_fingerprint(credentials)
    with _cache_lock:
        if _cache_pid != os.getpid():  # a forked worker must not share its parent's sockets
            _cache.clear()
            _cache_pid = os.getpid()
        entry = _cache.get(credentials.account_key)
        if entry is not None and entry[0] == fingerprint:
            return entry[1]
        gateway = CcxtGateway(credentials, **options)
        _cache[credentials.account_key] = (fingerprint, gateway)
    if entry is not None:
        entry[1].discard()  # type: ignore[attr-defined]
    return gateway


def clear_gateway_cache(wait_secs: float = 0.0) -> None:
    """Forget every cached gateway, its ccxt clients closed (tests; ``wait_secs``: ``CcxtGateway.discard``)."""
    with _cache_lock:
        gateways = [gateway for _, gateway in _cache.values()]
        _cache.clear()
    for gateway in gateways:
        gateway.discard(wait_secs)  # type: ignore[attr-defined]
