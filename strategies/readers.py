"""Streaming readers for exchange and vendor market-data dumps, and a converter to the native format.

Every reader is an iterable of native events (``Quote``, ``Trade``, ``Book``; times in seconds since
the epoch), reading its file row by row through ``csv`` over a buffered (optionally gzip- or
zip-decompressing) stream: memory is bounded by one row plus, for the L2 reader, the order book
itself, whatever the file's size. A malformed row raises ``DataFormatError`` naming the file, the
line number (1 = the first line, header included), the column and the problem.

Formats (``FORMATS`` maps the CLI names to the reader classes):

``binance-bookticker`` (Binance USDⓈ-M / COIN-M futures ``bookTicker`` dumps, data.binance.vision)
    ``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time``
    with or without that header row (older dumps have none); times in ms (µs/ns told from the
    magnitude, as for trades). -> ``Quote``.
``binance-trades`` (spot and futures ``trades`` dumps)
    ``id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]``; futures dumps have a header, spot
    dumps do not (and carry ``is_best_match``). ``time`` is ms, or µs in spot dumps from 2025 on:
    the unit is told from the magnitude. ``is_buyer_maker`` true means the seller was the aggressor
    (side ``sell``). -> ``Trade``.
``tardis-quotes`` (Tardis.dev ``quotes``)
    ``exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount`` (header
    required; µs). A row with an empty side (no level on that side) is skipped. -> ``Quote``.
``tardis-trades`` (Tardis.dev ``trades``)
    ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``; ``side`` buy/sell is the
    aggressor's; ``unknown`` is resolved by the tick rule (an uptick buy, a downtick sell, an
    unchanged price the previous side). -> ``Trade``.
``tardis-l2`` (Tardis.dev ``incremental_book_L2``)
    ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``; ``side`` bid/ask,
    ``amount`` the new absolute size at ``price`` (0 removes the level); a run of ``is_snapshot``
    rows after updates replaces the book. The reader keeps the book and, after each message (rows
    sharing a ``local_timestamp``), emits the top ``depth`` levels as a ``Book`` (``depth=1``: a
    ``Quote``) when they changed.

Conventions for every reader:

* Time: Tardis readers use ``local_timestamp`` (when the data arrived: what a live bot would have
  seen; files are ordered by it) unless ``time="exchange"``; Binance bookTicker uses ``event_time``
  unless ``time="transaction"``. Dumps are not strictly ordered by exchange time, so a time earlier
  than the previous event's is held at the previous one (counted in ``stats.clamped``).
* Prices and sizes are parsed exactly as the native reader does (Python ``float`` of the decimal
  text: the nearest double, whose ``repr`` gives the same text back), must be finite, prices > 0
  and sizes > 0 (>= 0 for L2 amounts).
* A crossed or locked top of book (bid >= ask) cannot be replayed: it is skipped and counted in
  ``stats.crossed``. Skipped rows (empty sides) are counted in ``stats.skipped``.
* Files holding several symbols: pass ``symbol=`` to keep one; without it a second symbol is an
  error.

Convert (streaming, bounded memory)::

    python -m strategies.backtest convert --from binance-bookticker --to native IN OUT \\
        [--merge binance-trades:TRADES_FILE] [--symbol BTC/USDT] [--tick-size 0.1] [--lot-size 0.001]

``--merge`` adds other files (any format) merged by time (at equal times the main input first).
Without ``--tick-size``/``--lot-size`` they are inferred from the decimals of the first 1000 events.
``--to FMT`` (any of ``FORMATS``) writes a vendor format instead (``WRITERS``, ``export``): what the
format cannot hold (trades in a quotes file) is dropped and counted.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import heapq
import io
import math
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, ClassVar, NamedTuple, final

from strategies.marketdata import COLUMNS, MarketData, MarketDataError, load_market_data

QUOTE_CURRENCIES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "EUR", "BTC", "ETH", "BNB", "TRY")
INFER_EVENTS = 1000


class DataFormatError(MarketDataError):
    """A row of a market-data file is malformed: names the file, line, column and problem."""

    def __init__(self, path: str | Path, line: int, problem: str, column: str | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {'column ' + repr(column) + ': ' if column else ''}{problem}")


@final  # no subclasses: the readers dispatch on ``type(event) is ...``
class Quote(NamedTuple):
    """Best bid/ask (prices in quote currency, sizes in base)."""

    ts: float
    bid: float
    bid_size: float
    ask: float
    ask_size: float


@final  # no subclasses: the readers dispatch on ``type(event) is ...``
class Trade(NamedTuple):
    """A public trade; ``side`` is the aggressor's ("buy" lifted an ask)."""

    ts: float
    price: float
    size: float
    side: str


