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
import time
import types
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from bots import wire
from bots.engine.client_ids import client_id_prefix, client_order_id, side_tag
from bots.engine.fills import FillSyncMixin
from bots.engine.lease import FencedError
from bots.engine.replacing import replace_one, request_of
from bots.engine.rows import ACK_FIELDS, insert_orders, mark_cancel_pending, open_rows, save_fields
from bots.engine.trade_marks import mark_trades_pending
from bots.engine.venues import HedgeRoute, Slot
from bots.events import publish_routine_with_saved, push
from bots.models import OPEN_ORDER_STATUSES, Bot, BotEvent, Fill, LiquidityPosition, Order, OrderPurpose, OrderStatus
from exchanges.gateway import ExchangeGateway, ExchangeOrder
from mmplatform import aio
from mmplatform.errors import (
    ExchangeError,
    MarketMakingError,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderPlacementError,
)
from strategies.types import LiveOrder, OrderIntent

logger = logging.getLogger(__name__)

LOST_AFTER_MISSES = 3
"""An unacknowledged order is marked lost only after this many consecutive 'not found' answers."""

VENUE_CLOSED = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED})
CLOSED_MEMORY_SECS = 120.0
"""How long an OrderManager remembers a row the venue closed (``closed_by_venue``): longer than an account
view keeps a pushed final state (60 s), so a listing is never behind by more."""


EXCHANGE_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


@dataclass
class PlacementOutcome:
    order: Order
    error: Exception | None = None


VENUE_CLOCK_TRUST_SECS = 300.0
"""A venue time further than this from ours is not believed (a venue with a broken clock)."""


def venue_time(ms: int | None) -> datetime:
    """When something happened on the venue, by the venue's clock (an order's acceptance, its cancel):
    the SLA figures (``liquidity``) measure resting time on it. Ours when the venue does not say."""
    if not ms or abs(ms / 1000 - time.time()) > VENUE_CLOCK_TRUST_SECS:
        return timezone.now()
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _status_from_exchange(remote: ExchangeOrder) -> str:
    status = EXCHANGE_STATUS.get(remote.status, OrderStatus.OPEN)
    if status == OrderStatus.OPEN and remote.filled and remote.filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


def _engine_gone() -> None:
    raise FencedError("the engine these orders belonged to is gone: nothing is sent")


