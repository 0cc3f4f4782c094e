"""Cross-venue hedging: each fill of a quote on a hedged maker account is hedged at once by an IOC on the
bot's hedge account (issue 15 item 5; docs/architecture.md, "Cross-venue hedging").

``HedgingMixin`` is part of ``MarketMakingBot``. The fill sync (``fills.py``) stores what a maker fill owes
as a ``Hedge`` row in the fill's own transaction (exactly once per fill); ``run_hedges`` sends it right
after that sync, before the pair is re-quoted, on whichever thread runs the cycle (the driver's pool
thread for a fill sync, a full cycle, the start), under the bot's lease and through the send gate:

* size: the base the fill moved, plus the remainders earlier hedges left below the hedge venue's lot or
  minimum (``risk.hedging.plan``), rounded by ``gateway.quantize`` (the one rounding place);
* price: an IOC limited to the maker fill's price ± ``hedge_max_slippage_bps`` (rounded the safe way);
* client order id: from the fill's venue trade id and the attempt (``client_ids.hedge_client_order_id``),
  stored before it is sent; an attempt stored but never answered is looked up on the venue by that id
  before anything is sent again, so a retried sync or a crash never hedges twice;
* the IOC's fills are synced at once into the hedge account's position (``Fill.is_hedge``): the hedge's
  P&L is booked with the bot's positions.

An IOC that fills less than its size (the book moved beyond the limit) is a slippage breach
(``HEDGE_SLIPPAGE``), a venue that refuses or does not answer a failure (``HEDGE_FAILED``): one risk event
when it starts, and the maker account quotes nothing on that pair (``hedge_halts``, read by the decision:
its quotes are cancelled, none placed) until a retry within the same limit fills the rest (every
``HEDGE_RETRY_SECS``; ``HEDGE_RESOLVED``) or an operator accepts the exposure (``bots.services``). The
halt is the row's status, so it survives a restart of any process.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from bots.engine.bot_state import BotState
from bots.engine.client_ids import hedge_client_order_id
from bots.engine.rows import select_rows
from bots.engine.venues import Slot
from bots.events import publish_event
from bots.models import (
    OPEN_HEDGE_STATUSES,
    OPEN_ORDER_STATUSES,
    BotEventType,
    Hedge,
    HedgeStatus,
    LiquidityPosition,
    Order,
    OrderPurpose,
    OrderStatus,
)
from bots.wire import format_decimal
from mmplatform import aio
from mmplatform.errors import ExchangeError, OrderNotFoundError
from risk import hedging
from risk.models import RiskEvent, RiskEventType

logger = logging.getLogger(__name__)

_HALTING_WHERE = f"bot_id = %s AND status IN ({', '.join(['%s'] * (1 + len(OPEN_HEDGE_STATUSES)))})"
"""A bot's hedges not sent yet or unresolved (``load_hedge_halts``)."""

HEDGE_RETRY_SECS = 5.0
"""An unresolved hedge is tried again this long after its last attempt (same limit: within the slippage)."""

NAN = float("nan")


