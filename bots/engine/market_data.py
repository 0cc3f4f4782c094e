"""Market data shared by every bot and tenant quoting the same (exchange, symbol).

An order book is fetched from the exchange at most once per ``MARKET_DATA_CACHE_SECS`` (a short
Redis cache guarded by a fetch lock), and each fetch appends the mid to a shared history that the
strategy engine's volatility and trend estimators read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings

from bots.engine import keys
from exchanges.gateway import ExchangeGateway, ExchangeOrder, OrderBook, Trade
from mmplatform import aio
from mmplatform.redis_client import get_redis, text
from strategies.types import MarketSnapshot

HISTORY_LENGTH = 600
LOCK_TTL_MS = 3000
WAIT_FOR_PEER_SECS = 1.0


@dataclass(frozen=True)
class BookData:
    """The JSON-able part of a snapshot that is cached."""

    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    fetched_at: float


@dataclass(frozen=True)
class AccountView:
    """One exchange account as the venue listed it: open orders by client id, total balances. Frozen: the
    feeder hands a new one over (``dataclasses.replace``), a reader keeps the one it got."""

    taken_at: float
    orders: dict[str, ExchangeOrder]
    balances: dict[str, Decimal]
    outdated: bool = False  # a fill moved its balances: read it again at the feeder's next pass
    balances_at: float = 0.0  # when the balances were read (the orders may be newer)
    free: dict[str, Decimal] = field(default_factory=dict)  # free (not locked) balances, read with them
    read_at: float = 0.0  # the last REST read of the open orders (``taken_at`` moves on with pushed updates)
    closed: dict[str, tuple[float, ExchangeOrder]] = field(default_factory=dict)
    """Orders the venue's order stream pushed as ended (filled, cancelled, expired): client id -> (when the
    feeder applied it, the final state), kept ``CLOSED_KEEP_SECS``. A fill sync takes the fate of a row that
    left the book from here instead of asking the venue (``FillSyncMixin.sync_position``)."""
    pushed_at: float = 0.0  # when the feeder last applied pushed orders or trades (0: none yet)
    balances_pushed: bool = False
    """The balances are the venue's last push, which came after every order and trade update applied to this view:
    they include every fill it shows (a fill sync takes them instead of reading the balances by REST)."""
    trades: dict[str, tuple[float, Trade]] = field(default_factory=dict)
    """The account's trades its order stream pushed: trade id -> (when the feeder applied it, the trade), kept
    ``CLOSED_KEEP_SECS``. A fill sync books them instead of reading the trades by REST when they account for
    every fill the venue reports on the position's orders (``FillSyncMixin.sync_fills``)."""


def kept(old: dict, new: dict) -> dict:
    """``old`` when ``new`` equals it: a part of an account view a read or a push found unchanged stays the same
    object, which the checks (``QuietInputs``) and the shared views compare by identity, once instead of per bot."""
    return old if new == old else new


CLOSED_KEEP_SECS = 60.0
"""How long an account view keeps the pushed final state of an order that left the book."""

BALANCE_SECS = 10.0
"""An account's balances are read at least this often even when none of its orders changed (the driver's feeder);
a full cycle takes a live view's balances younger than this instead of reading them."""


Kept = TypeVar("Kept")

RECENT_PRUNE_SECS = 5.0
"""``recent_entries`` keeps a view's entries ``CLOSED_KEEP_SECS`` at least and this much longer at most."""


def recent_entries(entries: dict[str, tuple[float, Kept]], now: float) -> dict[str, tuple[float, Kept]]:
    """A view's ``closed`` or ``trades`` without the entries older than ``CLOSED_KEEP_SECS`` (the same dict
    until its oldest is ``RECENT_PRUNE_SECS`` older than that: a push does not walk a minute of entries)."""
    horizon = now - CLOSED_KEEP_SECS
    # entries are added in time order: the first one is the oldest (one entered again keeps its place with a
    # newer time, which at worst keeps the ones behind it a little longer); they are dropped in batches, once
    # the oldest is RECENT_PRUNE_SECS past the minute (a busy account's views are not copied on every push)
    first = next(iter(entries.values()), None)
    if first is None or first[0] >= horizon - RECENT_PRUNE_SECS:
        return entries
    return {key: entry for key, entry in entries.items() if entry[0] >= horizon}


