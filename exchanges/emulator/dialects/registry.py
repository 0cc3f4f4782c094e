"""The dialect class of a ``--venue`` value (Binance's is the server itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchanges.emulator.dialects.base import Dialect

if TYPE_CHECKING:
    from exchanges.emulator.server import EmulatorServer


def dialect_for(venue: str, server: EmulatorServer) -> Dialect:
    """The REST dialect ``venue`` over ``server``'s engine; ``ValueError`` for an unknown one."""
    if venue == "okx":
        from exchanges.emulator.dialects.okx import OkxDialect

        return OkxDialect(server)
    if venue == "bybit":
        from exchanges.emulator.dialects.bybit import BybitDialect

        return BybitDialect(server)
    raise ValueError(f"unknown venue {venue!r}: expected binance, okx or bybit")
