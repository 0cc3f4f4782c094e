"""Reconciling a position with its venue: open orders, late and lost orders, trades -> Fill rows.

``FillSyncMixin`` is part of ``OrderManager`` (bots/engine/orders.py). A fill sync books the trades
only when an order of the position left the book or gained fills (``keys.trades_pending``) or the
periodic safety read is due (``FULL_TRADE_SYNC_SECS``; ``PUSHED_TRADE_SAFETY_SECS`` under a live order
stream, whose pushed trades are booked in between when they account for every fill); each trade becomes
one Fill row and the position's accounting moves with it, in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction

from bots.accounting import PositionAccount, apply_fill, fee_in_quote
from bots.engine.booking import (
    Booking,
    account_of,
    accounting_columns,
    book_fills_if_unchanged,
    booked_fills,
    booked_trade_ids,
    owing_positions,
    settle_filled_orders,
)
from bots.engine.client_ids import client_id_prefix
from bots.engine.market_data import AccountView
from bots.engine.rows import ACK_FIELDS, insert_rows, rows_by_exchange_ids, save_fields, select_rows
from bots.engine.trade_marks import (
    FULL_TRADE_SYNC_SECS,
    OWED_GRACE_MS,
    PUSHED_TRADE_SAFETY_SECS,
    TRADE_SYNC_OVERLAP_MS,
    pair_checked,
    trade_sync_state,
    trades_synced,
)
from bots.engine.venues import HedgeRoute, Slot
from bots.events import event_row, push
from bots.models import (
    Bot,
    BotEvent,
    BotEventType,
    Fill,
    Hedge,
    LiquidityPosition,
    Order,
    OrderPurpose,
    OrderStatus,
)
from exchanges.gateway import ExchangeGateway, ExchangeOrder, Trade
from mmplatform import aio
from mmplatform.errors import (
    ExchangeError,
    OrderNotFoundError,
)
from risk.hedging import hedge_need

logger = logging.getLogger(__name__)

class FillSyncMixin:
    """The sync half of ``OrderManager``: what the venue says happened to a position's orders."""

    # set in OrderManager.__init__ (orders.py); the methods below are OrderManager's (they override these)
    bot: Bot
    gateways: dict[int, ExchangeGateway]
    synced_rows: dict[int, list[Order]]
    listed_open: dict[Slot, list[ExchangeOrder]]  # slot -> the venue's open orders at the last sync
    hedge_route: HedgeRoute | None  # cross-venue hedging: a quote's fill on a hedged account owes a Hedge
    fills_seen: set[int]  # positions with fills whose trades are not read yet (emptied here, per position)
    fill_rows: dict[int, dict[str, Order]]  # position -> rows that gained fills since the last sync (emptied here)
    counts: Counter[str]  # how the trades were booked (OrderManager.take_counts)
    rest_synced: set[int]  # positions whose trades this object read by REST at least once
    booked_trades: set[tuple[int, str]]  # (account, trade id) of pushed trades known booked: not asked about again
    closed_by_venue: dict[str, float]  # client id -> when: rows this object saw the venue close (orders.py)
    deferred_marks: set[int] | None  # during sync_position: the trades-pending marks its acknowledgements owe
    synced_marks: list[int] | None  # during a kept cycle: positions whose marks go with its record (orders.py)
    venues: dict[int, str]  # account -> its venue's id (the OrderFilled events' ``venue``)
    fill_events: list[BotEvent]  # the OrderFilled rows stored with their fills, until the bot announces them
    unsaved_answers: list[Order]  # during a sync's booking: the rows its venue answers changed, saved with the fills

    if TYPE_CHECKING:

        def open_orders(self, position: LiquidityPosition | None = None) -> list[Order]:
            raise NotImplementedError

        def _acknowledge(self, order: Order, remote: ExchangeOrder, *, save: bool = True) -> bool:
            raise NotImplementedError

        def _count_miss(self, order: Order) -> int:
            raise NotImplementedError

        @staticmethod
        def order_payload(order: Order) -> dict[str, Any]:
            raise NotImplementedError

        @staticmethod
        def fill_payload(fill: Fill) -> dict[str, Any]:
            raise NotImplementedError

    def sync_position(self, position: LiquidityPosition, *, mid: float, view: AccountView | None = None,
                      open_rows: list[Order] | None = None, own_trades: bool = False) -> list[Fill]:
        """Reconcile one pair (``reconcile_position``), then book its fills since the last sync
        (``book_position``). ``own_trades`` (a full cycle on a live view): the trades are read by REST from the
        position's own mark, whatever the view shows (the full cycle's net)."""
        booking = self.reconcile_position(position, view=view, open_rows=open_rows, own_trades=own_trades)
        return self.book_position(booking, mid=mid) if booking is not None else []

    def reconcile_position(self, position: LiquidityPosition, *, view: AccountView | None = None,
                           open_rows: list[Order] | None = None, own_trades: bool = False) -> Booking | None:
        """Reconcile one pair: open orders (adopt known, cancel unknown of ours), final states of rows that
        left the book, missed acknowledgements; the rows as the venue answered them are ``synced_rows``.
        Returns what ``book_position`` books next (None: nothing left the book and no trade read is owed;
        the answers are saved here). Until it runs, the answers wait to be saved with its booking
        (``unsaved_answers``): a fill sync re-quotes in between, on these rows.

        ``view``: the account as its live order stream keeps it (the driver's feeder): its open orders
        stand for the venue's listing and its pushed final states for the fate of the rows that left
        the book, so only a row it knows nothing of (sent after its last update) is asked about, and
        the trades are read. None: everything is read from the venue. ``open_rows``: the position's open rows,
        read by the caller in its first statement (a fill sync's fence); None: read here. ``own_trades``: the
        booking reads the trades by REST as without a view (``sync_position``)."""
        gateway = self.gateways[position.exchange_account_id]
        pair = position.trading_pair
        if view is None:
            remote_open = aio.run(gateway.fetch_open_orders(pair))
        else:
            remote_open = [o for o in view.orders.values() if o.pair == pair]
        self.listed_open[(position.exchange_account_id, pair)] = remote_open
        by_client = {r.client_order_id: r for r in remote_open if r.client_order_id}
        prefix = client_id_prefix(self.bot.pk)
        rows = {o.client_order_id: o for o in (open_rows if open_rows is not None else self.open_orders(position))}
        # ours the venue lists without an open row; those whose close this object saw are only listed late (the
        # pushed view: the push of the answer that closed them is on its way), not rows to adopt or strays
        unlisted = [cid for cid in by_client if cid.startswith(prefix) and cid not in rows
                    and cid not in self.closed_by_venue]
        self._adopt_late(by_client, rows, unlisted)

        unknown = [by_client[cid] for cid in unlisted if cid not in rows
                   and not Order.objects.filter(client_order_id=cid).exists()]
        for stray in unknown:
            logger.warning("bot %s: cancelling unknown order %s on %s", self.bot.pk, stray.client_order_id, pair)
            try:
                aio.run(gateway.cancel_order(pair, exchange_order_id=stray.exchange_order_id))
            except ExchangeError as exc:
                logger.warning("cancelling unknown order failed: %s", exc)

        left_book = False
        self.deferred_marks = set()
        try:
            answered: list[Order] = []  # rows the venue's answers changed: saved in one statement below
            for cid, order in rows.items():
                remote = by_client.get(cid)
                if remote is not None:
                    if (order.status != OrderStatus.CANCEL_PENDING or remote.status != "open") and self._acknowledge(
                            order, remote, save=False):
                        answered.append(order)
                    continue
                # not resting on the book: filled, cancelled, never arrived, or not visible yet
                left_book = True
                pushed = view.closed.get(cid) if view is not None else None
                if pushed is not None:  # its final state, as the order stream pushed it
                    if self._acknowledge(order, pushed[1], save=False):
                        answered.append(order)
                    continue
                try:
                    remote = aio.run(gateway.fetch_order(pair, client_order_id=cid))
                except OrderNotFoundError:
                    self._count_miss(order)
                    continue
                except ExchangeError as exc:
                    logger.info("fetch_order %s failed: %s", cid, exc)
                    continue
                if self._acknowledge(order, remote, save=False):
                    answered.append(order)
        finally:
            marks, self.deferred_marks = self.deferred_marks or set(), None
        # the marks first (with the state, one round trip), then the rows: a row never shows fills whose
        # trades nobody is marked to read
        # under a live order stream the safety read is the account's pair's, shared by its bots (``trade_marks``)
        shared = view is not None and not own_trades
        state = trade_sync_state(position.pk, marks, (position.exchange_account_id, pair) if shared else None)
        self.synced_rows[position.pk] = list(rows.values())
        if not (left_book or state.pending or state.safety_due):
            save_fields(answered, ACK_FIELDS)
            return None
        # the answers go with the booking's statement when there is one (saved before anything reads the rows
        # back: ``save_answers``); whatever happens, they are saved before the booking returns
        self.unsaved_answers = answered
        return Booking(position, view if shared else None, state.safety_due, state.mark_ms, state.owed_ms)

    def book_position(self, booking: Booking, *, mid: float, view: AccountView | None = None) -> list[Fill]:
        """The fills ``reconcile_position`` found owed, booked (``sync_fills``); the answers saved either way.
        ``view``: the same account's view taken since, if any (the trades pushed meanwhile count)."""
        view = view if view is not None and booking.view is not None else booking.view
        try:
            return self.sync_fills(booking.position, mid=mid, view=view, safety_read=booking.safety_read,
                                   mark_ms=booking.mark_ms, owed_ms=booking.owed_ms)
        finally:
            self.save_answers()

    def save_answers(self) -> None:
        """The sync's venue answers not saved with a booking yet: saved now (one statement)."""
        answered, self.unsaved_answers = self.unsaved_answers, []
        save_fields(answered, ACK_FIELDS)

    def _adopt_late(self, by_client: dict[str, ExchangeOrder], rows: dict[str, Order], late: list[str]) -> None:
        """An order the venue lists although its row was closed as rejected or lost (its reply was lost
        and the venue denied knowing it for a while): it is ours and live, so it is managed again. ``late``:
        the listed client ids of ours without an open row."""
        if not late:
            return
        for order in Order.objects.filter(bot=self.bot, client_order_id__in=late,
                                          status__in=(OrderStatus.REJECTED, OrderStatus.LOST)):
            logger.warning("bot %s: order %s shows up after being marked %s; managing it again",
                           self.bot.pk, order.client_order_id, order.status)
            order.closed_at = None
            self._acknowledge(order, by_client[order.client_order_id])
            rows[order.client_order_id] = order

    def sync_fills(self, position: LiquidityPosition, *, mid: float, view: AccountView | None = None,
                   safety_read: bool = False, mark_ms: int | None = None, owed_ms: int | None = None
                   ) -> list[Fill]:
        """Record every trade of this bot's orders since the last sync (exactly once each).

        ``view``: the account as its live order stream keeps it: the trades it pushed are booked when they
        account for every fill the venue reports on the position's orders (``_pushed_trades``); otherwise,
        without a view, and when the periodic safety read is due (``safety_read``), the trades are read by
        REST. Under a view a REST read starts at the pair's check mark (``mark_ms``; at ``owed_ms`` when another
        bot's check found a trade of the position unbooked) and checks the other bots' trades too
        (``_trades_booked``)."""
        if safety_read and view is not None:
            self.counts["trades_rest_safety"] += 1
        pushed = self._pushed_trades(position, view) if view is not None and not safety_read else None
        self.counts["trades_pushed" if pushed is not None else "trades_rest"] += 1
        check: tuple[Sequence[Trade], int, int] | None = None
        if pushed is None:
            gateway = self.gateways[position.exchange_account_id]
            read_ms = int(time.time() * 1000)
            start = position.last_trade_sync_ms
            if owed_ms is not None:
                start = owed_ms
            elif view is not None:  # the pair's mark (none yet: back past the per-position reads' gaps)
                start = mark_ms if mark_ms is not None else max(0, start - int(FULL_TRADE_SYNC_SECS * 1000))
            since = max(0, start - TRADE_SYNC_OVERLAP_MS)
            trades = aio.run(gateway.fetch_my_trades(position.trading_pair, since_ms=since or None))
            if view is not None and (mark_ms is None or since <= mark_ms):  # (the read reaches the mark)
                check = (trades, since, read_ms - OWED_GRACE_MS)  # the other bots' trades, once its own are booked
            orders: dict[str, Order] = {}
            seen: set[str] | None = None
        else:
            trades, orders, seen = pushed
        by_rest = pushed is None
        safety_secs = PUSHED_TRADE_SAFETY_SECS if view is not None else FULL_TRADE_SYNC_SECS
        if not trades:
            self._trades_booked(position, by_rest, safety_secs, owed_ms, check)
            return []
        order_ids = {t.exchange_order_id for t in trades} - orders.keys()
        if order_ids:
            self.save_answers()  # (the rows are read back by exchange id: with what the venue just answered)
            rows = rows_by_exchange_ids(self.bot.pk, position.exchange_account_id, order_ids)
            orders.update({o.exchange_order_id: o for o in rows if o.exchange_order_id})
        self._match_by_client_id(position, trades, orders)
        new_fills: list[Fill] = []
        latest_ms = max([position.last_trade_sync_ms] + [t.timestamp_ms for t in trades])
        # ours only (a shared account also carries other bots' and manual trades), oldest first
        ordered = sorted(trades, key=lambda t: (t.timestamp_ms, t.trade_id))
        candidates = [(t, orders[t.exchange_order_id]) for t in ordered if t.exchange_order_id in orders]
        account_id = position.exchange_account_id
        if seen is None:
            seen = booked_trade_ids(account_id, [t.trade_id for t, _ in candidates])
        fresh = [(t, o) for t, o in candidates if t.trade_id not in seen]
        if fresh:
            new_fills = self._book(position, fresh, mid, latest_ms if by_rest else None)
            self.booked_trades.update((account_id, f.exchange_trade_id) for f in new_fills)
        self.save_answers()  # (not booked with the fills: before the filled orders are settled from the rows)
        # orders the venue already reported filled in full have nothing to settle
        self._settle_filled_orders({f.order_id for f in new_fills if f.order_id and f.order is not None
                                    and f.order.filled < f.order.amount})
        if not new_fills and by_rest:
            LiquidityPosition.objects.filter(pk=position.pk, last_trade_sync_ms__lt=latest_ms).update(
                last_trade_sync_ms=latest_ms)
        if by_rest:
            position.last_trade_sync_ms = max(position.last_trade_sync_ms, latest_ms)
        # only now: a sync that failed half-way (e.g. its connection died) runs again
        self._trades_booked(position, by_rest, safety_secs, owed_ms, check)
        if new_fills:
            push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="fills",
                 data={"fills": [self.fill_payload(f) for f in new_fills]})
        return new_fills

    def _book(self, position: LiquidityPosition, fresh: list[tuple[Trade, Order]], mid: float,
              sync_ms: int | None) -> list[Fill]:
        """The trades ``fresh`` as Fill rows, and the position's accounting moved with them, exactly once each;
        ``sync_ms``: a REST read's mark, where the next one starts. Without a hedge to owe, in one statement
        when the row still holds the accounting this engine last booked (``booking.book_fills_if_unchanged``);
        otherwise, or when the row moved, in one transaction with the row locked (even if two processes
        sync). Each fill's ``OrderFilled`` event row is stored with it (``fill_events``: the bot announces them).
        Returns the fills booked (their pks set); the position holds the stored accounting."""
        if not any(self._hedged(order) for _, order in fresh):
            before = account_of(position)
            fills, _, account = self._fill_rows(position, fresh, before, position.pk, mid)
            events = self._filled_events(position, fills)
            after = accounting_columns(account, with_average=True)
            if book_fills_if_unchanged(position, accounting_columns(before), after, fills, sync_ms, events,
                                       also_save=(self.unsaved_answers, ACK_FIELDS)):
                self.counts["fills_booked_at_once"] += 1
                self.fill_events.extend(events)
                self.unsaved_answers = []  # saved with the fills
                return fills
            self.counts["fills_booked_locked"] += 1
        with transaction.atomic():
            found = select_rows(LiquidityPosition, "id = %s", [position.pk], for_update=True)
            if not found:
                raise LiquidityPosition.DoesNotExist(f"position {position.pk} is gone")
            locked = found[0]
            seen = booked_trade_ids(position.exchange_account_id, [t.trade_id for t, _ in fresh])
            fresh = [(trade, order) for trade, order in fresh if trade.trade_id not in seen]
            fills, hedges, account = self._fill_rows(position, fresh, account_of(locked), locked.pk, mid)
            insert_rows(fills)  # one statement (their pks set: the hedges refer to them)
            events = self._filled_events(position, fills)
            insert_rows(events)
            if hedges:
                Hedge.objects.bulk_create(hedges)
            if fills:
                written = accounting_columns(account, with_average=True)
                for name, value in written.items():  # the row, and the cycle's position
                    setattr(locked, name, value)
                    setattr(position, name, value)
                # the sync mark goes with the accounting (the row is locked: max() is safe); it is where
                # the next REST read starts, so only a REST read (everything up to it seen) moves it
                fields = list(written)
                if sync_ms is not None:
                    locked.last_trade_sync_ms = max(locked.last_trade_sync_ms, sync_ms)
                    fields.append("last_trade_sync_ms")
                save_fields([locked], fields)
        self.fill_events.extend(events)
        return fills

    def _filled_events(self, position: LiquidityPosition, fills: list[Fill]) -> list[BotEvent]:
        """An ``OrderFilled`` event row per fill (not stored yet: stored with the fills)."""
        return [event_row(bot=self.bot, event_type=BotEventType.ORDER_FILLED, payload={
            "trading_pair": position.trading_pair, "side": fill.side, "price": fill.price, "amount": fill.amount,
            "trade_id": fill.exchange_trade_id, "exchange_account_id": fill.exchange_account_id,
            "venue": self.venues.get(fill.exchange_account_id, ""), "is_hedge": fill.is_hedge,
        }) for fill in fills]

    def take_fill_events(self) -> list[BotEvent]:
        """The ``OrderFilled`` rows stored since the last call, to announce (oldest first)."""
        events, self.fill_events = self.fill_events, []
        return events

    def _fill_rows(self, position: LiquidityPosition, fresh: list[tuple[Trade, Order]], account: PositionAccount,
                   position_id: int, mid: float) -> tuple[list[Fill], list[Hedge], PositionAccount]:
        """The Fill rows of ``fresh`` (not stored), the Hedge rows they owe, and ``account`` after them."""
        base, quote = position.trading_pair.split("/")
        fills: list[Fill] = []
        hedges: list[Hedge] = []
        for trade, order in fresh:
            fee = trade.fee or Decimal(0)
            fee_currency = trade.fee_currency or ""
            fill = Fill(
                tenant_id=self.bot.tenant_id,
                bot=self.bot,
                order=order,
                position_id=order.position_id or position_id,  # no read of the order's position
                exchange_account_id=position.exchange_account_id,
                exchange_trade_id=trade.trade_id,
                trading_pair=position.trading_pair,
                side=trade.side,
                price=trade.price,
                amount=trade.amount,
                fee=fee,
                fee_currency=fee_currency,
                fee_quote=fee_in_quote(fee, fee_currency, trade.price, base, quote),
                is_maker=bool(trade.is_maker),
                is_hedge=order.purpose == OrderPurpose.HEDGE,
                mid_at_fill=Decimal(repr(mid)) if mid == mid else None,
                executed_at=datetime.fromtimestamp(trade.timestamp_ms / 1000, tz=UTC),
            )
            fills.append(fill)
            if self._hedged(order):  # what the fill owes the hedge venue, with the fill: exactly once
                assert self.hedge_route is not None
                hedges.append(Hedge(
                    tenant_id=self.bot.tenant_id, bot=self.bot, fill=fill,
                    maker_account_id=position.exchange_account_id,
                    hedge_account_id=self.hedge_route.hedge_account_id, trading_pair=position.trading_pair,
                    need_base=hedge_need(side=trade.side, amount=trade.amount, fee=fee,
                                         fee_currency=fee_currency, base=base),
                    reference_price=trade.price))
            account = apply_fill(account, side=trade.side, price=trade.price, amount=trade.amount, fee=fee,
                                 fee_currency=fee_currency, base=base, quote=quote)
        return fills, hedges, account

    def _trades_booked(self, position: LiquidityPosition, by_rest: bool, safety_secs: float,
                       owed_ms: int | None = None, check: tuple[Sequence[Trade], int, int] | None = None) -> None:
        """The position's trades are booked. ``check``: (the trades, since, through) of a REST read of the pair under
        its live order stream, which checks them for every bot of the account once its own are booked: the other
        bots' positions with one made before ``through`` unbooked owe a REST read from ``since``; the pair's next
        check is due in ``PUSHED_TRADE_SAFETY_SECS`` and starts at ``through`` (``trade_marks.pair_checked``)."""
        if check is not None:
            trades, since_ms, through_ms = check
            owing = owing_positions(self.bot.pk, position.exchange_account_id, trades, through_ms)
            if owing:
                self.counts["trades_owed_found"] += len(owing)
                logger.warning("bot %s: the check of %s found unbooked trades of positions %s", self.bot.pk,
                               position.trading_pair, sorted(owing))
            pair_checked(position.exchange_account_id, position.trading_pair, since_ms, through_ms, owing)
        if by_rest or self.synced_marks is None:
            trades_synced(position.pk, by_rest=by_rest, safety_secs=safety_secs,
                          owed_paid=owed_ms if by_rest else None)
        else:  # (pushed trades on a kept engine: the mark goes with the cycle's record, ``gate.end_kept_cycle``)
            self.synced_marks.append(position.pk)
        self.fills_seen.discard(position.pk)
        self.fill_rows.pop(position.pk, None)
        if by_rest:
            self.rest_synced.add(position.pk)

    def _pushed_trades(self, position: LiquidityPosition, view: AccountView
                       ) -> tuple[list[Trade], dict[str, Order], set[str]] | None:
        """The position's trades as the account's order stream pushed them (this bot's, on the pair), the rows
        they belong to by exchange order id, and which of them are booked already -- when they account for every
        fill the venue reports on the position's orders: each row of this sync and each row that gained fills
        since the last one (``fill_rows``) has its booked plus pushed trades add up to its filled amount. None:
        they do not (a trade not pushed, or pushed after its order's update), or this object never read the
        trades by REST (a row filled under an earlier engine is on none of its lists): read them by REST."""
        if position.pk not in self.rest_synced:
            self.counts["trades_rest_first"] += 1
            return None
        prefix = client_id_prefix(self.bot.pk)
        checked = {o.client_order_id: o for o in self.synced_rows.get(position.pk, [])}
        checked.update(self.fill_rows.get(position.pk, {}))
        by_exchange_id = {o.exchange_order_id: o for o in checked.values() if o.exchange_order_id}
        pair = position.trading_pair
        trades: list[Trade] = []
        for _, trade in view.trades.values():
            if trade.pair != pair:
                continue
            row = by_exchange_id.get(trade.exchange_order_id) or checked.get(trade.client_order_id or "")
            if row is None and not (trade.client_order_id or "").startswith(prefix):
                continue  # another bot's or a hand-placed order's
            if row is not None and row.exchange_order_id != trade.exchange_order_id:
                self.counts["trades_rest_unmatched"] += 1
                return None  # a row that never learnt its exchange id: the REST path matches and records it
            trades.append(trade)
        account_id = position.exchange_account_id
        known = self.booked_trades  # (a trade stays in the view for a minute: booked ones are not asked about again)
        if len(known) > 2 * len(view.trades) + 100:
            known &= {(account_id, trade_id) for trade_id in view.trades} | {k for k in known if k[0] != account_id}
        seen = {t.trade_id for t in trades if (account_id, t.trade_id) in known}
        trades = [t for t in trades if t.trade_id not in seen]
        filled = [o for o in checked.values() if o.filled > 0]
        if not trades and not filled:
            return [], {}, seen
        booked: dict[int | None, Decimal] = {}  # every booked fill of the filled rows, by order (from the rows)
        for order_id, trade_id, amount in booked_fills([o.pk for o in filled], account_id,
                                                       [t.trade_id for t in trades]):
            seen.add(trade_id)
            booked[order_id] = booked.get(order_id, Decimal(0)) + amount
        known.update((account_id, trade_id) for trade_id in seen)
        pushed: dict[str, Decimal] = {}
        for trade in trades:
            if trade.trade_id not in seen:
                pushed[trade.exchange_order_id] = pushed.get(trade.exchange_order_id, Decimal(0)) + trade.amount
        for order in filled:
            if booked.get(order.pk, Decimal(0)) + pushed.get(order.exchange_order_id, Decimal(0)) < order.filled:
                self.counts["trades_rest_incomplete"] += 1
                return None
        # the trades booked already are left out (an account's trades stay in the view for a minute)
        return [t for t in trades if t.trade_id not in seen], by_exchange_id, seen

    def _hedged(self, order: Order) -> bool:
        """A fill of this order is hedged: a quote on one of the route's hedged accounts (a rebalancing trade
        moves the inventory on purpose; a hedge's own fill is the hedge)."""
        route = self.hedge_route
        return (route is not None and order.purpose == OrderPurpose.QUOTE
                and order.exchange_account_id in route.hedged)

    def _settle_filled_orders(self, order_ids: set[int]) -> None:
        """An order whose recorded fills add up to its amount is filled now, not at the next sync
        (so this cycle's diff never keeps a filled order as if it still rested)."""
        updated = settle_filled_orders(order_ids)
        for order in updated:
            for synced in self.synced_rows.get(order.position_id or 0, []):
                if synced.pk == order.pk:  # the copy the sync handed out learns it too
                    synced.filled, synced.status, synced.closed_at = order.filled, order.status, order.closed_at
        if updated:
            push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders",
                 data={"updated": [self.order_payload(order) for order in updated]})

    def _match_by_client_id(self, position: LiquidityPosition, trades: Sequence[Any], orders: dict[str, Order]) -> None:
        """Trades of our orders whose row never learnt the exchange id (a lost acknowledgement): match
        them by client order id, record the id, and settle a row wrongly closed as rejected or lost."""
        prefix = client_id_prefix(self.bot.pk)
        by_cid = {t.client_order_id: t.exchange_order_id for t in trades
                  if t.exchange_order_id not in orders and (t.client_order_id or "").startswith(prefix)}
        if not by_cid:
            return
        gateway = self.gateways[position.exchange_account_id]
        for order in Order.objects.filter(bot=self.bot, exchange_account_id=position.exchange_account_id,
                                          client_order_id__in=list(by_cid)):
            order.exchange_order_id = by_cid[order.client_order_id]
            Order.objects.filter(pk=order.pk).update(exchange_order_id=order.exchange_order_id)
            orders[order.exchange_order_id] = order
            if order.status in (OrderStatus.REJECTED, OrderStatus.LOST):
                try:
                    remote = aio.run(gateway.fetch_order(order.trading_pair, client_order_id=order.client_order_id))
                except ExchangeError as exc:
                    logger.info("fetch_order %s failed: %s", order.client_order_id, exc)
                    continue
                self._acknowledge(order, remote)