def book_from(raw: OrderBook, fetched_at: float | None = None) -> BookData:
    """A gateway order book (Decimal levels) as the float book strategies and the cache use."""
    return BookData([(float(p), float(a)) for p, a in raw.bids], [(float(p), float(a)) for p, a in raw.asks],
                    time.time() if fetched_at is None else fetched_at)


def book_reader(gateway: ExchangeGateway, pair: str, depth: int) -> Callable[[], BookData]:
    """A synchronous depth read of ``pair`` (on the process's I/O loop), e.g. for ``shared_book``."""
    def fetch() -> BookData:
        return book_from(aio.run(gateway.fetch_order_book(pair, depth)))
    return fetch


def _key(exchange_key: str, pair: str, kind: str) -> str:
    return keys.market_data(kind, exchange_key, pair)


def shared_book(
    exchange_key: str, pair: str, fetch: Callable[[], BookData], *, max_age_secs: float | None = None
) -> BookData:
    """The cached book if fresh enough, else fetch it (one fetcher at a time per key)."""
    r = get_redis()
    max_age = settings.MARKET_DATA_CACHE_SECS if max_age_secs is None else max_age_secs
    cache_key, lock_key = _key(exchange_key, pair, "book"), _key(exchange_key, pair, "lock")
    deadline = time.monotonic() + WAIT_FOR_PEER_SECS
    while True:
        raw = r.get(cache_key)
        if raw is not None:
            book = _decoded_book(raw)
            if time.time() - book.fetched_at <= max_age:
                return book
        if r.set(lock_key, "1", nx=True, px=LOCK_TTL_MS) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    try:
        book = fetch()
        store_books([(exchange_key, pair, book)], max_age_secs=max_age)
        return book
    finally:
        r.delete(lock_key)


def read_shared_books(books: list[tuple[str, str]]) -> dict[tuple[str, str], BookData]:
    """The shared copies of these (venue key, pair) books that exist, whatever their age, in one round trip:
    another process's (or host's) depth read serves this one's feeder (``FeedMixin._read_books``)."""
    if not books:
        return {}
    shared = get_redis().mget([_key(venue, pair, "book") for venue, pair in books])
    return {book: _decoded_book(raw) for book, raw in zip(books, shared, strict=True) if raw is not None}


def _decoded_book(raw: bytes | str) -> BookData:
    """A book as ``store_books`` shares it."""
    data = json.loads(raw)
    return BookData([tuple(b) for b in data["bids"]], [tuple(a) for a in data["asks"]], data["fetched_at"])


def store_books(books: list[tuple[str, str, BookData]], *, max_age_secs: float | None = None) -> None:
    """Share freshly read books (venue key, pair, book) and append their mids to the history, in one
    Redis round trip (the engine driver's feeder reads many books at once)."""
    max_age = settings.MARKET_DATA_CACHE_SECS if max_age_secs is None else max_age_secs
    pipe = get_redis().pipeline()
    for exchange_key, pair, book in books:
        payload = json.dumps({"bids": book.bids, "asks": book.asks, "fetched_at": book.fetched_at})
        pipe.set(_key(exchange_key, pair, "book"), payload, px=max(int(max_age * 4000), 1000))
        if book.bids and book.asks:
            mid = (book.bids[0][0] + book.asks[0][0]) / 2
            history_key = _key(exchange_key, pair, "mids")
            pipe.rpush(history_key, f"{book.fetched_at}:{mid}")
            pipe.ltrim(history_key, -HISTORY_LENGTH, -1)
    pipe.execute()


def mid_history(exchange_key: str, pair: str) -> tuple[list[float], list[float]]:
    """(times, mids) oldest first, as recorded by every fetch of this book."""
    return _parse_mids(get_redis().lrange(_key(exchange_key, pair, "mids"), 0, -1))


