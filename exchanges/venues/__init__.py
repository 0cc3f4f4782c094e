"""The venue registry: one small module per venue holds its quirks (ccxt id, client-order-id rules and
their encoding, cancel-replace, default rate limit, passphrase, stream capabilities, emulator URLs).
Nothing venue-specific lives anywhere else (``tests/exchanges/test_venue_neutral.py`` checks it).

Adding a venue: a module with a ``VENUE`` here, an entry in ``VENUES``, and (for tests and the demo)
an emulator dialect in ``exchanges/emulator/dialects``.
"""

from __future__ import annotations

from exchanges.venues import binance, bybit, okx
from exchanges.venues.base import (
    PLATFORM_CLIENT_ID,
    STREAM_METHODS,
    CancelReplace,
    ClientIdError,
    ClientIdRules,
    ReplaceFailure,
    Venue,
    websocket_url_for,
)

VENUES: dict[str, Venue] = {module.VENUE.exchange_id: module.VENUE for module in (binance, okx, bybit)}
SUPPORTED_EXCHANGE_IDS: tuple[str, ...] = tuple(VENUES)
DEFAULT_EXCHANGE_ID = "binance"

__all__ = [
    "DEFAULT_EXCHANGE_ID", "PLATFORM_CLIENT_ID", "STREAM_METHODS", "SUPPORTED_EXCHANGE_IDS", "VENUES", "CancelReplace",
    "ClientIdError", "ClientIdRules", "ReplaceFailure", "UnknownVenueError", "Venue", "get_venue", "websocket_url_for",
]


class UnknownVenueError(KeyError):
    """An exchange id the registry does not hold."""

    def __str__(self) -> str:
        return f"unsupported exchange {self.args[0]!r}; supported: {', '.join(SUPPORTED_EXCHANGE_IDS)}"


def get_venue(exchange_id: str) -> Venue:
    """The registry entry of a ccxt exchange id; raises ``UnknownVenueError``."""
    venue = VENUES.get(exchange_id)
    if venue is None:
        raise UnknownVenueError(exchange_id)
    return venue
