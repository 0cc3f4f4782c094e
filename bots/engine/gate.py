"""What lets a cycle send: the send gate (the bot's fence and the cycle's lease, checked in one Redis step
right before any order leaves, which also releases a quote guard handed to it), the check before new rows
are stored, and the begin and end of a cycle on the engine kept from the last full one (``GateMixin``,
part of ``MarketMakingBot``)."""

from __future__ import annotations

from typing import Any

from bots.engine.bot_state import BotState, CycleReport
from bots.engine.lease import FencedError, LeaseLostError, check_send
from bots.engine.self_trades import QuoteGuard
from bots.engine.trade_marks import trades_synced_in
from bots.models import Bot, BotStatus
from mmplatform.redis_client import WriteBatch


class GateMixin(BotState):
    """The send gate and a kept cycle's begin and end (part of ``MarketMakingBot``)."""

    def begin_kept_cycle(self, lease: Any) -> None:
        """A cycle on this engine kept from the last full one (a re-quote, a fill sync, a snapshot) starts
        under ``lease``: a fresh report, no rows stored yet."""
        self.lease = lease
        self.report = CycleReport()
        self.order_manager.reset_stored()
        self.performance_tracker.begin_batch()

    def fenced_cycle(self, cycle: int) -> None:
        """The cycle was numbered and fenced in one statement (``begin_fenced_cycle``)."""
        self.cycle = cycle
        self.fenced_at_begin = True

    def end_kept_cycle(self) -> WriteBatch:
        """The cycle on the kept engine ended: returns its Redis writes still to send (its quote-uptime
        counts, the trades-pending marks of the positions whose pushed trades it booked), which the caller sends
        with the cycle's record and its lease's release (one round trip)."""
        self.fenced_at_begin = False
        self.balance_read = None  # a read a failed sync never took in is dropped, never applied later
        self.guard_at_send = None
        batch = self.performance_tracker.take_batch()
        for position_id in self.order_manager.take_synced_marks():
            trades_synced_in(batch, position_id)
        return batch

    def _check_send(self) -> None:
        """The send gate (``OrderManager.send`` calls it right before any order leaves): the bot's
        sends are not fenced at this epoch (kill, stop, pause) and this cycle still holds its lease
        (extended here), in one atomic Redis step, which also releases the quote guard handed to it
        (``_release_at_send``). Raises FencedError / LeaseLostError."""
        guard, self.guard_at_send = self.guard_at_send, None
        if guard is None:
            check_send(self.bot, self.bot.epoch, self.lease)
            return
        try:
            check_send(self.bot, self.bot.epoch, self.lease, release=guard.handed_over())
        except (FencedError, LeaseLostError):
            guard.released_elsewhere()  # the step ran (and deleted the guard) before it refused
            raise
        guard.released_elsewhere()  # (another failure leaves it held: the cycle's release deletes it)

    def _release_at_send(self, guard: QuoteGuard) -> None:
        """The new rows are stored: another bot of this process waiting for the guard takes it at once
        (``QuoteGuard.hand_over_locally``); otherwise the guard goes in the send gate's own Redis step (one
        round trip fewer); if no gate runs (nothing to send), ``_adjust_orders`` releases it as before."""
        if not guard.hand_over_locally():
            self.guard_at_send = guard

    def _still_current(self) -> bool:
        """Before storing new orders: the bot is still running at this epoch (the row: kill/stop/pause)
        and not fenced, and this cycle holds the lease. The send gate checks fence and lease again
        right before the orders leave."""
        if self.fenced_at_begin:  # begin_fenced_cycle checked the row in this cycle's first statement
            return True
        try:
            self._check_send()
        except FencedError:
            return False
        return Bot.objects.filter(
            pk=self.bot_id, epoch=self.bot.epoch, status__in=(BotStatus.RUNNING, BotStatus.STARTING),
            kill_switch_engaged=False, tenant__kill_switch_engaged=False,
        ).exists()
