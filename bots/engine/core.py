"""The spec's MarketMakingBot: lifecycle, one monitoring iteration, orders, inventory, risk.

An instance is built from the database for a task (a start, a stop) or a full cycle, so any worker
can run any bot's next cycle (crash-only). The loop of the spec is the engine driver
(bots/engine/driver.py): ``monitoring_iteration`` is the body of a full cycle, and the driver keeps
the instance between cycles for its in-memory quiet checks (``decide_quotes``, ``risk_in_memory``).
Exchange I/O is async (the gateway) and runs on the process's I/O loop; everything else is plain sync.

Every cycle is decide -> check -> act: snapshot -> strategy.calculate_orders -> risk checks (a
reason per denial) -> diff against live orders (refresh tolerance) -> cancel / place.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bots import quoting
from bots.config import MarketMakingConfig, validate_market_making_config
from bots.engine import keys
from bots.engine.lease import FencedError, LeaseLostError, check_send, fence_sends
from bots.engine.market_data import book_reader, mid_history, shared_book, to_snapshot, without_own
from bots.engine.orders import OrderManager
from bots.events import publish_event, push
from bots.inventory import PairInventory, RebalancingTrade, calculate_rebalancing_trades, needs_rebalancing
from bots.models import (
    OPEN_ORDER_STATUSES,
    Bot,
    BotEventType,
    BotStatus,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    OrderPurpose,
    OrderStatus,
    PerformanceSnapshot,
)
from exchanges.gateway import ExchangeGateway
from mmplatform import aio
from mmplatform.errors import (
    ExchangeError,
    InvalidTradingPairsError,
    RiskLimitViolationError,
)
from mmplatform.redis_client import get_redis
from risk import checks
from risk.limits import RiskLimits
from risk.models import RiskEvent
from strategies import pipeline
from strategies.analysis import MarketAnalysis, analyze_market
from strategies.base import MarketMakingStrategy
from strategies.selection import create_strategy, select_strategy_type
from strategies.types import InventoryState, MarketSnapshot, OrderIntent, RiskContext, StrategyParameters

logger = logging.getLogger(__name__)

PAIR_PATTERN = re.compile(r"^[A-Z]+/[A-Z]+$")
ORDER_BOOK_DEPTH = 20
PAUSING_EVENTS = (checks.DAILY_LOSS_LIMIT, checks.MAX_DRAWDOWN)
REBALANCE_RETRY_SECS = 15.0
"""After a rebalancing trade (filled or not) the driver's quiet check waits this long before it calls
for another full cycle for the same pair: longer than the driver's balance reads (every 10 s), so the
next decision is taken on balances the venue reported after the trade."""

GatewayFactory = Callable[[Any], ExchangeGateway]


def exchange_key(account: Any) -> str:
    """Public market data is the same for every account of one venue: share it across tenants."""
    return f"{account.exchange_id}@{account.api_base_url or 'default'}"


def default_gateway_factory(account: Any) -> ExchangeGateway:
    from bots.engine.gateways import gateway_for_account

    return gateway_for_account(account)


# --- spec managers -------------------------------------------------------------------------------


class StrategyEngine:
    """Strategy selection, creation and adaptation per pair (spec StrategyEngine)."""

    def __init__(self, config: MarketMakingConfig):
        self.config = config.strategy_settings
        self.order_config = config.order_settings
        self.strategies: dict[str, MarketMakingStrategy] = {}

    def _analyze_market_characteristics(self, snapshot: MarketSnapshot, venue: str) -> MarketAnalysis:
        """Spec _analyze_market_characteristics, on the venue's shared mid history."""
        times, mids = mid_history(venue, snapshot.symbol)
        return analyze_market(snapshot, self.config, times, mids)

    def _select_strategy_type(self, analysis: MarketAnalysis) -> str:
        """Spec _select_strategy_type: volatility, then liquidity, then trend, else the grid."""
        return select_strategy_type(analysis, self.config)

    def create_strategy(self, pair: str, analysis: MarketAnalysis | None) -> MarketMakingStrategy:
        """Spec create_strategy: select the type from the analysis, build it, validate it."""
        strategy_type = self._select_strategy_type(analysis) if analysis is not None else self.config.default_strategy
        strategy = create_strategy(strategy_type, pair, analysis, self.config, self.order_config)
        self.strategies[pair] = strategy
        return strategy

    def restore(self, position: LiquidityPosition) -> MarketMakingStrategy:
        """The position's strategy with the parameters it last quoted with."""
        strategy = self.strategies.get(position.trading_pair)
        if strategy is not None:
            return strategy
        strategy = create_strategy(
            position.strategy_type or self.config.default_strategy, position.trading_pair, None,
            self.config, self.order_config,
        )
        if position.strategy_params:
            try:
                strategy.parameters = StrategyParameters(**position.strategy_params)
            except TypeError:
                logger.warning("position %s: stored strategy parameters no longer fit; using config", position.pk)
        self.strategies[position.trading_pair] = strategy
        return strategy


class InventoryManager:
    """Balances per asset and per pair, ratios against targets (spec InventoryManager)."""

    def __init__(self, config: MarketMakingConfig):
        self.config = config.inventory_settings
        self.default_target = config.strategy_settings.inventory_target_ratio
        self.balances: dict[int, dict[str, Decimal]] = {}
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


@dataclass
class PairRiskAdjustments:
    spread_multiplier: float = 1.0
    reduced_side: str = ""  # POSITION_LIMIT_EXCEEDED: the side that grows the position ...
    reduced_side_factor: float = 1.0  # ... has its sizes multiplied by this


