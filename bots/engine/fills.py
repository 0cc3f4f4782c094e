"""Reconciling a position with its venue: open orders, late and lost orders, trades -> Fill rows.

``FillSyncMixin`` is part of ``OrderManager`` (bots/engine/orders.py). A fill sync reads the trades
only when an order of the position gained fills (``keys.trades_pending``) or the periodic safety
read is due (``FULL_TRADE_SYNC_SECS``); each trade becomes one Fill row and the position's
accounting moves with it, in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from bots.accounting import PositionAccount, apply_fill, fee_in_quote
from bots.engine import keys
from bots.engine.client_ids import client_id_prefix
from bots.engine.market_data import AccountView
from bots.engine.venues import HedgeRoute, Slot
from bots.events import push
from bots.models import (
    OPEN_ORDER_STATUSES,
    Bot,
    Fill,
    Hedge,
    LiquidityPosition,
    Order,
    OrderPurpose,
    OrderStatus,
)
from exchanges.gateway import ExchangeGateway, ExchangeOrder
from mmplatform import aio
from mmplatform.errors import (
    ExchangeError,
    OrderNotFoundError,
)
from mmplatform.redis_client import get_redis
from risk.hedging import hedge_need

logger = logging.getLogger(__name__)

ACCOUNTING_FIELDS = ("base_position", "cost_basis_quote", "realised_pnl_quote", "fees_paid_quote", "volume_quote",
                     "fill_count")
"""LiquidityPosition columns that mirror bots.accounting.PositionAccount (``average_cost`` is derived)."""

FULL_TRADE_SYNC_SECS = 15.0
"""Trades are read at least this often even when no order of the position changed (safety net)."""


TRADE_SYNC_OVERLAP_MS = 5_000
"""Trades are re-read this far back so one arriving late at the venue is not skipped."""


def _trades_key(position_id: int) -> str:
    return keys.trades_pending(position_id)


def mark_trades_pending(position_id: int) -> None:
    """An order of the position gained fills: read the trades at the next sync."""
    get_redis().set(_trades_key(position_id), "1")


def trades_due(position_id: int) -> bool:
    """Whether the position's trades must be read now: fills seen on an order, or the periodic
    safety sync is due (also the first time). An order that left the book always triggers a read."""
    r = get_redis()
    pipe = r.pipeline()
    pipe.exists(_trades_key(position_id))
    pipe.exists(keys.trades_recent(position_id))
    pending, recent = pipe.execute()
    return bool(pending) or not recent


def trades_synced(position_id: int) -> None:
    r = get_redis()
    pipe = r.pipeline()
    pipe.delete(_trades_key(position_id))
    pipe.set(keys.trades_recent(position_id), "1", px=int(FULL_TRADE_SYNC_SECS * 1000))
    pipe.execute()


class FillSyncMixin:
    """The sync half of ``OrderManager``: what the venue says happened to a position's orders."""

    # set in OrderManager.__init__ (orders.py); the methods below are OrderManager's (they override these)
    bot: Bot
    gateways: dict[int, ExchangeGateway]
    synced_rows: dict[int, list[Order]]
    listed_open: dict[Slot, list[ExchangeOrder]]  # slot -> the venue's open orders at the last sync
    hedge_route: HedgeRoute | None  # cross-venue hedging: a quote's fill on a hedged account owes a Hedge
    fills_seen: set[int]  # positions with fills whose trades are not read yet (emptied here, per position)

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

    def sync_position(self, position: LiquidityPosition, *, mid: float, view: AccountView | None = None) -> list[Fill]:
        """Reconcile one pair: open orders (adopt known, cancel unknown of ours), final states of
        rows that left the book, missed acknowledgements, then fills since the last sync.

        ``view``: the account as its live order stream keeps it (the driver's feeder): its open orders
        stand for the venue's listing and its pushed final states for the fate of the rows that left
        the book, so only a row it knows nothing of (sent after its last update) is asked about, and
        the trades are read. None: everything is read from the venue."""
        gateway = self.gateways[position.exchange_account_id]
        pair = position.trading_pair
        if view is None:
            remote_open = aio.run(gateway.fetch_open_orders(pair))
        else:
            remote_open = [o for o in view.orders.values() if o.pair == pair]
        self.listed_open[(position.exchange_account_id, pair)] = remote_open
        by_client = {r.client_order_id: r for r in remote_open if r.client_order_id}
        prefix = client_id_prefix(self.bot.pk)
        rows = {o.client_order_id: o for o in self.open_orders(position)}
        self._adopt_late(by_client, rows, prefix)

        unknown = [r for cid, r in by_client.items() if cid.startswith(prefix) and cid not in rows
                   and not Order.objects.filter(client_order_id=cid).exists()]
        for stray in unknown:
            logger.warning("bot %s: cancelling unknown order %s on %s", self.bot.pk, stray.client_order_id, pair)
            try:
                aio.run(gateway.cancel_order(pair, exchange_order_id=stray.exchange_order_id))
            except ExchangeError as exc:
                logger.warning("cancelling unknown order failed: %s", exc)

        left_book = False
        for cid, order in rows.items():
            remote = by_client.get(cid)
            if remote is not None:
                if order.status != OrderStatus.CANCEL_PENDING or remote.status != "open":
                    self._acknowledge(order, remote)
                continue
            # not resting on the book: filled, cancelled, never arrived, or not visible yet
            left_book = True
            pushed = view.closed.get(cid) if view is not None else None
            if pushed is not None:  # its final state, as the order stream pushed it
                self._acknowledge(order, pushed[1])
                continue
            try:
                remote = aio.run(gateway.fetch_order(pair, client_order_id=cid))
            except OrderNotFoundError:
                self._count_miss(order)
                continue
            except ExchangeError as exc:
                logger.info("fetch_order %s failed: %s", cid, exc)
                continue
            self._acknowledge(order, remote)
        self.synced_rows[position.pk] = list(rows.values())
        if left_book or trades_due(position.pk):
            return self.sync_fills(position, mid=mid)
        return []

    def _adopt_late(self, by_client: dict[str, ExchangeOrder], rows: dict[str, Order], prefix: str) -> None:
        """An order the venue lists although its row was closed as rejected or lost (its reply was lost
        and the venue denied knowing it for a while): it is ours and live, so it is managed again."""
        late = [cid for cid in by_client if cid.startswith(prefix) and cid not in rows]
        if not late:
            return
        for order in Order.objects.filter(bot=self.bot, client_order_id__in=late,
                                          status__in=(OrderStatus.REJECTED, OrderStatus.LOST)):
            logger.warning("bot %s: order %s shows up after being marked %s; managing it again",
                           self.bot.pk, order.client_order_id, order.status)
            order.closed_at = None
            self._acknowledge(order, by_client[order.client_order_id])
            rows[order.client_order_id] = order

    def sync_fills(self, position: LiquidityPosition, *, mid: float) -> list[Fill]:
        """Record every trade of this bot's orders since the last sync (exactly once each)."""
        gateway = self.gateways[position.exchange_account_id]
        since = max(0, position.last_trade_sync_ms - TRADE_SYNC_OVERLAP_MS)
        trades = aio.run(gateway.fetch_my_trades(position.trading_pair, since_ms=since or None))
        if not trades:
            trades_synced(position.pk)
            self.fills_seen.discard(position.pk)
            return []
        order_ids = {t.exchange_order_id for t in trades}
        orders = {
            o.exchange_order_id: o
            for o in Order.objects.filter(
                bot=self.bot, exchange_account_id=position.exchange_account_id, exchange_order_id__in=order_ids
            )
        }
        self._match_by_client_id(position, trades, orders)
        base, quote = position.trading_pair.split("/")
        new_fills: list[Fill] = []
        latest_ms = max([position.last_trade_sync_ms] + [t.timestamp_ms for t in trades])
        # ours only (a shared account also carries other bots' and manual trades), oldest first
        ordered = sorted(trades, key=lambda t: (t.timestamp_ms, t.trade_id))
        candidates = [(t, orders[t.exchange_order_id]) for t in ordered if t.exchange_order_id in orders]
        account_fills = Fill.objects.filter(exchange_account_id=position.exchange_account_id)
        seen = set(account_fills.filter(exchange_trade_id__in=[t.trade_id for t, _ in candidates]).values_list(
            "exchange_trade_id", flat=True))
        fresh = [(t, o) for t, o in candidates if t.trade_id not in seen]
        if fresh:
            # one transaction, the position row locked once: exactly-once even if two processes sync
            with transaction.atomic():
                locked = LiquidityPosition.objects.select_for_update().get(pk=position.pk)
                seen = set(account_fills.filter(exchange_trade_id__in=[t.trade_id for t, _ in fresh]).values_list(
                    "exchange_trade_id", flat=True))
                account = PositionAccount(**{name: getattr(locked, name) for name in ACCOUNTING_FIELDS})
                hedges: list[Hedge] = []
                for trade, order in fresh:
                    if trade.trade_id in seen:
                        continue
                    fee = trade.fee or Decimal(0)
                    fee_currency = trade.fee_currency or ""
                    fill = Fill.objects.create(
                        tenant_id=self.bot.tenant_id,
                        bot=self.bot,
                        order=order,
                        position_id=order.position_id or locked.pk,  # no read of the order's position
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
                    new_fills.append(fill)
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
                if hedges:
                    Hedge.objects.bulk_create(hedges)
                if new_fills:
                    for name in (*ACCOUNTING_FIELDS, "average_cost"):  # the row, and the cycle's position
                        setattr(locked, name, getattr(account, name))
                        setattr(position, name, getattr(account, name))
                    # the sync mark goes with the accounting (the row is locked: max() is safe)
                    locked.last_trade_sync_ms = max(locked.last_trade_sync_ms, latest_ms)
                    locked.save(update_fields=[*ACCOUNTING_FIELDS, "average_cost", "last_trade_sync_ms"])
        # orders the venue already reported filled in full have nothing to settle
        self._settle_filled_orders({f.order_id for f in new_fills if f.order_id and f.order is not None
                                    and f.order.filled < f.order.amount})
        if not new_fills:
            LiquidityPosition.objects.filter(pk=position.pk, last_trade_sync_ms__lt=latest_ms).update(
                last_trade_sync_ms=latest_ms)
        position.last_trade_sync_ms = max(position.last_trade_sync_ms, latest_ms)
        trades_synced(position.pk)  # only now: a sync that failed half-way (e.g. its connection died) runs again
        self.fills_seen.discard(position.pk)
        if new_fills:
            push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="fills",
                 data={"fills": [self.fill_payload(f) for f in new_fills]})
        return new_fills

    def _hedged(self, order: Order) -> bool:
        """A fill of this order is hedged: a quote on one of the route's hedged accounts (a rebalancing trade
        moves the inventory on purpose; a hedge's own fill is the hedge)."""
        route = self.hedge_route
        return (route is not None and order.purpose == OrderPurpose.QUOTE
                and order.exchange_account_id in route.hedged)

    def _settle_filled_orders(self, order_ids: set[int]) -> None:
        """An order whose recorded fills add up to its amount is filled now, not at the next sync
        (so this cycle's diff never keeps a filled order as if it still rested)."""
        if not order_ids:
            return
        from django.db.models import Sum

        totals = dict(Fill.objects.filter(order_id__in=order_ids).values("order_id").annotate(
            total=Sum("amount")).values_list("order_id", "total"))
        updated = []
        for order in Order.objects.filter(pk__in=order_ids):
            total = totals.get(order.pk) or Decimal(0)
            if total <= order.filled:
                continue
            order.filled = min(total, order.amount)
            fields = ["filled", "updated_at"]
            if order.filled >= order.amount and order.status in OPEN_ORDER_STATUSES:
                order.status = OrderStatus.FILLED
                order.closed_at = timezone.now()
                fields += ["status", "closed_at"]
            elif order.status == OrderStatus.OPEN:
                order.status = OrderStatus.PARTIALLY_FILLED
                fields.append("status")
            order.save(update_fields=fields)
            for synced in self.synced_rows.get(order.position_id or 0, []):
                if synced.pk == order.pk:  # the copy the sync handed out learns it too
                    synced.filled, synced.status, synced.closed_at = order.filled, order.status, order.closed_at
            updated.append(self.order_payload(order))
        if updated:
            push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders", data={"updated": updated})

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
