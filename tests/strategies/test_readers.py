"""Readers for Binance and Tardis dumps, the converter to the native format, bounded memory."""

from __future__ import annotations

import gzip
import itertools
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from strategies.backtest import main
from strategies.marketdata import BOOK, QUOTE, TRADE, load_market_data
from strategies.readers import (
    Book,
    DataFormatError,
    Quote,
    Trade,
    convert,
    merge_by_time,
    native_events,
    open_reader,
)

DATA = Path(__file__).parent / "data"
BOOKTICKER = DATA / "BTCUSDT-bookTicker-2024-03-01.csv"
FUTURES_TRADES = DATA / "BTCUSDT-trades-2024-03-01.csv"
SPOT_TRADES = DATA / "ETHUSDT-trades-2025-01-02.csv"
TARDIS_QUOTES = DATA / "tardis_binance-futures_quotes_2024-03-01_BTCUSDT.csv"
TARDIS_TRADES = DATA / "tardis_binance-futures_trades_2024-03-01_BTCUSDT.csv"
TARDIS_L2 = DATA / "tardis_binance-futures_incremental_book_L2_2024-03-01_BTCUSDT.csv"

SAMPLES = [
    ("binance-bookticker", BOOKTICKER, Quote, 40),
    ("binance-trades", FUTURES_TRADES, Trade, 30),
    ("binance-trades", SPOT_TRADES, Trade, 30),
    ("tardis-quotes", TARDIS_QUOTES, Quote, 40),
    ("tardis-trades", TARDIS_TRADES, Trade, 30),
]


@pytest.mark.parametrize(("fmt", "path", "kind", "count"), SAMPLES)
def test_each_reader_on_its_sample(fmt, path, kind, count) -> None:
    reader = open_reader(fmt, path)
    events = list(reader)
    assert len(events) == count == reader.stats.events
    assert all(type(e) is kind for e in events)
    assert all(b.ts >= a.ts for a, b in itertools.pairwise(events))
    assert 1.7e9 < events[0].ts < 1.8e9
    if kind is Quote:
        assert all(e.bid < e.ask and e.bid_size > 0 and e.ask_size > 0 for e in events)


def test_binance_bookticker_values_and_no_header_variant(tmp_path) -> None:
    first = next(iter(open_reader("binance-bookticker", BOOKTICKER)))
    # 4081203391125,61750.0,8.851,61750.1,4.560,1709251200020,1709251200022 (event_time by default)
    assert first == Quote(1709251200.022, 61750.0, 8.851, 61750.1, 4.56)
    assert next(iter(open_reader("binance-bookticker", BOOKTICKER, time="transaction"))).ts == 1709251200.020
    headerless = tmp_path / "BTCUSDT-bookTicker-2020-01-01.csv"
    headerless.write_text("".join(BOOKTICKER.read_text().splitlines(keepends=True)[1:]))
    assert list(open_reader("binance-bookticker", headerless)) == list(open_reader("binance-bookticker", BOOKTICKER))


def test_binance_trades_sides_and_time_units() -> None:
    futures = list(open_reader("binance-trades", FUTURES_TRADES))
    # 4689012346,61750.1,0.972,...,1709251200098,false: the buyer took liquidity
    assert futures[0] == Trade(1709251200.098, 61750.1, 0.972, "buy")
    assert futures[1].side == "sell"  # is_buyer_maker true: a seller hit the bid
    spot = list(open_reader("binance-trades", SPOT_TRADES))  # headerless, 7 columns, µs times
    assert spot[0] == Trade(1735776000.007442, 3352.17, 3.1373, "sell")


def test_tardis_trades_unknown_side_by_tick_rule(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                    "bitmex,XBTUSD,1000000,1000100,1,sell,100.5,1\n"
                    "bitmex,XBTUSD,2000000,2000100,2,unknown,101.0,1\n"
                    "bitmex,XBTUSD,3000000,3000100,3,unknown,101.0,1\n"
                    "bitmex,XBTUSD,4000000,4000100,4,unknown,100.0,1\n")
    sides = [t.side for t in open_reader("tardis-trades", path)]
    assert sides == ["sell", "buy", "buy", "sell"]
    assert next(iter(open_reader("tardis-trades", path))).ts == 1.0001  # local_timestamp by default
    assert next(iter(open_reader("tardis-trades", path, time="exchange"))).ts == 1.0