class MarketMakingRiskManager:
    """Start-up conditions, the current risk assessment and per-pair limits (spec risk manager)."""

    def __init__(self, bot: Bot, limits: RiskLimits, config: MarketMakingConfig):
        self.bot = bot
        self.limits = limits
        self.config = config
        self.adjustments: dict[str, PairRiskAdjustments] = {}

    def validate_startup_conditions(self, daily_pnl_quote: float) -> list[str]:
        tenant_killed = type(self.bot.tenant).objects.filter(pk=self.bot.tenant_id,
                                                             kill_switch_engaged=True).exists()
        return checks.startup_problems(
            self.limits, kill_switch=self.bot.kill_switch_engaged or tenant_killed, daily_pnl_quote=daily_pnl_quote
        )

    def get_pair_limits(self, pair: str) -> RiskContext:
        adjust = self.adjustments.get(pair, PairRiskAdjustments())
        return RiskContext(
            min_order_size_quote=float(self.config.min_order_size_quote),
            max_order_size_quote=float(self.config.max_order_size_quote),
            max_position_quote=float(self.limits.max_position_quote),
            volatility_pause_threshold=float(self.limits.volatility_pause_threshold),
            spread_multiplier=adjust.spread_multiplier,
        )

    def active_key(self) -> str:
        return keys.risk_active(self.bot.pk)

    def newly_active(self, statuses: list[checks.RiskStatus]) -> list[checks.RiskStatus]:
        """Statuses that were not active in the previous cycle (events are recorded once per breach)."""
        r = get_redis()
        keys = {f"{s.event_type}|{s.trading_pair}": s for s in statuses}
        previous = {k.decode() for k in r.smembers(self.active_key())}
        pipe = r.pipeline()
        pipe.delete(self.active_key())
        if keys:
            pipe.sadd(self.active_key(), *keys)
        pipe.execute()
        return [s for k, s in keys.items() if k not in previous]


class PerformanceTracker:
    """P&L, fees, volume, fills, spread capture, inventory value and quote uptime per bot."""

    def __init__(self, bot: Bot):
        self.bot = bot

    def uptime_key(self) -> str:
        return keys.uptime(self.bot.pk)

    def record_quoting(self, pair: str, quoted_both_sides: bool) -> None:
        r = get_redis()
        pipe = r.pipeline()
        pipe.hincrby(self.uptime_key(), f"{pair}:cycles", 1)
        if quoted_both_sides:
            pipe.hincrby(self.uptime_key(), f"{pair}:quoted", 1)
        pipe.execute()

    def quote_uptime(self) -> float:
        raw = {k.decode(): int(v) for k, v in get_redis().hgetall(self.uptime_key()).items()}
        cycles = sum(v for k, v in raw.items() if k.endswith(":cycles"))
        quoted = sum(v for k, v in raw.items() if k.endswith(":quoted"))
        return quoted / cycles if cycles else 0.0

    @staticmethod
    def pnl(positions: list[LiquidityPosition], mids: dict[str, float]) -> dict[str, Decimal]:
        """Realised, unrealised (marked to the mid), fees and net P&L across pairs: exact decimals."""
        realised = sum((p.realised_pnl_quote for p in positions), Decimal(0))
        fees = sum((p.fees_paid_quote for p in positions), Decimal(0))
        unrealised = Decimal(0)
        for p in positions:
            mid = mids.get(p.trading_pair)
            if mid is not None and mid == mid:
                unrealised += p.unrealised_pnl_quote(Decimal(repr(mid)))
        return {
            "realised_pnl_quote": realised,
            "unrealised_pnl_quote": unrealised,
            "fees_paid_quote": fees,
            "net_pnl_quote": realised + unrealised - fees,
        }

    def summary(self, positions: list[LiquidityPosition], mids: dict[str, float]) -> dict[str, Any]:
        """Spec generate_summary: P&L, volume, fills, quote uptime and spread capture."""
        return {
            **self.pnl(positions, mids),
            "volume_quote": sum((p.volume_quote for p in positions), Decimal(0)),
            "fill_count": sum(p.fill_count for p in positions),
            "quote_uptime_ratio": self.quote_uptime(),
            "spread_capture_bps": self.spread_capture_bps(),
        }

    def spread_capture_bps(self) -> float:
        """Mean distance of maker fills from the mid at detection, in bps (positive = earned)."""
        fills = Fill.objects.filter(bot=self.bot, mid_at_fill__isnull=False).order_by("-executed_at").values_list(
            "side", "price", "mid_at_fill")[:500]
        captures = []
        for side, price, mid_at_fill in fills:
            mid = float(mid_at_fill)
            if mid > 0:
                edge = (mid - float(price)) if side == "buy" else (float(price) - mid)
                captures.append(edge / mid * 1e4)
        return sum(captures) / len(captures) if captures else 0.0


# --- the bot ----------------------------------------------------------------------------------------


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


