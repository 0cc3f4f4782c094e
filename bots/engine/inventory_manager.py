"""The spec's InventoryManager: balances per account, inventory per pair, rebalancing need."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bots.config import MarketMakingConfig
from bots.inventory import PairInventory, RebalancingTrade, needs_rebalancing
from bots.models import (
    LiquidityPosition,
    Order,
)
from exchanges.gateway import ExchangeGateway
from mmplatform import aio


class InventoryManager:
    """Balances per asset and per pair, ratios against targets (spec InventoryManager)."""

    def __init__(self, config: MarketMakingConfig):
        self.config = config.inventory_settings
        self.default_target = config.strategy_settings.inventory_target_ratio
        self.balances: dict[int, dict[str, Decimal]] = {}
        self.free: dict[int, dict[str, Decimal]] = {}  # the venue's free (not locked) balances, as last read
        self.current_inventory: dict[str, PairInventory] = {}
        self.account_of: dict[str, int] = {}  # pair -> the account whose balances it was assessed on

    def target_ratio(self, pair: str) -> float:
        return float(self.config.target_ratios.get(pair, self.default_target))

    def load_balances(self, gateways: dict[int, ExchangeGateway]) -> None:
        async def fetch_all() -> list[Any]:
            import asyncio

            return await asyncio.gather(*(gw.fetch_balance() for gw in gateways.values()))

        results = aio.run(fetch_all())
        self.balances = {
            account_id: {asset: bal.total for asset, bal in result.assets.items()}
            for account_id, result in zip(gateways, results, strict=True)
        }
        self.free = {
            account_id: {asset: bal.free for asset, bal in result.assets.items()}
            for account_id, result in zip(gateways, results, strict=True)
        }

    def observe_balances(self, account_id: int, balances: dict[str, Decimal], *,
                         free: dict[str, Decimal] | None = None) -> None:
        """One account's balances as the driver's feeder read them (instead of ``load_balances``; ``free``:
        the not-locked part, when it was read)."""
        self.balances[account_id] = balances
        if free:
            self.free[account_id] = free

    def assess(self, position: LiquidityPosition, mid: float) -> PairInventory:
        """Spec assess_initial_inventory / current state for one pair."""
        return self._assess_pair(position.trading_pair, position.exchange_account_id, mid)

    def _assess_pair(self, pair: str, account_id: int, mid: float) -> PairInventory:
        self.account_of[pair] = account_id
        base, quote = pair.split("/")
        balances = self.balances.get(account_id, {})
        inventory = PairInventory(
            trading_pair=pair,
            base_balance=float(balances.get(base, 0)),
            quote_balance=float(balances.get(quote, 0)),
            mid=mid,
            target_ratio=self.target_ratio(pair),
        )
        self.current_inventory[pair] = inventory
        return inventory

    def update_inventory(self, trade: RebalancingTrade, result: Order, account_id: int) -> PairInventory | None:
        """Spec update_inventory: what a rebalancing trade executed (the venue's answer: filled base at
        its average price) moves this manager's balances of the account, and every pair of that account
        (they share its quote balance) is assessed again at the mid it was assessed at, so nothing later
        in the cycle trades on the inventory from before the trade. The fee is not in the answer; the
        next balance read has it."""
        inventory = self.current_inventory.get(trade.trading_pair)
        filled = result.filled or Decimal(0)
        price = result.average_price or result.price
        if inventory is None or filled <= 0 or not price:
            return inventory
        base, quote = trade.trading_pair.split("/")
        balances = self.balances.setdefault(account_id, {})
        signed = filled if trade.side == "buy" else -filled
        balances[base] = balances.get(base, Decimal(0)) + signed
        balances[quote] = balances.get(quote, Decimal(0)) - signed * price
        for pair, held in list(self.current_inventory.items()):
            if self.account_of.get(pair) == account_id:
                self._assess_pair(pair, account_id, held.mid)
        return self.current_inventory[trade.trading_pair]

    def needs_rebalancing(self) -> bool:
        return needs_rebalancing(list(self.current_inventory.values()), self.config)

    def get_final_inventory(self) -> dict[str, dict[str, float]]:
        return {
            pair: {"base": inv.base_balance, "quote": inv.quote_balance, "ratio": inv.current_ratio,
                   "target_ratio": inv.target_ratio}
            for pair, inv in self.current_inventory.items()
        }
