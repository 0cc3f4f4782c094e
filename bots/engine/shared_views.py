"""What every bot of one exchange account or one venue's pair shares in a quiet check, built once per
version of its input and handed to each bot, instead of once per bot and tick.

The driver thread alone holds a ``SharedViews`` (``Driver.shared``) and alone calls it, from its checks
(``VerdictMixin._check`` and the read-side helpers it calls); a pool thread's fill sync builds its own
snapshot without it. A version is the identity of the immutable input: the feeder replaces an account
view's ``orders`` dict whole when an order changes (a pushed update, a REST read) and a book whole when
it reads one or a pushed best bid/ask lands, so "the same object" is "nothing changed". Every entry
keeps a reference to the object it was built from, so an identity is never reused while cached.

* ``AccountIndex`` — one account view's open orders grouped by the bot whose client id they carry (a
  bot's stray-order scan reads its own group instead of the account's every order) and, per pair, the
  account's resting orders with their owners (``self_trades.from_view`` for every bot at once: each bot
  takes them less its own);
* ``BookIndex`` — one book with a price -> level index, so taking a bot's own orders out of it
  (``market_data.without_own``) patches those levels instead of rebuilding every level;
* the venue rules of a pair as floats, and the strategy settings' token in the shared analyses' key
  (hashing the settings once per engine, not once per check).

Equal results, not approximations: ``tests/bots/test_shared_views.py`` holds each against the function
it stands for, and the check builds each shared view once per (account, pair) and version.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from bots.engine.market_data import BookData, without_own
from bots.engine.self_trades import resting_of
from exchanges.gateway import ExchangeOrder
from risk.checks import RestingOrder

MAX_ENTRIES = 10_000
"""A cache this large is emptied (accounts, books and settings that left are forgotten that way)."""


def bot_key(cid: str) -> str | None:
    """The bot id text of an engine client id (``mm-<bot>-...``; ``client_ids.client_order_id``), else None:
    ``cid.startswith(client_id_prefix(b))`` exactly when ``bot_key(cid) == str(b)``."""
    if not cid.startswith("mm-"):
        return None
    head, sep, _ = cid[3:].partition("-")
    return head if sep else None


class AccountIndex:
    """One account view's orders (``AccountView.orders``, client id -> order), grouped once."""

    __slots__ = ("_others", "_resting", "by_bot", "orders")

    def __init__(self, orders: Mapping[str, ExchangeOrder]):
        self.orders = orders
        by_bot: dict[str, list[str]] = {}
        for cid in orders:
            key = bot_key(cid)
            if key is not None:
                by_bot.setdefault(key, []).append(cid)
        self.by_bot = by_bot  # bot id text -> its client ids, in the view's order
        self._resting: dict[str, list[tuple[str | None, RestingOrder]]] = {}
        self._others: dict[tuple[int, str], tuple[RestingOrder, ...]] = {}  # a bot checked again on this view

    def own(self, bot_id: int) -> list[str]:
        """The client ids of ``bot_id``'s orders the venue lists, in the view's order."""
        return self.by_bot.get(str(bot_id), [])

    def resting(self, pair: str) -> list[tuple[str | None, RestingOrder]]:
        """The account's orders on ``pair`` as the no-self-trade check reads them, each with its bot key."""
        held = self._resting.get(pair)
        if held is None:
            held = self._resting[pair] = [
                (bot_key(order.client_order_id or ""), resting_of(order)) for order in self.orders.values()
                if order.pair == pair and order.price is not None]
        return held

    def others(self, bot_id: int, pair: str) -> tuple[RestingOrder, ...]:
        """``self_trades.from_view(bot_id, orders, pair)``: the account's orders on ``pair`` but the bot's."""
        held = self._others.get((bot_id, pair))
        if held is None:
            mine = str(bot_id)
            held = self._others[(bot_id, pair)] = tuple(order for key, order in self.resting(pair) if key != mine)
        return held


def _level_index(levels: list[tuple[float, float]]) -> dict[float, int] | None:
    """price -> position of each level, or None when the levels do not allow patching them one by one (a
    repeated price, a price or size that is not a positive finite number, a level that is not a tuple):
    ``without_own`` then rebuilds them as before."""
    index: dict[float, int] = {}
    for position, level in enumerate(levels):
        if type(level) is not tuple or len(level) != 2:
            return None
        price, size = level
        if not (size > 0 and math.isfinite(size) and math.isfinite(price)) or price in index:
            return None
        index[price] = position
    return index


