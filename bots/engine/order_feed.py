"""Pushed order updates (the venue's user-data stream): one watcher per wanted account on the I/O loop, the
feeder applying what they push to the account views.

* ``_ensure_order_streams`` (driver thread): a watcher per wanted account whose venue pushes
  (``ENGINE_ORDER_STREAMS``), stopped for accounts no longer wanted.
* ``_watch_orders`` (I/O loop): subscribe, have the feeder read the account by REST once, then hand every
  pushed batch to the feeder (``pushed_orders``) and wake it (``feed_wake``).
* ``_apply_pushed_orders`` / ``_apply_pushes`` (feeder thread, the views' one writer): new views with the pushed
  orders, final states, trades and balances (``AccountView.balances_pushed``: the balances came after every update,
  so a fill sync takes them instead of a REST read); the bots whose orders traded go to the driver
  (``traded_bots``), which checks them at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.conf import settings

from bots.engine.driver_state import DriverState
from bots.engine.market_data import kept, recent_entries
from bots.engine.shared_views import bot_key
from exchanges.gateway import ExchangeOrder, Trade
from mmplatform import aio

logger = logging.getLogger(__name__)

ORDER_STREAM_BACKOFF_MAX_SECS = 5.0
"""A dropped order stream is subscribed again after a back-off doubling from 0.1 s up to this."""


class OrderFeedMixin(DriverState):
    def _ensure_order_streams(self) -> None:
        """One order-update stream per wanted account whose venue pushes them (ENGINE_ORDER_STREAMS);
        streams of accounts no longer wanted are closed."""
        if not settings.ENGINE_ORDER_STREAMS:
            return
        from exchanges.streams import OrderUpdateStream

        for account_id, (gateway, task) in list(self.order_stream_tasks.items()):
            wanted = self.wanted_accounts.get(account_id)
            if wanted is None or wanted[0] is not gateway:  # not wanted, or a new gateway (rotated keys)
                del self.order_stream_tasks[account_id]
                task.cancel()  # its watcher marks the account not live as it ends (the flag's one writer)
        for account_id, (gateway, _) in list(self.wanted_accounts.items()):
            held = self.order_stream_tasks.get(account_id)
            if held is not None and not held[1].done():
                continue
            if OrderUpdateStream.config_of(gateway) is None:
                continue
            self.order_stream_tasks[account_id] = (gateway, asyncio.run_coroutine_threadsafe(
                self._watch_orders(account_id, OrderUpdateStream(gateway)), aio.get_loop()))

    def _order_stream_live(self, account_id: int) -> bool:
        return account_id in self.order_streams_live

    async def _watch_orders(self, account_id: int, stream: Any) -> None:
        """On the I/O loop: subscribe, have the feeder read the account once (what happened before the
        subscription is not pushed), then hand every pushed batch to the feeder thread (the views'
        one writer). A drop: not live (the feeder polls again), back off, subscribe again."""
        backoff = 0.1
        try:
            while not self.stopping.is_set():
                try:
                    await stream.subscribe()
                    self.pushed_orders.append((account_id, None))  # read the account by REST now
                    self.order_streams_live.add(account_id)
                    backoff = 0.1
                    while not self.stopping.is_set():
                        updates = await stream.watch()
                        self.pushed_orders.append((account_id, updates))
                        self.feed_wake.set()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.order_streams_live.discard(account_id)
                    self.pushed_orders.append((account_id, None))
                    logger.info("engine driver: order stream of account %s: %s", account_id, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, ORDER_STREAM_BACKOFF_MAX_SECS)
        finally:
            self.order_streams_live.discard(account_id)
            await stream.close()

    def _apply_pushed_orders(self) -> set[int]:
        """Apply the pushed order updates and trades to the account views (new views; an open order replaces
        its entry, a closed one leaves; a trade joins ``trades``); returns the accounts to read by REST now
        (just subscribed or dropped)."""
        resync: set[int] = set()
        changed: dict[int, dict[str, ExchangeOrder]] = {}
        ended: dict[int, dict[str, tuple[float, ExchangeOrder]]] = {}
        traded: dict[int, dict[str, tuple[float, Trade]]] = {}
        balanced: dict[int, tuple[dict[str, Decimal], dict[str, Decimal], bool]] = {}  # totals, free, pushed last
        now = time.time()
        while self.pushed_orders:
            account_id, updates = self.pushed_orders.popleft()
            if updates is None:
                resync.add(account_id)
                continue
            self.feed_stats["order_pushes"] += len(updates.orders)
            self.feed_stats["trade_pushes"] += len(updates.trades)
            view = self.accounts.get(account_id)
            if view is None:
                continue  # not read yet: the REST read that follows the subscription lists them
            if updates.orders and account_id not in changed:  # (the orders dict is new only when they moved)
                changed[account_id] = dict(view.orders)
                ended[account_id] = dict(recent_entries(view.closed, now))
            for order in updates.orders:
                if not order.client_order_id:
                    continue
                if order.is_open:
                    changed[account_id][order.client_order_id] = order
                else:
                    changed[account_id].pop(order.client_order_id, None)
                    ended[account_id][order.client_order_id] = (now, order)
            if updates.trades and account_id not in traded:
                traded[account_id] = dict(recent_entries(view.trades, now))
            for trade in updates.trades:
                traded[account_id][trade.trade_id] = (now, trade)
                bot = bot_key(trade.client_order_id or "")
                if bot is not None and bot.isdigit():
                    self.traded_bots.append(int(bot))  # checked at once (its fill sync): ``Driver._bring_traded``
            if updates.orders or updates.trades or updates.balances:
                totals, free, _ = balanced.get(account_id) or (dict(view.balances), dict(view.free), False)
                for pushed in updates.balances:
                    for asset, (available, locked) in pushed.items():
                        totals[asset], free[asset] = available + locked, available
                # current only when balances came after every update of the batch
                balanced[account_id] = (totals, free, updates.balances_last)
        for account_id in changed.keys() | traded.keys() | balanced.keys():
            view = self.accounts.get(account_id)
            if view is None:
                continue
            if account_id in changed:
                view = replace(view, orders=changed[account_id], closed=ended[account_id])
            if account_id in traded:
                view = replace(view, trades=traded[account_id])
            if account_id in balanced:
                totals, free, current = balanced[account_id]
                if totals != view.balances or free != view.free:
                    view = replace(view, balances=kept(view.balances, totals), free=kept(view.free, free),
                                   balances_at=now)
                view = replace(view, balances_pushed=current)
            self.accounts[account_id] = replace(view, pushed_at=now)
        if self.traded_bots:
            self.wake.set()
        return resync

    def _apply_pushes(self) -> None:
        """Between the feeder's passes: the pushed order updates applied (the accounts they say to read by REST
        wait for the next pass)."""
        try:
            self.resync_wanted |= self._apply_pushed_orders()
        except Exception:
            logger.exception("engine driver: pushed order updates not applied")