@final  # no subclasses: the readers dispatch on ``type(event) is ...``
class Book(NamedTuple):
    """An L2 snapshot, levels best first."""

    ts: float
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


Event = Quote | Trade | Book


@dataclass
class ReaderStats:
    """What a reader did with the rows it read."""

    rows: int = 0
    events: int = 0
    skipped: int = 0
    crossed: int = 0
    clamped: int = 0


def open_text(path: str | Path) -> IO[str]:
    """Open a plain, gzip (by magic bytes) or single-member zip file as a streamed text file."""
    path = Path(path)
    if not path.is_file():
        raise MarketDataError(f"{path}: no such file")
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    if magic == b"PK\x03\x04":
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if len(names) != 1:
            archive.close()
            raise MarketDataError(f"{path}: a zip must hold exactly one file, it holds {len(names)}")
        member = archive.open(names[0])
        archive.close()  # the member keeps the file open until it is closed itself
        return io.TextIOWrapper(member, encoding="utf-8", newline="")
    return path.open(newline="", encoding="utf-8")


class Reader:
    """Base of the format readers: header handling, number parsing, time clamping."""

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]] = ()
    header_required: ClassVar[bool] = True
    produces: ClassVar[str] = "quotes"

    def __init__(self, path: str | Path, *, symbol: str | None = None, time: str | None = None):
        self.path = Path(path)
        self.symbol_filter = symbol
        self.time = time
        self.symbol: str | None = symbol
        self.stats = ReaderStats()
        self._last_ts = -math.inf
        self._line = 0

    def __iter__(self) -> Iterator[Event]:
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------------

    def error(self, problem: str, column: str | None = None) -> DataFormatError:
        """A ``DataFormatError`` at the current line."""
        return DataFormatError(self.path, self._line, problem, column)

    def rows(self) -> Iterator[tuple[dict[str, int], list[str]]]:
        """Yield (column name -> index, row) for each data row; checks the header and row widths."""
        index: dict[str, int] | None = None
        needed = len(self.columns)
        with open_text(self.path) as handle:
            try:
                for line, row in enumerate(csv.reader(handle), start=1):
                    self._line = line
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    if index is None:
                        first = row[0].strip()
                        if not self.header_required and _is_number(first):
                            if len(row) not in (needed, needed + len(self.optional)):
                                raise self.error(f"expected {needed} columns ({','.join(self.columns)}), "
                                                 f"got {len(row)}")
                            index = {name: i for i, name in enumerate(self.columns)}
                        else:
                            header = [c.strip() for c in row]
                            missing = [c for c in self.columns if c not in header]
                            if missing:
                                raise self.error(
                                    f"not a {self.name} file: header lacks {','.join(missing)} "
                                    f"(expected {','.join(self.columns)}, got {','.join(header)})"
                                )
                            index = {name: header.index(name) for name in self.columns}
                            needed = len(header)
                            continue
                    if len(row) < needed:
                        raise self.error(f"expected {needed} columns, got {len(row)}")
                    self.stats.rows += 1
                    yield index, row
            except (UnicodeDecodeError, EOFError, OSError, zipfile.BadZipFile, csv.Error) as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                raise self.error(f"cannot read the file ({exc.__class__.__name__}: {exc})") from None
        if index is None:
            raise DataFormatError(self.path, 0, f"empty file: no {self.name} rows")

    def number(self, text: str, column: str, *, zero_ok: bool = False) -> float:
        """A finite float > 0 (>= 0 with ``zero_ok``) or a ``DataFormatError`` naming the column."""
        try:
            value = float(text)
        except ValueError:
            raise self.error(f"{text!r} is not a number", column) from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise self.error(f"must be a {'non-negative' if zero_ok else 'positive'} number, got {text!r}", column)
        return value

    def timestamp(self, text: str, column: str, per_sec: int | None) -> float:
        """Seconds since the epoch from an integer count of 1/``per_sec`` s (None: ms/µs/ns by size)."""
        try:
            raw = int(text)
        except ValueError:
            raise self.error(f"{text!r} is not an integer timestamp", column) from None
        if raw < 0:
            raise self.error(f"timestamp must not be negative, got {text!r}", column)
        if per_sec is None:
            per_sec = 10**9 if raw >= 10**17 else 10**6 if raw >= 10**14 else 1000
        ts = raw / per_sec  # correctly rounded: the nearest double to the exact time
        if ts < self._last_ts:
            self.stats.clamped += 1
            return self._last_ts
        self._last_ts = ts
        return ts

    def check_symbol(self, symbol: str) -> bool:
        """False: skip the row (another symbol, filtered out); error on a second symbol unfiltered."""
        if self.symbol_filter is not None:
            return symbol == self.symbol_filter
        if self.symbol is None:
            self.symbol = symbol
        elif symbol != self.symbol:
            raise self.error(f"a second symbol {symbol!r} after {self.symbol!r}: pass symbol= to pick one",
                             "symbol")
        return True

    def quote(self, ts: float, bid: float, bid_size: float, ask: float, ask_size: float) -> Quote | None:
        """A ``Quote``, or None (counted) when crossed/locked."""
        if bid >= ask:
            self.stats.crossed += 1
            return None
        self.stats.events += 1
        return Quote(ts, bid, bid_size, ask, ask_size)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class BinanceBookTicker(Reader):
    """Binance futures ``bookTicker`` dump (header optional; ms times, µs told by size) -> ``Quote`` events."""

    name = "binance-bookticker"
    columns = ("update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty",
               "transaction_time", "event_time")
    header_required = False

    def __iter__(self) -> Iterator[Event]:
        time_column = "transaction_time" if self.time == "transaction" else "event_time"
        if self.time not in (None, "event", "transaction"):
            raise MarketDataError(f"{self.path}: time must be event or transaction, got {self.time!r}")
        number, timestamp, quote = self.number, self.timestamp, self.quote
        for index, row in self.rows():
            ts = timestamp(row[index[time_column]], time_column, None)
            event = quote(
                ts,
                number(row[index["best_bid_price"]], "best_bid_price"),
                number(row[index["best_bid_qty"]], "best_bid_qty"),
                number(row[index["best_ask_price"]], "best_ask_price"),
                number(row[index["best_ask_qty"]], "best_ask_qty"),
            )
            if event is not None:
                yield event