def test_tardis_quotes_skip_empty_sides_and_crossed(tmp_path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
                    "deribit,BTC-PERPETUAL,1000000,1000000,10,100.5,100.0,20\n"
                    "deribit,BTC-PERPETUAL,2000000,2000000,,,100.0,20\n"
                    "deribit,BTC-PERPETUAL,3000000,3000000,10,100.0,100.0,20\n"
                    "deribit,BTC-PERPETUAL,4000000,3500000,10,101.0,100.5,20\n")
    reader = open_reader("tardis-quotes", path)
    events = list(reader)
    assert events == [Quote(1.0, 100.0, 20.0, 100.5, 10.0), Quote(3.5, 100.5, 20.0, 101.0, 10.0)]
    assert (reader.stats.skipped, reader.stats.crossed) == (1, 1)
    assert reader.symbol == "BTC-PERPETUAL"


def test_tardis_l2_maintains_the_book() -> None:
    reader = open_reader("tardis-l2", TARDIS_L2, depth=3)
    events = list(reader)
    assert all(type(e) is Book for e in events)
    snapshot = events[0]
    assert snapshot.bids == ((61750.0, 0.5), (61749.9, 1.0), (61749.8, 1.5))
    assert snapshot.asks == ((61750.1, 0.75), (61750.2, 1.5), (61750.3, 2.25))
    # replay the file by hand: the last event is the final book's top 3
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for line in TARDIS_L2.read_text().splitlines()[1:]:
        _, _, _, _, _, side, price, amount = line.split(",")
        book = bids if side == "bid" else asks
        if float(amount) == 0:
            book.pop(float(price), None)
        else:
            book[float(price)] = float(amount)
    top_bids = tuple(sorted(bids.items(), reverse=True)[:3])
    top_asks = tuple(sorted(asks.items())[:3])
    assert (events[-1].bids, events[-1].asks) == (top_bids, top_asks)
    # unchanged tops are not repeated
    assert all((a.bids, a.asks) != (b.bids, b.asks) for a, b in itertools.pairwise(events))
    quotes = list(open_reader("tardis-l2", TARDIS_L2, depth=1))
    assert all(type(q) is Quote for q in quotes) and quotes[0].bid == 61750.0


def test_tardis_l2_new_snapshot_replaces_the_book(tmp_path) -> None:
    path = tmp_path / "l2.csv"
    header = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
    path.write_text(header + "x,S,1,1,true,bid,10.0,1\nx,S,1,1,true,ask,11.0,1\nx,S,1,1,true,bid,9.0,1\n"
                             "x,S,2,2,false,bid,10.0,0\n"
                             "x,S,3,3,true,bid,8.0,2\nx,S,3,3,true,ask,8.5,3\n")
    events = list(open_reader("tardis-l2", path))
    assert [(e.bids, e.asks) for e in events] == [
        (((10.0, 1.0), (9.0, 1.0)), ((11.0, 1.0),)),
        (((9.0, 1.0),), ((11.0, 1.0),)),
        (((8.0, 2.0),), ((8.5, 3.0),)),  # the old 9.0 bid and 11.0 ask are gone
    ]


HEADERS = {
    "binance-bookticker": "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,"
                          "event_time\n1,100.0,1.0,100.1,1.0,1700000000000,1700000000000\n",
    "binance-trades": "id,price,qty,quote_qty,time,is_buyer_maker\n1,100.0,1.0,100.0,1700000000000,true\n",
    "tardis-quotes": "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
                     "x,S,1700000000000000,1700000000000000,1,100.1,100.0,1\n",
    "tardis-trades": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                     "x,S,1700000000000000,1700000000000000,1,buy,100.0,1\n",
    "tardis-l2": "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
                 "x,S,1700000000000000,1700000000000000,true,bid,100.0,1\n",
}


@pytest.mark.parametrize(
    ("fmt", "row", "column", "problem"),
    [
        ("binance-bookticker", "2,abc,1.0,100.1,1.0,1700000000001,1700000000001", "best_bid_price",
         "'abc' is not a number"),
        ("binance-bookticker", "2,100.0,-1,100.1,1.0,1700000000001,1700000000001", "best_bid_qty",
         "must be a positive number"),
        ("binance-bookticker", "2,100.0,1.0,100.1,1.0,1700000000001,soon", "event_time",
         "not an integer timestamp"),
        ("binance-bookticker", "2,100.0,1.0,100.1", None, "expected 7 columns, got 4"),
        ("binance-trades", "2,100.0,1.0,100.0,1700000000001,maybe", "is_buyer_maker", "must be true or false"),
        ("binance-trades", "2,nan,1.0,100.0,1700000000001,true", "price", "must be a positive number"),
        ("tardis-quotes", "x,S,1700000000000001,1700000000000001,1,100.1,100.0,inf", "bid_amount",
         "must be a positive number"),
        ("tardis-quotes", "x,OTHER,1700000000000001,1700000000000001,1,100.1,100.0,1", "symbol",
         "a second symbol 'OTHER'"),
        ("tardis-trades", "x,S,1700000000000001,1700000000000001,2,up,100.0,1", "side",
         "must be buy, sell or unknown"),
        ("tardis-l2", "x,S,1700000000000001,1700000000000001,false,middle,100.0,1", "side", "must be bid or ask"),
        ("tardis-l2", "x,S,1700000000000001,1700000000000001,false,ask,100.5,-2", "amount",
         "must be a non-negative number"),
        ("tardis-l2", "x,S,1700000000000001,1700000000000001,perhaps,ask,100.5,2", "is_snapshot",
         "must be true or false"),
    ],
)
def test_malformed_rows_name_file_line_column_and_problem(tmp_path, fmt, row, column, problem) -> None:
    path = tmp_path / f"bad-{fmt}.csv"
    path.write_text(HEADERS[fmt] + row + "\n")
    with pytest.raises(DataFormatError) as info:
        list(open_reader(fmt, path))
    error = info.value
    assert (error.path, error.line, error.column) == (str(path), 3, column)
    assert problem in error.problem
    assert str(error).startswith(f"{path}:3: ") and problem in str(error)


