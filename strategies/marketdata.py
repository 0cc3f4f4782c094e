"""Market-data files for the backtester: format, loader, writer and a synthetic generator.

Format (CSV; Parquet with the same columns when pyarrow is installed). One row per event,
oldest first, header row required::

    # symbol=SYN/USDT tick_size=0.01 lot_size=0.001 min_notional=0
    ts,kind,bid,bid_size,ask,ask_size,price,size,side,bids,asks
    1700000000.000,quote,99.99,3.5,100.01,2.0,,,,,
    1700000000.125,trade,,,,,100.01,0.7,buy,,
    1700000000.250,book,,,,,,,,99.99:3.5;99.98:10,100.01:2.0;100.02:8

* ``ts``: seconds since the epoch (float).
* ``kind=quote`` (L1): best ``bid``/``ask`` prices (quote currency) and sizes (base).
* ``kind=trade``: a public trade at ``price`` for ``size`` base; ``side`` is the aggressor's
  ("buy" lifted an ask, "sell" hit a bid).
* ``kind=book`` (L2 snapshot): ``bids`` and ``asks`` as ``price:size`` pairs joined by ``;``,
  best first.
* Optional leading ``#`` lines carry ``key=value`` metadata (symbol, tick_size, lot_size,
  min_notional); the backtester uses them unless told otherwise.

Generate a synthetic file: ``python -m strategies.marketdata generate --out FILE --ticks N --seed S``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

COLUMNS = ("ts", "kind", "bid", "bid_size", "ask", "ask_size", "price", "size", "side", "bids", "asks")
QUOTE, TRADE, BOOK = 0, 1, 2
KINDS = {"quote": QUOTE, "trade": TRADE, "book": BOOK}
KIND_NAMES = {v: k for k, v in KINDS.items()}


class MarketDataError(ValueError):
    """A market-data file is malformed; the message names the file, row and problem."""


@dataclass
class MarketData:
    """Columnar events (oldest first). Unused columns of a row hold 0.0; ``side`` is +1 buy, -1 sell."""

    ts: list[float] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    bid: list[float] = field(default_factory=list)
    bid_size: list[float] = field(default_factory=list)
    ask: list[float] = field(default_factory=list)
    ask_size: list[float] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    size: list[float] = field(default_factory=list)
    side: list[int] = field(default_factory=list)
    books: dict[int, tuple[list[tuple[float, float]], list[tuple[float, float]]]] = field(default_factory=dict)
    """Row index -> (bids, asks) of each ``book`` row; its bid/ask columns hold the best level."""
    metadata: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def add_quote(self, ts: float, bid: float, bid_size: float, ask: float, ask_size: float) -> None:
        """Append an L1 row."""
        self._append(ts, QUOTE, bid, bid_size, ask, ask_size, 0.0, 0.0, 0)

    def add_trade(self, ts: float, price: float, size: float, side: str) -> None:
        """Append a trade row (``side`` is the aggressor's)."""
        self._append(ts, TRADE, 0.0, 0.0, 0.0, 0.0, price, size, 1 if side == "buy" else -1)

    def add_book(self, ts: float, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        """Append an L2 row (levels best first)."""
        self.books[len(self.ts)] = (bids, asks)
        self._append(ts, BOOK, bids[0][0], bids[0][1], asks[0][0], asks[0][1], 0.0, 0.0, 0)

    def _append(
        self, ts: float, kind: int, bid: float, bid_size: float, ask: float, ask_size: float,
        price: float, size: float, side: int,
    ) -> None:
        self.ts.append(ts)
        self.kind.append(kind)
        self.bid.append(bid)
        self.bid_size.append(bid_size)
        self.ask.append(ask)
        self.ask_size.append(ask_size)
        self.price.append(price)
        self.size.append(size)
        self.side.append(side)


def _levels(text: str) -> list[tuple[float, float]]:
    levels = []
    for pair in text.split(";"):
        price, size = pair.split(":")
        levels.append((float(price), float(size)))
    return levels


def _format_levels(levels: list[tuple[float, float]]) -> str:
    return ";".join(f"{p!r}:{s!r}" for p, s in levels)


def _check_row(data: MarketData, i: int) -> str | None:
    ts = data.ts[i]
    if not math.isfinite(ts):
        return "ts is not a finite number"
    if i and ts < data.ts[i - 1]:
        return f"ts {ts} goes back in time (previous row {data.ts[i - 1]})"
    kind = data.kind[i]
    if kind == TRADE:
        if not (data.price[i] > 0 and data.size[i] > 0 and math.isfinite(data.price[i] * data.size[i])):
            return "trade price and size must be positive numbers"
        return None
    values = (data.bid[i], data.bid_size[i], data.ask[i], data.ask_size[i])
    if not all(v > 0 and math.isfinite(v) for v in values):
        return "bid, bid_size, ask and ask_size must be positive numbers"
    if data.bid[i] >= data.ask[i]:
        return f"crossed book: bid {data.bid[i]} >= ask {data.ask[i]}"
    if kind == BOOK:
        bids, asks = data.books[i]
        if any(bids[j][0] <= bids[j + 1][0] for j in range(len(bids) - 1)) or any(
            asks[j][0] >= asks[j + 1][0] for j in range(len(asks) - 1)
        ):
            return "book levels must be strictly ordered, best first"
        if any(not (p > 0 and s > 0) for p, s in bids + asks):
            return "book prices and sizes must be positive"
    return None


def load_market_data(path: str | Path) -> MarketData:
    """Read a CSV (plain or gzip; or, with pyarrow, a ``.parquet``) market-data file; ``MarketDataError``
    if malformed."""
    path = Path(path)
    if not path.exists():
        raise MarketDataError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        return _load_parquet(path)
    data = MarketData()
    with _open_text(path) as handle:
        header: list[str] | None = None
        reader = csv.reader(handle)
        for line_no, row in enumerate(reader, start=1):
            if not row:
                continue
            if row[0].startswith("#"):
                for item in " ".join(row).lstrip("#").split():
                    if "=" in item:
                        key, value = item.split("=", 1)
                        data.metadata[key.strip()] = value.strip()
                continue
            if header is None:
                header = [c.strip() for c in row]
                if tuple(header[: len(COLUMNS)]) != COLUMNS:
                    raise MarketDataError(f"{path}: header must be {','.join(COLUMNS)}, got {','.join(header)}")
                continue
            _parse_row(data, row, path, line_no)
    if header is None:
        raise MarketDataError(f"{path}: no header row")
    return data


def _open_text(path: Path) -> IO[str]:
    """The file as text; gzip-compressed files (told by their magic bytes) are decompressed on the fly."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return path.open(newline="", encoding="utf-8")


def _parse_row(data: MarketData, row: list[str], path: Path, line_no: int) -> None:
    try:
        ts = float(row[0])
        kind = row[1]
        if kind == "quote":
            data.add_quote(ts, float(row[2]), float(row[3]), float(row[4]), float(row[5]))
        elif kind == "trade":
            if row[8] not in ("buy", "sell"):
                raise MarketDataError(f"{path}:{line_no}: trade side must be buy or sell, got {row[8]!r}")
            data.add_trade(ts, float(row[6]), float(row[7]), row[8])
        elif kind == "book":
            data.add_book(ts, _levels(row[9]), _levels(row[10]))
        else:
            raise MarketDataError(f"{path}:{line_no}: kind must be quote, trade or book, got {kind!r}")
    except (IndexError, ValueError) as exc:
        if isinstance(exc, MarketDataError):
            raise
        raise MarketDataError(f"{path}:{line_no}: cannot read row {row!r} ({exc})") from None
    problem = _check_row(data, len(data) - 1)
    if problem:
        raise MarketDataError(f"{path}:{line_no}: {problem}")


def _load_parquet(path: Path) -> MarketData:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MarketDataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow); use CSV") from None
    table = pq.read_table(path).to_pydict()
    data = MarketData()
    rows = zip(*(table.get(c, [None] * len(table["ts"])) for c in COLUMNS), strict=True)
    for line_no, values in enumerate(rows, start=1):
        _parse_row(data, ["" if v is None else str(v) for v in values], path, line_no)
    return data


def write_market_data(data: MarketData, path: str | Path) -> None:
    """Write ``data`` as CSV (with its metadata as a ``#`` line)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        if data.metadata:
            handle.write("# " + " ".join(f"{k}={v}" for k, v in data.metadata.items()) + "\n")
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(len(data)):
            kind = data.kind[i]
            ts = repr(data.ts[i])
            if kind == QUOTE:
                writer.writerow((ts, "quote", repr(data.bid[i]), repr(data.bid_size[i]), repr(data.ask[i]),
                                 repr(data.ask_size[i]), "", "", "", "", ""))
            elif kind == TRADE:
                writer.writerow((ts, "trade", "", "", "", "", repr(data.price[i]), repr(data.size[i]),
                                 "buy" if data.side[i] > 0 else "sell", "", ""))
            else:
                bids, asks = data.books[i]
                writer.writerow((ts, "book", "", "", "", "", "", "", "", _format_levels(bids), _format_levels(asks)))


def generate_market_data(
    ticks: int,
    seed: int = 1,
    *,
    start_ts: float = 1_700_000_000.0,
    mid: float = 100.0,
    tick_size: float = 0.01,
    lot_size: float = 0.001,
    volatility_bps_per_sqrt_sec: float = 2.0,
    mean_interval_secs: float = 0.1,
    trade_probability: float = 0.2,
    book_every: int = 0,
    book_depth: int = 5,
    sweep_decay: float = 0.7,
    symbol: str = "SYN/USDT",
) -> MarketData:
    """A seeded synthetic feed: a log-random-walk mid, L1 quotes around it and touch trades.

    Each event is a trade with ``trade_probability`` (aggressor side a coin flip, exponential size,
    at the touch or ``j`` ticks through it with probability ~ exp(-sweep_decay * j)) or else an L1
    quote 1 or 2 ticks either side of the mid (the regime flips with probability 0.05 per event);
    with ``book_every`` > 0 every n-th event is an L2 snapshot of ``book_depth`` levels instead.
    """
    if ticks < 1:
        raise ValueError("ticks must be at least 1")
    rng = random.Random(seed)
    data = MarketData(metadata={"symbol": symbol, "tick_size": repr(tick_size), "lot_size": repr(lot_size),
                                "min_notional": "0"})
    sigma = volatility_bps_per_sqrt_sec / 1e4
    ts = start_ts
    log_mid = math.log(mid)
    places = max(0, -math.floor(math.log10(tick_size)) + 2)
    lot_places = max(0, -math.floor(math.log10(lot_size)) + 2)

    def lots(mean: float) -> float:
        return round(max(1, round(rng.expovariate(1.0 / mean) / lot_size)) * lot_size, lot_places)

    bid = ask = 0.0
    half_ticks = 1
    for n in range(ticks):
        dt = rng.expovariate(1.0 / mean_interval_secs)
        ts += dt
        log_mid += rng.gauss(0.0, sigma * math.sqrt(dt))
        m = math.exp(log_mid)
        if rng.random() < 0.05:  # the spread regime (1 or 2 ticks a side) changes now and then
            half_ticks = 3 - half_ticks
        bid = round((math.floor(m / tick_size) - half_ticks + 1) * tick_size, places)
        ask = round((math.floor(m / tick_size) + half_ticks) * tick_size, places)
        if n and rng.random() < trade_probability:
            buy = rng.random() < 0.5
            # most trades at the touch, some sweep deeper: P(j ticks through) ~ exp(-sweep_decay * j)
            through = min(20, int(rng.expovariate(sweep_decay)))
            price = round(ask + through * tick_size, places) if buy else round(bid - through * tick_size, places)
            data.add_trade(round(ts, 6), price, lots(2.0), "buy" if buy else "sell")
        elif book_every and n % book_every == 0:
            bids = [(round(bid - i * tick_size, places), lots(5.0 * (i + 1))) for i in range(book_depth)]
            asks = [(round(ask + i * tick_size, places), lots(5.0 * (i + 1))) for i in range(book_depth)]
            data.add_book(round(ts, 6), bids, asks)
        else:
            data.add_quote(round(ts, 6), bid, lots(5.0), ask, lots(5.0))
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m strategies.marketdata generate --out FILE --ticks N --seed S``."""
    parser = argparse.ArgumentParser(prog="python -m strategies.marketdata", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a synthetic market-data CSV")
    gen.add_argument("--out", required=True, help="output CSV path")
    gen.add_argument("--ticks", type=int, required=True, help="number of events")
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--mid", type=float, default=100.0, help="starting mid price")
    gen.add_argument("--tick-size", type=float, default=0.01)
    gen.add_argument("--lot-size", type=float, default=0.001)
    gen.add_argument("--volatility-bps-per-sqrt-sec", type=float, default=2.0)
    gen.add_argument("--mean-interval-secs", type=float, default=0.1)
    gen.add_argument("--trade-probability", type=float, default=0.2)
    gen.add_argument("--book-every", type=int, default=0, help="every n-th event an L2 snapshot (0: never)")
    args = parser.parse_args(argv)
    checks = {
        "--ticks": args.ticks >= 1,
        "--mid": args.mid > 0,
        "--tick-size": args.tick_size > 0,
        "--lot-size": args.lot_size > 0,
        "--volatility-bps-per-sqrt-sec": args.volatility_bps_per_sqrt_sec >= 0,
        "--mean-interval-secs": args.mean_interval_secs > 0,
        "--trade-probability": 0 <= args.trade_probability < 1,
        "--book-every": args.book_every >= 0,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        parser.error(f"out of range: {', '.join(bad)}")
    data = generate_market_data(
        args.ticks, args.seed, mid=args.mid, tick_size=args.tick_size, lot_size=args.lot_size,
        volatility_bps_per_sqrt_sec=args.volatility_bps_per_sqrt_sec, mean_interval_secs=args.mean_interval_secs,
        trade_probability=args.trade_probability, book_every=args.book_every,
    )
    try:
        write_market_data(data, args.out)
    except OSError as exc:
        parser.error(f"cannot write {args.out}: {exc}")
    print(f"wrote {len(data)} events to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
