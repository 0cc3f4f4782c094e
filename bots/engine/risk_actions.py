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
from bots.engine.venues import Slot
from bots.events import publish_event, push, record_risk_event
from bots.inventory import RebalancingTrade, VenueOffer, calculate_rebalancing_trades, venues_by_price
from bots.models import (
    Bot,
    BotEventType,
    BotStatus,
    LiquidityPosition,
    OrderPurpose,
)
from risk import checks
from strategies.types import OrderIntent

logger = logging.getLogger(__name__)

PAUSING_EVENTS = (checks.DAILY_LOSS_LIMIT, checks.MAX_DRAWDOWN)


REBALANCE_RETRY_SECS = 15.0
"""After a rebalancing trade (filled or not) the driver's quiet check waits this long before it calls
for another full cycle for the same pair: longer than the driver's balance reads (every 10 s), so the
next decision is taken on balances the venue reported after the trade."""


class RiskActionsMixin(BotState):
    """Risk assessment, risk-event actions and rebalancing of ``MarketMakingBot``."""

    def _pair_venues(self, pair: str) -> set[int]:
        """The accounts this bot quotes ``pair`` on."""
        return {account_id for account_id, p in self.active_positions if p == pair}

    def _pair_risk_states(self) -> tuple[checks.PairRiskState, ...]:
        """One state per pair, aggregated across the venues it is quoted on (position, inventory ratio;
        the most volatile venue's volatility). A pair missing a venue's balances (that venue is down)
        is judged on its position only: no imbalance is called on a part of the inventory."""
        pairs = []
        for pair, inventory in self.inventory_manager.aggregated().items():
            volatilities = [a.volatility_daily for (_, p), a in self.analyses.items()
                            if p == pair and a is not None and a.volatility_measured]
            complete = self.inventory_manager.complete(pair, self._pair_venues(pair))
            pairs.append(checks.PairRiskState(
                trading_pair=pair,
                base_value_quote=inventory.base_value_quote,
                ratio=inventory.current_ratio if complete else inventory.target_ratio,
                target_ratio=inventory.target_ratio,
                volatility_daily=max(volatilities, default=0.0),
            ))
        return tuple(pairs)

    def assess_current_risk(self) -> list[checks.RiskStatus]:
        """Spec risk_manager.assess_current_risk, on this cycle's inventory and P&L."""
        equity = self._equity_quote()
        if not self.equity_complete():  # a venue is down: its assets are not in the sum, nothing fell
            equity = max(float(self.bot.equity_high_water_quote), equity)
        high_water = max(float(self.bot.equity_high_water_quote), equity)
        if high_water > float(self.bot.equity_high_water_quote) and self.equity_complete():
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
        if not self.equity_complete():
            equity = max(high_water_quote, equity)
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
            record_risk_event(bot=self.bot, event_type=status.event_type, trading_pair=status.trading_pair,
                              message=status.message, action_taken=status.action_taken,
                              details={**status.details, **self._venue_breakdown(status.trading_pair)})

    def _venue_breakdown(self, pair: str) -> dict[str, dict[str, dict[str, float]]]:
        """A pair's risk event on a bot quoting it on several venues: each account's share of the
        aggregate it was judged on (base, quote, base value)."""
        venues = self.inventory_manager.by_pair().get(pair, {}) if pair and len(self.accounts) > 1 else {}
        labels = self.account_labels()
        return {"venues": {labels.get(account_id, str(account_id)): {
            "base": inv.base_balance, "quote": inv.quote_balance, "base_value_quote": inv.base_value_quote}
            for account_id, inv in sorted(venues.items())}} if venues else {}

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
        inventory = self.inventory_manager.aggregated().get(pair)
        if inventory is None or not self.inventory_manager.complete(pair, self._pair_venues(pair)):
            return
        trades = calculate_rebalancing_trades([inventory], self.inventory_manager.config, force=True)
        self._execute_rebalancing(trades)

    def _rebalance_inventory(self, *, force: bool = False) -> int:
        """Spec _rebalance_inventory: trades toward the targets (the pairs out of their band; with
        ``force``, a scheduled or manual run: every pair whose trade exceeds ``min_trade_value_quote``),
        the inventory updated after each trade, InventoryRebalanced when any ran."""
        inventories = [inv for pair, inv in self.inventory_manager.aggregated().items()
                       if pair not in self.rebalanced_pairs
                       and self.inventory_manager.complete(pair, self._pair_venues(pair))]
        trades = calculate_rebalancing_trades(inventories, self.inventory_manager.config, force=force)
        return self._execute_rebalancing(trades)

    def _execute_rebalancing(self, trades: list[RebalancingTrade]) -> int:
        """One IOC trade per pair at most per cycle (a forced and a regular rebalance of one imbalance
        never both trade): the rest of an imbalance one trade did not absorb (max order size, the book
        within the slippage band) is for the next cycle, on balances read from the venue. Each trade goes
        to the cheapest venue where it passes the pre-trade checks (``_rebalance_on``)."""
        trades = [t for t in trades if t.trading_pair not in self.rebalanced_pairs]
        if not trades or not self._still_current():
            return 0
        executed = 0
        for index, trade in enumerate(trades):
            venues = self._rebalance_venues(trade)
            if not venues:
                continue
            self.rebalanced_pairs.add(trade.trading_pair)
            self.rebalance_attempted_at[trade.trading_pair] = self.clock()
            for slot in venues:
                sent = self._rebalance_on(slot, trade, index)
                if sent is not None:
                    executed += sent
                    break
            else:
                logger.info("bot %s: rebalancing %s %s not sent: every venue's limit would take nothing "
                            "(the account's own orders are in front) or its guard is busy",
                            self.bot_id, trade.side, trade.trading_pair)
        self.report.rebalanced += executed
        if executed:
            publish_event(bot=self.bot, event_type=BotEventType.INVENTORY_REBALANCED,
                          payload={"trades_executed": executed})
        return executed

    def _rebalance_on(self, slot: Slot, trade: RebalancingTrade, index: int) -> int | None:
        """The trade as an IOC on ``slot``'s venue, under that account's quote guard (self-trades are per
        account). None when it does not pass there: the guard is busy, or the self-trade limit (a tick
        short of the account's other orders: other bots', hand-placed ones) leaves the limit short of the
        venue's best price, so the order could only expire; the caller then tries the next venue. Else
        the orders the venue accepted (0 after an error: nothing is tried elsewhere once a row is stored)."""
        position, snapshot = self.active_positions[slot], self.snapshots[slot]
        slippage = self.inventory_manager.config.max_rebalance_slippage_bps / 1e4
        mid = snapshot.mid
        price = mid * (1 + slippage) if trade.side == "buy" else mid * (1 - slippage)
        size = min(trade.size_quote, float(self.config.max_order_size_quote), self._fundable_quote(slot, trade)) / mid
        guard = QuoteGuard(position.exchange_account_id, trade.trading_pair)
        try:
            if not guard.acquire():
                return None
            others = merged(from_rows(self.bot_id, position.exchange_account_id, trade.trading_pair),
                            self.listed_resting(slot))
            if not checks.taking_limit_price(trade.side, price, others, snapshot.tick_size,
                                             best_bid=snapshot.best_bid, best_ask=snapshot.best_ask):
                return None
            # no self-trades: this bot's quotes the IOC would reach are cancelled first (they are placed
            # again next cycle); it takes only what others offer before the account's other orders
            self._cancel_crossed_quotes(position, trade.side, price)
            own = [checks.RestingOrder(o.side, float(o.price), "this bot")
                   for o in self.order_manager.open_orders(position)]
            price = checks.self_trade_limit_price(trade.side, price, merged(own, others), snapshot.tick_size)
            if not price:
                return 0
            intent = OrderIntent(trade.side, price, size, index, post_only=False, order_type="limit")
            stored = self.order_manager.store_intents(
                position, [intent], cycle=self.cycle, purpose=OrderPurpose.REBALANCE, time_in_force="IOC")
            guard.release()
            outcomes = self.order_manager.send(stored)
        except Exception as exc:
            logger.warning("bot %s: rebalancing trade failed: %s", self.bot_id, exc)
            return 0
        finally:
            guard.release()
        executed = 0
        for outcome in outcomes:
            if outcome.error is None:
                executed += 1
                self.inventory_manager.update_inventory(trade, outcome.order, position.exchange_account_id)
        return executed

    def _cancel_crossed_quotes(self, position: LiquidityPosition, side: str, price: float) -> None:
        """Cancel this bot's open orders of ``position`` that a taking ``side`` order at ``price`` would
        reach (a buy's: asks at or below it; a sell's: bids at or above it)."""
        crossed = [o for o in self.order_manager.open_orders(position) if o.side != side and (
            float(o.price) <= price if side == "buy" else float(o.price) >= price)]
        if crossed:
            self.report.cancelled += self.order_manager.cancel(crossed)

    def _rebalance_venues(self, trade: RebalancingTrade) -> list[Slot]:
        """The slots a rebalancing trade may go to, cheapest first: of the pair's venues with a healthy
        book, those that can fund it (a buy by ascending ask, a sell by descending bid)."""
        offers = []
        for slot, position in self.active_positions.items():
            snapshot = self.snapshots.get(slot)
            inventory = self.inventory_manager.current_inventory.get(slot)
            if (position.trading_pair != trade.trading_pair or snapshot is None or snapshot.problem()
                    or inventory is None or self._stale_book(slot) or slot[0] not in self.exchanges):
                continue
            offers.append(VenueOffer(slot, snapshot.best_bid, snapshot.best_ask,
                                     inventory.base_balance, inventory.quote_balance))
        return [offer.key for offer in venues_by_price(trade.side, offers)]  # type: ignore[misc]

    def _fundable_quote(self, slot: Slot, trade: RebalancingTrade) -> float:
        """The quote value of a trade this slot's balances can fund (all of a single venue's)."""
        inventory = self.inventory_manager.current_inventory[slot]
        if len(self._pair_venues(trade.trading_pair)) < 2:
            return trade.size_quote  # one venue: as before, the venue refuses what its balances cannot fund
        if trade.side == "buy":
            return inventory.quote_balance
        return inventory.base_value_quote

    def rebalancing_due(self, now: float) -> list[str]:
        """The pairs whose inventory, as this engine last assessed it, calls for a rebalancing trade
        (out of their band, a trade above ``min_trade_value_quote``), less those this engine traded or
        tried within ``REBALANCE_RETRY_SECS``. In memory, no I/O: the engine driver's quiet check asks
        it every monitoring interval, and a pair named here makes the cycle a full one."""
        return self.rebalancing_needs(now)[0]

    def rebalancing_needs(self, now: float) -> tuple[list[str], bool]:
        """``rebalancing_due`` and whether no pair wants a trade at all (none held back by the retry
        window either): the answer then stays empty for as long as the inventory does not change."""
        trades = calculate_rebalancing_trades(
            [inv for pair, inv in self.inventory_manager.aggregated().items()
             if self.inventory_manager.complete(pair, self._pair_venues(pair))], self.inventory_manager.config)
        return [t.trading_pair for t in trades
                if now - self.rebalance_attempted_at.get(t.trading_pair, -REBALANCE_RETRY_SECS) >= REBALANCE_RETRY_SECS
                ], not trades

    def volatility_within_limit(self) -> bool:
        """No measured volatility of this engine's analyses is above ``volatility_pause_threshold``: with
        every other input of ``risk_in_memory`` unchanged, its answer cannot have changed (the volatility
        is the only input of ``checks.assess_risk`` a new analysis moves)."""
        limit = self.config.risk_limits.volatility_pause_threshold
        return not any(a is not None and a.volatility_measured and a.volatility_daily > limit
                       for a in self.analyses.values())

    def rebalance_now(self, cycle: int) -> int:
        """A scheduled or manual rebalance (``bots.tasks.rebalance_bot``) numbered ``cycle`` (its own
        number: its client ids never meet a driver cycle's): refresh balances and books, then trade every
        pair back to its target."""
        self.cycle = cycle
        self._update_market_data()
        self._refresh_inventory()
        return self._rebalance_inventory(force=True)