BOOLS = {"true": True, "false": False, "True": True, "False": False, "TRUE": True, "FALSE": False}


class BinanceTrades(Reader):
    """Binance spot/futures ``trades`` dump (header optional; ms or µs times) -> ``Trade`` events."""

    name = "binance-trades"
    columns = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
    optional = ("is_best_match",)
    header_required = False
    produces = "trades"

    def __iter__(self) -> Iterator[Event]:
        number, timestamp, stats = self.number, self.timestamp, self.stats
        for index, row in self.rows():
            maker = BOOLS.get(row[index["is_buyer_maker"]].strip())
            if maker is None:
                raise self.error(f"must be true or false, got {row[index['is_buyer_maker']]!r}", "is_buyer_maker")
            price = number(row[index["price"]], "price")
            size = number(row[index["qty"]], "qty")
            ts = timestamp(row[index["time"]], "time", None)
            stats.events += 1
            yield Trade(ts, price, size, "sell" if maker else "buy")


class _Tardis(Reader):
    def time_column(self) -> str:
        if self.time not in (None, "local", "exchange"):
            raise MarketDataError(f"{self.path}: time must be local or exchange, got {self.time!r}")
        return "timestamp" if self.time == "exchange" else "local_timestamp"


class TardisQuotes(_Tardis):
    """Tardis.dev ``quotes`` CSV (µs times) -> ``Quote`` events; rows with an empty side skipped."""

    name = "tardis-quotes"
    columns = ("exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price",
               "bid_price", "bid_amount")

    def __iter__(self) -> Iterator[Event]:
        time_column = self.time_column()
        number, timestamp, quote = self.number, self.timestamp, self.quote
        for index, row in self.rows():
            if not self.check_symbol(row[index["symbol"]]):
                continue
            ts = timestamp(row[index[time_column]], time_column, 10**6)
            values = [row[index[c]].strip() for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")]
            if not all(values):
                self.stats.skipped += 1
                continue
            event = quote(ts, number(values[0], "bid_price"), number(values[1], "bid_amount"),
                          number(values[2], "ask_price"), number(values[3], "ask_amount"))
            if event is not None:
                yield event


class TardisTrades(_Tardis):
    """Tardis.dev ``trades`` CSV (µs times) -> ``Trade`` events; side ``unknown`` by the tick rule."""

    name = "tardis-trades"
    columns = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")
    produces = "trades"

    def __iter__(self) -> Iterator[Event]:
        time_column = self.time_column()
        number, timestamp, stats = self.number, self.timestamp, self.stats
        last_price = 0.0
        last_side = "buy"
        for index, row in self.rows():
            if not self.check_symbol(row[index["symbol"]]):
                continue
            ts = timestamp(row[index[time_column]], time_column, 10**6)
            price = number(row[index["price"]], "price")
            size = number(row[index["amount"]], "amount")
            side = row[index["side"]].strip()
            if side == "unknown":
                side = "buy" if price > last_price else "sell" if price < last_price else last_side
            elif side not in ("buy", "sell"):
                raise self.error(f"must be buy, sell or unknown, got {side!r}", "side")
            last_price, last_side = price, side
            stats.events += 1
            yield Trade(ts, price, size, side)


class TardisL2(_Tardis):
    """Tardis.dev ``incremental_book_L2`` CSV -> the top ``depth`` levels after each message."""

    name = "tardis-l2"
    columns = ("exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount")
    produces = "book"

    def __init__(self, path: str | Path, *, symbol: str | None = None, time: str | None = None, depth: int = 10):
        super().__init__(path, symbol=symbol, time=time)
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth

    def __iter__(self) -> Iterator[Event]:
        time_column = self.time_column()
        number, timestamp = self.number, self.timestamp
        depth = self.depth
        sizes: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}  # price -> size
        prices: dict[str, list[float]] = {"bid": [], "ask": []}  # ascending
        in_snapshot = False
        batch_key: str | None = None
        batch_ts = 0.0
        last: tuple[object, ...] | None = None

        def top() -> Event | None:
            nonlocal last
            bid_prices, ask_prices = prices["bid"], prices["ask"]
            if not bid_prices or not ask_prices:
                return None
            bids = tuple((p, sizes["bid"][p]) for p in reversed(bid_prices[-depth:]))
            asks = tuple((p, sizes["ask"][p]) for p in ask_prices[:depth])
            key = (bids, asks)
            if key == last:
                return None
            last = key
            if bids[0][0] >= asks[0][0]:
                self.stats.crossed += 1
                return None
            self.stats.events += 1
            if depth == 1:
                return Quote(batch_ts, bids[0][0], bids[0][1], asks[0][0], asks[0][1])
            return Book(batch_ts, bids, asks)

        for index, row in self.rows():
            if not self.check_symbol(row[index["symbol"]]):
                continue
            key = row[index["local_timestamp"]]
            if key != batch_key:
                if batch_key is not None:
                    event = top()
                    if event is not None:
                        yield event
                batch_key = key
                batch_ts = timestamp(row[index[time_column]], time_column, 10**6)
            snapshot = BOOLS.get(row[index["is_snapshot"]].strip())
            if snapshot is None:
                raise self.error(f"must be true or false, got {row[index['is_snapshot']]!r}", "is_snapshot")
            if snapshot and not in_snapshot:
                for side in ("bid", "ask"):
                    sizes[side].clear()
                    prices[side].clear()
            in_snapshot = snapshot
            side = row[index["side"]].strip()
            if side not in sizes:
                raise self.error(f"must be bid or ask, got {side!r}", "side")
            price = number(row[index["price"]], "price")
            amount = number(row[index["amount"]], "amount", zero_ok=True)
            book, levels = sizes[side], prices[side]
            if amount == 0:
                if book.pop(price, None) is not None:
                    del levels[bisect.bisect_left(levels, price)]
            else:
                if price not in book:
                    bisect.insort(levels, price)
                book[price] = amount
        if batch_key is not None:
            event = top()
            if event is not None:
                yield event