def test_wrong_file_for_the_format_is_named(tmp_path) -> None:
    with pytest.raises(DataFormatError, match="not a tardis-quotes file: header lacks"):
        list(open_reader("tardis-quotes", TARDIS_TRADES))
    with pytest.raises(DataFormatError, match="not a binance-trades file"):
        list(open_reader("binance-trades", TARDIS_QUOTES))
    headerless = tmp_path / "bookticker.csv"
    headerless.write_text("".join(BOOKTICKER.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(DataFormatError, match="column 'is_buyer_maker': must be true or false"):
        list(open_reader("binance-trades", headerless))  # a headerless bookTicker dump read as trades
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataFormatError, match="empty file"):
        list(open_reader("tardis-trades", empty))
    with pytest.raises(ValueError, match="unknown data format 'csv'"):
        open_reader("csv", empty)


def test_gzip_and_zip_inputs_read_the_same(tmp_path) -> None:
    plain = list(open_reader("tardis-quotes", TARDIS_QUOTES))
    gz = tmp_path / "quotes.csv.gz"
    with TARDIS_QUOTES.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert list(open_reader("tardis-quotes", gz)) == plain
    zipped = tmp_path / "BTCUSDT-bookTicker-2024-03-01.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(BOOKTICKER, BOOKTICKER.name)
    assert list(open_reader("binance-bookticker", zipped)) == list(open_reader("binance-bookticker", BOOKTICKER))
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gz.read_bytes()[:300])
    with pytest.raises(DataFormatError, match="cannot read the file"):
        list(open_reader("tardis-quotes", truncated))


def _write_big_bookticker(path: Path, rows: int) -> None:
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write("update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time\n")
        for i in range(rows):
            bid = 60000 + (i % 997) / 10
            out.write(f"{i},{bid:.1f},{1 + i % 13}.5,{bid + 0.1:.1f},{2 + i % 7}.25,{1700000000000 + i},"
                      f"{1700000000000 + i}\n")


def test_memory_stays_bounded_reading_and_converting(tmp_path) -> None:
    """30k rows (~1.8 MB of text): iterating and converting allocate a small, fixed amount — the
    peak is far below the text's size and the same for a file a fifth as long."""
    small, big = tmp_path / "small.csv.gz", tmp_path / "big.csv.gz"
    _write_big_bookticker(small, 6_000)
    _write_big_bookticker(big, 30_000)
    text_bytes = len(gzip.decompress(big.read_bytes()))

    def peak(action) -> int:
        tracemalloc.start()
        try:
            action()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def count(path: Path) -> None:
        n = sum(1 for _ in open_reader("binance-bookticker", path))
        assert n > 0

    big_read = peak(lambda: count(big))
    small_read = peak(lambda: count(small))
    big_convert = peak(lambda: convert([("binance-bookticker", big)], tmp_path / "out.csv.gz", symbol="BTC/USDT"))
    assert text_bytes > 1_700_000
    assert big_read < 500_000 and big_convert < 1_000_000, (big_read, big_convert)
    assert big_read < small_read * 2 + 200_000  # no growth with the file's length
    assert sum(1 for _ in gzip.open(tmp_path / "out.csv.gz", "rt")) == 30_000 + 2


def test_convert_round_trips_every_format(tmp_path) -> None:
    for fmt, path, _, count in SAMPLES:
        out = tmp_path / f"{path.stem}.native.csv"
        rows, _ = convert([(fmt, path)], out)
        assert rows == count
        assert list(native_events(load_market_data(out))) == list(open_reader(fmt, path))
    out = tmp_path / "l2.native.csv.gz"  # gzip output; the native loader reads it as is
    convert([("tardis-l2", TARDIS_L2)], out, depth=5)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    data = load_market_data(out)
    assert set(data.kind) == {BOOK}
    assert list(native_events(data)) == list(open_reader("tardis-l2", TARDIS_L2, depth=5))
    assert data.metadata == {"symbol": "BTC/USDT", "tick_size": "0.1", "lot_size": "0.001", "min_notional": "0"}


