"""A re-quote's act at the venue: how its new quotes take the old ones' place (``ActsMixin``, part of
``MarketMakingBot``; ``QuotesMixin._adjust_guarded`` decides, then calls ``_act``). The first that applies:

* **cancel-replace** (``_replace_quotes``): the venue cancels and places in one request (``Venue.cancel_replace``)
  and every new quote has an old one of its side to replace, none crossing an old quote of the other side
  (``strategies.requote_order.replacements``): one request per new quote, sent concurrently, a new quote
  without an old one (a fill sync re-quoting the side that filled) placed and the old quotes left unpaired
  cancelled alongside. Half the requests of a cancel and a placement and one round trip, the side never
  empty and no funds held twice (``bots/engine/replacing.py`` settles both halves). ``ENGINE_CANCEL_REPLACE``
  off: never.
* **place first** (``_place_then_cancel``): the new quotes, then the old ones' cancels, where the free balances
  hold both for a moment and nothing new crosses an old quote (``ENGINE_PLACE_FIRST``).
* **cancel first** (``_cancel_then_place``): the old quotes' cancels (some the driver may have sent already, at
  decision time), then the new quotes once they are answered.

The answers of every act are held by the caller and saved in one statement at its end.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from bots.engine.bot_state import BotState
from bots.engine.self_trades import QuoteGuard
from bots.models import LiquidityPosition, Order
from strategies import requote_order
from strategies.types import OrderIntent


def _old_quotes(to_cancel: list[Order]) -> list[requote_order.OldQuote]:
    return [(o.side, float(o.price), float(o.amount - o.filled)) for o in to_cancel]


class ActsMixin(BotState):
    def _act(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order],
             sent_cancels: tuple[list[Order], Any] | None, guard: QuoteGuard) -> int:
        """Send the re-quote: cancel-replace, place first or cancel first (module docstring); returns the number
        of new orders the venue accepted."""
        if sent_cancels is None:
            replaced = self.replacements(position, place, to_cancel)
            if replaced is not None:
                return self._replace_quotes(position, place, to_cancel, replaced, guard)
            if self.place_first_ok(position, place, to_cancel):
                return self._place_then_cancel(position, place, to_cancel, guard)
        return self._cancel_then_place(position, place, to_cancel, sent_cancels, guard)

    def keeps_old_quotes(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order]) -> bool:
        """The re-quote's act sends the old quotes' cancels itself (cancel-replace, place first): the engine driver
        does not send them at decision time."""
        return self.replacements(position, place, to_cancel) is not None or self.place_first_ok(
            position, place, to_cancel)

    def replacements(self, position: LiquidityPosition, place: list[OrderIntent],
                     to_cancel: list[Order]) -> list[Order | None] | None:
        """The old row each new quote replaces in one request, in ``place``'s order (None: placed on its own); None:
        not by cancel-replace (off, the venue has none, or ``requote_order.replacements`` says no)."""
        if not settings.ENGINE_CANCEL_REPLACE or not place or not to_cancel:
            return None
        venue = getattr(self.exchanges.get(position.exchange_account_id), "venue", None)
        if getattr(venue, "cancel_replace", None) is None:
            return None
        paired = requote_order.replacements(place, _old_quotes(to_cancel))
        return None if paired is None else [None if i is None else to_cancel[i] for i in paired]

    def place_first_ok(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order]) -> bool:
        """A re-quote places its new orders before cancelling the old ones (each side stays covered) when
        the account's free balances hold both for a moment and nothing new crosses an old quote
        (``strategies.requote_order``); ENGINE_PLACE_FIRST off: always cancel first."""
        if not settings.ENGINE_PLACE_FIRST or not place or not to_cancel:
            return False
        free = self.inventory_manager.free.get(position.exchange_account_id)
        if not free:
            return False
        base, quote = position.trading_pair.split("/")
        return requote_order.place_first(
            place, _old_quotes(to_cancel), free_base=float(free[base]) if base in free else None,
            free_quote=float(free[quote]) if quote in free else None, margin=settings.ENGINE_PLACE_FIRST_MARGIN)

    def _replace_quotes(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order],
                        replaced: list[Order | None], guard: QuoteGuard) -> int:
        """Each new quote replaces its old one (``replaced``, in ``place``'s order) in one request through the
        send gate, a new quote without one (None) is placed alongside; the old quotes without a new one are
        cancelled at once. An old quote whose replacement never left (a fenced bot, a cycle no longer current) or
        whose request's outcome stayed unknown is cancelled on its own afterwards (an unknown one the venue did
        replace is then looked up: ``_resolve_missing``), as the place-first path cancels whatever became of its
        placements. ``guard`` is released once the new rows are stored."""
        manager = self.order_manager
        paired = {o.pk for o in replaced if o is not None}
        alone = [o for o in to_cancel if o.pk not in paired]
        flying = manager.cancel_requests(alone) if alone else None
        manager.replaced = []
        placed = 0
        try:
            placed = self._place_order(position, place, before_send=lambda: self._release_at_send(guard),
                                       replacing=replaced)
        finally:
            answered = list(manager.replaced)
            done = {o.pk for o, _ in answered}
            rest = [o for o in replaced if o is not None and o.pk not in done]
            rows = [o for o, _ in answered] + alone + rest
            results = [r for _, r in answered] + (flying.result(60) if flying is not None else [])
            results += manager.cancel_requests(rest).result(60) if rest else []
            self.report.cancelled += manager.settle_cancels(rows, results)
        return placed

    def _place_then_cancel(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order],
                           guard: QuoteGuard) -> int:
        """The new quotes first (stored, fenced, sent, answered), then the old ones' cancels: each side
        keeps a resting order throughout. The cancels go whatever became of the placements (a fenced
        bot's old quotes are cancelled all the same); no CANCEL_PENDING mark (a statement on the path):
        a crash before the answers are settled leaves OPEN rows off the book, which the next sync
        settles by client id. ``guard`` (no self-trades) is released once the new rows are stored. The answers
        are held by the caller (``_adjust_guarded``)."""
        placed = 0
        try:
            placed = self._place_order(position, place, before_send=lambda: self._release_at_send(guard))
        finally:
            results = self.order_manager.cancel_requests(to_cancel).result(60)
            self.report.cancelled += self.order_manager.settle_cancels(to_cancel, results)
        return placed

    def _cancel_then_place(self, position: LiquidityPosition, place: list[OrderIntent], to_cancel: list[Order],
                           sent_cancels: tuple[list[Order], Any] | None, guard: QuoteGuard) -> int:
        """The old quotes' cancels fly while the new orders are stored; nothing is sent before the venue
        answered them (the side is empty in between: used when placing first is not safe). ``guard``
        (no self-trades) is released once the new rows are stored."""
        flying: list[tuple[list[Order], Any]] = []
        if sent_cancels is not None:
            # sent by the engine driver when it decided this re-quote; not marked CANCEL_PENDING first
            # (a round trip on the re-quote's path): settled below, and a crash before that leaves
            # OPEN rows that are off the book, which the next sync settles by client id
            flying.append(sent_cancels)
        already = {o.client_order_id for o in sent_cancels[0]} if sent_cancels is not None else set()
        rest = [o for o in to_cancel if o.client_order_id not in already]
        if rest:
            flying.append((rest, self.order_manager.start_cancels(rest)))
        to_cancel = [o for rows, _ in flying for o in rows]
        cancel_results: list[Any] = []

        def cancels_answered() -> None:
            if flying and not cancel_results:
                for _, future in flying:
                    cancel_results.extend(future.result(60))

        def stored() -> None:  # the new rows are committed: other bots of the account see them now
            if flying:  # (not held while the cancels are awaited)
                guard.release()
                cancels_answered()
            else:
                self._release_at_send(guard)

        placed = 0
        try:
            placed = self._place_order(position, place, before_send=stored)
        finally:
            if to_cancel:  # the rows learn the venue's answers after the new quotes are out
                cancels_answered()
                self.report.cancelled += self.order_manager.settle_cancels(to_cancel, cancel_results)
        return placed
