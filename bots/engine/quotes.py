"""One pair's quotes: decide (``strategies.pipeline``), check, act (store before send, fence, cancel/place).

``QuotesMixin`` is part of ``MarketMakingBot``: ``decide_quotes`` gathers the frozen inputs and calls
the pure decision, ``_adjust_orders`` acts on it (a full cycle and the driver's re-quote path both end
here; how the new quotes take the old ones' place at the venue is ``acts.py``), ``_place_order`` stores the
intents and sends them through the send gate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from bots import quoting
from bots.engine import keys
from bots.engine.booking import Booking
from bots.engine.bot_state import BotState
from bots.engine.lease import FencedError
from bots.engine.market_data import AccountView
from bots.engine.rows import open_rows
from bots.engine.self_trades import QuoteGuard, from_rows, from_view, merged
from bots.engine.strategy_engine import params_json
from bots.engine.venues import Slot, slot_of
from bots.events import publish_event, record_risk_event
from bots.inventory import PairInventory, aggregate_inventories
from bots.models import (
    BotEventType,
    LiquidityPosition,
    Order,
    OrderPurpose,
    OrderStatus,
)
from mmplatform.redis_client import get_redis
from risk import checks
from risk.models import RiskEventType
from strategies import pipeline
from strategies.analysis import MarketAnalysis
from strategies.base import MarketMakingStrategy
from strategies.reference import REFERENCE_OWN, Reference, reference_mid, with_reference
from strategies.types import InventoryState, MarketSnapshot, OrderIntent

logger = logging.getLogger(__name__)

NumberCycle = Callable[[int, str], tuple[int, list[checks.RestingOrder]]]
"""A re-quote on the kept engine numbers and fences its cycle in the statement that reads the account's other bots'
open rows on the pair (the exchange account id, the pair): (the cycle number, those rows as the check reads them);
raises ``FencedError`` when the bot was stopped, killed or restarted since the check."""


class QuotesMixin(BotState):
    """The quote path of ``MarketMakingBot``: decide -> check -> act for one pair."""

    def _place_initial_orders(self, position: LiquidityPosition) -> None:
        """Spec _place_initial_orders: strategy orders, validated, placed together, OrdersPlaced."""
        placed = self._adjust_orders(position, initial=True)
        publish_event(bot=self.bot, event_type=BotEventType.ORDERS_PLACED, payload={
            "position_id": position.pk, "trading_pair": position.trading_pair, "order_count": placed,
        })

    def _adjust_position_strategy(self, position: LiquidityPosition) -> None:
        """Spec _adjust_position_strategy: adapt to conditions, then re-quote where needed (this also
        replaces filled orders: a filled level is missing from the live orders and is placed again)."""
        analysis = self.analyses.get(slot_of(position))
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
        position.strategy_params = params_json(strategy.parameters)
        position.save(update_fields=["strategy_type", "strategy_params"])
        publish_event(bot=self.bot, event_type=BotEventType.STRATEGY_ADAPTED, payload={
            "trading_pair": position.trading_pair, "from": previous, "to": strategy.strategy_type,
            "spread_bps": strategy.parameters.spread_bps,
            "volatility_daily": analysis.volatility_daily, "trend_strength": analysis.trend_strength,
        })

    def decide_quotes(self, position: LiquidityPosition, snapshot: MarketSnapshot, live_rows: list[Order],
                      others_open: int, *, now: float | None = None,
                      resting: tuple[checks.RestingOrder, ...] | None = None) -> pipeline.Decision:
        """decide -> check for one pair: gathers the immutable inputs and calls the one pure decision
        (``strategies.pipeline.decide``: strategy, pre-trade checks, diff against the live quotes),
        then notes the dashboard's "not quoting" reason. The driver's quiet check calls this too, so a
        quiet cycle and a full one can never disagree about whether to re-quote. ``resting``: the
        account's other resting orders on the slot's pair (None: as the driver last handed them over)."""
        slot = slot_of(position)
        strategy = self.strategy_engine.restore(position)
        inventory = self.inventory_manager.current_inventory.get(slot) or self.inventory_manager.assess(
            position, snapshot.mid)
        inputs = self.decision_inputs(slot, snapshot, inventory, live_rows, others_open, now=now,
                                      resting=self.resting_seen.get(slot, ()) if resting is None else resting)
        decision = pipeline.decide(strategy, inputs)
        quoting.note(self.bot, self.quoting_key(slot), quoting.reason_for(  # the dashboard's "not quoting" line
            pause_reason=decision.pause_reason, intents=decision.intents, valid=decision.valid,
            allowed=decision.allowed, denied=decision.denied))
        return decision

    def decision_inputs(self, slot: Slot, snapshot: MarketSnapshot, inventory: PairInventory, live_rows: list[Order],
                        others_open: int, *, now: float | None = None,
                        resting: tuple[checks.RestingOrder, ...] = ()) -> pipeline.DecisionInputs:
        """The frozen inputs of one slot's decision, as this engine holds them now (``now``: the
        clock the refresh diff ages the live orders by; the engine's clock when None; ``resting``: the
        slot's account's other resting orders on the pair, for the no-self-trade check).

        A pair quoted on several venues is one inventory: the skew and the position limit see the pair's
        aggregate across venues, the sizes what this venue's balances fund; the snapshot is centred on
        the bot's reference price."""
        pair = slot[1]
        adjust = self.risk_manager.adjustments.get(pair)
        if not self.centred_on_own_book():
            reference = self.reference_for(slot)
            if reference.problem is None:
                snapshot = with_reference(snapshot, reference.mid)
        state = InventoryState.from_balances(
            inventory.base_balance, inventory.quote_balance, snapshot.mid, inventory.target_ratio)
        position_value = inventory.base_value_quote
        venues = self.inventory_manager.by_pair().get(pair, {}) if len(self.accounts) > 1 else {}
        if len(venues) > 1:
            total = aggregate_inventories(pair, list(venues.values()), inventory.target_ratio)
            aggregate = InventoryState.from_balances(total.base_balance, total.quote_balance, snapshot.mid,
                                                     total.target_ratio)
            state = InventoryState(state.base_balance, state.quote_balance, aggregate.base_value_quote,
                                   aggregate.ratio, aggregate.target_ratio)
            position_value = aggregate.base_value_quote
        return pipeline.DecisionInputs(
            snapshot=snapshot,
            inventory=state,
            risk=self.risk_manager.get_pair_limits(pair),
            limits=self.risk_manager.limits,
            rules=self.quoting_rules(),
            live=tuple(self.order_manager.as_live(live_rows)),
            others_open=others_open,
            now=self.clock() if now is None else now,
            reduction=(pipeline.SideReduction(adjust.reduced_side, adjust.reduced_side_factor)
                       if adjust is not None and adjust.reduced_side else pipeline.SideReduction()),
            position_value_quote=position_value,
            account_resting=resting,
            halt=self.hedge_halts.get(slot, ""),
        )

    def reference_for(self, slot: Slot) -> Reference:
        """The mid this slot's quotes are centred on (``Bot.reference_price``), from the healthy venues of
        its pair as this engine last saw them."""
        account_id, pair = slot
        mode = self.bot.reference_price or REFERENCE_OWN
        own_venue = self._venue_id(account_id)
        healthy: dict[str, MarketSnapshot] = {}
        for (other_account, other_pair), snapshot in self.snapshots.items():
            if other_pair != pair or snapshot.problem() or self._stale_book((other_account, other_pair)):
                continue
            if mode == REFERENCE_OWN and other_account != account_id:
                continue
            healthy[self._venue_id(other_account) if other_account != account_id else own_venue] = snapshot
        return reference_mid(mode, own_venue, healthy, chosen_venue=self.bot.reference_venue)

    def centred_on_own_book(self) -> bool:
        """Each slot quotes around its own book's mid (no other venue's price, whose book's age would move
        the reference alone)."""
        return (self.bot.reference_price or REFERENCE_OWN) == REFERENCE_OWN

    def reference_problem(self, slot: Slot) -> str | None:
        """Why this slot has no reference price to centre on (the chosen venue, or every venue, unhealthy)."""
        if self.centred_on_own_book():
            return None  # its own book: its own problems are checked on their own
        return self.reference_for(slot).problem

    def _venue_id(self, account_id: int) -> str:
        account = self.accounts.get(account_id)
        return account.exchange_id if account is not None else str(account_id)

    def quoting_rules(self) -> pipeline.QuotingRules:
        """The config's order settings as the pipeline applies them (the backtester builds them the same way):
        a frozen value of the engine's config, which is the engine's for life, built once."""
        rules = self.__dict__.get("_quoting_rules")
        if rules is None:
            rules = self.__dict__["_quoting_rules"] = self.config.quoting_rules()
        return rules

    def _adjust_orders(self, position: LiquidityPosition, *, initial: bool, live_rows: list[Order] | None = None,
                       others_open: int | None = None, begin_cycle_now: NumberCycle | None = None,
                       sent_cancels: tuple[list[Order], Any] | None = None) -> int:
        """Spec _adjust_orders: decide -> check -> act for one pair (the strategy's orders, the pre-trade
        checks, cancel what moved past the refresh tolerance, place the rest); returns the number of
        orders placed. ``live_rows`` and ``others_open`` are the open rows as the engine driver just
        verified them (else read here); ``begin_cycle_now`` numbers and fences the cycle under the
        quote guard (a re-quote on the kept engine: ``NumberCycle``); ``sent_cancels`` are (rows, future) of
        cancels the driver already sent for this re-quote."""
        pair = position.trading_pair
        slot = slot_of(position)
        snapshot = self.snapshots.get(slot)
        if snapshot is None:
            snapshot = self._market_snapshot(pair, position.exchange_account_id)
            self.snapshots[slot] = snapshot
        if live_rows is None or others_open is None:  # (a full cycle) one read of the open rows for both
            rows = open_rows(self.bot_id)
            if live_rows is None:
                live_rows = [o for o in rows if o.position_id == position.pk and o.purpose == OrderPurpose.QUOTE]
            if others_open is None:
                others_open = sum(1 for o in rows if o.position_id != position.pk)
        stale = self._stale_book(slot)
        problem = snapshot.problem() or stale or self.reference_problem(slot)
        if problem:
            # fail fast: no quoting on a bad book (or without the reference price), nothing left resting on it
            self.order_manager.count("not_quoted_stale_book" if problem is stale else "not_quoted_problem")
            self.report.cancelled += self.order_manager.cancel(live_rows)
            quoting.note(self.bot, self.quoting_key(slot), problem)  # the dashboard's "not quoting" line
            self.performance_tracker.record_quoting(pair, False)
            return 0
        # no self-trades: the account's other orders on the pair are read, the decision made and its
        # orders stored under the (account, pair) guard, so no other bot of the account decides meanwhile
        guard = QuoteGuard(position.exchange_account_id, pair)
        try:
            return self._adjust_guarded(position, snapshot, live_rows, others_open, guard, initial=initial,
                                        begin_cycle_now=begin_cycle_now, sent_cancels=sent_cancels)
        finally:
            self.guard_at_send = None
            guard.release()

    def _adjust_guarded(self, position: LiquidityPosition, snapshot: MarketSnapshot, live_rows: list[Order],
                        others_open: int, guard: QuoteGuard, *, initial: bool,
                        begin_cycle_now: NumberCycle | None,
                        sent_cancels: tuple[list[Order], Any] | None) -> int:
        """``_adjust_orders`` from the decision on; ``guard`` is released once the new rows are stored."""
        pair = position.trading_pair
        slot = slot_of(position)
        waited = time.perf_counter()
        guarded = guard.acquire()
        # the driver's stats: how long re-quotes waited for another bot of the account (guard_wait_ms / guard_takes)
        self.order_manager.count("guard_wait_ms", int(1000 * (time.perf_counter() - waited)))
        self.order_manager.count("guard_takes")
        if not guarded:
            logger.warning("bot %s: %s: another bot of the account held the quote guard; no new orders this cycle",
                           self.bot_id, pair)
        if begin_cycle_now is None:
            others = from_rows(self.bot_id, position.exchange_account_id, pair)
        else:
            # a re-quote is numbered and fenced in the statement that reads the account's other bots' rows under the
            # guard (one round trip on its path, not two); fenced, nothing of it is sent (a stop, kill or pause
            # cancels the bot's orders itself), and cancels the driver already sent are settled as the cancel-first
            # path's are
            try:
                self.cycle, others = begin_cycle_now(position.exchange_account_id, pair)
            except FencedError:
                if sent_cancels is not None:
                    rows, future = sent_cancels
                    self.report.cancelled += self.order_manager.settle_cancels(rows, future.result(60))
                raise
        resting = merged(others, self.listed_resting(slot))
        decision = self.decide_quotes(position, snapshot, live_rows, others_open, resting=resting)
        diff = decision.diff
        if decision.denied:
            self.report.denied += len(decision.denied)
            self._record_denials(slot, decision.denied)
        by_client = {o.client_order_id: o for o in live_rows}
        to_cancel = [by_client[str(o.order_id)] for o in diff.cancel]  # live ids are client ids
        place = diff.place if guarded else []
        if not place:
            guard.release()  # nothing will be stored: the account's other bots need not wait for the cancels

        def adjusted(placed: int) -> tuple[str, dict[str, Any]] | None:
            """The OrdersAdjusted event this re-quote owes (none for a first placement or when nothing moved)."""
            if initial or not (to_cancel or placed):
                return None
            return BotEventType.ORDERS_ADJUSTED, {
                "position_id": position.pk, "trading_pair": pair, "new_order_count": placed,
                "cancelled": len(to_cancel), "kept": len(diff.keep)}

        # every venue answer of this act (placements, cancels) is held and saved in one statement at its end, with
        # the event it owes (none when it failed half-way); a crash in between leaves rows without their answers,
        # which the next sync settles by client id, as after a lost reply
        event: tuple[str, dict[str, Any]] | None = None
        self.order_manager.hold_acks()
        try:
            placed = self._act(position, place, to_cancel, sent_cancels, guard)  # (acts.py)
            event = adjusted(placed)
        finally:
            self.order_manager.save_held_acks(event)
        self.report.placed += placed
        self.performance_tracker.record_quoting(pair, decision.quotes_both_sides)
        return placed

    def _place_order(self, position: LiquidityPosition, intents: list[OrderIntent],
                     before_send: Callable[[], None] = lambda: None,
                     replacing: list[Order | None] | None = None) -> int:
        """Spec _place_order, for all the new orders of one pair at once (the spec gathers one call per
        order): fence, store, send concurrently; returns the number of orders the venue accepted.
        ``replacing``: the old row each intent replaces in one request (``acts.ActsMixin._replace_quotes``)."""
        placed = 0
        if intents and self._still_current():
            stored = self.order_manager.store_intents(position, intents, cycle=self.cycle)
            before_send()
            old_of = {(i.side, i.level): old for i, old in zip(intents, replacing or [], strict=False) if old}
            outcomes = self.order_manager.send(stored, {row.pk: old_of[(row.side, row.level)] for row in stored
                                                        if (row.side, row.level) in old_of})
            placed = sum(1 for o in outcomes if o.error is None)
            for outcome in outcomes:
                if outcome.error is not None:
                    logger.warning("bot %s: order placement failed: %s", self.bot_id, outcome.error)
            self._record_rejections(slot_of(position),
                                    [o.order for o in outcomes if o.order.status == OrderStatus.REJECTED])
        return placed

    # --- what the engine driver hands over and asks (its only ways into this object) ------------------

    def observe_market(self, slot: Slot, snapshot: MarketSnapshot, fetched_at: float) -> None:
        """The driver's feeder read this slot's book at ``fetched_at``; ``snapshot`` (frozen) is what the
        next decision quotes on."""
        self.snapshots[slot] = snapshot
        self.book_fetched_at[slot] = fetched_at

    def observe_account(self, position: LiquidityPosition, balances: dict[str, Any], mid: float, *,
                        free: dict[str, Any] | None = None) -> None:
        """The account's balances as the feeder last read them (totals; ``free``: not locked, when read);
        the pair's inventory valued at ``mid``."""
        self.inventory_manager.observe_balances(position.exchange_account_id, balances, free=free)
        self.inventory_manager.assess(position, mid)

    def observe_resting(self, slot: Slot, resting: tuple[checks.RestingOrder, ...]) -> None:
        """The slot's account's other resting orders on its pair as the feeder's account view listed them
        (the no-self-trade check of the next decision; the quote path adds the other bots' stored rows).
        Self-trades are per account and pair: another venue's orders of the same pair never count."""
        self.resting_seen[slot] = resting

    def listed_resting(self, slot: Slot) -> tuple[checks.RestingOrder, ...]:
        """The slot's account's other orders on its pair as the venue last listed them: the driver's
        account view (``observe_resting``), else this engine's own last sync of the slot (a full cycle)."""
        seen = self.resting_seen.get(slot)
        if seen is None:
            seen = from_view(self.bot_id, self.order_manager.listed_open.get(slot, ()), slot[1])
        return seen

    def observe_analysis(self, slot: Slot, analysis: MarketAnalysis) -> None:
        self.analyses[slot] = analysis

    def stale_book(self, slot: Slot) -> str | None:
        """Why this slot's book (or its reference price) cannot be quoted on (None when it can)."""
        return self._stale_book(slot) or self.reference_problem(slot)

    def reload_balances(self, account_ids: set[int], not_before: dict[int, float] | None = None) -> None:
        """A fill moved these accounts' balances: start reading them again (a fill sync on the kept engine);
        the sync reads the trades meanwhile and takes the balances in before it values the inventory
        (``balances_read``). ``not_before``: per account, when the fill was known to have happened (a read
        the process started since then is shared)."""
        gateways = {a: self.exchanges[a] for a in account_ids}
        self.balance_read = (gateways, self.inventory_manager.start_balance_read(gateways, not_before))

    def balances_read(self) -> None:
        """Wait for the balances ``reload_balances`` began reading and take them in (once)."""
        pending, self.balance_read = self.balance_read, None
        if pending is not None:
            self.inventory_manager.apply_balances(*pending)

    def reconcile_pair(self, position: LiquidityPosition, mid: float, view: AccountView | None = None,
                       open_rows: list[Order] | None = None) -> tuple[list[Order], Booking | None]:
        """A fill sync's first half on the kept engine: the pair reconciled with its venue (open orders, the fate
        of the missing ones; ``view`` and ``open_rows`` as ``OrderManager.reconcile_position`` takes them),
        the balances read since the fill taken in and the inventory valued at ``mid`` (nan: a bad book, not
        valued). Returns the pair's rows as the venue answered them (to re-quote on) and the booking owed."""
        booking = self.order_manager.reconcile_position(position, view=view, open_rows=open_rows)
        self.balances_read()  # before the inventory is valued and the pair re-quoted
        if mid == mid:
            self.inventory_manager.assess(position, mid)
        return self.order_manager.synced_rows.get(position.pk, []), booking

    def book_pair(self, position: LiquidityPosition, booking: Booking | None, mid: float,
                  view: AccountView | None = None) -> list[Order]:
        """A fill sync's second half: the trades -> Fill rows and OrderFilled events (``view``: the account's
        view now, whose trades pushed since the reconciliation count), the hedges they owe run. Returns the
        pair's rows as the sync and anything since (a re-quote's cancels) left them."""
        fills = self.order_manager.book_position(booking, mid=mid, view=view) if booking is not None else []
        if fills or self.hedge_retry_due(self.clock()):
            self.run_hedges()  # at once (latency): a failed hedge halts the maker venue
        self.announce_fills(fills)
        return self.order_manager.take_synced(position.pk)

    def requote_pair(self, position: LiquidityPosition, *, live_rows: list[Order], others_open: int,
                     begin_cycle_now: NumberCycle | None = None,
                     sent_cancels: tuple[list[Order], Any] | None = None) -> int:
        """A re-quote of one pair on rows the driver just verified (``_adjust_orders``, not initial)."""
        return self._adjust_orders(position, initial=False, live_rows=live_rows, others_open=others_open,
                                   begin_cycle_now=begin_cycle_now, sent_cancels=sent_cancels)

    def _stale_book(self, slot: Slot) -> str | None:
        """A book older than STALE_BOOK_SECS (or three monitoring intervals) is not quoted on."""
        fetched = self.book_fetched_at.get(slot)
        if fetched is None:
            return None
        age = time.time() - fetched
        if age <= 3 * self.config.monitoring_interval_secs:
            return None  # (the common case, decided without reading Django's settings: per slot, per check)
        limit = max(settings.STALE_BOOK_SECS, 3 * self.config.monitoring_interval_secs)
        where = slot[1] if len(self.accounts) < 2 else f"{slot[1]} on {self._venue_id(slot[0])}"
        return f"{where}: order book is {age:.1f} s old (limit {limit:.1f} s)" if age > limit else None

    def _record_denials(self, slot: Slot, denials: list[checks.Denial]) -> None:
        pair = slot[1]
        key = keys.risk_denied(self.bot_id, self.quoting_key(slot))
        # (a self-trade denial by its side only: the price and the other order's owner move every cycle)
        reasons = sorted({f"{d.code} {d.intent.side}" if d.code
                          else d.reason.split(" ")[0] + " " + d.reason.split(" ")[-1] for d in denials})
        signature = "|".join(reasons)
        r = get_redis()
        if r.get(key) == signature.encode():
            return  # the same denials as last cycle: one RiskEvent per change, not per cycle
        r.set(key, signature, ex=keys.RECORDED_SIGNATURE_SECS)
        record_risk_event(
            bot=self.bot, event_type=RiskEventType.ORDER_DENIED, trading_pair=pair,
            message=f"{len(denials)} order(s) denied: {denials[0].reason}", action_taken="order_not_sent",
            details={"reasons": [d.reason for d in denials[:20]]},
        )

    def _record_rejections(self, slot: Slot, rejected: list[Order]) -> None:
        """Orders the exchange refused (insufficient funds, invalid order) are never re-sent; the operator
        sees why in the risk log: one RiskEvent per change of the reasons, not one per cycle."""
        if not rejected:
            return
        pair = slot[1]
        reasons = sorted({(o.error or "rejected").split(":")[0] for o in rejected})
        key = keys.risk_rejected(self.bot_id, self.quoting_key(slot))
        r = get_redis()
        if r.get(key) == "|".join(reasons).encode():
            return
        r.set(key, "|".join(reasons), ex=keys.RECORDED_SIGNATURE_SECS)
        record_risk_event(
            bot=self.bot, event_type=RiskEventType.ORDER_DENIED, trading_pair=pair,
            message=f"{len(rejected)} order(s) rejected by the exchange: {rejected[0].error}"[:2000],
            action_taken="not_retried",
            details={"client_order_ids": [o.client_order_id for o in rejected[:20]],
                     "errors": [o.error for o in rejected[:20]]},
        )