FORMATS: dict[str, type[Reader]] = {
    cls.name: cls for cls in (BinanceBookTicker, BinanceTrades, TardisQuotes, TardisTrades, TardisL2)
}


def open_reader(fmt: str, path: str | Path, **options: object) -> Reader:
    """The reader for ``fmt`` (a key of ``FORMATS``) on ``path``; ValueError naming a bad format."""
    cls = FORMATS.get(fmt)
    if cls is None:
        raise ValueError(f"unknown data format {fmt!r} (one of {', '.join(FORMATS)}, native)")
    options = {k: v for k, v in options.items() if v is not None}
    if cls is not TardisL2:
        options.pop("depth", None)
    return cls(path, **options)  # type: ignore[arg-type]


def native_events(data: MarketData) -> Iterator[Event]:
    """The events of an in-memory native ``MarketData``."""
    for i in range(len(data)):
        kind = data.kind[i]
        if kind == 0:
            yield Quote(data.ts[i], data.bid[i], data.bid_size[i], data.ask[i], data.ask_size[i])
        elif kind == 1:
            yield Trade(data.ts[i], data.price[i], data.size[i], "buy" if data.side[i] > 0 else "sell")
        else:
            bids, asks = data.books[i]
            yield Book(data.ts[i], tuple(bids), tuple(asks))


