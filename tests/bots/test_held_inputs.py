"""What the engine keeps between two checks of a bot instead of building it again (no database, no venue): each
held value is the one a fresh build gives, and a change of what it was built from builds it again."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bots.config import MarketMakingConfig
from bots.engine.inventory_manager import InventoryManager
from bots.engine.orders import OrderManager
from bots.engine.quotes import QuotesMixin
from bots.engine.risk_manager import MarketMakingRiskManager, PairRiskAdjustments
from bots.inventory import PairInventory, aggregate_inventories
from bots.models import Order, OrderPurpose, OrderStatus

PLACED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def quote(cid: str, *, side: str = "buy", price: str = "100.5", amount: str = "2", filled: str = "0",
          status: str = OrderStatus.OPEN, purpose: str = OrderPurpose.QUOTE) -> Order:
    return Order(client_order_id=cid, side=side, price=Decimal(price), amount=Decimal(amount), filled=Decimal(filled),
                 status=status, purpose=purpose, level=1, created_at=PLACED)


def test_live_quotes_are_held_per_row_and_built_again_when_a_row_fills_or_moves() -> None:
    rows = [quote("a"), quote("b", side="sell", price="101"), quote("c", status=OrderStatus.CANCEL_PENDING),
            quote("d", purpose=OrderPurpose.REBALANCE)]
    first = OrderManager.as_live(rows)
    assert [(o.order_id, o.side, o.price, o.size, o.level, o.placed_at) for o in first] == [
        ("a", "buy", 100.5, 2.0, 1, PLACED.timestamp()), ("b", "sell", 101.0, 2.0, 1, PLACED.timestamp())]
    assert OrderManager.as_live(rows) == first
    assert all(again is held for again, held in zip(OrderManager.as_live(rows), first, strict=True))

    rows[0].filled = Decimal("0.75")  # a partial fill: the rest rests
    rows[1].price = Decimal("101.25")
    rows[1].status = OrderStatus.CANCEL_PENDING
    again = OrderManager.as_live(rows)
    assert [(o.order_id, o.size) for o in again] == [("a", 1.25)]
    rows[1].status = OrderStatus.OPEN  # (its cancel refused): it rests at its new price
    assert [(o.order_id, o.price, o.size) for o in OrderManager.as_live(rows)] == [("a", 100.5, 1.25),
                                                                                  ("b", 101.25, 2.0)]


class Position:  # the two attributes ``assess`` reads of a LiquidityPosition
    def __init__(self, account_id: int, pair: str = "BTC/USDT"):
        self.exchange_account_id, self.trading_pair = account_id, pair


def summed_now(inventory: InventoryManager) -> dict[str, PairInventory]:
    """``aggregated`` as a fresh sum gives it."""
    return {pair: aggregate_inventories(pair, list(venues.values()), inventory.target_ratio(pair))
            for pair, venues in inventory.by_pair().items()}


def test_the_aggregated_inventory_is_summed_again_whenever_a_slot_was_assessed_or_dropped() -> None:
    config = MarketMakingConfig(bot_id="1", exchanges=("1", "2"), trading_pairs=("BTC/USDT", "ETH/USDT"))
    inventory = InventoryManager(config)
    inventory.observe_balances(1, {"BTC": Decimal("1"), "ETH": Decimal("10"), "USDT": Decimal("60000")})
    inventory.observe_balances(2, {"BTC": Decimal("2"), "USDT": Decimal("30000")})
    for account_id in (1, 2):
        inventory.assess(Position(account_id), 60000.0)  # type: ignore[arg-type]
    first = inventory.aggregated()
    assert (first["BTC/USDT"].base_balance, first["BTC/USDT"].quote_balance) == (3.0, 90000.0)
    assert first == summed_now(inventory)
    first.clear()  # a caller's copy: what is held is not touched
    assert inventory.aggregated() == summed_now(inventory) != {}

    inventory.assess(Position(2), 61000.0)  # type: ignore[arg-type]  # a new mid on one venue
    moved = inventory.aggregated()
    assert moved == summed_now(inventory) and moved["BTC/USDT"].base_value_quote > 180000.0
    inventory.assess(Position(1, "ETH/USDT"), 3000.0)  # type: ignore[arg-type]  # a new slot
    assert sorted(inventory.aggregated()) == ["BTC/USDT", "ETH/USDT"]
    inventory.current_inventory.pop((2, "BTC/USDT"))  # a venue dropped (as a test of the parity does)
    assert inventory.aggregated()["BTC/USDT"].base_balance == 1.0
    assert inventory.aggregated() == summed_now(inventory)
    inventory.mark_unread(1, "down")
    assert inventory.aggregated() == {}


def test_pair_limits_and_quoting_rules_are_the_configs_whatever_the_adjustment() -> None:
    config = MarketMakingConfig(bot_id="1", exchanges=("1",), trading_pairs=("BTC/USDT",))
    risk = MarketMakingRiskManager(None, config.risk_limits, config)  # type: ignore[arg-type]  # (no bot read)
    assert risk.get_pair_limits("BTC/USDT") == config.pair_risk(1.0)
    assert risk.get_pair_limits("BTC/USDT") is risk.get_pair_limits("ETH/USDT")
    risk.adjustments["BTC/USDT"] = PairRiskAdjustments(spread_multiplier=1.5)
    assert risk.get_pair_limits("BTC/USDT") == config.pair_risk(1.5)
    assert risk.get_pair_limits("ETH/USDT") == config.pair_risk(1.0)
    risk.adjustments["BTC/USDT"].spread_multiplier = 1.0  # the widening lifted
    assert risk.get_pair_limits("BTC/USDT") == config.pair_risk(1.0)

    class Engine:  # what ``quoting_rules`` reads of a MarketMakingBot
        def __init__(self) -> None:
            self.config = config

    engine = Engine()
    assert QuotesMixin.quoting_rules(engine) == config.quoting_rules()  # type: ignore[arg-type]
    assert QuotesMixin.quoting_rules(engine) is QuotesMixin.quoting_rules(engine)  # type: ignore[arg-type]