class OrderManager(FillSyncMixin):
    """Order lifecycle for one bot (spec OrderManager)."""

    def __init__(self, bot: Bot, gateways: dict[int, ExchangeGateway], *, gate: Callable[[], None] | None = None,
                 hedge_route: HedgeRoute | None = None, venues: dict[int, str] | None = None):
        self.bot = bot
        self.gateways = gateways
        self.venues = venues or {}  # account -> its venue's id (the OrderFilled events say where a fill was)
        self.fill_events: list[BotEvent] = []  # OrderFilled rows stored with their fills, to announce
        self.unsaved_answers: list[Order] = []  # a sync's answers, saved with its booking (fills.py)
        # cross-venue hedging: the fills of quotes on these accounts owe a hedge (a Hedge row, with the Fill)
        self.hedge_route = hedge_route
        # the rows of each position's last sync_position (as the venue answered it), which the engine
        # driver re-quotes on instead of reading them again
        self.synced_rows: dict[int, list[Order]] = {}
        # slot (account, pair) -> every open order the venue listed on the account at the last
        # sync_position (other bots' and hand-placed ones too: the no-self-trade check of a full cycle)
        self.listed_open: dict[Slot, list[ExchangeOrder]] = {}
        # every row this object stored since the caller last emptied it (the driver's in-memory view)
        self.stored: list[Order] = []
        # positions whose orders gained fills the trades were not read for yet (a cancel answered "filled"):
        # the driver's next check makes them a fill sync; emptied per position by sync_fills
        self.fills_seen: set[int] = set()
        # position -> client id -> the rows whose fills the venue reported beyond what was recorded when they
        # were last acknowledged (``_acknowledge``): the trades a fill sync books from the order stream must
        # account for all of them (``FillSyncMixin._pushed_trades``); emptied per position by sync_fills
        self.fill_rows: dict[int, dict[str, Order]] = {}
        # positions whose trades this object read by REST at least once: only after that are pushed trades
        # booked (a row filled under an earlier engine, before this one's stream, is on no list here)
        self.rest_synced: set[int] = set()
        self.booked_trades: set[tuple[int, str]] = set()  # (account, trade id) known booked (fills.py)
        # client id -> when: rows this object saw the venue close (filled, cancelled, expired). A pushed view
        # still lists such an order for a moment after the answer that closed it (its push is on its way): a
        # sync knows it from here instead of asking the database whether it is a row to adopt or a stray
        self.closed_by_venue: dict[str, float] = {}
        # during a sync_position: the positions whose trades-pending marks its acknowledgements owe (written
        # in the one pipeline that reads the trade-sync state, before any trade is booked); None otherwise
        self.deferred_marks: set[int] | None = None
        # during a cycle on the kept engine (``gate.begin_kept_cycle``): positions whose pushed trades were booked,
        # their trades-pending marks deleted with the cycle's record (``end_kept_cycle``); None: at once
        self.synced_marks: list[int] | None = None
        # how the fill syncs booked the trades since ``take_counts`` (the driver's stats: ``trades_pushed``,
        # ``trades_rest_<why>``)
        self.counts: Counter[str] = Counter()
        # while a re-quote holds them (``hold_acks``): the answers' rows, saved together by ``save_held_acks``
        self.held_acks: list[Order] | None = None
        # the old rows the last ``send`` replaced in one request each, with the venue's answer as a cancel's
        self.replaced: list[tuple[Order, Any]] = []
        # called right before any order is sent: raises when the bot's sends are fenced (kill, stop,
        # pause) or the cycle lost its lease (MarketMakingBot._check_send). The engine's own bound method is
        # held weakly: the engine owns this manager, and a strong reference back made every dropped engine a
        # reference cycle that only the garbage collector's full passes freed (~100 objects each, a periodic
        # full cycle's every 300 s per bot); a gate whose engine is gone sends nothing
        self._gate: Callable[[], None] | weakref.WeakMethod | None = (
            weakref.WeakMethod(gate) if isinstance(gate, types.MethodType) else gate)

    @property
    def gate(self) -> Callable[[], None] | None:
        """The check run right before any order leaves (None: none)."""
        if isinstance(self._gate, weakref.WeakMethod):
            return self._gate() or _engine_gone
        return self._gate

    def count(self, kind: str, n: int = 1) -> None:
        """``n`` more of ``kind`` in the driver's stats (handed over by ``take_counts``)."""
        self.counts[kind] += n

    def take_counts(self) -> Counter[str] | None:
        """The counts since the last call (None: nothing counted), handed over once."""
        counts, self.counts = self.counts, Counter()
        return counts or None

    def take_synced(self, position_id: int) -> list[Order]:
        """The rows of the position's last ``sync_position`` (as the venue answered them), handed over once."""
        return self.synced_rows.pop(position_id, [])

    def reset_stored(self) -> None:
        """A new kept cycle: forget the rows stored before it; the trades-pending marks of the positions whose
        pushed trades it books are held for its record (``take_synced_marks``)."""
        self.stored = []
        self.synced_marks = []

    def take_synced_marks(self) -> list[int]:
        """The positions whose pushed trades the kept cycle booked (their marks to delete with its record), handed
        over once; from here until the next kept cycle, marks are deleted at once again."""
        marks, self.synced_marks = self.synced_marks or [], None
        return marks

    # --- reads ----------------------------------------------------------------------------------

    def open_orders(self, position: LiquidityPosition | None = None) -> list[Order]:
        """The bot's open rows (of one position), oldest first: one SELECT whose SQL is built once."""
        return open_rows(self.bot.pk, position.pk if position is not None else None)

    @staticmethod
    def as_live(orders: Iterable[Order]) -> list[LiveOrder]:
        """The resting quotes among ``orders`` as the pipeline's diff reads them. Each row keeps the one it was last
        seen as (``_as_live``, with the price, amount and fill it was made from): the driver's every check of a bot
        reads the same rows again until a cycle changes them."""
        live = []
        for o in orders:
            if o.purpose != OrderPurpose.QUOTE or o.status == OrderStatus.CANCEL_PENDING:
                continue
            price, amount, filled = o.price, o.amount, o.filled
            held = o.__dict__.get("_as_live")
            if held is None or held[0] != price or held[1] != amount or held[2] != filled:
                held = o.__dict__["_as_live"] = (price, amount, filled, LiveOrder(
                    order_id=o.client_order_id,
                    side=o.side,
                    price=float(price),
                    size=float(amount - filled),
                    level=o.level,
                    placed_at=o.created_at.timestamp(),
                ))
            live.append(held[3])
        return live

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

    def send(self, orders: Sequence[Order], replacing: Mapping[int, Order] | None = None) -> list[PlacementOutcome]:
        """Send stored orders concurrently; acknowledge, reject or leave pending (outcome unknown).
        The gate is checked first, right before the orders leave: when the bot was fenced (or the cycle
        lost its lease) nothing is sent, the rows are closed as never sent, and the error is raised.
        ``replacing``: new row pk -> the old row it replaces in the same request (``replacing.replace_one``);
        the old rows' fates are in ``replaced`` afterwards, for ``settle_cancels``."""
        self.replaced = []
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

        results = aio.run(aio.settled(
            replace_one(self.gateways[o.exchange_account_id], o, replacing[o.pk], self.replaced)
            if replacing and o.pk in replacing else self._place_one(o) for o in orders), timeout_secs=60)
        outcomes = []
        acknowledged = []
        for order, result in zip(orders, results, strict=True):
            if isinstance(result, ExchangeOrder):
                if self._acknowledge(order, result, save=False):
                    acknowledged.append(order)
                outcomes.append(PlacementOutcome(order))
            elif isinstance(result, OrderOutcomeUnknownError):
                order.error = str(result)[:500]
                save_fields([order], ["error", "updated_at"])
                outcomes.append(PlacementOutcome(order, OrderPlacementError(f"outcome unknown: {result}")))
            else:
                order.status = OrderStatus.REJECTED
                order.error = f"{type(result).__name__}: {result}"[:500]
                order.closed_at = timezone.now()
                save_fields([order], ["status", "error", "closed_at", "updated_at"])
                outcomes.append(PlacementOutcome(order, OrderPlacementError(
                    f"Failed to place order {order.client_order_id}: {result}")))
        self._ack_rows(acknowledged)
        push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders",
             data={"placed": [self.order_payload(o.order) for o in outcomes if o.error is None]})
        return outcomes

    async def _place_one(self, order: Order) -> ExchangeOrder:
        return await self.gateways[order.exchange_account_id].place_order(request_of(order))

    def apply_answer(self, order: Order, remote: ExchangeOrder) -> bool:
        """The venue's view of one order, looked up by its id (a hedge attempt never answered), on its row."""
        return self._acknowledge(order, remote)

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
            if self.deferred_marks is not None:  # a sync_position writes it with its own Redis round trip
                self.deferred_marks.add(order.position_id)
            else:
                mark_trades_pending(order.position_id)
            self.fills_seen.add(order.position_id)
            self.fill_rows.setdefault(order.position_id, {})[order.client_order_id] = order
        order.filled = max(order.filled, remote_filled)
        order.average_price = remote.average_price
        order.acknowledged_at = order.acknowledged_at or venue_time(remote.timestamp_ms)
        order.missing_count = 0
        after = (order.exchange_order_id, order.status, order.filled, order.average_price, order.missing_count, False)
        if before == after:
            return False
        if order.status not in OPEN_ORDER_STATUSES:
            order.closed_at = order.closed_at or venue_time(remote.updated_ms or remote.timestamp_ms)
            self._closed_by_venue(order)
        if save:
            save_fields([order], ACK_FIELDS)
        return True

    def _closed_by_venue(self, order: Order) -> None:
        """Remember a row the venue's answer closed as filled, cancelled or expired (``closed_by_venue``; the
        last ``CLOSED_MEMORY_SECS`` of them)."""
        if order.status not in VENUE_CLOSED:
            return
        now = time.monotonic()
        closed = self.closed_by_venue
        closed[order.client_order_id] = now
        if len(closed) > 256 and next(iter(closed.values())) < now - CLOSED_MEMORY_SECS:
            self.closed_by_venue = {cid: at for cid, at in closed.items() if at >= now - CLOSED_MEMORY_SECS}

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
        return aio.start(aio.settled(self._cancel_one(o) for o in orders))

    def start_cancels(self, orders: Sequence[Order]) -> concurrent.futures.Future:
        """Mark the rows CANCEL_PENDING and start cancelling on the venue (concurrently, on the I/O
        loop) without waiting for the answers: a re-quote stores its new orders meanwhile, waits for
        these answers before it sends, and hands them to ``settle_cancels`` after. A crash in between
        leaves CANCEL_PENDING rows, which the next sync resolves by client id."""
        mark_cancel_pending([o.pk for o in orders])
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
                    order.closed_at = venue_time(result.updated_ms)
                    self._closed_by_venue(order)
                settled.append(order)
                gone += 1
            elif isinstance(result, OrderNotFoundError):
                gone += self._resolve_missing(order)
            else:
                logger.warning("cancel of %s failed: %s", order.client_order_id, result)
        self._ack_rows(settled)
        push(tenant_id=self.bot.tenant_id, bot_id=self.bot.pk, kind="orders",
             data={"cancelled": [o.client_order_id for o in orders]})
        return gone

    def hold_acks(self) -> None:
        """From now on the venue's answers (placements, cancels) are kept in memory until ``save_held_acks``:
        a re-quote saves every answer of its act (placements and cancels) in one statement, with its event
        (``QuotesMixin._adjust_guarded``). A crash in between
        leaves rows without their answers, which the next sync settles by client id, as after a lost reply."""
        if self.held_acks is None:
            self.held_acks = []

    def save_held_acks(self, event: tuple[str, dict[str, Any]] | None = None) -> None:
        """Save the answers held since ``hold_acks`` (one statement) and stop holding. ``event``: a routine event
        (type, payload) published with them, its summary upsert in the same statement
        (``bots.events.publish_routine_with_saved``)."""
        held, self.held_acks = self.held_acks, None
        rows = list({o.pk: o for o in held}.values()) if held else []  # a row answered twice: saved once
        if event is not None:
            publish_routine_with_saved(bot=self.bot, event_type=event[0], payload=event[1], rows=rows,
                                       fields=ACK_FIELDS)
        elif rows:
            self._save_acks(rows)

    def _ack_rows(self, orders: list[Order]) -> None:
        if self.held_acks is not None:
            self.held_acks.extend(orders)
        else:
            self._save_acks(orders)

    @staticmethod
    def _save_acks(orders: list[Order]) -> None:
        """The venue's answers for several orders in one statement."""
        save_fields(orders, ACK_FIELDS)

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
            save_fields([order], ["missing_count", "status", "closed_at", "updated_at"])
            return 1
        save_fields([order], ["missing_count", "updated_at"])
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
        return {r.client_order_id or "" for (_, r), res in zip(mine, results, strict=True)
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
    counts = []
    swept = aio.run(aio.settled(manager._cancel_listed(list(pairs)) for manager, pairs in sweeps))
    for (manager, _), gone in zip(sweeps, swept, strict=True):
        if isinstance(gone, BaseException):
            logger.warning("kill: the sweep of bot %s failed: %s", manager.bot.pk, gone)
            counts.append(0)
            continue
        manager._settle_swept(gone)
        counts.append(len(gone))
    return counts
