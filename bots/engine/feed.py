"""The feeder: the one writer of the engine driver's market and account data.

A thread of its own (``mm-engine-feeder``) keeps every wanted account view (open orders, balances) and
every quoted pair's shared book fresh, so the driver thread's checks never wait for the venue; the
views and books it publishes are replaced whole, never edited in place (``AccountView`` and the books
are handed over as new objects; a reader keeps the one it got). Pushed best bid/ask streams
(``exchanges.streams``) feed ``Driver.moved``/``Driver.tops``. The read-side helpers (``_book``,
``_snapshot``, ``_analysis``) turn the fed data into the frozen ``MarketSnapshot`` a check decides on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from django.conf import settings

from alerts.hooks import venue_read
from bots.engine.analyses import ANALYSIS_SECS, AnalysisMixin
from bots.engine.bot import MarketMakingBot
from bots.engine.cycle import ORDER_BOOK_DEPTH
from bots.engine.depth import DepthPending
from bots.engine.market_data import (
    BALANCE_SECS,
    AccountView,
    BookData,
    book_from,
    book_reader,
    kept,
    read_shared_books,
    recent_entries,
    shared_book,
    store_books,
    to_snapshot,
    without_own,
)
from bots.engine.order_feed import OrderFeedMixin
from bots.engine.runner import Runner
from bots.engine.shared_views import SharedViews
from bots.engine.venues import exchange_key
from exchanges.gateway import ExchangeGateway
from mmplatform import aio

logger = logging.getLogger(__name__)

SENT_MARGIN_SECS = 0.5
"""An order sent less than this before an account read may not be listed by it yet."""


DEPTH_WITH_STREAM_SECS = 2.0
"""How often the feeder re-reads a pair's depth when the venue pushes its best bid/ask."""


DEPTH_REUSE_SECS = 3.0
"""With a pushed best bid/ask newer than it, a depth read this recent still serves for the deeper levels."""


ACCOUNT_READ_MIN_SECS = 0.25
"""An account is read at most this often (a bot on a 50 ms clock must not have its own account reads
compete with its re-quotes on the I/O loop); quiet checks accept views up to 2 intervals + 1 s old."""


FEED_SECS = 0.02


FEED_MAX_DEFERRALS = 5
"""The feeder holds off at most this many passes in a row for urgent re-quotes."""




def _orders_moved(old: AccountView, new: AccountView) -> bool:
    """A resting order gained fills between two views (so balances moved). An order that left the book
    may just be cancelled (totals unchanged); a filled one is synced by its bot, which flags the view
    ``outdated`` and so has the balances read."""
    for cid, order in new.orders.items():
        before = old.orders.get(cid)
        if before is not None and (order.filled or 0) != (before.filled or 0):
            return True
    return False


def view_limit(interval: float) -> float:
    """An account view older than this is not trusted for a quiet check (a full cycle reads the venue)."""
    return 2 * interval + 1.0


VIEW_BEHIND_SECS = 10.0
"""Under a live order stream, a check whose account view is past ``view_limit`` by at most this waits for the
feeder's next pass (``Verdict("wait", "account view behind")``, checked again every ``VIEW_RETRY_SECS``) instead of
running a full cycle: the view is behind because the process is (the feeder keeps a live view current at each
pass), and a full cycle is the most expensive cycle there is. At calm N=3,000, 179 such full cycles in a 40 s window
put the process further behind. Past this, the full cycle reads the venue as before."""

VIEW_RETRY_SECS = 0.25
"""How soon a check that waits for its account view (``VIEW_BEHIND_SECS``) looks again; the bot stays due at its
original time meanwhile (the wait counts as lag)."""


def _best(levels: list[tuple[float, float]]) -> float | None:
    return levels[0][0] if levels else None  # a side's best price (None: the side is empty)