class BookIndex:
    """One book (``BookData``) with its levels indexed by price."""

    __slots__ = ("ask_at", "bid_at", "book")

    def __init__(self, book: BookData):
        self.book = book
        self.bid_at = _level_index(book.bids)
        self.ask_at = _level_index(book.asks)

    def without_own(self, own: list[tuple[str, float, float]]) -> BookData:
        """``market_data.without_own(book, own)``: the book less the bot's own resting orders, patching only
        the levels they sit on (the same arithmetic level by level, the same result)."""
        if not own:
            return self.book
        if self.bid_at is None or self.ask_at is None:
            return without_own(self.book, own)
        mine: dict[tuple[str, float], float] = {}
        for side, price, size in own:
            mine[(side, price)] = mine.get((side, price), 0.0) + size
        book = self.book
        bids: list[Any] | None = None
        asks: list[Any] | None = None
        emptied = False
        for (side, price), size in mine.items():
            if side == "buy":
                position = self.bid_at.get(price)
                if position is None:
                    continue
                if bids is None:
                    bids = list(book.bids)
                levels = bids
            elif side == "sell":
                position = self.ask_at.get(price)
                if position is None:
                    continue
                if asks is None:
                    asks = list(book.asks)
                levels = asks
            else:
                continue
            level_price, level_size = levels[position]
            left = level_size - size
            if left > level_size * 1e-9:
                levels[position] = (level_price, left)
            else:
                levels[position] = None
                emptied = True
        if emptied:
            bids = None if bids is None else [level for level in bids if level is not None]
            asks = None if asks is None else [level for level in asks if level is not None]
        return BookData(book.bids if bids is None else bids, book.asks if asks is None else asks, book.fetched_at)


class SharedViews:
    """The driver thread's caches of what the bots of an account or of a venue's pair share (see the
    module). ``stats`` counts builds and reuses by kind (published with the driver's counters)."""

    def __init__(self) -> None:
        self._accounts: dict[int, AccountIndex] = {}
        self._books: dict[tuple[str, str], BookIndex] = {}
        self._rules: dict[tuple[int, str], tuple[Any, tuple[float, float, float]]] = {}
        self._settings: dict[int, tuple[Any, int]] = {}  # id -> (settings, token)
        self._tokens: dict[Any, int] = {}  # settings (by equality) -> token
        self._next_token = 0
        self.stats: Counter[str] = Counter()

    def account(self, account_id: int, orders: Mapping[str, ExchangeOrder]) -> AccountIndex:
        """The index of this version of the account's orders."""
        held = self._accounts.get(account_id)
        if held is not None and held.orders is orders:
            self.stats["account_index_reused"] += 1
            return held
        if len(self._accounts) > MAX_ENTRIES:
            self._accounts.clear()
        held = self._accounts[account_id] = AccountIndex(orders)
        self.stats["account_index_built"] += 1
        return held

    def book(self, key: tuple[str, str], book: BookData) -> BookIndex:
        """The index of this version of a venue's pair's book."""
        held = self._books.get(key)
        if held is not None and held.book is book:
            self.stats["book_index_reused"] += 1
            return held
        if len(self._books) > MAX_ENTRIES:
            self._books.clear()
        held = self._books[key] = BookIndex(book)
        self.stats["book_index_built"] += 1
        return held

    def rules(self, gateway: Any, account_id: int, pair: str) -> tuple[float, float, float]:
        """(tick size, lot size, min notional) of ``pair`` as floats, from the gateway's current rules."""
        rules = gateway.market_rules(pair)
        held = self._rules.get((account_id, pair))
        if held is not None and held[0] is rules:
            return held[1]
        floats = (float(rules.tick_size), float(rules.lot_size), float(rules.min_notional or 0))
        if len(self._rules) > MAX_ENTRIES:
            self._rules.clear()
        self._rules[(account_id, pair)] = (rules, floats)
        return floats

    def settings_token(self, settings: Any) -> int:
        """A small key standing for ``settings`` in a shared cache's key: equal settings, one token (hashed once
        per settings object); unhashable ones a token of their own. A token is never given to other settings,
        even after the tables are emptied."""
        held = self._settings.get(id(settings))
        if held is not None and held[0] is settings:
            return held[1]
        if len(self._settings) > MAX_ENTRIES:
            self._settings.clear()
            self._tokens.clear()
        try:
            token = self._tokens.get(settings)
            if token is None:
                token = self._tokens[settings] = self._next_token = self._next_token + 1
        except TypeError:  # unhashable settings: their own entry
            token = self._next_token = self._next_token + 1
        self._settings[id(settings)] = (settings, token)
        return token