class HedgingMixin(BotState):
    """Cross-venue hedging of ``MarketMakingBot``."""

    def load_hedge_halts(self) -> None:
        """The maker slots an unresolved hedge halts, and when the next attempt is due (now for a hedge not
        sent yet: one a stop's final sync found, or one whose bot stopped hedging since), from the rows."""
        halts: dict[Slot, str] = {}
        retry_at: float | None = None
        for row in select_rows(Hedge, _HALTING_WHERE, [self.bot_id, HedgeStatus.PENDING, *OPEN_HEDGE_STATUSES],
                               order_by="created_at DESC, id DESC"):  # (the model's ordering; built once)
            if row.status != HedgeStatus.PENDING:
                halts.setdefault((row.maker_account_id, row.trading_pair), self._halt_text(row))
            due = row.next_attempt_at.timestamp() if row.next_attempt_at is not None else 0.0
            retry_at = due if retry_at is None else min(retry_at, due)
        self.hedge_halts = halts
        self.hedge_retry_at = retry_at

    def quotes_on(self, slot: Slot) -> bool:
        """Whether the bot quotes this slot: not on its hedge account, which only hedges."""
        return self.hedge_route is None or self.hedge_route.quotes_on(slot[0])

    def hedge_retry_due(self, now: float) -> bool:
        """An unresolved hedge's retry is due (the driver's quiet check runs a full cycle for it)."""
        return self.hedge_retry_at is not None and now >= self.hedge_retry_at

    def run_hedges(self) -> int:
        """Send every hedge not sent yet and retry the unresolved ones that are due; returns the hedges
        tried. A venue error ends as the hedge's failure (never the cycle's); a fence or a lost lease
        ends the cycle as for any send (the hedge is tried again at the next start)."""
        if self.hedge_route is None and self.hedge_retry_at is None:
            return 0  # no hedging, nothing owed: no query
        now = timezone.now()
        rows = list(Hedge.objects.filter(bot_id=self.bot_id).filter(
            Q(status=HedgeStatus.PENDING) | Q(status__in=OPEN_HEDGE_STATUSES, next_attempt_at__lte=now),
        ).select_related("fill", "order").order_by("pk"))
        if not rows or not self._still_current():
            return 0
        try:
            for row in rows:
                self._hedge(row)
        finally:
            self.load_hedge_halts()
        return len(rows)

    # --- one hedge ---------------------------------------------------------------------------------

    def _hedge(self, row: Hedge) -> None:
        label = self._label(row.hedge_account_id)
        gateway = self.exchanges.get(row.hedge_account_id)
        position = self.active_positions.get((row.hedge_account_id, row.trading_pair))
        if gateway is None or position is None:
            why = "not connected" if gateway is None else f"not trading {row.trading_pair}"
            self._unresolved(row, RiskEventType.HEDGE_FAILED, f"the hedge account {label} is {why}")
            return
        order = row.order
        try:
            if order is not None and order.status in OPEN_ORDER_STATUSES:
                # stored, never answered (a crash, an outcome the venue did not tell): the venue knows by its id
                try:
                    remote = aio.run(gateway.fetch_order(row.trading_pair, client_order_id=order.client_order_id))
                except OrderNotFoundError:
                    remote = None
                if remote is not None:
                    self.order_manager.apply_answer(order, remote)
                    self._book(row, position, order)
                    return
            else:
                order = self._next_attempt(row, position)
                if order is None:
                    return
            outcome = self.order_manager.send([order])[0]
        except ExchangeError as exc:
            self._unresolved(row, RiskEventType.HEDGE_FAILED, f"{label}: {type(exc).__name__}: {exc}")
            return
        if outcome.error is not None:
            refused = order.status == OrderStatus.REJECTED
            why = order.error if refused else f"no answer from {label} ({outcome.error}); looked up by its id next"
            self._unresolved(row, RiskEventType.HEDGE_FAILED, f"{label}: {why}"[:1000])
            return
        self._book(row, position, order)

    def _next_attempt(self, row: Hedge, position: LiquidityPosition) -> Order | None:
        """Size and store the next IOC of this hedge (the first one takes the carried remainders over);
        None when nothing is to be sent (all of it carried, or the rest is below the venue's minimum)."""
        gateway = self.exchanges[row.hedge_account_id]
        rules = gateway.market_rules(row.trading_pair)
        with transaction.atomic():
            Hedge.objects.select_for_update().filter(pk=row.pk).exists()  # one attempt at a time
            row.refresh_from_db()
            if row.status not in (HedgeStatus.PENDING, *OPEN_HEDGE_STATUSES):
                return None  # accepted by an operator meanwhile
            first = not row.side
            carried = list(Hedge.objects.select_for_update().filter(
                bot_id=row.bot_id, trading_pair=row.trading_pair, carried_into__isnull=True).exclude(
                carry_base=0).exclude(pk=row.pk)) if first else []
            if first:
                total = row.need_base + sum((c.carry_base for c in carried), Decimal(0))
            else:
                row.hedged = self._hedged_so_far(row)
                rest = row.amount - row.hedged
                total = rest if row.side == hedging.BUY else -rest
            if total == 0:
                if first:
                    self._carried(row, carried, Decimal(0), first)
                else:  # the earlier attempts filled it all (their answer was saved, not yet booked here)
                    self._settle(row)
                return None
            side = hedging.hedge_side(total)
            limit = row.limit_price if row.limit_price and not first else hedging.limit_price(
                side, row.reference_price, self._slippage_bps())
            price, amount = gateway.quantize(row.trading_pair, side, limit, abs(total))
            plan = hedging.plan(total, rounded_amount=amount, rounded_price=price,
                                min_amount=rules.min_amount, min_notional=rules.min_notional)
            if not plan.send:
                self._carried(row, carried, plan.carry, first)
                return None
            if first:
                row.side, row.amount, row.carry_base, row.limit_price = side, plan.amount, plan.carry, price
                Hedge.objects.filter(pk__in=[c.pk for c in carried]).update(carried_into=row)
            row.attempts += 1
            order, _ = Order.objects.get_or_create(
                client_order_id=hedge_client_order_id(self.bot_id, row.maker_account_id,
                                                      row.fill.exchange_trade_id, row.attempts),
                defaults={"tenant_id": self.bot.tenant_id, "bot": self.bot, "position": position,
                          "exchange_account_id": row.hedge_account_id, "trading_pair": row.trading_pair,
                          "side": side, "order_type": "limit", "time_in_force": "IOC",
                          "purpose": OrderPurpose.HEDGE, "post_only": False, "price": price,
                          "amount": plan.amount, "epoch": self.bot.epoch, "cycle": self.cycle})
            row.order = order
            row.save(update_fields=["side", "amount", "carry_base", "limit_price", "attempts", "order", "hedged"])
        return order

    def _carried(self, row: Hedge, carried: list[Hedge], carry: Decimal, first: bool) -> None:
        """Nothing to send: the rest stays as a carry for the next hedge of the pair (its need and the
        carries it took over, or a retry's unfilled rest below the venue's minimum), and this hedge is done."""
        was_open = row.status in OPEN_HEDGE_STATUSES
        if first:
            Hedge.objects.filter(pk__in=[c.pk for c in carried]).update(carried_into=row)
            row.status = HedgeStatus.CARRIED
            row.carry_base = carry
        else:
            row.amount = row.hedged
            if row.carried_into_id is not None:  # its first remainder went with a later hedge already
                row.carry_base, row.carried_into = carry, None
            else:
                row.carry_base += carry
            row.status = HedgeStatus.HEDGED
        row.reason = "below the hedge venue's lot or minimum: carried to the next fill's hedge"
        row.next_attempt_at = None
        with transaction.atomic():  # the resolved row and its event together (never one without the other)
            row.save(update_fields=["status", "carry_base", "carried_into", "amount", "hedged", "reason",
                                    "next_attempt_at"])
            if was_open:
                self._record_resolved(row, "retry: the rest is below the venue's minimum and carried")

    def _book(self, row: Hedge, position: LiquidityPosition, order: Order) -> None:
        """The IOC answered: its fills into the hedge account's position, then hedged or a slippage breach."""
        if order.status in OPEN_ORDER_STATUSES:  # an IOC the venue left resting: it hedges no further
            self.order_manager.cancel([order])
        if order.filled:
            snapshot = self.snapshots.get((position.exchange_account_id, row.trading_pair))
            mid = snapshot.mid if snapshot is not None and not snapshot.problem() else NAN
            try:
                self.announce_fills(self.order_manager.sync_fills(position, mid=mid))
            except ExchangeError as exc:  # booked by the position's next trade sync
                logger.warning("bot %s: the hedge's fills of %s not read yet: %s", self.bot_id, row.trading_pair, exc)
        self._settle(row)

    def _settle(self, row: Hedge) -> None:
        """Hedged in full by its attempts so far, or a slippage breach for the rest."""
        row.hedged = self._hedged_so_far(row)
        result = hedging.outcome(amount=row.amount, filled=row.hedged, limit=row.limit_price or Decimal(0),
                                 side=row.side)
        if not result.hedged:
            self._unresolved(row, RiskEventType.HEDGE_SLIPPAGE, result.reason)
            return
        was_open = row.status in OPEN_HEDGE_STATUSES
        row.status, row.reason, row.next_attempt_at = HedgeStatus.HEDGED, "", None
        if was_open:
            row.resolved_at, row.resolved_by = timezone.now(), "retry"
        with transaction.atomic():  # the resolved row and its event together (never one without the other)
            row.save(update_fields=["status", "hedged", "reason", "next_attempt_at", "resolved_at", "resolved_by"])
            if was_open:
                self._record_resolved(row, f"a retry filled the rest within the limit {row.limit_price}")

    def _hedged_so_far(self, row: Hedge) -> Decimal:
        """What this hedge's IOCs filled, every attempt (as the venue answered them)."""
        stem = hedge_client_order_id(self.bot_id, row.maker_account_id, row.fill.exchange_trade_id, 1)[:-1]
        total = Order.objects.filter(bot_id=self.bot_id, purpose=OrderPurpose.HEDGE,
                                     client_order_id__startswith=stem).aggregate(total=Sum("filled"))["total"]
        return total or Decimal(0)

    # --- outcomes -------------------------------------------------------------------------------------

    def _unresolved(self, row: Hedge, event_type: str, reason: str) -> None:
        """A slippage breach or a failure: retried later; its maker slot quotes nothing meanwhile. One risk
        event when the hedge becomes unresolved (a retry that fails again updates the reason only)."""
        was_open = row.status in OPEN_HEDGE_STATUSES
        row.status = HedgeStatus.SLIPPAGE if event_type == RiskEventType.HEDGE_SLIPPAGE else HedgeStatus.FAILED
        row.reason = reason[:2000]
        row.next_attempt_at = timezone.now() + timedelta(seconds=HEDGE_RETRY_SECS)
        logger.warning("bot %s: hedge %s unresolved: %s", self.bot_id, row.pk, reason)
        with transaction.atomic():  # the unresolved row and its event together (never one without the other)
            row.save(update_fields=["status", "reason", "next_attempt_at", "hedged"])
            if was_open:
                return
            maker = self._label(row.maker_account_id)
            message = (f"{row.trading_pair}: the hedge of a fill on {maker} is unresolved: {reason}; unhedged "
                       f"{format_decimal(abs(row.open_base))} {row.trading_pair.split('/')[0]}. {maker} quotes nothing "
                       f"on {row.trading_pair} until a retry fills it or an operator accepts the exposure.")
            self._record_hedge_event(row, event_type, message[:2000], "maker_quotes_halted")

    def _record_resolved(self, row: Hedge, how: str) -> None:
        maker = self._label(row.maker_account_id)
        self._record_hedge_event(row, RiskEventType.HEDGE_RESOLVED,
                                 f"{row.trading_pair}: the hedge of a fill on {maker} is done ({how}).",
                                 "maker_quotes_resumed")

    def _record_hedge_event(self, row: Hedge, event_type: str, message: str, action: str) -> None:
        details = {"hedge_id": row.pk, "trade_id": row.fill.exchange_trade_id, "maker_account": self._label(
            row.maker_account_id), "hedge_account": self._label(row.hedge_account_id), "side": row.side,
            "amount": str(row.amount), "hedged": str(row.hedged), "unhedged_base": str(row.open_base),
            "limit_price": str(row.limit_price) if row.limit_price is not None else None, "reason": row.reason}
        RiskEvent.objects.create(tenant_id=self.bot.tenant_id, bot=self.bot, event_type=event_type,
                                 trading_pair=row.trading_pair, message=message, action_taken=action, details=details)
        publish_event(bot=self.bot, event_type=BotEventType.RISK_EVENT_HANDLED, payload={
            "event_type": event_type, "action_taken": action, "trading_pair": row.trading_pair, "message": message})

    # --- helpers --------------------------------------------------------------------------------------

    def _halt_text(self, row: Hedge) -> str:
        kind = "slippage breach" if row.status == HedgeStatus.SLIPPAGE else "hedge failed"
        return (f"{row.trading_pair} @ {self._label(row.maker_account_id)}: {kind}, "
                f"{format_decimal(abs(row.open_base))} {row.trading_pair.split('/')[0]} unhedged: {row.reason}")[:300]

    def _label(self, account_id: int) -> str:
        account = self.accounts.get(account_id)
        return account.label if account is not None else f"account {account_id}"

    def _slippage_bps(self) -> float:
        route = self.hedge_route
        return route.max_slippage_bps if route is not None else float(self.bot.hedge_max_slippage_bps)
