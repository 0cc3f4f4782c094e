"""What a ``MarketMakingBot`` holds, declared once: every attribute, its type and who writes it.

``MarketMakingBot`` is put together from ``CycleMixin`` (cycle.py), ``QuotesMixin`` (quotes.py),
``RiskActionsMixin`` (risk_actions.py) and ``HedgingMixin`` (hedging.py); each of them derives from
``BotState``, so mypy checks every mixin against the same declarations (and, through ``if TYPE_CHECKING``
stubs, each call a mixin makes into another one against the real method, which overrides the stub).

One writer at a time (docs/architecture.md, "Who owns what"): the object belongs to whoever runs the
bot's cycle under its lease — a task, or a driver's pool thread while ``Runner.busy``; between cycles
the driver thread alone calls its ``observe_*`` / ``decide_quotes`` / ``risk_in_memory`` for a quiet
check. Only the engine's own modules (bot.py and its mixins) assign these attributes; a test enforces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bots.config import MarketMakingConfig
from bots.engine.inventory_manager import InventoryManager
from bots.engine.orders import OrderManager
from bots.engine.performance import PerformanceTracker
from bots.engine.risk_manager import MarketMakingRiskManager
from bots.engine.self_trades import QuoteGuard
from bots.engine.strategy_engine import StrategyEngine
from bots.engine.venues import GatewayFactory, HedgeRoute, Slot
from bots.models import Bot, Fill, LiquidityPosition, Order
from exchanges.gateway import ExchangeGateway
from exchanges.models import ExchangeAccount
from risk import checks
from strategies.analysis import MarketAnalysis
from strategies.types import MarketSnapshot, OrderIntent


@dataclass
class CycleReport:
    """What one monitoring iteration did (for logs, tests and benchmarks)."""

    placed: int = 0
    cancelled: int = 0
    fills: int = 0
    denied: int = 0
    rebalanced: int = 0
    risk_events: list[str] = field(default_factory=list)
    paused_reason: str = ""


class BotState:
    """The attributes of ``MarketMakingBot`` (set in ``MarketMakingBot.__init__``)."""

    # --- fixed at construction -----------------------------------------------------------------
    bot: Bot  # the row as loaded; status/kill flags re-read by _still_current, never written here
    bot_id: int
    config: MarketMakingConfig
    clock: Callable[[], float]
    gateway_factory: GatewayFactory
    strategy_engine: StrategyEngine
    inventory_manager: InventoryManager  # its balances: load_balances, observe_balances, update_inventory
    risk_manager: MarketMakingRiskManager
    performance_tracker: PerformanceTracker
    order_manager: OrderManager  # the bot's order rows and the venue's answers (orders.py, fills.py)
    accounts: dict[int, ExchangeAccount]
    # --- the cycle's state (the cycle holder writes it) ---------------------------------------------
    lease: Any  # BotLease of the running cycle (None for a test or a lease-less task)
    exchanges: dict[int, ExchangeGateway]  # connected gateways: initialize_exchanges
    connection_problems: dict[str, str]  # initialize_exchanges (and a venue failing at the start)
    venue_errors: dict[int, str]  # account -> why its venue failed in this cycle (monitoring_iteration)
    # keyed by slot (account, pair): a pair is quoted on every account of the bot that lists it (venues.py)
    active_positions: dict[Slot, LiquidityPosition]  # start / stop / reconcile (bot.py), _join_missing_slots
    snapshots: dict[Slot, MarketSnapshot]  # _update_market_data (full cycle) or observe_market (driver)
    book_fetched_at: dict[Slot, float]  # same writers as snapshots
    resting_seen: dict[Slot, tuple[checks.RestingOrder, ...]]  # observe_resting (the driver's account view)
    analyses: dict[Slot, MarketAnalysis]  # _update_market_data or observe_analysis
    report: CycleReport  # reset by begin_kept_cycle; counted by the act path
    cycle: int  # this cycle's number: monitoring_iteration, fenced_cycle, number_cycle
    fenced_at_begin: bool  # fenced_cycle / end_kept_cycle
    guard_at_send: QuoteGuard | None  # a quote guard the next send gate releases (_release_at_send / _check_send)
    balance_read: tuple[dict[int, ExchangeGateway], Any] | None  # reload_balances -> balances_read / end_kept_cycle
    rebalanced_pairs: set[str]  # pairs with a rebalancing trade in this engine's cycle
    rebalance_attempted_at: dict[str, float]  # pair -> clock() of its last rebalancing trade
    start_error: str  # why start_market_making returned False
    start_fenced: bool  # ... because a kill, stop or pause (or a lost lease) fenced it
    _newly_active: list[checks.RiskStatus]  # assess_current_risk: statuses not active at the last one
    # --- cross-venue hedging (hedging.py) ------------------------------------------------------------
    hedge_route: HedgeRoute | None  # fixed at construction: where fills are hedged (None: hedging off)
    hedge_halts: dict[Slot, str]  # maker slot -> why it quotes nothing (an unresolved hedge): load_hedge_halts
    hedge_retry_at: float | None  # when an unresolved hedge's next retry is due: load_hedge_halts

    if TYPE_CHECKING:  # provided by a sibling mixin or bot.py (the real method overrides these)

        def order_pairs(self) -> list[tuple[int, str]]:
            raise NotImplementedError

        def announce_fills(self, fills: list[Fill]) -> None:
            raise NotImplementedError

        def _market_snapshot(self, pair: str, account_id: int | None) -> MarketSnapshot:
            raise NotImplementedError

        def _update_market_data(self) -> None:
            raise NotImplementedError

        def _refresh_inventory(self) -> None:
            raise NotImplementedError

        def _net_pnl_quote(self) -> Decimal:
            raise NotImplementedError

        def _daily_pnl_quote(self) -> float:
            raise NotImplementedError

        def _equity_quote(self) -> float:
            raise NotImplementedError

        def _adjust_position_strategy(self, position: LiquidityPosition) -> None:
            raise NotImplementedError

        def _still_current(self) -> bool:
            raise NotImplementedError

        def _check_send(self) -> None:
            raise NotImplementedError

        def _release_at_send(self, guard: QuoteGuard) -> None:
            raise NotImplementedError

        def _act(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order],
                 sent_cancels: tuple[list[Order], Any] | None, guard: QuoteGuard) -> int:
            raise NotImplementedError

        def _place_order(self, position: LiquidityPosition, intents: list[OrderIntent],
                         before_send: Callable[[], None] = lambda: None,
                         replacing: list[Order | None] | None = None) -> int:
            raise NotImplementedError

        def listed_resting(self, slot: Slot) -> tuple[checks.RestingOrder, ...]:
            raise NotImplementedError

        def quoting_key(self, slot: Slot) -> str:
            raise NotImplementedError

        def note_venue_problems(self) -> None:
            raise NotImplementedError

        def _start_position(self, pair: str, account_id: int) -> LiquidityPosition:
            raise NotImplementedError

        def account_labels(self) -> dict[int, str]:
            raise NotImplementedError

        def equity_complete(self) -> bool:
            raise NotImplementedError

        def _stale_book(self, slot: Slot) -> str | None:
            raise NotImplementedError

        def assess_current_risk(self) -> list[checks.RiskStatus]:
            raise NotImplementedError

        def _handle_risk_event(self, status: checks.RiskStatus, *, record: bool = True) -> None:
            raise NotImplementedError

        def _rebalance_inventory(self, *, force: bool = False) -> int:
            raise NotImplementedError

        def quotes_on(self, slot: Slot) -> bool:
            raise NotImplementedError

        def run_hedges(self) -> int:
            raise NotImplementedError

        def hedge_retry_due(self, now: float) -> bool:
            raise NotImplementedError
