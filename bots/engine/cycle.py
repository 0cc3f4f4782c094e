"""A full monitoring iteration of one bot (the body of a full cycle), and the cycle counters.

``CycleMixin`` is part of ``MarketMakingBot`` (bots/engine/bot.py): refresh inventory and market
data, sync fills, assess risk, adjust every pair's orders, rebalance, record performance. It runs on
whichever thread runs the cycle (a driver pool thread or a Celery task), under the bot's lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from django.utils import timezone

from bots import quoting
from bots.engine import keys
from bots.engine.bot_state import BotState, CycleReport
from bots.engine.market_data import BALANCE_SECS, AccountView, book_reader, shared_book, to_snapshot, without_own
from bots.engine.performance import PerformanceFigures, claim_performance_due, write_performance
from bots.engine.rows import fence_and_open_rows, fence_and_other_bots, fence_row, open_rows
from bots.engine.venues import Slot, exchange_key, venue_backoff
from bots.events import announce
from bots.models import (
    Bot,
    BotStatus,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
    Order,
)
from mmplatform.errors import (
    ExchangeError,
)
from mmplatform.redis_client import get_redis
from strategies.types import MarketSnapshot

logger = logging.getLogger(__name__)

def begin_fenced_cycle(bot_id: int, epoch: int) -> int | None:
    """Count a cycle and check the placement fence in the same statement: the cycle number, or None
    when the bot is no longer RUNNING at ``epoch`` or a bot/tenant kill switch is engaged (the same
    conditions as ``MarketMakingBot._still_current``, one round trip instead of two)."""
    return _fenced_number(fence_row(bot_id, timezone.now()), epoch)


def begin_fenced_requote(bot_id: int, epoch: int, account_id: int,
                         pair: str) -> tuple[int | None, list[tuple[str, object, int]]]:
    """``begin_fenced_cycle`` and the account's other bots' open rows on ``pair`` in one statement (a re-quote's
    first under the quote guard: ``rows.fence_and_other_bots``): (the cycle number or None, (side, price, bot id)
    of each row)."""
    fence, others = fence_and_other_bots(bot_id, timezone.now(), account_id, pair)
    return _fenced_number(fence, epoch), others


def begin_fenced_sync(bot_id: int, epoch: int, position_id: int) -> tuple[int | None, list[Order]]:
    """``begin_fenced_cycle`` and the position's open rows in one statement (a fill sync's first:
    ``rows.fence_and_open_rows``): (the cycle number or None, the rows)."""
    fence, rows = fence_and_open_rows(bot_id, timezone.now(), position_id)
    return _fenced_number(fence, epoch), rows


def _fenced_number(row: Sequence[Any] | None, epoch: int) -> int | None:
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


def end_cycle(bot_id: int, epoch: int, *, ok: bool) -> None:
    """A full cycle's end on the bot's row, one statement: ``last_cycle_finished_at``, and ``last_error``
    cleared when the cycle completed (``ok``) in the epoch it ran in."""
    from django.db import connection

    table = Bot._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_cycle_finished_at = %s, last_error = CASE WHEN %s AND epoch = %s "
            "THEN '' ELSE last_error END WHERE id = %s", [timezone.now(), ok, epoch, bot_id])


def daily_reset_key(bot_id: int) -> str:
    return keys.daily_reset(bot_id)


def request_daily_reset(bot_id: int) -> None:
    """The bot's next risk assessment takes its current net P&L as the new daily baseline."""
    get_redis().set(daily_reset_key(bot_id), "1")


ORDER_BOOK_DEPTH = 20

LiveViews = Callable[[int], AccountView | None]
"""An exchange account's view as its live order stream keeps it, if current (``monitoring_iteration``)."""