def test_convert_cli_merges_quotes_and_trades_by_time(tmp_path, capsys) -> None:
    out = tmp_path / "merged.csv"
    code = main(["convert", "--from", "binance-bookticker", "--to", "native", str(BOOKTICKER), str(out),
                 "--merge", f"binance-trades:{FUTURES_TRADES}", "--symbol", "BTC/USDT", "--tick-size", "0.1"])
    assert code == 0, capsys.readouterr().err
    data = load_market_data(out)
    assert len(data) == 70 and data.kind.count(QUOTE) == 40 and data.kind.count(TRADE) == 30
    assert data.ts == sorted(data.ts)
    expected = list(merge_by_time([open_reader("binance-bookticker", BOOKTICKER),
                                   open_reader("binance-trades", FUTURES_TRADES)]))
    assert list(native_events(data)) == expected
    assert data.metadata["symbol"] == "BTC/USDT" and data.metadata["lot_size"] == "0.001"
    # and the backtester reads the dumps directly, merged the same way
    assert main(["--data", str(BOOKTICKER), "--data", str(FUTURES_TRADES), "--data-format", "binance-bookticker",
                 "--data-format", "binance-trades", "--strategy", "NONE", "--json"]) == 0
    assert '"events": 70' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "binance-bookticker", str(TARDIS_QUOTES)], "not a binance-bookticker file"),
        (["--from", "tardis-quotes", "/nonexistent.csv"], "no such file"),
        (["--from", "tardis-quotes", str(TARDIS_QUOTES), "--merge", "kraken:x.csv"], "--merge expects FMT:FILE"),
        (["--from", "tardis-quotes", str(TARDIS_QUOTES), "--tick-size", "0"], "--tick-size must be greater"),
        (["--from", "tardis-quotes", str(TARDIS_QUOTES), "--time", "event"], "--time event is for binance"),
    ],
)
def test_convert_cli_bad_input_is_one_clear_line(tmp_path, capsys, args, message) -> None:
    out = tmp_path / "out.csv"
    assert main(["convert", *args[:3], str(out), *args[3:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(("fmt", "path", "depth"), [
    *((fmt, path, 10) for fmt, path, _, _ in SAMPLES), ("tardis-l2", TARDIS_L2, 4), ("tardis-l2", TARDIS_L2, 1),
])
def test_native_converts_back_to_each_vendor_format(tmp_path, capsys, fmt, path, depth) -> None:
    """dump -> native -> the dump's format: the same events read back."""
    native = tmp_path / "native.csv"
    again = tmp_path / f"again-{fmt}.csv.gz"
    assert main(["convert", "--from", fmt, str(path), str(native), "--depth", str(depth)]) == 0
    assert main(["convert", "--from", "native", "--to", fmt, str(native), str(again), "--exchange",
                 "binance-futures"]) == 0, capsys.readouterr().err
    assert list(open_reader(fmt, again, depth=depth)) == list(open_reader(fmt, path, depth=depth))
    if fmt.startswith("tardis"):
        assert gzip.open(again, "rt").read().splitlines()[1].startswith("binance-futures,BTCUSDT,")


def test_vendor_output_drops_what_it_cannot_hold(tmp_path, capsys) -> None:
    out = tmp_path / "quotes.csv"
    assert main(["convert", "--from", "tardis-quotes", str(TARDIS_QUOTES), str(out), "--to", "tardis-quotes",
                 "--merge", f"tardis-trades:{TARDIS_TRADES}"]) == 0
    err = capsys.readouterr().err
    assert "wrote 40 rows" in err and "30 events tardis-quotes cannot hold dropped" in err
    assert list(open_reader("tardis-quotes", out)) == list(open_reader("tardis-quotes", TARDIS_QUOTES))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", str(BOOKTICKER), "--data-format", "kraken"], "unknown --data-format 'kraken'"),
        (["--data", str(BOOKTICKER), "--data", str(FUTURES_TRADES), "--data-format", "binance-bookticker",
          "--data-format", "binance-trades", "--data-format", "native"], "one per --data (2 files, 3 formats)"),
        (["--data", str(FUTURES_TRADES), "--data-format", "binance-bookticker"], "not a binance-bookticker file"),
        (["--data", str(TARDIS_L2), "--data-format", "tardis-l2", "--depth", "0"], "depth must be at least 1"),
    ],
)
def test_backtest_cli_data_format_errors_are_one_line(capsys, args, message) -> None:
    assert main([*args, "--strategy", "NONE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