class FeedMixin(AnalysisMixin, OrderFeedMixin):
    """The driver's feeder thread and the snapshots built from what it fed (part of ``Driver``)."""

    def _books_wanted(self) -> dict[str, tuple[Any, set[str]]]:
        """venue -> (an account of it, pairs quoted there by the bots this driver holds)."""
        wanted: dict[str, tuple[Any, set[str]]] = {}
        for runner in self.runners.values():
            engine = runner.engine
            if engine is None:
                continue
            for position in engine.active_positions.values():
                account = engine.accounts.get(position.exchange_account_id)
                if account is None:
                    continue
                venue = exchange_key(account)
                wanted.setdefault(venue, (account, set()))[1].add(position.trading_pair)
        return wanted

    def _ensure_streams(self) -> None:
        if not settings.ENGINE_BOOK_STREAMS:
            return
        try:
            from exchanges.streams import BookTickerStream
        except ImportError:
            return
        for venue, (account, pairs) in self._books_wanted().items():
            symbols = tuple(sorted(pairs))
            if self.stream_symbols.get(venue) == symbols:
                continue
            old = self.stream_tasks.pop(venue, None)
            if old is not None:
                old.cancel()  # the watcher closes its stream
            stream = BookTickerStream(account.exchange_id, account.api_base_url or None)
            self.stream_tasks[venue] = asyncio.run_coroutine_threadsafe(
                self._watch(venue, stream, symbols), aio.get_loop())
            self.streams[venue] = stream
            self.stream_symbols[venue] = symbols

    def _feed(self) -> None:
        """Keep every account view younger than ~0.9 interval of its fastest bot (right after a fill
        sync: at once) and every quoted pair's shared book younger than MARKET_DATA_CACHE_SECS, so the
        driver thread's checks never wait for the venue."""
        deferred = 0
        next_pass = 0.0
        while not self.stopping.is_set():
            # pushed order updates wake the feeder: applied at once, between the passes too (a fill's check
            # should see it, and the bot is brought forward); the rest of a pass runs every FEED_SECS
            pushed = self.feed_wake.wait(max(next_pass - time.monotonic(), 0.0))
            self.feed_wake.clear()
            if self.stopping.is_set():
                break
            if pushed and time.monotonic() < next_pass:
                self._apply_pushes()
                continue
            if self._urgent and deferred < FEED_MAX_DEFERRALS:
                deferred += 1  # a pushed move's re-quote is in flight: reads wait, they are not urgent
                self._apply_pushes()
            else:
                deferred = 0
                try:
                    self._probe_loop()
                    self._feed_once(time.time())
                    self.feed_stats["feeder_cpu_ms"] = int(1000 * time.thread_time())  # (a gauge: its total so far)
                except Exception:
                    logger.exception("engine driver: feeder pass failed")
                    self.stopping.wait(0.5)
            next_pass = time.monotonic() + FEED_SECS  # (FEED_SECS after a pass ends, as before)

    def _probe_loop(self) -> None:
        """How late the I/O loop runs what is handed to it, counted in the feeder's stats (``loop_probe.py``)."""
        self.loop_probe.run(self.feed_stats)

    def _take_handovers(self) -> None:
        """What other threads handed the feeder: depth they had to read themselves (the newest book wins),
        the balances a fill sync read after its fill (newer than the view's: they replace its balances), and
        accounts a fill sync moved without reading them (their view replaced by one marked ``outdated``)."""
        while self.fresh_books:
            key, fresh = self.fresh_books.popleft()
            held = self._books.get(key)
            if held is None or fresh[1].fetched_at >= held[1].fetched_at:
                self._books[key] = fresh
        while self.fresh_balances:
            account_id, read_at, totals, free = self.fresh_balances.popleft()
            view = self.accounts.get(account_id)
            if view is not None and view.balances_at < read_at:
                self.accounts[account_id] = replace(view, balances=kept(view.balances, totals),
                                                    free=kept(view.free, free), balances_at=read_at,
                                                    balances_pushed=False)
        while self.outdated:
            account_id = self.outdated.popleft()
            view = self.accounts.get(account_id)
            if view is not None and not view.outdated:
                self.accounts[account_id] = replace(view, outdated=True)

    def _feed_once(self, now: float) -> None:
        self._take_handovers()
        resync, self.resync_wanted = self._apply_pushed_orders() | self.resync_wanted, set()
        stale: dict[int, ExchangeGateway] = {}
        balances: dict[int, ExchangeGateway] = {}
        for account_id, (gateway, every) in list(self.wanted_accounts.items()):
            view = self.accounts.get(account_id)
            if view is None or account_id in resync:
                stale[account_id] = gateway
            elif self._order_stream_live(account_id):
                if now - view.read_at >= settings.ENGINE_ACCOUNT_RECONCILE_SECS:
                    stale[account_id] = gateway  # the slow REST reconciliation under the pushes
                else:  # every update up to now was pushed and applied: the view is current
                    self.accounts[account_id] = replace(view, taken_at=now)
                    if view.outdated:  # a fill sync moved the balances: those alone are read
                        balances[account_id] = gateway
            elif view.outdated or now - view.taken_at >= every:
                stale[account_id] = gateway
        if stale:
            self._read_accounts(stale)
        if balances:
            self._read_balances(balances)
        due: list[tuple[str, str, ExchangeGateway, float]] = []
        for (venue, pair), gateway in list(self.wanted_books.items()):
            held = self._books.get((venue, pair))
            streaming = venue in self.stream_tasks and not self.stream_tasks[venue].done()
            # with the top of book pushed, the depth (for the liquidity estimate) is read less often
            max_age = DEPTH_WITH_STREAM_SECS if streaming else settings.MARKET_DATA_CACHE_SECS
            if held is None or time.time() - held[1].fetched_at >= max_age:
                due.append((venue, pair, gateway, max_age))
        if due:
            self._read_books(due)
        if time.time() - self.mids_read_at >= ANALYSIS_SECS and self.wanted_books:
            self._read_mids()

    def _read_books(self, due: list[tuple[str, str, ExchangeGateway, float]]) -> None:
        """The depth of many pairs: a book another process (or host) read within its ``max_age`` serves as it
        is, the rest are read at once and shared through Redis. Every worker process used to read each book
        itself: at calm N=2,500, two processes' depth reads were ~27 % of the I/O loop's share of the GIL."""
        now = time.time()
        shared = read_shared_books([(venue, pair) for venue, pair, _, _ in due])
        unread = []
        for venue, pair, gateway, max_age in due:
            book = shared.get((venue, pair))
            held = self._books.get((venue, pair))
            if book is not None and now - book.fetched_at < max_age and (
                    held is None or book.fetched_at > held[1].fetched_at):
                self._books[(venue, pair)] = (book.fetched_at, book)
                self.feed_stats["books_shared"] += 1
            else:
                unread.append((venue, pair, gateway))
        if not unread:
            return
        self.feed_stats["books_read"] += len(unread)
        read = []
        depths = aio.run(aio.settled(g.fetch_order_book(p, ORDER_BOOK_DEPTH) for _, p, g in unread))
        for (venue, pair, _), raw in zip(unread, depths, strict=True):
            if isinstance(raw, BaseException):
                logger.info("engine driver: depth read of %s on %s failed: %s", pair, venue, raw)
                continue
            book = book_from(raw)
            self._books[(venue, pair)] = (book.fetched_at, book)
            read.append((venue, pair, book))
        if read:
            store_books(read)

    def _read_accounts(self, stale: dict[int, ExchangeGateway]) -> None:
        """One open-orders read per account (all accounts concurrently); then a balance read for those
        whose orders changed (a fill moves balances), that a fill sync flagged, or whose balances are
        older than BALANCE_SECS (deposits, withdrawals, fees)."""
        taken = time.time()
        self.feed_stats["account_reads"] += len(stale)  # REST open-orders reads (the bench reports them per second)
        listed = aio.run(aio.settled([g.fetch_open_orders(None) for g in stale.values()]))
        views: dict[int, AccountView] = {}
        for account_id, result in zip(stale, listed, strict=True):
            if isinstance(result, BaseException):
                logger.info("engine driver: account %s read failed: %s", account_id, result)
                self.accounts.pop(account_id, None)  # its bots run full cycles until it reads again
                venue_read(account_id, f"{type(result).__name__}: {result}")
                continue
            venue_read(account_id, None)
            old = self.accounts.get(account_id)
            orders = {o.client_order_id: o for o in result if o.client_order_id}
            orders = kept(old.orders, orders) if old is not None else orders
            view = AccountView(taken_at=taken, orders=orders, balances=old.balances if old else {},
                               balances_at=old.balances_at if old else 0.0, free=old.free if old else {},
                               read_at=taken, closed=recent_entries(old.closed, taken) if old else {},
                               trades=recent_entries(old.trades, taken) if old else {},
                               pushed_at=old.pushed_at if old else 0.0,
                               balances_pushed=old.balances_pushed if old else False)
            # orders that moved moved the balances too, unless the venue pushed them after every update
            if (old is None or old.outdated or taken - old.balances_at >= BALANCE_SECS
                    or (_orders_moved(old, view) and not old.balances_pushed)):
                view = replace(view, balances_at=-1.0, balances_pushed=False)  # to read
            views[account_id] = view
        wanted = [a for a, v in views.items() if v.balances_at < 0]
        read = aio.run(aio.settled([stale[a].fetch_balance() for a in wanted])) if wanted else []
        for account_id, result in zip(wanted, read, strict=True):
            if isinstance(result, BaseException):
                logger.info("engine driver: account %s balance read failed: %s", account_id, result)
                views.pop(account_id)
                self.accounts.pop(account_id, None)
                continue
            view = views[account_id]
            views[account_id] = replace(view, balances_at=taken, balances=kept(view.balances, result.totals()),
                                        free=kept(view.free, result.free_amounts()))
        self.accounts.update(views)

    def _read_balances(self, accounts: dict[int, ExchangeGateway]) -> None:
        """Only the balances of these accounts (a fill sync moved them; their open orders are pushed, so
        the view's orders are current): the view keeps its orders, gets new balances."""
        taken = time.time()
        self.feed_stats["balance_reads"] += len(accounts)
        read = aio.run(aio.settled([g.fetch_balance() for g in accounts.values()]))
        for account_id, result in zip(accounts, read, strict=True):
            view = self.accounts.get(account_id)
            if view is None:
                continue
            if isinstance(result, BaseException):
                logger.info("engine driver: account %s balance read failed: %s", account_id, result)
                self.accounts.pop(account_id, None)  # read whole at the next pass
                continue
            self.accounts[account_id] = replace(view, outdated=False, balances_at=taken, balances_pushed=False,
                                                balances=kept(view.balances, result.totals()),
                                                free=kept(view.free, result.free_amounts()))

    def _want(self, runner: Runner, engine: MarketMakingBot) -> None:
        """Tell the feeder what this bot needs read: its accounts and its pairs' books."""
        every = max(runner.interval * 0.9, ACCOUNT_READ_MIN_SECS)
        for account_id, gateway in engine.exchanges.items():
            held = self.wanted_accounts.get(account_id)
            if held is None or every < held[1]:
                self.wanted_accounts[account_id] = (gateway, every)
        for position in engine.active_positions.values():
            book_gateway = engine.exchanges.get(position.exchange_account_id)
            if book_gateway is not None:
                self.wanted_books.setdefault(
                    (exchange_key(engine.accounts[position.exchange_account_id]), position.trading_pair),
                    book_gateway)

    def _book(self, engine: MarketMakingBot, account_id: int, pair: str,
              books: dict[tuple[str, str], BookData], fresh: dict[tuple[str, str], BookData] | None = None) -> BookData:
        """``fresh``: the driver thread's own depth reads (depth.py), newer than the feeder's until it took them."""
        venue = exchange_key(engine.accounts[account_id])
        book = books.get((venue, pair))
        if book is None:
            held = self._books.get((venue, pair))
            mine = fresh.get((venue, pair)) if fresh else None
            if mine is not None and (held is None or mine.fetched_at > held[1].fetched_at):
                held = (mine.fetched_at, mine)
            top = self.tops.get((venue, pair))
            if held is not None and time.time() - held[1].fetched_at < settings.MARKET_DATA_CACHE_SECS + FEED_SECS:
                book = held[1]  # the feeder keeps it fresh: no read on the driver thread
            elif top is not None and held is not None and time.time() - held[1].fetched_at < DEPTH_REUSE_SECS:
                book = held[1]  # a fresher pushed top goes on a recent depth read
            else:  # nothing recent yet (a new pair, or the feeder is behind): read it here
                book = shared_book(venue, pair, book_reader(engine.exchanges[account_id], pair, ORDER_BOOK_DEPTH))
                self.fresh_books.append(((venue, pair), (time.time(), book)))  # the feeder keeps it
            if top is not None and top[4] > book.fetched_at:
                # the pushed best bid/ask is newer than the last depth read: it replaces the top of
                # book (deeper levels that it crossed are dropped)
                bid, bid_size, ask, ask_size, received_at = top
                book = BookData([(bid, bid_size), *(level for level in book.bids if level[0] < bid)],
                                [(ask, ask_size), *(level for level in book.asks if level[0] > ask)], received_at)
            books[(venue, pair)] = book
        return book

    def _snapshot(self, runner: Runner, engine: MarketMakingBot, position: Any,
                  books: dict[tuple[str, str], BookData], now: float, shared: SharedViews | None = None,
                  seen: dict[Any, tuple] | None = None, same: dict[Any, tuple] | None = None) -> Any:
        """The bot's strategy snapshot of a pair: the shared book (pushed top on the feeder's depth)
        less the bot's own resting orders. Records the book's time for the staleness check. ``shared``:
        the driver thread's shared views (its checks; a pool thread's fill sync passes none). ``seen``:
        gets the book it is built from (``QuietInputs.books``); when that equals the slot's entry in
        ``same`` (the book a quiet check decided on, the bot's orders unchanged since), the engine's
        snapshot is taken again as it is, at ``now``."""
        pair = position.trading_pair
        account_id = position.exchange_account_id
        book = self._book(engine, account_id, pair, books, self.depth.fresh if shared is not None else None)
        venue = exchange_key(engine.accounts[account_id])
        top = self.tops.get((venue, pair))
        merged = top is not None and book.fetched_at == top[4]  # a pushed top on older depth (``_book``)
        if seen is not None:
            slot = (account_id, pair)
            keyed = self._book_keys.get((venue, pair))
            if keyed is None or keyed[0] is not book:  # (the bots of a pair share the tick's book: one key)
                keyed = self._book_keys[(venue, pair)] = (book, (tuple(book.bids), tuple(book.asks), merged))
            seen[slot] = key = keyed[1]
            held = engine.snapshots.get(slot)
            if same is not None and held is not None and same.get(slot) == key:
                snapshot = replace(held, now=now)  # the same book less the same orders: the same snapshot
                engine.observe_market(slot, snapshot, book.fetched_at)
                return snapshot
        own = [(o.side, float(o.price), float(o.amount - o.filled)) for o in runner.live.get(position.pk, [])]
        market = shared.book((venue, pair), book).without_own(own) if shared is not None else without_own(book, own)
        if merged and (_best(market.bids) != _best(book.bids) or _best(market.asks) != _best(book.asks)):
            # our own order was the pushed top, alone at its price (others left on the level: the best price
            # stands): the levels behind it come from an older depth read and may be from before a move, so read
            # the depth now rather than quote off a stale level (the driver thread on the loop: depth.py)
            if shared is not None:
                self.depth.start((venue, pair), engine.exchanges[account_id], ORDER_BOOK_DEPTH, runner.bot_id)
                raise DepthPending(venue, pair)
            book = book_reader(engine.exchanges[account_id], pair, ORDER_BOOK_DEPTH)()
            store_books([(venue, pair, book)])
            self.fresh_books.append(((venue, pair), (book.fetched_at, book)))  # the feeder keeps it
            books[(venue, pair)] = book
            market = without_own(book, own)
        gateway = engine.exchanges[account_id]
        if shared is not None:
            tick_size, lot_size, min_notional = shared.rules(gateway, account_id, pair)
        else:
            rules = gateway.market_rules(pair)
            tick_size, lot_size = float(rules.tick_size), float(rules.lot_size)
            min_notional = float(rules.min_notional or 0)
        snapshot = to_snapshot(pair, market, tick_size=tick_size, lot_size=lot_size, min_notional=min_notional,
                               now=now)
        engine.observe_market((account_id, pair), snapshot, book.fetched_at)
        return snapshot

    async def _watch(self, venue: str, stream: Any, symbols: tuple[str, ...]) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                updates = await stream.watch(list(symbols))
                backoff = 0.1
            except asyncio.CancelledError:
                await stream.close()
                raise
            except Exception as exc:
                logger.info("engine driver: book stream %s: %s", venue, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            woke = False
            for quote in updates:
                bid, ask = float(quote.bid), float(quote.ask)
                if bid > 0 and ask > 0:
                    self.tops[(venue, quote.symbol)] = (bid, float(quote.bid_size), ask, float(quote.ask_size),
                                                        quote.received_at)
                    self.moved.append((venue, quote.symbol, (bid + ask) / 2))
                    woke = True
            if woke:
                self.wake.set()
