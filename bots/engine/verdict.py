"""The read-only check of a due bot: quiet, re-quote, fills, snapshot or a full cycle.

``_check`` runs on the driver thread, on the engine object kept from the bot's last full cycle and the
feeder's data; it decides through the same ``MarketMakingBot.decide_quotes`` (``strategies.pipeline``)
as a full cycle. It writes no rows (``decide_quotes`` notes the not-quoting reason, ``keys.quoting``);
it hands the feeder's frozen snapshot, balances and analysis to the engine (``observe_*``) and keeps
the runner's high-water mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from bots.engine.bot import MarketMakingBot
from bots.engine.depth import WAIT_LIMIT_SECS, DepthPending
from bots.engine.driver_state import DriverState
from bots.engine.feed import SENT_MARGIN_SECS, VIEW_BEHIND_SECS, VIEW_RETRY_SECS, view_limit
from bots.engine.market_data import AccountView, BookData
from bots.engine.runner import QuietInputs, Runner
from bots.engine.venues import Slot
from bots.models import BotStatus, Order
from risk.checks import SELF_TRADE, RiskStatus
from strategies.selection import select_strategy_type


@dataclass
class Verdict:
    kind: str  # "quiet" | "requote" | "fills" | "snapshot" | "reset" | "full" | "wait" (a depth read, a view behind)
    reason: str = ""
    detail: str = ""
    pairs: list[Slot] = field(default_factory=list)  # fills / requote: the slots (account, pair)
    uptime: list[tuple[str, bool]] = field(default_factory=list)
    cancels: dict[Slot, list[Order]] = field(default_factory=dict)  # requote: rows to cancel, by slot
    sent: dict[Slot, tuple[list[Order], Any]] = field(default_factory=dict)  # requote: cancels already sent
    urgent: bool = False  # a re-quote brought forward by a pushed move: the feeder holds off meanwhile
    retry_secs: float = 0.0  # wait: the bot is looked at again this much later (a depth read that lands: at once)


def _same(now: dict, then: dict) -> bool:
    return now is then or now == then


def _decided_on(snapshot: Any) -> tuple[float, float, float, float, float]:
    """What of a slot's snapshot a decision reads (``strategies.pipeline.decide``: the best bid and ask less the
    bot's own orders, whose mid also values the inventory, and the market's rules). A new depth read behind an
    unchanged top changes the book but not these: the quiet decision on them still holds."""
    return snapshot.best_bid, snapshot.best_ask, snapshot.tick_size, snapshot.lot_size, snapshot.min_notional


def _held(view: AccountView) -> tuple[Any, Any, Any]:
    """What a quiet decision holds of an account view (``QuietInputs.views``): its orders, balances, free."""
    return view.orders, view.balances, view.free


class VerdictMixin(DriverState):
    """The driver's read-only check (part of ``Driver``; driver thread)."""

    def _check(self, runner: Runner, now: float, books: dict[tuple[str, str], BookData],
               reset_pending: bool) -> Verdict:
        """Quiet, a re-quote only, or a full cycle (with the reason). A check whose snapshots read as those the
        bot's last quiet check decided on (``_decided_on``: the best prices less its own orders, the rules) and
        whose account data are those it saw, with no cycle of the bot since, reuses that
        decision (``QuietInputs``; ``quiet_reused``): it still takes the books, judges their staleness, the
        new market analysis (adaptation, the volatility limit) and the hedge retry, but does not value the
        inventory, assess the other risk limits or decide the quotes again."""
        # what the last quiet check decided on (any verdict but quiet drops it: a cycle follows)
        last, runner.quiet = runner.quiet, None
        engine = runner.engine
        if engine is None:
            return Verdict("full", "no engine state")
        if engine.bot.status != BotStatus.RUNNING:
            return Verdict("full", "not running")
        if now - runner.last_full_at >= settings.ENGINE_FULL_CYCLE_SECS:
            return Verdict("full", "periodic full cycle")
        for account_id in engine.exchanges:
            view = self.accounts.get(account_id)
            if view is None:
                return Verdict("full", "no account view")
            behind = now - view.taken_at - view_limit(runner.interval)
            if behind > 0:
                if behind <= VIEW_BEHIND_SECS and account_id in self.order_streams_live:
                    self.stats["view_waits"] += 1
                    return Verdict("wait", "account view behind", detail=f"account {account_id}",
                                   retry_secs=VIEW_RETRY_SECS)
                return Verdict("full", "no account view")
            for cid in self.shared.account(account_id, view.orders).own(runner.bot_id):  # the bot's listed orders
                if cid not in runner.known and not (runner.gone.get(cid, 0) > view.taken_at - SENT_MARGIN_SECS):
                    return Verdict("full", "stray order", detail=cid)
        if len(engine.accounts) > 1:
            engine.note_venue_problems()  # an account not connected or a pair one venue does not list
        filled: list[Slot] = []
        seen = engine.order_manager.fills_seen  # fills a cancel's answer found (the view may not show them yet)
        for slot, position in engine.active_positions.items():
            view = self.accounts.get(position.exchange_account_id)
            if view is None or position.exchange_account_id not in engine.exchanges:
                return Verdict("full", "account not connected")
            if position.pk in seen:
                filled.append(slot)
                continue
            for row in runner.live.get(position.pk, []):
                remote = view.orders.get(row.client_order_id)
                if (remote is None and row.created_at.timestamp() < view.taken_at - SENT_MARGIN_SECS) or (
                        remote is not None and (remote.filled or 0) > row.filled):
                    filled.append(slot)  # filled, partly filled, or gone: sync this slot and re-quote it
                    break
        if filled:
            return Verdict("fills", "orders filled or left the book", pairs=filled)
        if last is not None and (last.engine is not engine or now >= last.until):
            last = None
        same = last.books if last is not None else None  # (a book as it was: the snapshot as it was too)
        books_seen: dict[Slot, tuple] = {}
        requote: list[Slot] = []
        cancels: dict[Slot, list[Order]] = {}
        uptime: list[tuple[str, bool]] = []
        snapshots = {}
        try:
            for slot, position in engine.active_positions.items():  # every venue's book first: the reference
                snapshots[slot] = self._snapshot(runner, engine, position, books, now, self.shared,
                                                 seen=books_seen, same=same)
        except DepthPending as pending:  # checked again when the depth arrives (``Driver._take_depth``)
            return Verdict("wait", "depth read", detail=f"{pending.args[0]} {pending.args[1]}",
                           retry_secs=WAIT_LIMIT_SECS)
        decided = {slot: _decided_on(snapshot) for slot, snapshot in snapshots.items()}
        reuse = last if last is not None and decided == last.decided and all(  # every quote and view as then:
            (view := self.accounts.get(a)) is not None and _same(view.orders, held[0])  # the same objects
            and _same(view.balances, held[1]) and _same(view.free, held[2])  # (pushed), or equal (a REST re-read)
            for a, held in last.views.items()) else None
        if reuse is not None:  # views equal to the held ones are held instead: the next checks compare identities
            reuse.views = {a: _held(self.accounts[a]) for a in reuse.views}
            reuse.books = books_seen  # (the snapshots were taken from these: the next check's as-it-was test)
        for slot, position in engine.active_positions.items():
            pair = position.trading_pair
            view = self.accounts[position.exchange_account_id]
            snapshot = snapshots[slot]
            if snapshot.problem() or engine.stale_book(slot):
                return Verdict("full", "book problem")
            if reuse is None:
                engine.observe_account(position, view.balances, snapshot.mid, free=view.free)
            analysis = self._analysis(engine, position.exchange_account_id, pair, snapshot, now)
            engine.observe_analysis(slot, analysis)
            settings_ = engine.config.strategy_settings
            if settings_.adaptation_enabled and engine.quotes_on(slot):
                strategy = engine.strategy_engine.restore(position)
                if (select_strategy_type(analysis, settings_) != strategy.strategy_type
                        or strategy.should_adapt(analysis)):
                    return Verdict("full", "strategy adaptation")
        if reset_pending:  # a new risk day: the baseline moves to the net P&L at this check's mids, on the kept
            return Verdict("reset", "daily reset")  # engine (a pool thread stores it; no venue read, no new engine)
        statuses: list[RiskStatus]
        if reuse is not None and engine.volatility_within_limit():
            # the same inventory, mids, P&L and high-water mark: only a new analysis's volatility could
            # have breached a limit, and none is above it
            statuses, equity = [], reuse.equity
        else:
            statuses, equity = engine.risk_in_memory(runner.high_water)
        if statuses:
            return Verdict("full", "risk status", detail=",".join(s.event_type for s in statuses))
        rebalance: list[str]
        if reuse is not None and reuse.no_rebalance:
            rebalance, no_rebalance = [], True
        else:
            rebalance, no_rebalance = engine.rebalancing_needs(now)  # the spec checks the need every interval
        if rebalance:
            return Verdict("full", "rebalancing needed", detail=",".join(rebalance))
        if engine.hedge_retry_due(now):
            return Verdict("full", "hedge retry due")
        if equity > runner.high_water:
            runner.high_water, runner.high_water_dirty = equity, True
        if reuse is not None:  # the same decision as the quiet check's: quiet again
            self.stats["quiet_reused"] += 1
            runner.quiet = reuse
            return self._quiet_or_snapshot(runner, engine, now, reuse.uptime)
        total_open = sum(runner.open_count.values())
        until = now + settings.ENGINE_QUIET_REUSE_SECS
        reusable = settings.ENGINE_QUIET_REUSE_SECS > 0 and engine.centred_on_own_book()
        refresh = engine.config.order_settings.order_refresh_secs
        for slot, position in engine.active_positions.items():
            if not engine.quotes_on(slot):
                continue  # the hedge account only hedges
            rows = runner.live.get(position.pk, [])
            others = total_open - runner.open_count.get(position.pk, 0)
            view = self.accounts[position.exchange_account_id]  # the account's other orders on the pair:
            engine.observe_resting(slot, self.shared.account(position.exchange_account_id, view.orders)
                                   .others(runner.bot_id, position.trading_pair))  # (self_trades.from_view)
            decision = engine.decide_quotes(position, engine.snapshots[slot], rows, others, now=now)
            if any(denial.code != SELF_TRADE for denial in decision.denied):
                # (a quote held back from crossing the account's own order is not a cause for a full cycle:
                # it is placed once that order is gone, and the re-quote path checks it again)
                return Verdict("full", "denied orders")
            if decision.diff.cancel or decision.diff.place:
                requote.append(slot)
                by_client = {o.client_order_id: o for o in rows}
                old = [by_client[str(o.order_id)] for o in decision.diff.cancel]  # client ids
                # the driver sends these cancels at once, unless the re-quote's act sends them (cancel-replace,
                # placing first)
                cancels[slot] = [] if engine.keeps_old_quotes(position, decision.diff.place, old) else old
            uptime.append((position.trading_pair, decision.quotes_both_sides))
            reusable = reusable and not engine.strategy_engine.restore(position).decides_on_clock
            for row in rows:  # a live order past its refresh age is replaced: the same inputs decide otherwise
                until = min(until, row.created_at.timestamp() + refresh)
        if requote:
            return Verdict("requote", "quotes moved", pairs=requote, cancels=cancels)
        if reusable:
            runner.quiet = QuietInputs(
                engine=engine, until=until, books=books_seen, decided=decided, equity=equity,
                no_rebalance=no_rebalance,
                views={a: _held(self.accounts[a]) for a in engine.exchanges},
                uptime=uptime)
        return self._quiet_or_snapshot(runner, engine, now, uptime)

    @staticmethod
    def _quiet_or_snapshot(runner: Runner, engine: MarketMakingBot, now: float,
                           uptime: list[tuple[str, bool]]) -> Verdict:
        if now >= runner.perf_due_at and engine.config.performance_tracking:
            return Verdict("snapshot", "performance snapshot due", uptime=uptime)
        return Verdict("quiet", uptime=uptime)