class CycleMixin(BotState):
    """The full cycle of ``MarketMakingBot``: ``monitoring_iteration`` and the reads it makes."""

    def monitoring_iteration(self, cycle: int, views: LiveViews | None = None) -> CycleReport:
        """The body of the spec's _monitoring_loop. Errors of one pair never stop the others. ``views``: the
        engine driver's accounts as their live order streams keep them (None for an account without one, or
        whose view is not current): such an account's open orders and balances are the view's instead of a
        REST read (the trades are still read by REST, from each position's own mark: the full cycle's net)."""
        self.cycle = cycle
        self.rebalanced_pairs = set()
        self.venue_errors = {}
        self._join_missing_slots()
        self._update_market_data()
        moved = self._sync_fills(views)
        if self.bot.status == BotStatus.RUNNING:
            self.run_hedges()  # the new fills' hedges and the unresolved ones due, before anything is quoted
            if self.hedge_route is not None:  # (a hedge, new or retried, may have moved its balances: read them)
                moved.add(self.hedge_route.hedge_account_id)
        self._refresh_inventory(views, moved)
        statuses = self.assess_current_risk()
        for status in statuses:
            self._handle_risk_event(status, record=status in self._newly_active)
        if self.bot.status == BotStatus.PAUSED:
            return self.report
        self.venue_errors.update(self.inventory_manager.unread)
        if len(self.accounts) > 1:  # a venue that failed sits the next cycles out; one that answered is back
            now = time.time()
            for account_id in self.exchanges:
                if account_id in self.venue_errors:
                    venue_backoff.failed(account_id, self.venue_errors[account_id], now)
                else:
                    venue_backoff.recovered(account_id)
        for slot, position in self.active_positions.items():
            if not self.quotes_on(slot):
                quoting.note(self.bot, self.quoting_key(slot), None)  # the hedge account only hedges: no reason
                continue
            if slot[0] not in self.exchanges and len(self.accounts) > 1:
                continue  # not connected (or sitting out a backoff): its reason is a venue problem
            if slot[0] in self.venue_errors and len(self.accounts) > 1:
                # this venue failed in this cycle (market data, order sync or balances): it quotes nothing
                # until it answers again, its resting orders are left to the next cycle that reaches it
                quoting.note(self.bot, self.quoting_key(slot),
                             f"{self._venue_name(slot)}: unreachable: {self.venue_errors[slot[0]]}"[:300])
                continue
            try:
                self._adjust_position_strategy(position)
            except ExchangeError as exc:  # this venue only: the others quote on
                logger.warning("bot %s %s: %s", self.bot_id, slot, exc)
                if len(self.accounts) > 1:
                    quoting.note(self.bot, self.quoting_key(slot), f"{self._venue_name(slot)}: {exc}"[:300])
        self.note_venue_problems()
        if self.inventory_manager.needs_rebalancing():
            self._rebalance_inventory()  # on the inventory as the risk handling's trades left it
        self._update_performance()
        return self.report

    def _join_missing_slots(self) -> None:
        """A connected account listing a configured pair without a position yet (its venue was down at
        the start, or the account was added since) starts quoting the pair from this cycle."""
        if not self.active_positions:
            return  # not started (or stopped): the start creates the positions
        for account_id, gateway in self.exchanges.items():
            for pair in self.bot.pairs:
                if (account_id, pair) in self.active_positions or not gateway.supports_trading_pair(pair):
                    continue
                try:
                    self._start_position(pair, account_id)
                except ExchangeError as exc:
                    logger.warning("bot %s: %s on account %s not joined: %s", self.bot_id, pair, account_id, exc)

    def _failed_this_cycle(self, account_id: int) -> bool:
        """A venue of a bot on several that failed earlier in this cycle is not asked again in it (a bot
        on one venue asks on: its errors are the cycle's, an authentication error disables the bot)."""
        return len(self.accounts) > 1 and account_id in self.venue_errors

    def _venue_name(self, slot: Slot) -> str:
        account = self.accounts.get(slot[0])
        return f"{account.label} ({account.exchange_id})" if account is not None else f"account {slot[0]}"

    def _refresh_inventory(self, views: LiveViews | None = None, moved: set[int] | None = None) -> None:
        """Balances of every account, valued at this cycle's mids (slots with a bad book keep none). An
        account whose venue already failed in this cycle is not asked again (its balances are unread). An
        account with a live view (``views``) whose balances are current takes them, unless this cycle's fill
        sync booked fills on it (``moved``: read, as the view may not show them yet)."""
        failed = {a: why for a, why in self.venue_errors.items() if a in self.exchanges and len(self.accounts) > 1}
        viewed: dict[int, AccountView] = {}
        if views is not None:
            now = time.time()
            for account_id in self.exchanges.keys() - failed.keys() - (moved or set()):
                view = views(account_id)
                if (view is not None and not view.outdated and view.balances_at > 0
                        and now - view.balances_at < BALANCE_SECS):
                    viewed[account_id] = view
        self.inventory_manager.load_balances({a: g for a, g in self.exchanges.items()
                                              if a not in failed and a not in viewed})
        for account_id, view in viewed.items():
            self.inventory_manager.observe_balances(account_id, dict(view.balances), free=dict(view.free))
        for account_id, why in failed.items():
            self.inventory_manager.mark_unread(account_id, why)
        for slot, position in self.active_positions.items():
            snapshot = self.snapshots.get(slot)
            if snapshot is not None and not snapshot.problem():
                self.inventory_manager.assess(position, snapshot.mid)

    def _update_market_data(self) -> None:
        for slot, position in self.active_positions.items():
            if position.exchange_account_id not in self.exchanges or self._failed_this_cycle(slot[0]):
                continue
            try:
                snapshot = self._market_snapshot(position.trading_pair, position.exchange_account_id)
            except ExchangeError as exc:
                logger.warning("bot %s: market data for %s unavailable: %s", self.bot_id, slot, exc)
                self.snapshots.pop(slot, None)
                self.venue_errors.setdefault(slot[0], f"{type(exc).__name__}: {exc}"[:300])
                continue
            self.snapshots[slot] = snapshot
            if not snapshot.problem():
                venue = exchange_key(self.accounts[position.exchange_account_id])
                self.analyses[slot] = self.strategy_engine._analyze_market_characteristics(snapshot, venue)

    def _market_snapshot(self, pair: str, account_id: int | None) -> MarketSnapshot:
        if account_id is None or account_id not in self.exchanges:
            raise ExchangeError(f"no connected exchange supports {pair}")
        gateway = self.exchanges[account_id]
        book = shared_book(exchange_key(self.accounts[account_id]), pair,
                           book_reader(gateway, pair, ORDER_BOOK_DEPTH))
        self.book_fetched_at[(account_id, pair)] = book.fetched_at
        rules = gateway.market_rules(pair)
        own = [(o.side, float(o.price), float(o.amount - o.filled)) for o in open_rows(self.bot_id)
               if o.trading_pair == pair and o.exchange_account_id == account_id]  # (a statement built once)
        return to_snapshot(pair, without_own(book, own), tick_size=float(rules.tick_size),
                           lot_size=float(rules.lot_size), min_notional=float(rules.min_notional or 0),
                           now=self.clock())

    def _sync_fills(self, views: LiveViews | None = None) -> set[int]:
        """Every pair's open orders reconciled and fills booked (on an account's live view, if any: ``views``);
        returns the accounts it booked fills on."""
        moved: set[int] = set()
        for slot, position in self.active_positions.items():
            if position.exchange_account_id not in self.exchanges or self._failed_this_cycle(slot[0]):
                continue  # not connected, or it failed already in this cycle: one timeout per venue
            snapshot = self.snapshots.get(slot)
            mid = snapshot.mid if snapshot is not None and not snapshot.problem() else float("nan")
            view = views(slot[0]) if views is not None else None
            try:
                fills = self.order_manager.sync_position(position, mid=mid, view=view, own_trades=True)
            except ExchangeError as exc:
                logger.warning("bot %s: order sync for %s failed: %s", self.bot_id, slot, exc)
                self.venue_errors.setdefault(slot[0], f"{type(exc).__name__}: {exc}"[:300])
                continue
            if fills:
                moved.add(slot[0])
            self.announce_fills(fills)
        return moved

    def announce_fills(self, fills: list[Fill]) -> None:
        """The new fills' OrderFilled events (with the account each was on) to the dashboards and the alert
        matcher: their rows were stored with the fills (``FillSyncMixin._book``)."""
        self.report.fills += len(fills)
        for event in self.order_manager.take_fill_events():
            announce(self.bot, event)

    def _mids(self) -> dict[Slot, float]:
        """Each slot's mid as this cycle read it; a slot whose book is bad or unread (its venue is down)
        is marked at the mean of its pair's other venues (one asset, one price), else has none."""
        mids = {slot: s.mid for slot, s in self.snapshots.items() if not s.problem()}
        for slot in self.active_positions:
            if slot not in mids:
                others = [mid for (_, pair), mid in mids.items() if pair == slot[1]]
                if others:
                    mids[slot] = sum(others) / len(others)
        return mids

    def equity_complete(self) -> bool:
        """Every account's balances are read and every slot valued: the equity is the bot's whole equity
        (a venue that is down leaves it partial, and a partial equity is no drawdown)."""
        return not self.inventory_manager.unread and all(
            slot in self.inventory_manager.current_inventory for slot in self.active_positions)

    def _net_pnl_quote(self) -> Decimal:
        """From the positions this cycle holds (fills of this cycle already applied to them)."""
        mids = self._mids()
        return self.performance_tracker.pnl(list(self.active_positions.values()), mids)["net_pnl_quote"]

    def _daily_pnl_quote(self) -> float:
        """Net P&L since the daily baseline; a pending daily reset moves the baseline here first."""
        net = self._net_pnl_quote()
        self.take_daily_reset(net)
        return float(net - self.bot.daily_pnl_baseline_quote)

    def take_daily_reset(self, net: Decimal | None = None) -> None:
        """A pending daily reset (``keys.daily_reset``, set by the start and the daily-reset beat task) moves the
        daily P&L baseline to the net P&L now (``net``, else at the mids this engine holds): the flag is taken
        and the bot's row written. A full cycle does it before it assesses risk; the engine driver's ``reset``
        verdict does it on the kept engine. Nothing when no reset is pending."""
        if not get_redis().delete(daily_reset_key(self.bot_id)):
            return
        net = self._net_pnl_quote() if net is None else net
        self.bot.daily_pnl_baseline_quote = net.quantize(Decimal("1e-12"))
        Bot.objects.filter(pk=self.bot_id).update(
            daily_pnl_baseline_quote=self.bot.daily_pnl_baseline_quote, daily_reset_at=timezone.now())

    def _equity_quote(self) -> float:
        """Value of the bot's assets across its accounts, quote currencies at 1, bases at their mid."""
        values: dict[tuple[int, str], float] = {}
        for (account_id, pair), inventory in self.inventory_manager.current_inventory.items():
            base, quote = pair.split("/")
            values[(account_id, base)] = inventory.base_value_quote
            values[(account_id, quote)] = inventory.quote_balance
        return sum(values.values())

    def _update_performance(self) -> None:
        """Spec performance_tracker.update_metrics: snapshots every metrics_interval_secs."""
        if not self.config.performance_tracking:
            return
        if claim_performance_due(self.bot_id, self.config.metrics_interval_secs):
            self.snapshot_performance()

    def snapshot_performance(self) -> None:
        # the positions this engine holds are current (each fill sync updates them in memory too)
        positions = list(self.active_positions.values()) or list(
            LiquidityPosition.objects.filter(bot=self.bot, is_active=True))
        write_performance(self.performance_figures(positions), only_if_due=False)

    def performance_figures(self, positions: list[LiquidityPosition] | None = None) -> PerformanceFigures:
        """The bot's performance now, from this engine's memory alone (its positions, mids and inventory):
        the driver thread takes it at a check and a pool thread stores it (``write_performance``)."""
        if positions is None:
            positions = list(self.active_positions.values())
        tracker = self.performance_tracker
        now = timezone.now()
        rows = []
        for pair, inventory in self.inventory_manager.aggregated().items():  # one row per pair, all venues
            rows.append(InventorySnapshot(
                tenant_id=self.bot.tenant_id, bot_id=self.bot_id, trading_pair=pair, taken_at=now,
                base_balance=Decimal(repr(inventory.base_balance)),
                quote_balance=Decimal(repr(inventory.quote_balance)),
                mid_price=Decimal(repr(round(inventory.mid, 8))),
                base_value_quote=Decimal(repr(round(inventory.base_value_quote, 8))),
                ratio=inventory.current_ratio, target_ratio=inventory.target_ratio,
            ))
        return PerformanceFigures(
            bot_id=self.bot_id, tenant_id=self.bot.tenant_id, taken_at=now,
            metrics_interval_secs=self.config.metrics_interval_secs, totals=tracker.totals(positions, self._mids()),
            equity_quote=Decimal(repr(round(self._equity_quote(), 8))), inventory_rows=tuple(rows),
            inventory=self.inventory_manager.get_final_inventory(self.account_labels()))
