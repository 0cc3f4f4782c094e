"""The spec's MarketMakingBot: one object per bot, assembled from one module per job.

``bot.py`` holds its construction, exchanges, start / stop and reconcile; ``cycle.py`` (``CycleMixin``)
a full monitoring iteration; ``quotes.py`` (``QuotesMixin``) one pair's decide -> check -> act and the
methods the engine driver hands data over through; ``risk_actions.py`` (``RiskActionsMixin``) the risk
assessment, each breach's action and rebalancing. An instance is built from the database for a task (a
start, a stop) or a full cycle, so any worker can run any bot's next cycle (crash-only); the engine
driver (bots/engine/driver.py) keeps it between cycles for its in-memory quiet checks. Exchange I/O is
async (the gateway) and runs on the process's I/O loop; everything else is plain sync.

Every cycle is decide -> check -> act: the one pure decision (``strategies.pipeline.decide``: strategy,
pre-trade checks with a reason per denial, diff against the live orders) -> cancel / place.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from bots import quoting
from bots.config import validate_market_making_config
from bots.engine.acts import ActsMixin
from bots.engine.bot_state import CycleReport
from bots.engine.cycle import CycleMixin, request_daily_reset
from bots.engine.gate import GateMixin
from bots.engine.hedging import HedgingMixin
from bots.engine.inventory_manager import InventoryManager
from bots.engine.lease import FencedError, LeaseLostError
from bots.engine.orders import OrderManager
from bots.engine.performance import PerformanceTracker
from bots.engine.quotes import QuotesMixin
from bots.engine.risk_actions import RiskActionsMixin
from bots.engine.risk_manager import MarketMakingRiskManager
from bots.engine.rows import select_rows
from bots.engine.self_trades import QuoteGuard
from bots.engine.strategy_engine import StrategyEngine, params_json
from bots.engine.venues import (
    GatewayFactory,
    Slot,
    default_gateway_factory,
    exchange_key,
    hedge_route,
    slot_of,
    venue_backoff,
)
from bots.events import publish_event
from bots.models import (
    Bot,
    BotEventType,
    LiquidityPosition,
)
from exchanges.gateway import ExchangeGateway
from exchanges.models import ExchangeAccount
from mmplatform import aio
from mmplatform.errors import (
    ExchangeError,
    InvalidTradingPairsError,
    RiskLimitViolationError,
)
from risk import checks
from strategies import pipeline
from strategies.analysis import MarketAnalysis
from strategies.types import MarketSnapshot, OrderIntent

logger = logging.getLogger(__name__)

PAIR_PATTERN = re.compile(r"^[A-Z]+/[A-Z]+$")

LINKED_ACCOUNTS_WHERE = (f"id IN (SELECT exchangeaccount_id FROM {Bot.exchange_accounts.through._meta.db_table} "
                         "WHERE bot_id = %s)")
ACCOUNT_ORDER = "tenant_id, label, id"
"""A bot's exchange accounts as its ``exchange_accounts`` relation lists them (``ExchangeAccount``'s ordering).
An engine is built for every full cycle: the ORM's query building of these reads was ~a third of its CPU."""


# --- spec managers -------------------------------------------------------------------------------


# --- the bot ----------------------------------------------------------------------------------------


