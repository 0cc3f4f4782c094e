"""The spec's InventoryManager: balances per account, inventory per slot (account, pair) and per pair
aggregated across the venues it is quoted on, rebalancing need."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

from bots.config import MarketMakingConfig
from bots.engine.venues import Slot
from bots.inventory import PairInventory, RebalancingTrade, aggregate_inventories, needs_rebalancing
from bots.models import (
    LiquidityPosition,
    Order,
)
from exchanges.gateway import ExchangeGateway
from mmplatform import aio

logger = logging.getLogger(__name__)


class InventoryManager:
    """Balances per asset and per slot, ratios against targets (spec InventoryManager). A pair quoted on
    several venues is one inventory (``aggregated``): its balances summed over the venues, with the
    per-venue inventories (``current_inventory``, keyed by slot) as its breakdown."""

    def __init__(self, config: MarketMakingConfig):
        self.config = config.inventory_settings
        self.default_target = config.strategy_settings.inventory_target_ratio
        self.balances: dict[int, dict[str, Decimal]] = {}
        self.free: dict[int, dict[str, Decimal]] = {}  # the venue's free (not locked) balances, as last read
        self.current_inventory: dict[Slot, PairInventory] = {}
        self.unread: dict[int, str] = {}  # account -> why its last balance read failed (its venue is down)
        # the last ``aggregated`` and the (slot, inventory) items it was summed from: a check reads it twice
        self._aggregated: tuple[tuple[tuple[Slot, PairInventory], ...], dict[str, PairInventory]] | None = None

    def target_ratio(self, pair: str) -> float:
        return float(self.config.target_ratios.get(pair, self.default_target))

    def load_balances(self, gateways: dict[int, ExchangeGateway]) -> None:
        """Every account's balances at once; an account whose venue fails keeps no balances and is
        ``unread`` (its pairs' aggregates are incomplete until it reads again), the others are unaffected."""
        self.apply_balances(gateways, self.start_balance_read(gateways))

    def start_balance_read(self, gateways: dict[int, ExchangeGateway],
                           not_before: dict[int, float] | None = None) -> Future[list[Any]] | None:
        """Start reading these accounts' balances on the I/O loop; ``apply_balances`` takes them in.
        ``not_before``: per account, a read of the process that started at or after that time is taken instead
        of a new one (``ExchangeGateway.fetch_balance_since``)."""
        if not gateways:
            return None
        since = not_before or {}
        return aio.start(aio.settled(
            gw.fetch_balance_since(since[a]) if a in since else gw.fetch_balance() for a, gw in gateways.items()))

    def apply_balances(self, gateways: dict[int, ExchangeGateway], pending: Future[list[Any]] | None) -> None:
        """The balances ``start_balance_read`` began reading for ``gateways``, waited for and taken in
        (``load_balances``)."""
        if pending is None:
            return
        results = aio.wait(pending)
        balances: dict[int, dict[str, Decimal]] = {}
        free: dict[int, dict[str, Decimal]] = {}
        for account_id, result in zip(gateways, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                logger.warning("balance read of account %s failed: %s", account_id, result)
                self.unread[account_id] = f"{type(result).__name__}: {result}"[:300]
                continue
            self.unread.pop(account_id, None)
            balances[account_id] = result.totals()
            free[account_id] = result.free_amounts()
        if results and not balances:
            raise results[0]  # every venue failed (a bot on one venue: its only read), as before
        for account_id in self.unread:
            self.balances.pop(account_id, None)
            self.free.pop(account_id, None)
        self.balances.update(balances)  # a read of some accounts (a fill sync's) keeps the others' balances
        self.free.update(free)
        for slot in [s for s in self.current_inventory if s[0] in self.unread]:
            del self.current_inventory[slot]  # never valued on balances we could not read

    def observe_balances(self, account_id: int, balances: dict[str, Decimal], *,
                         free: dict[str, Decimal] | None = None) -> None:
        """One account's balances as the driver's feeder read them (instead of ``load_balances``; ``free``:
        the not-locked part, when it was read). The account was read: it is no longer ``unread``, so its
        slots are valued again and its pairs' aggregates are complete (a venue back after an outage that a
        full cycle saw is judged by the driver's quiet checks without waiting for the next full cycle)."""
        self.unread.pop(account_id, None)
        self.balances[account_id] = balances
        if free:
            self.free[account_id] = free

    def mark_unread(self, account_id: int, reason: str) -> None:
        """This account's balances could not be read in this cycle: no slot of it is valued."""
        self.unread[account_id] = reason
        self.balances.pop(account_id, None)
        self.free.pop(account_id, None)
        for slot in [s for s in self.current_inventory if s[0] == account_id]:
            del self.current_inventory[slot]

    def assess(self, position: LiquidityPosition, mid: float) -> PairInventory:
        """Spec assess_initial_inventory / current state for one slot."""
        return self._assess_slot((position.exchange_account_id, position.trading_pair), mid)

    def _assess_slot(self, slot: Slot, mid: float) -> PairInventory:
        account_id, pair = slot
        base, quote = pair.split("/")
        balances = self.balances.get(account_id, {})
        inventory = PairInventory(
            trading_pair=pair,
            base_balance=float(balances.get(base, 0)),
            quote_balance=float(balances.get(quote, 0)),
            mid=mid,
            target_ratio=self.target_ratio(pair),
        )
        if account_id not in self.unread:
            self.current_inventory[slot] = inventory
        return inventory

    def update_inventory(self, trade: RebalancingTrade, result: Order, account_id: int) -> PairInventory | None:
        """Spec update_inventory: what a rebalancing trade executed (the venue's answer: filled base at
        its average price) moves this manager's balances of the account, and every slot of that account
        (its pairs share its quote balance) is assessed again at the mid it was assessed at, so nothing
        later in the cycle trades on the inventory from before the trade. Returns the pair's aggregate.
        The fee is not in the answer; the next balance read has it."""
        slot = (account_id, trade.trading_pair)
        inventory = self.current_inventory.get(slot)
        filled = result.filled or Decimal(0)
        price = result.average_price or result.price
        if inventory is None or filled <= 0 or not price:
            return self.aggregated().get(trade.trading_pair)
        base, quote = trade.trading_pair.split("/")
        balances = self.balances.setdefault(account_id, {})
        signed = filled if trade.side == "buy" else -filled
        balances[base] = balances.get(base, Decimal(0)) + signed
        balances[quote] = balances.get(quote, Decimal(0)) - signed * price
        for held_slot, held in list(self.current_inventory.items()):
            if held_slot[0] == account_id:
                self._assess_slot(held_slot, held.mid)
        return self.aggregated()[trade.trading_pair]

    def by_pair(self) -> dict[str, dict[int, PairInventory]]:
        """pair -> account -> that venue's inventory of the pair (the breakdown)."""
        venues: dict[str, dict[int, PairInventory]] = {}
        for (account_id, pair), inventory in self.current_inventory.items():
            venues.setdefault(pair, {})[account_id] = inventory
        return venues

    def aggregated(self) -> dict[str, PairInventory]:
        """pair -> its inventory summed over every venue it is quoted on. Summed again only when a slot's
        inventory is another object than the last sum's (an assessment replaces it; inventories are frozen)."""
        items = tuple(self.current_inventory.items())
        held = self._aggregated
        if held is not None and len(held[0]) == len(items) and all(
                old[0] == new[0] and old[1] is new[1] for old, new in zip(held[0], items, strict=True)):
            return dict(held[1])
        summed = {pair: aggregate_inventories(pair, list(venues.values()), self.target_ratio(pair))
                  for pair, venues in self.by_pair().items()}
        self._aggregated = (items, summed)
        return dict(summed)

    def complete(self, pair: str, accounts: set[int]) -> bool:
        """Every one of ``accounts`` (the pair's venues) has a current inventory of the pair: an
        aggregate missing a venue (its balances unread) is not traded or judged on."""
        held = {account_id for account_id, p in self.current_inventory if p == pair}
        return accounts <= held

    def needs_rebalancing(self) -> bool:
        return needs_rebalancing(list(self.aggregated().values()), self.config)

    def get_final_inventory(self, labels: dict[int, str] | None = None) -> dict[str, dict[str, Any]]:
        """pair -> the aggregated inventory and, under ``venues``, each account's share (by label)."""
        labels = labels or {}
        final: dict[str, dict[str, Any]] = {}
        for pair, venues in self.by_pair().items():
            total = aggregate_inventories(pair, list(venues.values()), self.target_ratio(pair))
            final[pair] = {
                "base": total.base_balance, "quote": total.quote_balance, "ratio": total.current_ratio,
                "target_ratio": total.target_ratio,
                "venues": {labels.get(account_id, str(account_id)): {
                    "base": inv.base_balance, "quote": inv.quote_balance, "ratio": inv.current_ratio}
                    for account_id, inv in sorted(venues.items())},
            }
        return final
