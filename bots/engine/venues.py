"""How an engine reaches its venues: the gateway factory and the shared market-data key of a venue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HedgeRoute:
    """Cross-venue hedging of a bot (``Bot.hedge_enabled``): fills of quotes on ``hedged`` accounts are
    hedged on ``hedge_account_id``, which quotes nothing itself."""

    hedge_account_id: int
    hedged: frozenset[int]
    max_slippage_bps: float

    def quotes_on(self, account_id: int) -> bool:
        return account_id != self.hedge_account_id


def hedge_route(bot: Any, account_ids: set[int], hedged_ids: set[int]) -> HedgeRoute | None:
    """The bot's route among its active accounts ``account_ids`` (``hedged_ids``: the ticked ones, empty
    for every other account); None when hedging is off."""
    if not bot.hedge_enabled or bot.hedge_account_id is None:
        return None
    hedged = (hedged_ids or account_ids) - {bot.hedge_account_id}
    return HedgeRoute(bot.hedge_account_id, frozenset(hedged), float(bot.hedge_max_slippage_bps))


def slot_of(position: Any) -> Slot:
    return (position.exchange_account_id, position.trading_pair)


class VenueBackoff:
    """Accounts whose venue failed in a cycle of a bot on several venues, kept out of the next full
    cycles of this process for a growing while (1, 2, 4 … 30 s) so a venue that hangs (each call
    waiting out the HTTP timeout) never holds up the other venues' cycles. A success clears it. Process
    memory: every process that runs cycles meets the failure itself; the kill switch's sweep ignores it."""

    FIRST_SECS = 1.0
    MAX_SECS = 30.0

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._down: dict[int, tuple[float, float, str]] = {}  # account -> (retry at, backoff, why)

    def failed(self, account_id: int, reason: str, now: float) -> None:
        with self._lock:
            held = self._down.get(account_id)
            backoff = min(held[1] * 2, self.MAX_SECS) if held else self.FIRST_SECS
            self._down[account_id] = (now + backoff, backoff, reason)

    def recovered(self, account_id: int) -> None:
        with self._lock:
            self._down.pop(account_id, None)

    def skipped(self, account_id: int, now: float) -> str | None:
        """Why this account's venue sits this cycle out (None: try it)."""
        with self._lock:
            held = self._down.get(account_id)
        if held is None or now >= held[0]:
            return None
        return f"unreachable, next try in {held[0] - now:.0f} s (last: {held[2]})"[:300]


venue_backoff = VenueBackoff()