class MarketMakingBot(CycleMixin, QuotesMixin, ActsMixin, GateMixin, RiskActionsMixin, HedgingMixin):
    """The spec's MarketMakingBot for one Bot row."""

    def __init__(self, bot: Bot, *, gateway_factory: GatewayFactory = default_gateway_factory,
                 clock: Callable[[], float] = time.time, lease: Any = None):
        self.bot = bot
        self.lease = lease
        # every account linked to the bot (the config names them all), in one statement built once
        linked = select_rows(ExchangeAccount, LINKED_ACCOUNTS_WHERE, [bot.pk], order_by=ACCOUNT_ORDER)
        self.config = validate_market_making_config(bot.to_config(tuple(f"account-{a.pk}" for a in linked)))
        self.bot_id = bot.pk
        self.clock = clock
        self.gateway_factory = gateway_factory
        self.strategy_engine = StrategyEngine(self.config)
        self.inventory_manager = InventoryManager(self.config)
        self.risk_manager = MarketMakingRiskManager(bot, self.config.risk_limits, self.config)
        self.performance_tracker = PerformanceTracker(bot)
        self.accounts = {a.pk: a for a in linked if a.is_active}
        self.exchanges: dict[int, ExchangeGateway] = {}
        self.connection_problems: dict[str, str] = {}  # account label -> why it did not connect
        self.venue_errors: dict[int, str] = {}  # account -> why its venue failed in this cycle
        # cross-venue hedging: where each fill of a quote is hedged (None: off); the unresolved hedges' halts
        self.hedge_route = hedge_route(bot, set(self.accounts), set(
            bot.hedged_accounts.values_list("pk", flat=True)) if bot.hedge_enabled else set())
        # every send checks the fence and the lease first (the gate)
        self.order_manager = OrderManager(bot, self.exchanges, gate=self._check_send, hedge_route=self.hedge_route,
                                          venues={pk: a.exchange_id for pk, a in self.accounts.items()})
        self.guard_at_send: QuoteGuard | None = None  # released in the send gate's step (gate._release_at_send)
        # one position per slot (account, pair): a pair is quoted on every account of the bot that lists it
        self.active_positions: dict[Slot, LiquidityPosition] = {
            slot_of(p): p for p in select_rows(LiquidityPosition, "bot_id = %s AND is_active", [bot.pk],
                                               order_by="bot_id, trading_pair")  # (the model's ordering)
            if p.exchange_account_id in self.accounts
        }
        self.snapshots: dict[Slot, MarketSnapshot] = {}
        # slot -> the account's other resting orders (the driver's view)
        self.resting_seen: dict[Slot, tuple[checks.RestingOrder, ...]] = {}
        self.book_fetched_at: dict[Slot, float] = {}
        self.analyses: dict[Slot, MarketAnalysis] = {}
        self.report = CycleReport()
        self.cycle = bot.cycle_count
        self.fenced_at_begin = False
        self.balance_read: tuple[dict[int, ExchangeGateway], Any] | None = None  # a fill sync's balance read
        self.rebalanced_pairs: set[str] = set()  # pairs with a rebalancing trade in this engine's cycle
        self.rebalance_attempted_at: dict[str, float] = {}  # pair -> clock() of its last rebalancing trade
        self.start_error = ""  # why start_market_making returned False
        self.start_fenced = False  # ... because a kill, stop or pause (or a lost lease) fenced it
        self._newly_active: list[checks.RiskStatus] = []  # assess_current_risk
        self.hedge_halts: dict[Slot, str] = {}
        self.hedge_retry_at: float | None = None
        self.load_hedge_halts()

    # --- exchanges ---------------------------------------------------------------------------

    def initialize_exchanges(self, *, emit_events: bool = True, validate: bool = True,
                             skip_failing: bool = False) -> bool:
        """Connect every configured account; ExchangeConnected per success, a warning per failure.

        ``validate=False`` (every cycle after the start) only ensures the cached client has its
        markets loaded, instead of a credentials round trip. ``skip_failing`` (a full cycle of a bot on
        several venues) leaves out a venue that failed in a recent cycle (``venue_backoff``).
        """
        for account_id, account in self.accounts.items():
            skipped = None
            if skip_failing and len(self.accounts) > 1:
                skipped = venue_backoff.skipped(account_id, time.time())
            if skipped is not None:
                self.connection_problems[account.label] = skipped
                continue
            try:
                gateway = self.gateway_factory(account)
                if validate:
                    connected = aio.run(gateway.validate_connection())
                else:
                    aio.run(gateway.load_markets())
                    connected = True
            except Exception as exc:
                logger.warning("bot %s: failed to connect to exchange %s: %s", self.bot_id, account.label, exc)
                self.connection_problems[account.label] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if connected:
                self.exchanges[account_id] = gateway
                if emit_events:
                    publish_event(bot=self.bot, event_type=BotEventType.EXCHANGE_CONNECTED,
                                  payload={"exchange_id": account.exchange_id, "account": account.label})
            else:
                logger.warning("bot %s: failed to connect to exchange %s", self.bot_id, account.label)
                self.connection_problems[account.label] = "the markets or a private read (balance) failed"
        return len(self.exchanges) > 0

    def _select_exchange_for_pair(self, pair: str) -> int | None:
        accounts = self._accounts_for_pair(pair)
        return accounts[0] if accounts else None

    def _accounts_for_pair(self, pair: str) -> list[int]:
        """Every connected account whose venue lists ``pair``: the pair is quoted on each of them."""
        return [account_id for account_id, gateway in self.exchanges.items() if gateway.supports_trading_pair(pair)]

    def _validate_trading_pair(self, pair: str) -> bool:
        """Spec: format ^[A-Z]+/[A-Z]+$ and supported by a connected exchange."""
        if not PAIR_PATTERN.match(pair):
            return False
        return self._select_exchange_for_pair(pair) is not None

    def _validate_order_parameters(self, intent: OrderIntent) -> bool:
        """Spec: positive size and price, notional within min/max order size."""
        return pipeline.valid_order(intent, self.quoting_rules())

    # --- lifecycle -----------------------------------------------------------------------------

    def start_market_making(self, trading_pairs: list[str]) -> bool:
        """Spec start_market_making: validate pairs and start-up risk, assess inventory, create a
        strategy and a LiquidityPosition per pair, place initial orders, emit MarketMakingStarted."""
        validated = []
        for pair in trading_pairs:
            if self._validate_trading_pair(pair):
                validated.append(pair)
            else:
                logger.warning("bot %s: invalid trading pair: %s", self.bot_id, pair)
        if not validated:
            raise InvalidTradingPairsError(f"No valid trading pairs provided (got {', '.join(trading_pairs)})")
        request_daily_reset(self.bot_id)
        problems = self.risk_manager.validate_startup_conditions(self._daily_pnl_quote())
        if problems:
            raise RiskLimitViolationError("Risk limits prevent startup: " + "; ".join(problems))
        try:
            self.reconcile()
            self.run_hedges()  # fills found since the last run (a stop's final sync) are hedged before quoting
            self.inventory_manager.load_balances(self.exchanges)
            started: list[LiquidityPosition] = []
            for pair in validated:
                for account_id in self._accounts_for_pair(pair):
                    try:
                        position = self._start_position(pair, account_id)
                    except ExchangeError as exc:
                        if len(self.exchanges) < 2:
                            raise
                        # one venue failing at the start: the others start; this one joins at a later cycle
                        logger.warning("bot %s: %s on account %s not started: %s", self.bot_id, pair, account_id, exc)
                        self.connection_problems[self.accounts[account_id].label] = f"{type(exc).__name__}: {exc}"
                        continue
                    started.append(position)
                    if self.quotes_on(slot_of(position)):  # the hedge account only hedges
                        self._place_initial_orders(position)
            if not started:
                raise InvalidTradingPairsError("no venue could start quoting any pair")
            self.note_venue_problems()
            publish_event(bot=self.bot, event_type=BotEventType.MARKET_MAKING_STARTED,
                          payload={"trading_pairs": validated})
            return True
        except Exception as exc:
            # spec: startup errors are handled and logged, then stop_market_making: whatever the start
            # placed before it failed (an exchange error on the second pair, a lost lease) is cancelled
            logger.error("bot %s: market making startup failed: %s", self.bot_id, exc, exc_info=True)
            self.start_error = f"{type(exc).__name__}: {exc}"[:1000]
            self.start_fenced = isinstance(exc, (FencedError, LeaseLostError))
            self.stop_market_making()
            return False

    def _start_position(self, pair: str, account_id: int) -> LiquidityPosition:
        """The position of one slot (created once; kept across restarts), its strategy and inventory."""
        snapshot = self._market_snapshot(pair, account_id)
        venue = exchange_key(self.accounts[account_id])
        analysis = self.strategy_engine._analyze_market_characteristics(snapshot, venue)
        strategy = self.strategy_engine.create_strategy(pair, analysis if not snapshot.problem() else None)
        with transaction.atomic():
            position, _ = LiquidityPosition.objects.get_or_create(
                bot=self.bot, trading_pair=pair, exchange_account_id=account_id, is_active=True,
                defaults={"tenant_id": self.bot.tenant_id},
            )
        position.strategy_type = strategy.strategy_type
        position.strategy_params = params_json(strategy.parameters)
        position.save(update_fields=["strategy_type", "strategy_params"])
        slot = slot_of(position)
        self.active_positions[slot] = position
        self.snapshots[slot] = snapshot
        self.inventory_manager.assess(position, snapshot.mid)
        return position

    def venue_problems(self) -> dict[Slot, str]:
        """Slots (account, pair) of this bot that cannot quote for a reason of their venue: the account
        did not connect, or its venue does not list the pair. The other venues quote on."""
        problems: dict[Slot, str] = {}
        for account_id, account in self.accounts.items():
            gateway = self.exchanges.get(account_id)
            for pair in self.bot.pairs:
                if (account_id, pair) in self.active_positions and gateway is not None:
                    continue
                if gateway is None:
                    why = self.connection_problems.get(account.label, "not connected")
                    problems[(account_id, pair)] = f"{account.label} ({account.exchange_id}): not connected: {why}"
                elif not gateway.supports_trading_pair(pair):
                    problems[(account_id, pair)] = f"{account.label} ({account.exchange_id}) does not list {pair}"
        return problems

    def note_venue_problems(self) -> None:
        """Each venue problem on the dashboard's "not quoting" line of its slot (refreshed every cycle)."""
        if len(self.accounts) < 2:
            return  # one venue: its problems are the bot's own (errors, the start's reason)
        for slot, reason in self.venue_problems().items():
            quoting.note(self.bot, self.quoting_key(slot), reason)

    def quoting_key(self, slot: Slot) -> str:
        """The name of a slot on the dashboard's "not quoting" line: the pair, and on a bot with several
        accounts the account it is quoted on."""
        account_id, pair = slot
        if len(self.accounts) < 2:
            return pair
        account = self.accounts.get(account_id)
        return quoting.slot_name(pair, account.label if account is not None else str(account_id))

    def stop_market_making(self) -> bool:
        """Spec stop_market_making: cancel every order, final inventory, performance summary."""
        try:
            self.order_manager.cancel_everything_on_exchange(self.order_pairs())
            mids: dict[Slot, float] = {}
            try:
                for position in self.active_positions.values():  # fills up to the stop are in the summary
                    if position.exchange_account_id in self.exchanges:
                        try:
                            self.announce_fills(self.order_manager.sync_fills(position, mid=float("nan")))
                        except ExchangeError as exc:
                            logger.warning("bot %s: final fills of %s not read: %s", self.bot_id, position, exc)
                self.inventory_manager.load_balances(self.exchanges)
                for slot, position in self.active_positions.items():
                    try:
                        snapshot = self._market_snapshot(position.trading_pair, position.exchange_account_id)
                    except ExchangeError as exc:  # one venue down: the others' inventory is still final
                        logger.warning("bot %s: final inventory of %s incomplete: %s", self.bot_id, slot, exc)
                        continue
                    mids[slot] = snapshot.mid
                    self.inventory_manager.assess(position, snapshot.mid)
            except ExchangeError as exc:
                logger.warning("bot %s: final inventory incomplete: %s", self.bot_id, exc)
            positions = list(LiquidityPosition.objects.filter(bot=self.bot, is_active=True))
            publish_event(bot=self.bot, event_type=BotEventType.MARKET_MAKING_STOPPED, payload={
                "final_inventory": self.inventory_manager.get_final_inventory(self.account_labels()),
                "performance": self.performance_tracker.summary(positions, mids),
            })
            return True
        except Exception as exc:
            logger.error("bot %s: market making shutdown failed: %s", self.bot_id, exc, exc_info=True)
            return False

    def account_labels(self) -> dict[int, str]:
        return {account_id: account.label for account_id, account in self.accounts.items()}

    def order_pairs(self) -> list[tuple[int, str]]:
        """Every (account, pair) an order of this bot may rest on: its positions' and each connected
        account with each configured pair (a start that failed before its position was saved)."""
        pairs = {(p.exchange_account_id, p.trading_pair) for p in self.active_positions.values()}
        pairs |= {(account_id, pair) for account_id in self.exchanges for pair in self.bot.pairs}
        return sorted(pairs)

    def reconcile(self) -> int:
        """Match the exchange's open orders and recent trades to the database by client order id."""
        fills = 0
        for position in self.active_positions.values():
            if position.exchange_account_id in self.exchanges:
                booked = self.order_manager.sync_position(position, mid=float("nan"))
                self.announce_fills(booked)
                fills += len(booked)
        if self.active_positions:
            publish_event(bot=self.bot, event_type=BotEventType.RECONCILED, payload={"fills_recovered": fills})
        return fills

    # --- one monitoring iteration ---------------------------------------------------------------


    # --- risk ------------------------------------------------------------------------------------


    # --- quoting --------------------------------------------------------------------------------


    # --- rebalancing -----------------------------------------------------------------------------


    # --- performance -----------------------------------------------------------------------------