class MarketMakingBot:
    """The spec's MarketMakingBot for one Bot row."""

    def __init__(self, bot: Bot, *, gateway_factory: GatewayFactory = default_gateway_factory,
                 clock: Callable[[], float] = time.time, lease: Any = None):
        self.bot = bot
        self.lease = lease
        self.config = validate_market_making_config(bot.to_config())
        self.bot_id = bot.pk
        self.clock = clock
        self.gateway_factory = gateway_factory
        self.strategy_engine = StrategyEngine(self.config)
        self.inventory_manager = InventoryManager(self.config)
        self.risk_manager = MarketMakingRiskManager(bot, self.config.risk_limits, self.config)
        self.performance_tracker = PerformanceTracker(bot)
        self.accounts = {a.pk: a for a in bot.exchange_accounts.filter(is_active=True)}
        self.exchanges: dict[int, ExchangeGateway] = {}
        self.connection_problems: dict[str, str] = {}  # account label -> why it did not connect
        self.order_manager = OrderManager(bot, self.exchanges)
        self.order_manager.gate = self._check_send  # every send checks the fence and the lease first
        self.active_positions: dict[str, LiquidityPosition] = {
            p.trading_pair: p for p in LiquidityPosition.objects.filter(bot=bot, is_active=True)
        }
        self.snapshots: dict[str, MarketSnapshot] = {}
        self.book_fetched_at: dict[str, float] = {}
        self.analyses: dict[str, MarketAnalysis] = {}
        self.report = CycleReport()
        self.cycle = bot.cycle_count
        self.fenced_at_begin = False
        self.rebalanced_pairs: set[str] = set()  # pairs with a rebalancing trade in this engine's cycle
        self.rebalance_attempted_at: dict[str, float] = {}  # pair -> clock() of its last rebalancing trade
        self.start_error = ""  # why start_market_making returned False
        self.start_fenced = False  # ... because a kill, stop or pause (or a lost lease) fenced it

    # --- exchanges ---------------------------------------------------------------------------

    def initialize_exchanges(self, *, emit_events: bool = True, validate: bool = True) -> bool:
        """Connect every configured account; ExchangeConnected per success, a warning per failure.

        ``validate=False`` (every cycle after the start) only ensures the cached client has its
        markets loaded, instead of a credentials round trip.
        """
        for account_id, account in self.accounts.items():
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
        for account_id, gateway in self.exchanges.items():
            if gateway.supports_trading_pair(pair):
                return account_id
        return None

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
            self.inventory_manager.load_balances(self.exchanges)
            for pair in validated:
                account_id = self._select_exchange_for_pair(pair)
                snapshot = self._market_snapshot(pair, account_id)
                venue = exchange_key(self.accounts[account_id])
                analysis = self.strategy_engine._analyze_market_characteristics(snapshot, venue)
                strategy = self.strategy_engine.create_strategy(pair, analysis if not snapshot.problem() else None)
                with transaction.atomic():
                    LiquidityPosition.objects.filter(bot=self.bot, trading_pair=pair, is_active=True).exclude(
                        exchange_account_id=account_id).update(is_active=False, closed_at=timezone.now())
                    position, _ = LiquidityPosition.objects.get_or_create(
                        bot=self.bot, trading_pair=pair, is_active=True,
                        defaults={"tenant_id": self.bot.tenant_id, "exchange_account_id": account_id},
                    )
                position.strategy_type = strategy.strategy_type
                position.strategy_params = _params_json(strategy.parameters)
                position.save(update_fields=["strategy_type", "strategy_params"])
                self.active_positions[pair] = position
                self.inventory_manager.assess(position, snapshot.mid)
                self._place_initial_orders(position)
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

    def stop_market_making(self) -> bool:
        """Spec stop_market_making: cancel every order, final inventory, performance summary."""
        try:
            self.order_manager.cancel_everything_on_exchange(self.order_pairs())
            mids: dict[str, float] = {}
            try:
                for position in self.active_positions.values():  # fills up to the stop are in the summary
                    if position.exchange_account_id in self.exchanges:
                        self.order_manager.sync_fills(position, mid=float("nan"))
                self.inventory_manager.load_balances(self.exchanges)
                for pair, position in self.active_positions.items():
                    snapshot = self._market_snapshot(pair, position.exchange_account_id)
                    mids[pair] = snapshot.mid
                    self.inventory_manager.assess(position, snapshot.mid)
            except ExchangeError as exc:
                logger.warning("bot %s: final inventory incomplete: %s", self.bot_id, exc)
            positions = list(LiquidityPosition.objects.filter(bot=self.bot, is_active=True))
            publish_event(bot=self.bot, event_type=BotEventType.MARKET_MAKING_STOPPED, payload={
                "final_inventory": self.inventory_manager.get_final_inventory(),
                "performance": self.performance_tracker.summary(positions, mids),
            })
            return True
        except Exception as exc:
            logger.error("bot %s: market making shutdown failed: %s", self.bot_id, exc, exc_info=True)
            return False

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
                fills += len(self.order_manager.sync_position(position, mid=float("nan")))
        if self.active_positions:
            publish_event(bot=self.bot, event_type=BotEventType.RECONCILED, payload={"fills_recovered": fills})
        return fills

    # --- one monitoring iteration ---------------------------------------------------------------

    def monitoring_iteration(self, cycle: int) -> CycleReport:
        """The body of the spec's _monitoring_loop. Errors of one pair never stop the others."""
        self.cycle = cycle
        self.rebalanced_pairs = set()
        self._update_market_data()
        self._sync_fills()
        self._refresh_inventory()
        statuses = self.assess_current_risk()
        for status in statuses:
            self._handle_risk_event(status, record=status in self._newly_active)
        if self.bot.status == BotStatus.PAUSED:
            return self.report
        for position in self.active_positions.values():
            try:
                self._adjust_position_strategy(position)
            except ExchangeError as exc:
                logger.warning("bot %s %s: %s", self.bot_id, position.trading_pair, exc)
        if self.inventory_manager.needs_rebalancing():
            self._rebalance_inventory()  # on the inventory as the risk handling's trades left it
        self._update_performance()
        return self.report

    def _refresh_inventory(self) -> None:
        """Balances of every account, valued at this cycle's mids (pairs with a bad book keep none)."""
        self.inventory_manager.load_balances(self.exchanges)
        for pair, position in self.active_positions.items():
            snapshot = self.snapshots.get(pair)
            if snapshot is not None and not snapshot.problem():
                self.inventory_manager.assess(position, snapshot.mid)

    def _update_market_data(self) -> None:
        for pair, position in self.active_positions.items():
            if position.exchange_account_id not in self.exchanges:
                continue
            try:
                snapshot = self._market_snapshot(pair, position.exchange_account_id)
            except ExchangeError as exc:
                logger.warning("bot %s: market data for %s unavailable: %s", self.bot_id, pair, exc)
                continue
            self.snapshots[pair] = snapshot
            if not snapshot.problem():
                venue = exchange_key(self.accounts[position.exchange_account_id])
                self.analyses[pair] = self.strategy_engine._analyze_market_characteristics(snapshot, venue)

    def _market_snapshot(self, pair: str, account_id: int | None) -> MarketSnapshot:
        if account_id is None or account_id not in self.exchanges:
            raise ExchangeError(f"no connected exchange supports {pair}")
        gateway = self.exchanges[account_id]
        book = shared_book(exchange_key(self.accounts[account_id]), pair,
                           book_reader(gateway, pair, ORDER_BOOK_DEPTH))
        self.book_fetched_at[pair] = book.fetched_at
        rules = gateway.market_rules(pair)
        own = [(side, float(price), float(amount - filled)) for side, price, amount, filled in Order.objects.filter(
            bot=self.bot, trading_pair=pair, exchange_account_id=account_id, status__in=OPEN_ORDER_STATUSES,
        ).values_list("side", "price", "amount", "filled")]
        return to_snapshot(pair, without_own(book, own), tick_size=float(rules.tick_size),
                           lot_size=float(rules.lot_size), min_notional=float(rules.min_notional or 0),
                           now=self.clock())

    def _sync_fills(self) -> None:
        for pair, position in self.active_positions.items():
            if position.exchange_account_id not in self.exchanges:
                continue
            snapshot = self.snapshots.get(pair)
            mid = snapshot.mid if snapshot is not None and not snapshot.problem() else float("nan")
            try:
                fills = self.order_manager.sync_position(position, mid=mid)
            except ExchangeError as exc:
                logger.warning("bot %s: order sync for %s failed: %s", self.bot_id, pair, exc)
                continue
            self.announce_fills(pair, fills)

    def announce_fills(self, pair: str, fills: list[Fill]) -> None:
        """An OrderFilled event per new fill."""
        self.report.fills += len(fills)
        for fill in fills:
            publish_event(bot=self.bot, event_type=BotEventType.ORDER_FILLED, payload={
                "trading_pair": pair, "side": fill.side, "price": fill.price, "amount": fill.amount,
                "trade_id": fill.exchange_trade_id,
            })

    # --- risk ------------------------------------------------------------------------------------

    def _net_pnl_quote(self) -> Decimal:
        """From the positions this cycle holds (fills of this cycle already applied to them)."""
        mids = {p: s.mid for p, s in self.snapshots.items() if not s.problem()}
        return self.performance_tracker.pnl(list(self.active_positions.values()), mids)["net_pnl_quote"]

    def _daily_pnl_quote(self) -> float:
        """Net P&L since the daily baseline; a pending daily reset moves the baseline here first."""
        net = self._net_pnl_quote()
        if get_redis().delete(daily_reset_key(self.bot_id)):
            self.bot.daily_pnl_baseline_quote = net.quantize(Decimal("1e-12"))
            Bot.objects.filter(pk=self.bot_id).update(
                daily_pnl_baseline_quote=self.bot.daily_pnl_baseline_quote, daily_reset_at=timezone.now())
        return float(net - self.bot.daily_pnl_baseline_quote)

    def _equity_quote(self) -> float:
        """Value of the bot's assets across its accounts, quote currencies at 1, bases at their mid."""
        values: dict[tuple[int, str], float] = {}
        for pair, position in self.active_positions.items():
            inventory = self.inventory_manager.current_inventory.get(pair)
            if inventory is None:
                continue
            base, quote = pair.split("/")
            values[(position.exchange_account_id, base)] = inventory.base_value_quote
            values[(position.exchange_account_id, quote)] = inventory.quote_balance
        return sum(values.values())

    def _pair_risk_states(self) -> tuple[checks.PairRiskState, ...]:
        pairs = []
        for pair, inventory in self.inventory_manager.current_inventory.items():
            analysis = self.analyses.get(pair)
            pairs.append(checks.PairRiskState(
                trading_pair=pair,
                base_value_quote=inventory.base_value_quote,
                ratio=inventory.current_ratio,
                target_ratio=inventory.target_ratio,
                volatility_daily=analysis.volatility_daily if analysis and analysis.volatility_measured else 0.0,
            ))
        return tuple(pairs)

    def assess_current_risk(self) -> list[checks.RiskStatus]:
        """Spec risk_manager.assess_current_risk, on this cycle's inventory and P&L."""
        equity = self._equity_quote()
        high_water = max(float(self.bot.equity_high_water_quote), equity)
        if high_water > float(self.bot.equity_high_water_quote):
            Bot.objects.filter(pk=self.bot_id).update(equity_high_water_quote=Decimal(repr(round(high_water, 8))))
            self.bot.equity_high_water_quote = Decimal(repr(round(high_water, 8)))
        state = checks.BotRiskState(
            daily_pnl_quote=self._daily_pnl_quote(), equity_quote=equity, equity_high_water_quote=high_water,
            pairs=self._pair_risk_states(),
        )
        statuses = checks.assess_risk(state, self.config.risk_limits)
        self._newly_active = self.risk_manager.newly_active(statuses)
        return statuses

    def risk_in_memory(self, high_water_quote: float) -> tuple[list[checks.RiskStatus], float]:
        """The assessment of ``assess_current_risk`` without its side effects (no high-water write,
        no daily-reset pop, no active-set update), on the inventory and mids this object holds, and
        the equity it used. The engine driver's quiet check: any status means a full cycle."""
        equity = self._equity_quote()
        state = checks.BotRiskState(
            daily_pnl_quote=float(self._net_pnl_quote() - self.bot.daily_pnl_baseline_quote),
            equity_quote=equity, equity_high_water_quote=max(high_water_quote, equity),
            pairs=self._pair_risk_states(),
        )
        return checks.assess_risk(state, self.config.risk_limits), equity

    def _handle_risk_event(self, status: checks.RiskStatus, *, record: bool = True) -> None:
        """Spec _handle_risk_event: act on the event type, then RiskEventHandled (once per breach)."""
        if status.event_type == checks.POSITION_LIMIT_EXCEEDED:
            self._reduce_position_sizes(status.trading_pair, float(status.details.get("base_value_quote", 0.0)))
        elif status.event_type in PAUSING_EVENTS:
            self._pause_trading(status.message)
        elif status.event_type == checks.INVENTORY_IMBALANCE:
            if record:
                self._force_rebalance(status.trading_pair)
        elif status.event_type == checks.MARKET_VOLATILITY:
            self._adjust_spreads_for_volatility(status.trading_pair)
        self.report.risk_events.append(status.event_type)
        if record:
            RiskEvent.objects.create(
                tenant_id=self.bot.tenant_id, bot=self.bot, event_type=status.event_type,
                trading_pair=status.trading_pair, message=status.message, action_taken=status.action_taken,
                details=status.details,
            )
            publish_event(bot=self.bot, event_type=BotEventType.RISK_EVENT_HANDLED, payload={
                "event_type": status.event_type, "action_taken": status.action_taken,
                "trading_pair": status.trading_pair, "message": status.message,
            })

    def _reduce_position_sizes(self, pair: str, base_value_quote: float) -> None:
        """Only the side that grows the position is reduced; the side that unwinds it keeps its size."""
        adjust = self.risk_manager.adjustments.setdefault(pair, PairRiskAdjustments())
        adjust.reduced_side = checks.growing_side(base_value_quote)
        adjust.reduced_side_factor = min(adjust.reduced_side_factor,
                                         self.config.risk_limits.position_size_reduction_factor)

    def _adjust_spreads_for_volatility(self, pair: str) -> None:
        adjust = self.risk_manager.adjustments.setdefault(pair, PairRiskAdjustments())
        adjust.spread_multiplier = max(adjust.spread_multiplier, self.config.risk_limits.volatility_spread_widen_factor)

    def _pause_trading(self, reason: str) -> None:
        """Stop quoting until the daily reset or an operator resumes (each starts a new epoch): sends of
        this epoch are fenced first, then every order of the bot on its venues is cancelled."""
        fence_sends([(self.bot, self.bot.epoch)])
        # only the epoch this cycle runs at: a cycle that began before a resume (a new epoch) never
        # pauses the resumed bot again
        paused = Bot.objects.filter(pk=self.bot_id, epoch=self.bot.epoch, status=BotStatus.RUNNING).update(
            status=BotStatus.PAUSED, status_reason=reason[:500])
        self.bot.status = BotStatus.PAUSED
        self.order_manager.cancel_everything_on_exchange(self.order_pairs())
        self.report.paused_reason = reason
        if paused:
            push(tenant_id=self.bot.tenant_id, bot_id=self.bot_id, kind="status",
                 data={"status": BotStatus.PAUSED, "reason": reason})

    def _force_rebalance(self, pair: str) -> None:
        inventory = self.inventory_manager.current_inventory.get(pair)
        if inventory is None:
            return
        trades = calculate_rebalancing_trades([inventory], self.inventory_manager.config, force=True)
        self._execute_rebalancing(trades)

    # --- quoting --------------------------------------------------------------------------------

    def _place_initial_orders(self, position: LiquidityPosition) -> None:
        """Spec _place_initial_orders: strategy orders, validated, placed together, OrdersPlaced."""
        placed = self._adjust_orders(position, initial=True)
        publish_event(bot=self.bot, event_type=BotEventType.ORDERS_PLACED, payload={
            "position_id": position.pk, "trading_pair": position.trading_pair, "order_count": placed,
        })

    def _adjust_position_strategy(self, position: LiquidityPosition) -> None:
        """Spec _adjust_position_strategy: adapt to conditions, then re-quote where needed (this also
        replaces filled orders: a filled level is missing from the live orders and is placed again)."""
        analysis = self.analyses.get(position.trading_pair)
        strategy = self.strategy_engine.restore(position)
        adaptive = self.config.strategy_settings.adaptation_enabled
        if analysis is not None and adaptive and (
            self.strategy_engine._select_strategy_type(analysis) != strategy.strategy_type
            or strategy.should_adapt(analysis)
        ):
            self._adapt(position, strategy, analysis)
        self._adjust_orders(position, initial=False)

    def _adapt(self, position: LiquidityPosition, strategy: MarketMakingStrategy, analysis: MarketAnalysis) -> None:
        wanted = self.strategy_engine._select_strategy_type(analysis)
        if wanted != strategy.strategy_type:
            strategy = self.strategy_engine.create_strategy(position.trading_pair, analysis)
        else:
            strategy.parameters = strategy.adapt_to_conditions(analysis)
        previous = position.strategy_type
        position.strategy_type = strategy.strategy_type
        position.strategy_params = _params_json(strategy.parameters)
        position.save(update_fields=["strategy_type", "strategy_params"])
        publish_event(bot=self.bot, event_type=BotEventType.STRATEGY_ADAPTED, payload={
            "trading_pair": position.trading_pair, "from": previous, "to": strategy.strategy_type,
            "spread_bps": strategy.parameters.spread_bps,
            "volatility_daily": analysis.volatility_daily, "trend_strength": analysis.trend_strength,
        })

    def decide_quotes(self, position: LiquidityPosition, snapshot: MarketSnapshot, live_rows: list[Order],
                      others_open: int) -> pipeline.Decision:
        """decide -> check for one pair: gathers the immutable inputs and calls the one pure decision
        (``strategies.pipeline.decide``: strategy, pre-trade checks, diff against the live quotes),
        then notes the dashboard's "not quoting" reason. The driver's quiet check calls this too, so a
        quiet cycle and a full one can never disagree about whether to re-quote."""
        pair = position.trading_pair
        strategy = self.strategy_engine.restore(position)
        inventory = self.inventory_manager.current_inventory.get(pair) or self.inventory_manager.assess(
            position, snapshot.mid)
        decision = pipeline.decide(strategy, self.decision_inputs(pair, snapshot, inventory, live_rows, others_open))
        quoting.note(self.bot, pair, quoting.reason_for(  # the dashboard's "not quoting" line
            pause_reason=decision.pause_reason, intents=decision.intents, valid=decision.valid,
            allowed=decision.allowed, denied=decision.denied))
        return decision

    def decision_inputs(self, pair: str, snapshot: MarketSnapshot, inventory: PairInventory, live_rows: list[Order],
                        others_open: int) -> pipeline.DecisionInputs:
        """The frozen inputs of one pair's decision, as this engine holds them now."""
        adjust = self.risk_manager.adjustments.get(pair)
        return pipeline.DecisionInputs(
            snapshot=snapshot,
            inventory=InventoryState.from_balances(
                inventory.base_balance, inventory.quote_balance, snapshot.mid, inventory.target_ratio),
            risk=self.risk_manager.get_pair_limits(pair),
            limits=self.risk_manager.limits,
            rules=self.quoting_rules(),
            live=tuple(self.order_manager.as_live(live_rows)),
            others_open=others_open,
            now=self.clock(),
            reduction=(pipeline.SideReduction(adjust.reduced_side, adjust.reduced_side_factor)
                       if adjust is not None and adjust.reduced_side else pipeline.SideReduction()),
            position_value_quote=inventory.base_value_quote,
        )

    def quoting_rules(self) -> pipeline.QuotingRules:
        return pipeline.QuotingRules(
            min_order_size_quote=float(self.config.min_order_size_quote),
            max_order_size_quote=float(self.config.max_order_size_quote),
            order_refresh_tolerance_bps=self.config.order_settings.order_refresh_tolerance_bps,
            order_refresh_secs=self.config.order_settings.order_refresh_secs,
        )

    def _adjust_orders(self, position: LiquidityPosition, *, initial: bool, live_rows: list[Order] | None = None,
                       others_open: int | None = None, begin_cycle_now: Callable[[], int] | None = None,
                       sent_cancels: tuple[list[Order], Any] | None = None) -> int:
        """Spec _adjust_orders: decide -> check -> act for one pair (the strategy's orders, the pre-trade
        checks, cancel what moved past the refresh tolerance, place the rest); returns the number of
        orders placed. ``live_rows`` and ``others_open`` are the open rows as the engine driver just
        verified them (else read here); ``begin_cycle_now`` numbers the cycle once the cancels are under
        way, ``sent_cancels`` are (rows, future) of cancels the driver already sent for this re-quote."""
        pair = position.trading_pair
        snapshot = self.snapshots.get(pair)
        if snapshot is None:
            snapshot = self._market_snapshot(pair, position.exchange_account_id)
            self.snapshots[pair] = snapshot
        if live_rows is None:
            live_rows = [o for o in self.order_manager.open_orders(position) if o.purpose == OrderPurpose.QUOTE]
        problem = snapshot.problem() or self._stale_book(pair)
        if problem:
            # fail fast: no quoting on a bad book, and nothing left resting on it
            self.report.cancelled += self.order_manager.cancel(live_rows)
            quoting.note(self.bot, pair, problem)  # the dashboard's "not quoting" line
            self.performance_tracker.record_quoting(pair, False)
            return 0
        if others_open is None:
            others_open = Order.objects.filter(bot=self.bot, status__in=OPEN_ORDER_STATUSES).exclude(
                position=position).count()
        decision = self.decide_quotes(position, snapshot, live_rows, others_open)
        diff = decision.diff
        if decision.denied:
            self.report.denied += len(decision.denied)
            self._record_denials(pair, decision.denied)
        by_client = {o.client_order_id: o for o in live_rows}
        to_cancel = [by_client[o.order_id] for o in diff.cancel]
        # the cancels fly while the new orders are stored; nothing is sent before the venue answered them
        flying: list[tuple[list[Order], Any]] = []
        if sent_cancels is not None:
            # sent by the engine driver when it decided this re-quote; not marked CANCEL_PENDING first
            # (a round trip on the re-quote's path): settled below, and a crash before that leaves
            # OPEN rows that are off the book, which the next sync settles by client id
            flying.append(sent_cancels)
        already = {o.client_order_id for o in sent_cancels[0]} if sent_cancels is not None else set()
        rest = [o for o in to_cancel if o.client_order_id not in already]
        if rest:
            flying.append((rest, self.order_manager.start_cancels(rest)))
        to_cancel = [o for rows, _ in flying for o in rows]
        cancel_results: list[Any] = []

        def cancels_answered() -> None:
            if flying and not cancel_results:
                for _, future in flying:
                    cancel_results.extend(future.result(60))

        try:
            if begin_cycle_now is not None:
                self.cycle = begin_cycle_now()
            placed = self._place_order(position, diff.place, before_send=cancels_answered)
        finally:
            if to_cancel:  # the rows learn the venue's answers after the new quotes are out
                cancels_answered()
                self.report.cancelled += self.order_manager.settle_cancels(to_cancel, cancel_results)
        self.report.placed += placed
        self.performance_tracker.record_quoting(pair, decision.quotes_both_sides)
        if not initial and (to_cancel or placed):
            publish_event(bot=self.bot, event_type=BotEventType.ORDERS_ADJUSTED, payload={
                "position_id": position.pk, "trading_pair": pair, "new_order_count": placed,
                "cancelled": len(to_cancel), "kept": len(diff.keep),
            })
        return placed

    def _place_order(self, position: LiquidityPosition, intents: list[OrderIntent],
                     before_send: Callable[[], None] = lambda: None) -> int:
        """Spec _place_order, for all the new orders of one pair at once (the spec gathers one call per
        order): fence, store, send concurrently; returns the number of orders the venue accepted."""
        pair = position.trading_pair
        placed = 0
        if intents and self._still_current():
            stored = self.order_manager.store_intents(position, intents, cycle=self.cycle)
            before_send()
            outcomes = self.order_manager.send(stored)
            placed = sum(1 for o in outcomes if o.error is None)
            for outcome in outcomes:
                if outcome.error is not None:
                    logger.warning("bot %s: order placement failed: %s", self.bot_id, outcome.error)
            self._record_rejections(pair, [o.order for o in outcomes if o.order.status == OrderStatus.REJECTED])
        return placed

    def _stale_book(self, pair: str) -> str | None:
        """A book older than STALE_BOOK_SECS (or three monitoring intervals) is not quoted on."""
        fetched = self.book_fetched_at.get(pair)
        if fetched is None:
            return None
        limit = max(settings.STALE_BOOK_SECS, 3 * self.config.monitoring_interval_secs)
        age = time.time() - fetched
        return f"{pair}: order book is {age:.1f} s old (limit {limit:.1f} s)" if age > limit else None

    def _check_send(self) -> None:
        """The send gate (``OrderManager.send`` calls it right before any order leaves): the bot's
        sends are not fenced at this epoch (kill, stop, pause) and this cycle still holds its lease
        (extended here), in one atomic Redis step. Raises FencedError / LeaseLostError."""
        check_send(self.bot, self.bot.epoch, self.lease)

    def _still_current(self) -> bool:
        """Before storing new orders: the bot is still running at this epoch (the row: kill/stop/pause)
        and not fenced, and this cycle holds the lease. The send gate checks fence and lease again
        right before the orders leave."""
        if self.fenced_at_begin:  # begin_fenced_cycle checked the row in this cycle's first statement
            return True
        try:
            self._check_send()
        except FencedError:
            return False
        return Bot.objects.filter(
            pk=self.bot_id, epoch=self.bot.epoch, status__in=(BotStatus.RUNNING, BotStatus.STARTING),
            kill_switch_engaged=False, tenant__kill_switch_engaged=False,
        ).exists()

    def _record_denials(self, pair: str, denials: list[checks.Denial]) -> None:
        key = keys.risk_denied(self.bot_id, pair)
        reasons = sorted({d.reason.split(" ")[0] + " " + d.reason.split(" ")[-1] for d in denials})
        signature = "|".join(reasons)
        r = get_redis()
        if r.get(key) == signature.encode():
            return  # the same denials as last cycle: one RiskEvent per change, not per cycle
        r.set(key, signature, ex=keys.RECORDED_SIGNATURE_SECS)
        RiskEvent.objects.create(
            tenant_id=self.bot.tenant_id, bot=self.bot, event_type="ORDER_DENIED", trading_pair=pair,
            message=f"{len(denials)} order(s) denied: {denials[0].reason}", action_taken="order_not_sent",
            details={"reasons": [d.reason for d in denials[:20]]},
        )

    def _record_rejections(self, pair: str, rejected: list[Order]) -> None:
        """Orders the exchange refused (insufficient funds, invalid order) are never re-sent; the operator
        sees why in the risk log: one RiskEvent per change of the reasons, not one per cycle."""
        if not rejected:
            return
        reasons = sorted({(o.error or "rejected").split(":")[0] for o in rejected})
        key = keys.risk_rejected(self.bot_id, pair)
        r = get_redis()
        if r.get(key) == "|".join(reasons).encode():
            return
        r.set(key, "|".join(reasons), ex=keys.RECORDED_SIGNATURE_SECS)
        RiskEvent.objects.create(
            tenant_id=self.bot.tenant_id, bot=self.bot, event_type="ORDER_DENIED", trading_pair=pair,
            message=f"{len(rejected)} order(s) rejected by the exchange: {rejected[0].error}"[:2000],
            action_taken="not_retried",
            details={"client_order_ids": [o.client_order_id for o in rejected[:20]],
                     "errors": [o.error for o in rejected[:20]]},
        )

    # --- rebalancing -----------------------------------------------------------------------------

    def _rebalance_inventory(self, *, force: bool = False) -> int:
        """Spec _rebalance_inventory: trades toward the targets (the pairs out of their band; with
        ``force``, a scheduled or manual run: every pair whose trade exceeds ``min_trade_value_quote``),
        the inventory updated after each trade, InventoryRebalanced when any ran."""
        inventories = [inv for pair, inv in self.inventory_manager.current_inventory.items()
                       if pair not in self.rebalanced_pairs]
        trades = calculate_rebalancing_trades(inventories, self.inventory_manager.config, force=force)
        return self._execute_rebalancing(trades)

    def _execute_rebalancing(self, trades: list[RebalancingTrade]) -> int:
        """One IOC trade per pair at most per cycle (a forced and a regular rebalance of one imbalance
        never both trade): the rest of an imbalance one trade did not absorb (max order size, the book
        within the slippage band) is for the next cycle, on balances read from the venue."""
        trades = [t for t in trades if t.trading_pair not in self.rebalanced_pairs]
        if not trades or not self._still_current():
            return 0
        executed = 0
        slippage = self.inventory_manager.config.max_rebalance_slippage_bps / 1e4
        for index, trade in enumerate(trades):
            position = self.active_positions.get(trade.trading_pair)
            snapshot = self.snapshots.get(trade.trading_pair)
            if position is None or snapshot is None or snapshot.problem():
                continue
            self.rebalanced_pairs.add(trade.trading_pair)
            self.rebalance_attempted_at[trade.trading_pair] = self.clock()
            mid = snapshot.mid
            price = mid * (1 + slippage) if trade.side == "buy" else mid * (1 - slippage)
            size = min(trade.size_quote, float(self.config.max_order_size_quote)) / mid
            intent = OrderIntent(trade.side, price, size, index, post_only=False, order_type="limit")
            try:
                stored = self.order_manager.store_intents(
                    position, [intent], cycle=self.cycle, purpose=OrderPurpose.REBALANCE,
                    time_in_force="IOC")
                outcomes = self.order_manager.send(stored)
            except Exception as exc:
                logger.warning("bot %s: rebalancing trade failed: %s", self.bot_id, exc)
                continue
            for outcome in outcomes:
                if outcome.error is None:
                    executed += 1
                    self.inventory_manager.update_inventory(trade, outcome.order, position.exchange_account_id)
        self.report.rebalanced += executed
        if executed:
            publish_event(bot=self.bot, event_type=BotEventType.INVENTORY_REBALANCED,
                          payload={"trades_executed": executed})
        return executed

    def rebalancing_due(self, now: float) -> list[str]:
        """The pairs whose inventory, as this engine last assessed it, calls for a rebalancing trade
        (out of their band, a trade above ``min_trade_value_quote``), less those this engine traded or
        tried within ``REBALANCE_RETRY_SECS``. In memory, no I/O: the engine driver's quiet check asks
        it every monitoring interval, and a pair named here makes the cycle a full one."""
        trades = calculate_rebalancing_trades(
            list(self.inventory_manager.current_inventory.values()), self.inventory_manager.config)
        return [t.trading_pair for t in trades
                if now - self.rebalance_attempted_at.get(t.trading_pair, -REBALANCE_RETRY_SECS) >= REBALANCE_RETRY_SECS]

    def rebalance_now(self) -> int:
        """A scheduled or manual rebalance (``bots.tasks.rebalance_bot``): refresh balances and books,
        then trade every pair back to its target."""
        self._update_market_data()
        self._refresh_inventory()
        return self._rebalance_inventory(force=True)

    # --- performance -----------------------------------------------------------------------------

    def _update_performance(self) -> None:
        """Spec performance_tracker.update_metrics: snapshots every metrics_interval_secs."""
        if not self.config.performance_tracking:
            return
        r = get_redis()
        if not r.set(keys.performance_due(self.bot_id), "1", nx=True, px=int(self.config.metrics_interval_secs * 1000)):
            return
        self.snapshot_performance()

    def snapshot_performance(self) -> None:
        now = timezone.now()
        # the positions this engine holds are current (each fill sync updates them in memory too)
        positions = list(self.active_positions.values()) or list(
            LiquidityPosition.objects.filter(bot=self.bot, is_active=True))
        mids = {p: s.mid for p, s in self.snapshots.items() if not s.problem()}
        summary = self.performance_tracker.summary(positions, mids)
        equity = Decimal(repr(round(self._equity_quote(), 8)))
        PerformanceSnapshot.objects.create(
            tenant_id=self.bot.tenant_id, bot=self.bot, taken_at=now,
            realised_pnl_quote=summary["realised_pnl_quote"], unrealised_pnl_quote=summary["unrealised_pnl_quote"],
            fees_paid_quote=summary["fees_paid_quote"], volume_quote=summary["volume_quote"],
            fill_count=summary["fill_count"], inventory_value_quote=equity, equity_quote=equity,
            spread_capture_bps=summary["spread_capture_bps"], quote_uptime_ratio=summary["quote_uptime_ratio"],
        )
        rows = []
        for pair, inventory in self.inventory_manager.current_inventory.items():
            rows.append(InventorySnapshot(
                tenant_id=self.bot.tenant_id, bot=self.bot, trading_pair=pair, taken_at=now,
                base_balance=Decimal(repr(inventory.base_balance)),
                quote_balance=Decimal(repr(inventory.quote_balance)),
                mid_price=Decimal(repr(round(inventory.mid, 8))),
                base_value_quote=Decimal(repr(round(inventory.base_value_quote, 8))),
                ratio=inventory.current_ratio, target_ratio=inventory.target_ratio,
            ))
        if len(rows) == 1:  # one plain INSERT (bulk_create wraps even one row in a transaction)
            rows[0].save(force_insert=True)
        else:
            InventorySnapshot.objects.bulk_create(rows)
        push(tenant_id=self.bot.tenant_id, bot_id=self.bot_id, kind="snapshot",
             data={**summary, "equity_quote": equity, "taken_at": now,
                   "inventory": self.inventory_manager.get_final_inventory()})


