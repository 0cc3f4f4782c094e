"""The Binance dialect's public trade and diff-depth streams: ``<symbol>@trade`` and ``<symbol>@depth@100ms``
(and ``<symbol>@depth``), served on the same ``/ws`` sockets as ``@bookTicker`` (``market_streams``).

* ``trade``: one ``{"e": "trade", "E", "s", "t", "p", "q", "T", "m", "M"}`` frame per fill, in trade-id
  order (``m``: the buyer was the maker), from the engine's trade listener;
* ``depth``: ``{"e": "depthUpdate", "E", "s", "U", "u", "b", "a"}`` with the levels that changed since the
  last update (absolute quantities, 0 = the level is gone). Update ids count per symbol with no gap
  (``U`` is the previous ``u`` + 1) and ``GET /api/v3/depth`` answers ``lastUpdateId`` equal to the ``u``
  of the update that left the book as it returns it (``sync``), so a client follows Binance's recipe
  ("how to manage a local order book correctly") unchanged, as ccxt.pro's ``watch_order_book`` does.

Unlike the coalesced ``bookTicker`` pushes, no trade or depth frame may be dropped (a gap breaks the
client's book): each connection gets them in order (``StreamConnection.send_in_order``), and a client
that falls ``MAX_QUEUED_FRAMES`` behind is disconnected, as Binance disconnects a slow consumer.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from exchanges.emulator.engine import BUY, MatchingEngine

if TYPE_CHECKING:
    from exchanges.emulator.market_streams import StreamConnection

CHANNELS = ("trade", "depth", "depth@100ms")
TRACKED_LEVELS = 1000
"""Levels per side the depth stream follows (ccxt's default snapshot is 1000 levels)."""

Levels = dict[int, int]
"""price ticks -> lots."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


class PublicFeeds:
    """Trade and depth subscriptions of one emulator, per (channel, symbol)."""

    def __init__(self, engine: MatchingEngine, first_update_id: int = 1):
        self._engine = engine
        self._first_update_id = first_update_id
        self._subscribers: dict[tuple[str, str], set[StreamConnection]] = {}  # (trade|depth, symbol) -> sockets
        self._streams: dict[StreamConnection, set[str]] = {}  # socket -> stream names as subscribed
        self._books: dict[str, tuple[Levels, Levels]] = {}  # symbol -> (bids, asks) as of its last update id
        self._update_ids: dict[str, int] = {}

    # --- subscriptions ------------------------------------------------------------------------------

    @staticmethod
    def channel_of(stream: str) -> str:
        """``btcusdt@depth@100ms`` -> ``depth@100ms`` ("" for a stream these feeds do not serve)."""
        channel = stream.partition("@")[2]
        return channel if channel in CHANNELS else ""

    def subscribe(self, connection: StreamConnection, stream: str, symbol: str) -> None:
        kind = "trade" if self.channel_of(stream) == "trade" else "depth"
        if kind == "depth":
            self._sync(symbol)  # the updates this socket gets start from the book as it is now
        self._subscribers.setdefault((kind, symbol), set()).add(connection)
        self._streams.setdefault(connection, set()).add(stream)

    def unsubscribe(self, connection: StreamConnection, stream: str, symbol: str) -> None:
        names = self._streams.get(connection, set())
        names.discard(stream)
        kind = "trade" if self.channel_of(stream) == "trade" else "depth"
        if kind == "depth" and any(self.channel_of(n) != "trade" and n.partition("@")[0] == stream.partition("@")[0]
                                   for n in names):
            return  # still subscribed to the other depth stream of the symbol
        subscribers = self._subscribers.get((kind, symbol))
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self._subscribers[(kind, symbol)]

    def streams_of(self, connection: StreamConnection) -> set[str]:
        return set(self._streams.get(connection, ()))

    def forget(self, connection: StreamConnection) -> None:
        self._streams.pop(connection, None)
        for key in list(self._subscribers):
            self._subscribers[key].discard(connection)
            if not self._subscribers[key]:
                del self._subscribers[key]

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    # --- trades (the engine's trade listener, synchronously inside matching) ---------------------------

    def on_trade(self, trade_id: int, symbol: str, taker_side: int, price_ticks: int, lots: int) -> None:
        subscribers = self._subscribers.get(("trade", symbol))
        if not subscribers:
            return
        spec = self._engine.markets[symbol]
        now = _now_ms()
        frame = _json({"e": "trade", "E": now, "s": spec.exchange_symbol, "t": trade_id,
                       "p": f"{spec.tick_size * price_ticks:f}", "q": f"{spec.lot_size * lots:f}", "T": now,
                       "m": taker_side != BUY, "M": True})
        for connection in subscribers:
            connection.send_in_order(frame)

    # --- depth ----------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Publish the changes of every subscribed symbol's book (once per event-loop turn)."""
        for kind, symbol in list(self._subscribers):
            if kind == "depth":
                self._sync(symbol)

    def last_update_id(self, symbol: str) -> int:
        """The update id of the book as it is now (``GET /api/v3/depth``'s ``lastUpdateId``): pending
        changes are published first, so the next update a subscriber gets starts right after it."""
        return self._sync(symbol)

    def _sync(self, symbol: str) -> int:
        bids, asks = self._engine.book_ticks(symbol, TRACKED_LEVELS)
        new_bids, new_asks = dict(bids), dict(asks)
        update_id = self._update_ids.get(symbol, self._first_update_id)
        old = self._books.get(symbol)
        if old is None:
            self._books[symbol] = (new_bids, new_asks)
            self._update_ids[symbol] = update_id
            return update_id
        changed_bids = _changes(old[0], new_bids)
        changed_asks = _changes(old[1], new_asks)
        if not changed_bids and not changed_asks:
            return update_id
        update_id += 1
        self._books[symbol] = (new_bids, new_asks)
        self._update_ids[symbol] = update_id
        subscribers = self._subscribers.get(("depth", symbol))
        if subscribers:
            spec = self._engine.markets[symbol]
            tick, lot = spec.tick_size, spec.lot_size
            frame = _json({
                "e": "depthUpdate", "E": _now_ms(), "s": spec.exchange_symbol, "U": update_id, "u": update_id,
                "b": [[f"{tick * p:f}", f"{lot * q:f}"] for p, q in sorted(changed_bids, reverse=True)],
                "a": [[f"{tick * p:f}", f"{lot * q:f}"] for p, q in sorted(changed_asks)],
            })
            for connection in subscribers:
                connection.send_in_order(frame)
        return update_id


def _changes(old: Levels, new: Levels) -> list[tuple[int, int]]:
    """(price, new quantity) of every level that changed; 0 for one that is gone."""
    changed = [(price, lots) for price, lots in new.items() if old.get(price) != lots]
    changed.extend((price, 0) for price in old if price not in new)
    return changed