def merge_by_time(streams: Iterable[Iterable[Event]]) -> Iterator[Event]:
    """Merge time-ordered streams into one (stable: at equal times the earlier stream first)."""
    return heapq.merge(*streams, key=lambda event: event.ts)


def to_market_data(events: Iterable[Event], metadata: dict[str, str] | None = None) -> MarketData:
    """Collect events into the backtester's in-memory columns."""
    data = MarketData(metadata=dict(metadata or {}))
    add_quote, add_trade, add_book = data.add_quote, data.add_trade, data.add_book
    for event in events:
        if type(event) is Quote:
            add_quote(*event)
        elif type(event) is Trade:
            add_trade(*event)
        else:
            add_book(event.ts, list(event.bids), list(event.asks))
    return data


def split_symbol(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` for common quote currencies; anything else unchanged."""
    if "/" in symbol:
        return symbol
    for quote in QUOTE_CURRENCIES:
        if symbol.upper().endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{symbol[-len(quote):]}"
    return symbol


def symbol_from_filename(path: str | Path) -> str | None:
    """``BTCUSDT-bookTicker-2024-01-01.csv.gz`` -> ``BTCUSDT`` (Binance's dump naming), else None."""
    stem = Path(path).name.split("-")[0]
    return stem if stem.isalnum() and stem.upper() == stem and len(stem) > 3 else None


def _decimals(value: float) -> int:
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def infer_increments(events: list[Event]) -> tuple[float, float]:
    """(tick_size, lot_size): 10^-d for the most decimals seen in the prices and in the sizes."""
    price_places = size_places = 0
    for event in events:
        if type(event) is Trade:
            pairs: Iterable[tuple[float, float]] = ((event.price, event.size),)
        elif type(event) is Quote:
            pairs = ((event.bid, event.bid_size), (event.ask, event.ask_size))
        else:
            pairs = event.bids + event.asks
        for price, size in pairs:
            price_places = max(price_places, _decimals(price))
            size_places = max(size_places, _decimals(size))
    return float(f"1e-{price_places}"), float(f"1e-{size_places}")


class NativeWriter:
    """Writes events as the native CSV, one row at a time (``.gz`` output is gzip-compressed)."""

    def __init__(self, path: str | Path, metadata: dict[str, str]):
        self.path = Path(path)
        if self.path.suffix == ".gz":
            self.handle: IO[str] = gzip.open(self.path, "wt", newline="", encoding="utf-8")
        else:
            self.handle = self.path.open("w", newline="", encoding="utf-8")
        if metadata:
            self.handle.write("# " + " ".join(f"{k}={v}" for k, v in metadata.items()) + "\n")
        self.handle.write(",".join(COLUMNS) + "\n")
        self.rows = 0

    def write(self, event: Event) -> None:
        """Append one event."""
        if type(event) is Quote:
            line = f"{event.ts!r},quote,{event.bid!r},{event.bid_size!r},{event.ask!r},{event.ask_size!r},,,,,\n"
        elif type(event) is Trade:
            line = f"{event.ts!r},trade,,,,,{event.price!r},{event.size!r},{event.side},,\n"
        else:
            bids = ";".join(f"{p!r}:{s!r}" for p, s in event.bids)
            asks = ";".join(f"{p!r}:{s!r}" for p, s in event.asks)
            line = f"{event.ts!r},book,,,,,,,,{bids},{asks}\n"
        self.handle.write(line)
        self.rows += 1

    def close(self) -> None:
        """Flush and close the file."""
        self.handle.close()

    def __enter__(self) -> NativeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_events(fmt: str, path: str | Path, **options: object) -> tuple[Iterator[Event], dict[str, str], Reader | None]:
    """(events, metadata, reader) for a file of format ``fmt`` (``native`` reads via ``load_market_data``)."""
    if fmt == "native":
        data = load_market_data(path)
        return native_events(data), dict(data.metadata), None
    reader = open_reader(fmt, path, **options)
    return iter(reader), {}, reader


def convert(
    inputs: list[tuple[str, str | Path]],
    out: str | Path,
    *,
    symbol: str | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
    time: str | None = None,
    depth: int = 10,
    only_symbol: str | None = None,
) -> tuple[int, list[Reader]]:
    """Stream ``inputs`` [(format, path), ...] merged by time into a native CSV at ``out``.

    Metadata: ``symbol`` (else the files' symbol, ``BTCUSDT`` split as ``BTC/USDT``), ``tick_size`` and
    ``lot_size`` (else inferred from the first ``INFER_EVENTS`` events). Returns (rows written, readers).
    """
    if not inputs:
        raise ValueError("convert needs at least one input file")
    streams = []
    readers: list[Reader] = []
    metadata: dict[str, str] = {}
    for fmt, path in inputs:
        events, meta, reader = load_events(fmt, path, time=time, depth=depth, symbol=only_symbol)
        streams.append(events)
        metadata = {**meta, **metadata}
        if reader is not None:
            readers.append(reader)
    merged = merge_by_time(streams)
    head: list[Event] = []
    for event in merged:
        head.append(event)
        if len(head) >= INFER_EVENTS:
            break
    if not head:
        raise MarketDataError(f"{inputs[0][1]}: no events to convert")
    if symbol is None and "symbol" not in metadata:
        names = [r.symbol for r in readers if r.symbol] + [symbol_from_filename(p) for _, p in inputs]
        found = next((n for n in names if n), None)
        if found:
            metadata["symbol"] = split_symbol(found)
    elif symbol is not None:
        metadata["symbol"] = symbol
    inferred_tick, inferred_lot = infer_increments(head)
    if tick_size is not None or "tick_size" not in metadata:
        metadata["tick_size"] = repr(tick_size if tick_size is not None else inferred_tick)
    if lot_size is not None or "lot_size" not in metadata:
        metadata["lot_size"] = repr(lot_size if lot_size is not None else inferred_lot)
    metadata.setdefault("min_notional", "0")
    with NativeWriter(out, metadata) as writer:
        for event in head:
            writer.write(event)
        for event in merged:
            writer.write(event)
        rows = writer.rows
    return rows, readers


# --- writers: native events -> a vendor format ---------------------------------------------------


class VendorWriter:
    """Writes native events in a vendor's CSV format (``.gz`` output compressed); events the format
    cannot hold (trades in a quotes file, quotes in a trades file) are counted in ``dropped``."""

    columns: ClassVar[tuple[str, ...]]

    def __init__(self, path: str | Path, *, symbol: str = "", exchange: str = "native"):
        self.path = Path(path)
        if self.path.suffix == ".gz":
            self.handle: IO[str] = gzip.open(self.path, "wt", newline="", encoding="utf-8")
        else:
            self.handle = self.path.open("w", newline="", encoding="utf-8")
        self.handle.write(",".join(self.columns) + "\n")
        self.symbol = symbol.replace("/", "")
        self.exchange = exchange
        self.rows = 0
        self.dropped = 0
        self.sequence = 0

    def write(self, event: Event) -> None:
        """Append one event (or count it as dropped)."""
        lines = self.lines(event)
        if not lines:
            self.dropped += 1
            return
        self.handle.write("".join(lines))
        self.rows += len(lines)

    def lines(self, event: Event) -> list[str]:
        """The CSV lines of one event (none: the format cannot hold it)."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and close the file."""
        self.handle.close()

    def __enter__(self) -> VendorWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _top(event: Event) -> tuple[float, float, float, float] | None:
    if type(event) is Quote:
        return event.bid, event.bid_size, event.ask, event.ask_size
    if type(event) is Book:
        return event.bids[0][0], event.bids[0][1], event.asks[0][0], event.asks[0][1]
    return None


def _binance_time(ts: float) -> int:
    """ms, or µs (as Binance's spot dumps from 2025) when the time has sub-millisecond digits."""
    ms = round(ts * 1000)
    return ms if ms / 1000 == ts else round(ts * 10**6)


def _exact_product(a: float, b: float) -> str:
    return str(Decimal(repr(a)) * Decimal(repr(b)))


class BinanceBookTickerWriter(VendorWriter):
    """``binance-bookticker`` (with header; ms times; a book's top level)."""

    columns = BinanceBookTicker.columns

    def lines(self, event: Event) -> list[str]:
        top = _top(event)
        if top is None:
            return []
        self.sequence += 1
        ms = _binance_time(event.ts)
        return [f"{self.sequence},{top[0]!r},{top[1]!r},{top[2]!r},{top[3]!r},{ms},{ms}\n"]


class BinanceTradesWriter(VendorWriter):
    """``binance-trades`` (futures layout, with header; ms times)."""

    columns = BinanceTrades.columns

    def lines(self, event: Event) -> list[str]:
        if type(event) is not Trade:
            return []
        self.sequence += 1
        maker = "true" if event.side == "sell" else "false"
        return [f"{self.sequence},{event.price!r},{event.size!r},{_exact_product(event.price, event.size)},"
                f"{_binance_time(event.ts)},{maker}\n"]


class TardisQuotesWriter(VendorWriter):
    """``tardis-quotes`` (µs; timestamp = local_timestamp = the event's time; a book's top level)."""

    columns = TardisQuotes.columns

    def lines(self, event: Event) -> list[str]:
        top = _top(event)
        if top is None:
            return []
        us = round(event.ts * 10**6)
        return [f"{self.exchange},{self.symbol},{us},{us},{top[3]!r},{top[2]!r},{top[0]!r},{top[1]!r}\n"]


class TardisTradesWriter(VendorWriter):
    """``tardis-trades`` (µs)."""

    columns = TardisTrades.columns

    def lines(self, event: Event) -> list[str]:
        if type(event) is not Trade:
            return []
        self.sequence += 1
        us = round(event.ts * 10**6)
        return [f"{self.exchange},{self.symbol},{us},{us},{self.sequence},{event.side},{event.price!r},"
                f"{event.size!r}\n"]


class TardisL2Writer(VendorWriter):
    """``tardis-l2``: the first book as snapshot rows, then each book's changed levels (0 = removed)."""

    columns = TardisL2.columns

    def __init__(self, path: str | Path, *, symbol: str = "", exchange: str = "native"):
        super().__init__(path, symbol=symbol, exchange=exchange)
        self.book: dict[str, dict[float, float]] | None = None

    def lines(self, event: Event) -> list[str]:
        if type(event) is Quote:
            new = {"bid": {event.bid: event.bid_size}, "ask": {event.ask: event.ask_size}}
        elif type(event) is Book:
            new = {"bid": dict(event.bids), "ask": dict(event.asks)}
        else:
            return []
        us = round(event.ts * 10**6)
        prefix = f"{self.exchange},{self.symbol},{us},{us}"
        out = []
        if self.book is None:
            for side in ("bid", "ask"):
                out += [f"{prefix},true,{side},{p!r},{s!r}\n" for p, s in new[side].items()]
        else:
            for side in ("bid", "ask"):
                old = self.book[side]
                out += [f"{prefix},false,{side},{p!r},0\n" for p in old if p not in new[side]]
                out += [f"{prefix},false,{side},{p!r},{s!r}\n" for p, s in new[side].items() if old.get(p) != s]
        self.book = new
        return out

    def write(self, event: Event) -> None:
        """Append one event's changes (a book equal to the previous one writes nothing)."""
        if type(event) is Trade:
            self.dropped += 1
            return
        lines = self.lines(event)
        self.handle.write("".join(lines))
        self.rows += len(lines)


WRITERS: dict[str, type[VendorWriter]] = {
    "binance-bookticker": BinanceBookTickerWriter,
    "binance-trades": BinanceTradesWriter,
    "tardis-quotes": TardisQuotesWriter,
    "tardis-trades": TardisTradesWriter,
    "tardis-l2": TardisL2Writer,
}


def export(
    inputs: list[tuple[str, str | Path]], out: str | Path, target: str, *, exchange: str = "native",
    symbol: str | None = None, time: str | None = None, depth: int = 10,
) -> tuple[int, int]:
    """Stream ``inputs`` merged by time into ``target`` format at ``out``; (rows written, events dropped)."""
    cls = WRITERS.get(target)
    if cls is None:
        raise ValueError(f"unknown target format {target!r} (one of native, {', '.join(WRITERS)})")
    streams = []
    readers = []
    metadata: dict[str, str] = {}
    for fmt, path in inputs:
        events, meta, reader = load_events(fmt, path, time=time, depth=depth)
        streams.append(events)
        metadata = {**meta, **metadata}
        if reader is not None:
            readers.append(reader)
    merged = merge_by_time(streams)
    first = next(merged, None)
    if first is None:
        raise MarketDataError(f"{inputs[0][1]}: no events to convert")
    found = [r.symbol for r in readers if r.symbol]
    name = symbol or metadata.get("symbol") or (found[0] if found else None) or symbol_from_filename(inputs[0][1])
    with cls(out, symbol=name or "UNKNOWN", exchange=exchange) as writer:
        writer.write(first)
        for event in merged:
            writer.write(event)
    return writer.rows, writer.dropped