def _params_json(parameters: StrategyParameters) -> dict[str, Any]:
    return asdict(parameters)


def daily_reset_key(bot_id: int) -> str:
    return keys.daily_reset(bot_id)


def request_daily_reset(bot_id: int) -> None:
    """The bot's next risk assessment takes its current net P&L as the new daily baseline."""
    get_redis().set(daily_reset_key(bot_id), "1")


def begin_fenced_cycle(bot_id: int, epoch: int) -> int | None:
    """Count a cycle and check the placement fence in the same statement: the cycle number, or None
    when the bot is no longer RUNNING at ``epoch`` or a bot/tenant kill switch is engaged (the same
    conditions as ``MarketMakingBot._still_current``, one round trip instead of two)."""
    from django.db import connection

    from mmplatform.tenancy.models import Tenant

    table, tenants = Bot._meta.db_table, Tenant._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET cycle_count = cycle_count + 1, last_cycle_started_at = %s WHERE id = %s "
            f"RETURNING cycle_count, epoch, status, kill_switch_engaged, "
            f"(SELECT t.kill_switch_engaged FROM {tenants} t WHERE t.id = {table}.tenant_id)",
            [timezone.now(), bot_id])
        row = cursor.fetchone()
    if row is None:
        return None
    cycle, current_epoch, status, bot_kill, tenant_kill = row
    if current_epoch != epoch or status not in (BotStatus.RUNNING, BotStatus.STARTING) or bot_kill or tenant_kill:
        return None
    return int(cycle)


def begin_cycle(bot_id: int) -> int:
    """Count a cycle (atomically, one statement) and return its number."""
    from django.db import connection

    table = Bot._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET cycle_count = cycle_count + 1, last_cycle_started_at = %s WHERE id = %s "
            "RETURNING cycle_count", [timezone.now(), bot_id])
        row = cursor.fetchone()
    if row is None:
        raise Bot.DoesNotExist(f"bot {bot_id} does not exist")
    return int(row[0])