class MidHistoryReader:
    """The mid histories of many (venue, pair) books in one round trip (the driver's feeder), kept in step by
    reading only each list's tail: a history is append-only and trimmed from the front (``store_books``), so the
    entries after the last one this reader holds are the new ones; a tail that does not reach back to it (more
    appended than ``TAIL`` since) is read whole. The feeder read every wanted book's whole history
    (``HISTORY_LENGTH`` entries) every second: ~3 % of an engine worker's GIL at active N=800. Each read hands
    out new lists (a reader of the last ones keeps them as they were)."""

    TAIL = 32

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], tuple[list[float], list[float], Any]] = {}

    def read(self, books: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
        wanted = list(books)
        pipe = get_redis().pipeline(transaction=False)
        for exchange_key, pair in wanted:
            pipe.lrange(_key(exchange_key, pair, "mids"), -self.TAIL if (exchange_key, pair) in self._held else 0, -1)
        whole: list[tuple[str, str]] = []
        held: dict[tuple[str, str], tuple[list[float], list[float], Any]] = {}
        for book, rows in zip(wanted, pipe.execute(), strict=True):
            if book not in self._held:
                held[book] = _whole(rows)
                continue
            times, mids, last = self._held[book]
            after = _after_last(rows, last)
            if after is None:
                whole.append(book)
                continue
            new_times, new_mids = _parse_mids(rows[after:])
            keep = max(len(times) + len(new_times) - HISTORY_LENGTH, 0)
            held[book] = (times[keep:] + new_times, mids[keep:] + new_mids, rows[-1] if rows else last)
        if whole:
            pipe = get_redis().pipeline(transaction=False)
            for exchange_key, pair in whole:
                pipe.lrange(_key(exchange_key, pair, "mids"), 0, -1)
            for book, rows in zip(whole, pipe.execute(), strict=True):
                held[book] = _whole(rows)
        self._held = held  # (books no longer wanted are forgotten)
        return {book: (times, mids) for book, (times, mids, _) in held.items()}


def _whole(rows: list[Any]) -> tuple[list[float], list[float], Any]:
    """A history read whole, as ``MidHistoryReader`` holds it: (times, mids, its last raw entry or None)."""
    return (*_parse_mids(rows), rows[-1] if rows else None)


def _after_last(rows: list[Any], last: Any) -> int | None:
    """Where the entries after ``last`` start in ``rows`` (a history's tail); None: the tail does not reach back
    to ``last`` (read the history whole)."""
    if last is None:
        return None if rows else 0
    for index, row in enumerate(rows):
        if row == last:
            return index + 1
    return None


def _parse_mids(rows: list[Any]) -> tuple[list[float], list[float]]:
    times, mids = [], []
    for row in rows:
        t, _, m = text(row).partition(":")
        times.append(float(t))
        mids.append(float(m))
    return times, mids


def without_own(book: BookData, own: list[tuple[str, float, float]]) -> BookData:
    """The book less the bot's own resting orders (side, price, remaining size): a market maker quotes
    off the market, not off its own quotes (else every re-quote moves its own reference mid and
    re-quotes it again). A level left with nothing is dropped."""
    if not own:
        return book
    mine: dict[tuple[str, float], float] = {}
    for side, price, size in own:
        mine[(side, price)] = mine.get((side, price), 0.0) + size

    def strip(levels: list[tuple[float, float]], side: str) -> list[tuple[float, float]]:
        kept = []
        for price, size in levels:
            left = size - mine.get((side, price), 0.0)
            if left > size * 1e-9:
                kept.append((price, left))
        return kept

    return BookData(strip(book.bids, "buy"), strip(book.asks, "sell"), book.fetched_at)


def to_snapshot(pair: str, book: BookData, *, tick_size: float, lot_size: float, min_notional: float,
                now: float) -> MarketSnapshot:
    """A strategy snapshot; an empty side yields NaN so the snapshot reports its own problem."""
    best_bid = book.bids[0][0] if book.bids else float("nan")
    best_ask = book.asks[0][0] if book.asks else float("nan")
    return MarketSnapshot(
        symbol=pair,
        best_bid=best_bid,
        best_ask=best_ask,
        now=now,
        bids=tuple(book.bids),
        asks=tuple(book.asks),
        tick_size=tick_size,
        lot_size=lot_size,
        min_notional=min_notional,
    )


def cached_book(exchange_key: str, pair: str) -> BookData | None:
    """The last book any bot fetched for this venue and pair (any age), or None."""
    raw = get_redis().get(_key(exchange_key, pair, "book"))
    if raw is None:
        return None
    data = json.loads(raw)
    return BookData([tuple(b) for b in data["bids"]], [tuple(a) for a in data["asks"]], data["fetched_at"])


def latest_mids(keys: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """The last recorded mid per (exchange key, pair), in one Redis round trip."""
    if not keys:
        return {}
    pipe = get_redis().pipeline()
    for venue, pair in keys:
        pipe.lindex(_key(venue, pair, "mids"), -1)
    mids: dict[tuple[str, str], float] = {}
    for key, raw in zip(keys, pipe.execute(), strict=True):
        if raw:
            mids[key] = float(raw.decode().partition(":")[2])
    return mids
