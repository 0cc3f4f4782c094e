"""How an engine reaches its venues: the gateway factory and the shared market-data key of a venue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exchanges.gateway import ExchangeGateway

GatewayFactory = Callable[[Any], ExchangeGateway]


def exchange_key(account: Any) -> str:
    """Public market data is the same for every account of one venue: share it across tenants."""
    return f"{account.exchange_id}@{account.api_base_url or 'default'}"


def default_gateway_factory(account: Any) -> ExchangeGateway:
    from bots.engine.gateways import gateway_for_account

    return gateway_for_account(account)


Slot = tuple[int, str]
"""Where a bot quotes: (exchange account id, pair). A bot quotes one pair on several accounts at once,
one ``LiquidityPosition`` per slot; the engine keys its per-quote state (snapshots, books, analyses,
inventories) by slot and aggregates per pair across them."""


def slot_of(position: Any) -> Slot:
    return (position.exchange_account_id, position.trading_pair)
