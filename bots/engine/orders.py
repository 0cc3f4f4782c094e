"""OrderManager: client order ids, store-before-send, placement and cancellation through the
gateway, and the sync of order states and fills from the exchange.

Crash-only and idempotent: every order row (with its deterministic client order id) is committed
before the order is sent, so after any crash the next cycle finds it and resolves it by client
order id; nothing is ever placed twice. Fills are unique per (account, exchange trade id), and a
fill updates the position's accounting in the same transaction that inserts it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from bots import wire
from bots.accounting import PositionAccount, apply_fill, fee_in_quote
from bots.engine import keys
from bots.engine.rows import insert_orders, save_order_fields
from bots.events import push
from bots.models import OPEN_ORDER_STATUSES, Bot, Fill, LiquidityPosition, Order, OrderPurpose, OrderStatus
from exchanges.gateway import ExchangeGateway, ExchangeOrder, OrderRequest
from mmplatform import aio
from mmplatform.errors import (
    ExchangeError,
    MarketMakingError,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderPlacementError,
)
from mmplatform.redis_client import get_redis
from strategies.types import LiveOrder, OrderIntent

logger = logging.getLogger(__name__)

LOST_AFTER_MISSES = 3
"""An unacknowledged order is marked lost only after this many consecutive 'not found' answers."""
TRADE_SYNC_OVERLAP_MS = 5_000
"""Trades are re-read this far back so one arriving late at the venue is not skipped."""
ACCOUNTING_FIELDS = ("base_position", "cost_basis_quote", "realised_pnl_quote", "fees_paid_quote", "volume_quote",
                     "fill_count")
"""LiquidityPosition columns that mirror bots.accounting.PositionAccount (``average_cost`` is derived)."""

ACK_FIELDS = ["exchange_order_id", "status", "filled", "average_price", "acknowledged_at", "missing_count",
              "closed_at", "updated_at"]
"""The Order columns an answer of the venue can change."""

EXCHANGE_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def client_order_id(bot_id: int, epoch: int, cycle: int, position_id: int, tag: str) -> str:
    """Deterministic id from (bot, epoch, cycle, position, side+level), in Binance's alphabet.

    ``tag`` starts with a letter (b/s/r), so the position id before it stays unambiguous.
    """
    cid = f"mm-{bot_id}-{epoch}-{cycle}-{position_id}{tag}"
    if len(cid) > 36:
        raise ValueError(f"client order id {cid!r} exceeds the exchange's 36 characters")
    return cid


def client_id_prefix(bot_id: int) -> str:
    return f"mm-{bot_id}-"


def side_tag(side: str, level: int) -> str:
    return f"{side[0]}{level}"


FULL_TRADE_SYNC_SECS = 15.0
"""Trades are read at least this often even when no order of the position changed (safety net)."""


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


@dataclass
class PlacementOutcome:
    order: Order
    error: Exception | None = None


def _status_from_exchange(remote: ExchangeOrder) -> str:
    status = EXCHANGE_STATUS.get(remote.status, OrderStatus.OPEN)
    if status == OrderStatus.OPEN and remote.filled and remote.filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


class OrderManager:
    """Order lifecycle for one bot (spec OrderManager)."""

    def __init__(self, bot: Bot, gateways: dict[int, ExchangeGateway]):
        self.bot = bot
        self.gateways = gateways
        # the rows of each position's last sync_position (as the venue answered it), which the engine
        # driver re-quotes on instead of reading them again
        self.synced_rows: dict[int, list[Order]] = {}
        # every row this object stored since the caller last emptied it (the driver's in-memory view)
        self.stored: list[Order] = []
        # called right before any order is sent: raises when the bot's sends are fenced (kill, stop,
        # pause) or the cycle lost its lease (MarketMakingBot._check_send)
        self.gate: Callable[[], None] | None = None

    # --- reads ----------------------------------------------------------------------------------

    def open_orders(self, position: LiquidityPosition | None = None) -> list[Order]:
        qs = Order.objects.filter(bot=self.bot, status__in=OPEN_ORDER_STATUSES)
        if position is not None:
            qs = qs.filter(position=position)
        return list(qs.order_by("pk"))

    @staticmethod
    def as_live(orders: Iterable[Order]) -> list[LiveOrder]:
        return [
            LiveOrder(
                order_id=o.client_order_id,
                side=o.side,
                price=float(o.price),
                size=float(o.amount - o.filled),
                level=o.level,
                placed_at=o.created_at.timestamp(),
            )
            for o in orders
            if o.purpose == OrderPurpose.QUOTE and o.status != OrderStatus.CANCEL_PENDING
        ]

    # --- placement ------------------------------------------------------------------------------

    def store_intents(
        self, position: LiquidityPosition, intents: Sequence[OrderIntent], *, cycle: int,
        purpose: str = OrderPurpose.QUOTE, order_type: str = "limit", time_in_force: str = "GTC",
    ) -> list[Order]:
        """Commit an Order row per intent (status PENDING) before anything is sent."""
        gateway = self.gateways[position.exchange_account_id]
        rows = []
        for intent in intents:
            side = intent.side
            tag = side_tag(side, intent.level) if purpose == OrderPurpose.QUOTE else f"r{intent.level}"
            price, amount = gateway.quantize(position.trading_pair, side, intent.price, intent.size)
            rows.append(Order(
                tenant_id=self.bot.tenant_id,
                bot=self.bot,
                position=position,
                exchange_account_id=position.exchange_account_id,
                trading_pair=position.trading_pair,
                client_order_id=client_order_id(self.bot.pk, self.bot.epoch, cycle, position.pk, tag),
                side=side,
                order_type=order_type,
                time_in_force=time_in_force,
                purpose=purpose,
                post_only=intent.post_only and order_type == "limit" and time_in_force == "GTC",
                price=price,
                amount=amount,
                epoch=self.bot.epoch,
                cycle=cycle,
                level=intent.level,
            ))
        # one statement; a retried cycle reuses its ids: the stored row wins, nothing is stored twice
        stored = insert_orders(rows)
        self.stored.extend(stored)
        return stored

    def send(self, orders: Sequence[Order]) -> list[PlacementOutcome]:
        """Send stored orders concurrently; acknowledge, reject or leave pending (outcome unknown).
        The gate is checked first, right before the orders leave: when the bot was fenced (or the cycle
        lost its lease) nothing is sent, the rows are closed as never sent, and the error is raised."""
        if not orders:
            return []
        if self.gate is not None:
            try:
                self.gate()
            except MarketMakingError as exc:
                now = timezone.now()
                for order in orders:
                    order.status, order.closed_at = OrderStatus.CANCELED, now
                    order.error = f"not sent: {exc}"[:500]
                Order.objects.filter(pk__in=[o.pk for o in orders]).update(
                    status=OrderStatus.CANCELED, closed_at=now, error=f"not sent: {exc}"[:500], updated_at=now)
                raise

        async def place_all() -> list[Any]:
            return await asyncio.gather(*(self._place_one(o) for o in orders), return_exceptions=True)

        results = aio.run(place_all(), timeout_secs=60)
        outcomes = []
        acknowledged = []
        for order, result in zip(orders, results, strict=True):
            if isinstance(result, ExchangeOrder):
                if self._acknowledge(order, result, save=False):
                    acknowledged.append(order)
                outcomes.append(PlacementOutcome(order))
            elif isinstance(result, OrderOutcomeUnknownError):
                order.error = str(result)[:500]
                order.save(update_fields=["error", "updated_at"])
                outcomes.append(PlacementOutcome(order, OrderPlacementError(f"outcome unknown: {result}")))
            else:
                order.status = OrderStatus.REJECTED
                order.error = f"{type(result).__name__}: {result}"[:500]
                order.closed_at = timezone.now()
                order.save(update_fields=["status", "error", "closed_at", "updated_at"])
                outcomes.append(PlacementOutcome(order, OrderPlacementError(
                    f"Failed to place order {order.client_order_id}: {result}")))
        self._save_acks(acknowledged)
        push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders",
             data={"placed": [self.order_payload(o.order) for o in outcomes if o.error is None]})
        return outcomes

    async def _place_one(self, order: Order) -> ExchangeOrder:
        gateway = self.gateways[order.exchange_account_id]
        request = OrderRequest(
            pair=order.trading_pair,
            side=order.side,
            price=order.price,
            amount=order.amount,
            client_order_id=order.client_order_id,
            post_only=order.post_only,
            order_type=order.order_type,
            time_in_force=order.time_in_force,
        )
        return await gateway.place_order(request)

    def _acknowledge(self, order: Order, remote: ExchangeOrder, *, save: bool = True) -> bool:
        """Apply the exchange's view of an order to its row (saved only when something changed;
        ``save=False`` leaves the write to the caller, which batches it). Returns whether it changed.
        A fill seen here marks the position's trades for the next trade sync."""
        before = (order.exchange_order_id, order.status, order.filled, order.average_price, order.missing_count,
                  order.acknowledged_at is None)
        order.exchange_order_id = remote.exchange_order_id or order.exchange_order_id
        order.status = _status_from_exchange(remote)
        remote_filled = remote.filled or Decimal(0)
        if remote_filled > order.filled and order.position_id is not None:
            mark_trades_pending(order.position_id)
        order.filled = max(order.filled, remote_filled)
        order.average_price = remote.average_price
        order.acknowledged_at = order.acknowledged_at or timezone.now()
        order.missing_count = 0
        after = (order.exchange_order_id, order.status, order.filled, order.average_price, order.missing_count, False)
        if before == after:
            return False
        if order.status not in OPEN_ORDER_STATUSES:
            order.closed_at = order.closed_at or timezone.now()
        if save:
            order.save(update_fields=ACK_FIELDS)
        return True

    # --- cancellation ---------------------------------------------------------------------------

    def cancel(self, orders: Sequence[Order]) -> int:
        """Cancel orders concurrently; returns how many are confirmed gone."""
        if not orders:
            return 0
        return self.settle_cancels(orders, self.send_cancels(orders))

    def send_cancels(self, orders: Sequence[Order]) -> list[Any]:
        """Mark the rows CANCEL_PENDING, cancel on the venue concurrently, return the answers."""
        return self.start_cancels(orders).result(60)

    def cancel_requests(self, orders: Sequence[Order]) -> concurrent.futures.Future:
        """Only send the cancels (concurrently, on the I/O loop); the caller marks and settles the rows.
        The engine driver sends a re-quote's cancels the moment it decides, before handing the rest of
        the re-quote to a pool thread."""
        async def cancel_all() -> list[Any]:
            return await asyncio.gather(*(self._cancel_one(o) for o in orders), return_exceptions=True)

        return asyncio.run_coroutine_threadsafe(cancel_all(), aio.get_loop())

    def start_cancels(self, orders: Sequence[Order]) -> concurrent.futures.Future:
        """Mark the rows CANCEL_PENDING and start cancelling on the venue (concurrently, on the I/O
        loop) without waiting for the answers: a re-quote stores its new orders meanwhile, waits for
        these answers before it sends, and hands them to ``settle_cancels`` after. A crash in between
        leaves CANCEL_PENDING rows, which the next sync resolves by client id."""
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(status=OrderStatus.CANCEL_PENDING)
        return self.cancel_requests(orders)

    def settle_cancels(self, orders: Sequence[Order], results: Sequence[Any]) -> int:
        """Apply the venue's answers to cancels; returns how many orders are confirmed gone."""
        gone = 0
        settled = []
        for order, result in zip(orders, results, strict=True):
            if isinstance(result, ExchangeOrder):
                self._acknowledge(order, result, save=False)
                if order.status == OrderStatus.OPEN or order.status == OrderStatus.PARTIALLY_FILLED:
                    order.status = OrderStatus.CANCELED
                    order.closed_at = timezone.now()
                settled.append(order)
                gone += 1
            elif isinstance(result, OrderNotFoundError):
                gone += self._resolve_missing(order)
            else:
                logger.warning("cancel of %s failed: %s", order.client_order_id, result)
        self._save_acks(settled)
        push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders",
             data={"cancelled": [o.client_order_id for o in orders]})
        return gone

    @staticmethod
    def _save_acks(orders: list[Order]) -> None:
        """The venue's answers for several orders in one statement."""
        save_order_fields(orders, ACK_FIELDS)

    async def _cancel_one(self, order: Order) -> ExchangeOrder:
        gateway = self.gateways[order.exchange_account_id]
        return await gateway.cancel_order(
            order.trading_pair,
            exchange_order_id=order.exchange_order_id or None,
            client_order_id=None if order.exchange_order_id else order.client_order_id,
        )

    def _resolve_missing(self, order: Order) -> int:
        """A cancel answered 'unknown order': look the order up by client id to learn its fate."""
        gateway = self.gateways[order.exchange_account_id]
        try:
            remote = aio.run(gateway.fetch_order(order.trading_pair, client_order_id=order.client_order_id))
        except OrderNotFoundError:
            return self._count_miss(order)
        except ExchangeError:
            return 0
        self._acknowledge(order, remote)
        return 1 if order.status not in OPEN_ORDER_STATUSES else 0

    def _count_miss(self, order: Order) -> int:
        """One more consecutive 'not found'; LOST after LOST_AFTER_MISSES (acknowledged or not: a venue
        that lost its state, e.g. restarted, forgets acknowledged orders too). A fill that still
        arrives later is applied, and an order that reappears is managed again."""
        order.missing_count += 1
        if order.missing_count >= LOST_AFTER_MISSES:
            order.status = OrderStatus.LOST
            order.closed_at = timezone.now()
            order.save(update_fields=["missing_count", "status", "closed_at", "updated_at"])
            return 1
        order.save(update_fields=["missing_count", "updated_at"])
        return 0

    def cancel_everything_on_exchange(self, pairs: Iterable[tuple[int, str]]) -> int:
        """Kill path: cancel every open order of this bot the exchange knows (by client id prefix),
        all pairs at once, then settle the database rows. Returns the exchange orders cancelled."""
        return sweep_venues([(self, pairs)])[0]

    async def _cancel_listed(self, pairs: Iterable[tuple[int, str]]) -> set[str]:
        """List this bot's open orders on every (account, pair) at once, then cancel all of them at
        once; returns the client ids the venues confirmed gone."""
        prefix = client_id_prefix(self.bot.pk)
        targets = [(account_id, pair) for account_id, pair in pairs if account_id in self.gateways]
        listed = await asyncio.gather(
            *(self.gateways[a].fetch_open_orders(p) for a, p in targets), return_exceptions=True)
        mine: list[tuple[int, ExchangeOrder]] = []
        for (account_id, pair), result in zip(targets, listed, strict=True):
            if isinstance(result, BaseException):
                logger.warning("kill: listing open orders of %s failed: %s", pair, result)
                continue
            mine += [(account_id, r) for r in result if (r.client_order_id or "").startswith(prefix)]
        results = await asyncio.gather(
            *(self.gateways[a].cancel_order(r.pair, exchange_order_id=r.exchange_order_id) for a, r in mine),
            return_exceptions=True)
        return {r.client_order_id for (_, r), res in zip(mine, results, strict=True)
                if isinstance(res, (ExchangeOrder, OrderNotFoundError))}

    def _settle_swept(self, gone: set[str]) -> None:
        """The rows after a sweep: cancelled ones closed, the rest looked up by client id."""
        now = timezone.now()
        Order.objects.filter(bot=self.bot, client_order_id__in=gone, status__in=OPEN_ORDER_STATUSES).update(
            status=OrderStatus.CANCELED, closed_at=now)
        # rows the exchange did not list: filled, cancelled, or never arrived; learn which
        for order in self.open_orders():
            if order.exchange_account_id in self.gateways:
                self._resolve_missing(order)
        push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders", data={"cancelled": sorted(gone)})

    # --- sync with the exchange -------------------------------------------------------------------

    def sync_position(self, position: LiquidityPosition, *, mid: float) -> list[Fill]:
        """Reconcile one pair: open orders (adopt known, cancel unknown of ours), final states of
        rows that left the book, missed acknowledgements, then fills since the last sync."""
        gateway = self.gateways[position.exchange_account_id]
        pair = position.trading_pair
        remote_open = aio.run(gateway.fetch_open_orders(pair))
        by_client = {r.client_order_id: r for r in remote_open if r.client_order_id}
        prefix = client_id_prefix(self.bot.pk)
        rows = {o.client_order_id: o for o in self.open_orders(position)}
        self._adopt_late(by_client, rows, prefix)

        unknown = [r for cid, r in by_client.items() if cid.startswith(prefix) and cid not in rows
                   and not Order.objects.filter(client_order_id=cid).exists()]
        for remote in unknown:
            logger.warning("bot %s: cancelling unknown order %s on %s", self.bot.pk, remote.client_order_id, pair)
            try:
                aio.run(gateway.cancel_order(pair, exchange_order_id=remote.exchange_order_id))
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
                for trade, order in fresh:
                    if trade.trade_id in seen:
                        continue
                    fee = trade.fee or Decimal(0)
                    fee_currency = trade.fee_currency or ""
                    new_fills.append(Fill.objects.create(
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
                        mid_at_fill=Decimal(repr(mid)) if mid == mid else None,
                        executed_at=datetime.fromtimestamp(trade.timestamp_ms / 1000, tz=UTC),
                    ))
                    account = apply_fill(account, side=trade.side, price=trade.price, amount=trade.amount, fee=fee,
                                         fee_currency=fee_currency, base=base, quote=quote)
                if new_fills:
                    for name in (*ACCOUNTING_FIELDS, "average_cost"):  # the row, and the cycle's position
                        setattr(locked, name, getattr(account, name))
                        setattr(position, name, getattr(account, name))
                    # the sync mark goes with the accounting (the row is locked: max() is safe)
                    locked.last_trade_sync_ms = max(locked.last_trade_sync_ms, latest_ms)
                    locked.save(update_fields=[*ACCOUNTING_FIELDS, "average_cost", "last_trade_sync_ms"])
        # orders the venue already reported filled in full have nothing to settle
        self._settle_filled_orders({f.order_id for f in new_fills if f.order_id
                                    and f.order.filled < f.order.amount})
        if not new_fills:
            LiquidityPosition.objects.filter(pk=position.pk, last_trade_sync_ms__lt=latest_ms).update(
                last_trade_sync_ms=latest_ms)
        position.last_trade_sync_ms = max(position.last_trade_sync_ms, latest_ms)
        trades_synced(position.pk)  # only now: a sync that failed half-way (e.g. its connection died) runs again
        if new_fills:
            push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="fills",
                 data={"fills": [self.fill_payload(f) for f in new_fills]})
        return new_fills

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

    # --- payloads for the dashboard ----------------------------------------------------------------

    @staticmethod
    def order_payload(order: Order) -> dict[str, Any]:
        return wire.order_json(order)  # the dashboard's one shape of an order

    @staticmethod
    def fill_payload(fill: Fill) -> dict[str, Any]:
        return wire.fill_json(fill)


def sweep_venues(sweeps: Sequence[tuple[OrderManager, Iterable[tuple[int, str]]]]) -> list[int]:
    """The kill path of many bots at once (a tenant kill): every bot's listings, then its cancels, all
    bots concurrently on the I/O loop; then each bot's rows settled. Returns the exchange orders
    cancelled per bot (0 for a bot whose sweep failed; its backstop task retries)."""
    async def every() -> list[Any]:
        return await asyncio.gather(*(manager._cancel_listed(list(pairs)) for manager, pairs in sweeps),
                                    return_exceptions=True)

    counts = []
    for (manager, _), gone in zip(sweeps, aio.run(every()), strict=True):
        if isinstance(gone, BaseException):
            logger.warning("kill: the sweep of bot %s failed: %s", manager.bot.pk, gone)
            counts.append(0)
            continue
        manager._settle_swept(gone)
        counts.append(len(gone))
    return counts
