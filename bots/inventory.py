"""Pure inventory math (spec InventoryManager): ratios against targets and rebalancing trades."""

from __future__ import annotations

from dataclasses import dataclass

from bots.config import InventoryConfig


@dataclass(frozen=True, slots=True)
class PairInventory:
    """One pair's balances valued at the mid (spec InventoryState)."""

    trading_pair: str
    base_balance: float
    quote_balance: float
    mid: float
    target_ratio: float

    @property
    def base_value_quote(self) -> float:
        return self.base_balance * self.mid

    @property
    def total_value_quote(self) -> float:
        return self.base_value_quote + self.quote_balance

    @property
    def current_ratio(self) -> float:
        """Base share of the pair's value; 0.5 when the pair holds nothing (spec)."""
        total = self.total_value_quote
        return self.base_value_quote / total if total > 0 else 0.5


@dataclass(frozen=True, slots=True)
class RebalancingTrade:
    """A trade that moves a pair back to its target (spec RebalancingTrade); size in quote value."""

    trading_pair: str
    side: str
    size_quote: float
    reason: str = "INVENTORY_REBALANCING"


def threshold_for(config: InventoryConfig, pair: str) -> float:
    return config.rebalance_thresholds.get(pair, config.default_rebalance_threshold)


def needs_rebalancing(inventories: list[PairInventory], config: InventoryConfig) -> bool:
    """Spec needs_rebalancing: any pair further from its target than its threshold."""
    return any(abs(inv.current_ratio - inv.target_ratio) > threshold_for(config, inv.trading_pair)
               for inv in inventories)


def calculate_rebalancing_trades(inventories: list[PairInventory], config: InventoryConfig,
                                 *, force: bool = False) -> list[RebalancingTrade]:
    """Spec calculate_rebalancing_trades: the base value difference to the target, per pair, when
    the pair is out of its band (or ``force``) and the trade exceeds ``min_trade_value_quote``."""
    trades = []
    for inv in inventories:
        if not force and abs(inv.current_ratio - inv.target_ratio) <= threshold_for(config, inv.trading_pair):
            continue
        target_base_value = inv.total_value_quote * inv.target_ratio
        difference = target_base_value - inv.base_value_quote
        if abs(difference) > config.min_trade_value_quote:
            trades.append(RebalancingTrade(inv.trading_pair, "buy" if difference > 0 else "sell", abs(difference)))
    return trades


def aggregate_inventories(pair: str, inventories: list[PairInventory], target_ratio: float) -> PairInventory:
    """One pair's inventory across the venues it is quoted on: balances summed, valued at the mean of
    the venues' finite mids (the per-venue inventories are the breakdown)."""
    mids = [inv.mid for inv in inventories if inv.mid > 0 and inv.mid == inv.mid and inv.mid != float("inf")]
    return PairInventory(
        trading_pair=pair,
        base_balance=sum(inv.base_balance for inv in inventories),
        quote_balance=sum(inv.quote_balance for inv in inventories),
        mid=sum(mids) / len(mids) if mids else float("nan"),
        target_ratio=target_ratio,
    )


@dataclass(frozen=True, slots=True)
class VenueOffer:
    """What one venue offers a rebalancing trade: its best prices and the balances that fund it."""

    key: object
    best_bid: float
    best_ask: float
    base_balance: float
    quote_balance: float


def venues_by_price(side: str, offers: list[VenueOffer]) -> list[VenueOffer]:
    """The venues that can fund some of a rebalancing trade of ``side``, cheapest first: a buy's by
    ascending ask (quote held there), a sell's by descending bid (base held there); ties keep their order."""
    if side == "buy":
        return sorted((o for o in offers if o.quote_balance > 0 and o.best_ask > 0), key=lambda o: o.best_ask)
    return sorted((o for o in offers if o.base_balance > 0 and o.best_bid > 0), key=lambda o: -o.best_bid)
