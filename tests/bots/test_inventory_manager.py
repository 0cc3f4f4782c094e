"""The engine's InventoryManager on its own (no database, no venue): what a balance read, a failed read and
the driver's observed balances do to an account's ``unread`` mark and to its slots' inventory."""

from __future__ import annotations

from decimal import Decimal

from bots.config import MarketMakingConfig
from bots.engine.inventory_manager import InventoryManager

BINANCE, OKX = 1, 2


def manager() -> InventoryManager:
    return InventoryManager(MarketMakingConfig(bot_id="1", exchanges=("1", "2"), trading_pairs=("BTC/USDT",)))


class Position:  # the two attributes ``assess`` reads of a LiquidityPosition
    def __init__(self, account_id: int, pair: str = "BTC/USDT"):
        self.exchange_account_id, self.trading_pair = account_id, pair


def test_balances_observed_after_a_failed_read_value_the_account_again() -> None:
    """A full cycle could not read OKX (its venue was down): OKX is unread, its slot not valued, the pair's
    aggregate incomplete. The driver's feeder then reads OKX again and hands the balances over: the account
    is read, its slot valued, the aggregate complete (rebalancing and the imbalance check see the pair)."""
    inventory = manager()
    inventory.observe_balances(BINANCE, {"BTC": Decimal("1"), "USDT": Decimal("60000")})
    inventory.assess(Position(BINANCE), 60000.0)  # type: ignore[arg-type]
    inventory.mark_unread(OKX, "ExchangeNotAvailable: okx down")
    inventory.assess(Position(OKX), 60000.0)  # type: ignore[arg-type]
    assert inventory.unread == {OKX: "ExchangeNotAvailable: okx down"}
    assert not inventory.complete("BTC/USDT", {BINANCE, OKX})

    inventory.observe_balances(OKX, {"BTC": Decimal("2"), "USDT": Decimal("30000")},
                               free={"BTC": Decimal("2"), "USDT": Decimal("30000")})
    inventory.assess(Position(OKX), 60000.0)  # type: ignore[arg-type]

    assert inventory.unread == {}
    assert inventory.complete("BTC/USDT", {BINANCE, OKX})
    total = inventory.aggregated()["BTC/USDT"]
    assert (total.base_balance, total.quote_balance) == (3.0, 90000.0)
    assert inventory.free[OKX] == {"BTC": Decimal("2"), "USDT": Decimal("30000")}


def test_observing_one_account_leaves_another_accounts_unread_mark() -> None:
    inventory = manager()
    inventory.mark_unread(OKX, "timeout")
    inventory.observe_balances(BINANCE, {"BTC": Decimal("1")})
    assert inventory.unread == {OKX: "timeout"}
    inventory.assess(Position(OKX), 60000.0)  # type: ignore[arg-type]
    assert (OKX, "BTC/USDT") not in inventory.current_inventory
