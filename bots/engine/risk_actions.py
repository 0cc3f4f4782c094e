"""A bot's risk assessment and what each breach makes it do; inventory rebalancing.

``RiskActionsMixin`` is part of ``MarketMakingBot``: the assessment (``risk.checks.assess_risk`` on
the bot's state), the spec's ``_handle_risk_event`` and its actions, and the rebalancing trades.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from bots.engine.bot_state import BotState
from bots.engine.lease import fence_sends
from bots.engine.self_trades import QuoteGuard, from_rows, merged
from bots.events import publish_event, push
from bots.inventory import RebalancingTrade, calculate_rebalancing_trades
from bots.models import (
    Bot,
    BotEventType,
    BotStatus,
    LiquidityPosition,
    OrderPurpose,
)
from risk import checks
from risk.models import RiskEvent
from strategies.types import OrderIntent

logger = logging.getLogger(__name__)

PAUSING_EVENTS = (checks.DAILY_LOSS_LIMIT, checks.MAX_DRAWDOWN)


REBALANCE_RETRY_SECS = 15.0
"""After a rebalancing trade (filled or not) the driver's quiet check waits this long before it calls
for another full cycle for the same pair: longer than the driver's balance reads (every 10 s), so the
next decision is taken on balances the venue reported after the trade."""


class RiskActionsMixin(BotState):
    """Risk assessment, risk-event actions and rebalancing of ``MarketMakingBot``."""

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
        adjust = self.risk_manager.adjustment(pair)
        adjust.reduced_side = checks.growing_side(base_value_quote)
        adjust.reduced_side_factor = min(adjust.reduced_side_factor,
                                         self.config.risk_limits.position_size_reduction_factor)

    def _adjust_spreads_for_volatility(self, pair: str) -> None:
        adjust = self.risk_manager.adjustment(pair)
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
            guard = QuoteGuard(position.exchange_account_id, trade.trading_pair)
            try:
                if not guard.acquire():
                    continue
                # no self-trades: this bot's quotes the IOC would reach are cancelled first (they are placed
                # again next cycle); it takes only what others offer before the account's other orders
                self._cancel_crossed_quotes(position, trade.side, price)
                own = [checks.RestingOrder(o.side, float(o.price), "this bot")
                       for o in self.order_manager.open_orders(position)]
                resting = merged(own, from_rows(self.bot_id, position.exchange_account_id, trade.trading_pair),
                                 self.listed_resting(trade.trading_pair))
                price = checks.self_trade_limit_price(trade.side, price, resting, snapshot.tick_size)
                if not price:
                    continue
                intent = OrderIntent(trade.side, price, size, index, post_only=False, order_type="limit")
                stored = self.order_manager.store_intents(
                    position, [intent], cycle=self.cycle, purpose=OrderPurpose.REBALANCE,
                    time_in_force="IOC")
                guard.release()
                outcomes = self.order_manager.send(stored)
            except Exception as exc:
                logger.warning("bot %s: rebalancing trade failed: %s", self.bot_id, exc)
                continue
            finally:
                guard.release()
            for outcome in outcomes:
                if outcome.error is None:
                    executed += 1
                    self.inventory_manager.update_inventory(trade, outcome.order, position.exchange_account_id)
        self.report.rebalanced += executed
        if executed:
            publish_event(bot=self.bot, event_type=BotEventType.INVENTORY_REBALANCED,
                          payload={"trades_executed": executed})
        return executed

    def _cancel_crossed_quotes(self, position: LiquidityPosition, side: str, price: float) -> None:
        """Cancel this bot's open orders of ``position`` that a taking ``side`` order at ``price`` would
        reach (a buy's: asks at or below it; a sell's: bids at or above it)."""
        crossed = [o for o in self.order_manager.open_orders(position) if o.side != side and (
            float(o.price) <= price if side == "buy" else float(o.price) >= price)]
        if crossed:
            self.report.cancelled += self.order_manager.cancel(crossed)

    def rebalancing_due(self, now: float) -> list[str]:
        """The pairs whose inventory, as this engine last assessed it, calls for a rebalancing trade
        (out of their band, a trade above ``min_trade_value_quote``), less those this engine traded or
        tried within ``REBALANCE_RETRY_SECS``. In memory, no I/O: the engine driver's quiet check asks
        it every monitoring interval, and a pair named here makes the cycle a full one."""
        trades = calculate_rebalancing_trades(
            list(self.inventory_manager.current_inventory.values()), self.inventory_manager.config)
        return [t.trading_pair for t in trades
                if now - self.rebalance_attempted_at.get(t.trading_pair, -REBALANCE_RETRY_SECS) >= REBALANCE_RETRY_SECS]

    def rebalance_now(self, cycle: int) -> int:
        """A scheduled or manual rebalance (``bots.tasks.rebalance_bot``) numbered ``cycle`` (its own
        number: its client ids never meet a driver cycle's): refresh balances and books, then trade every
        pair back to its target."""
        self.cycle = cycle
        self._update_market_data()
        self._refresh_inventory()
        return self._rebalance_inventory(force=True)
