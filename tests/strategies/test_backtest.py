"""Backtester (book model, strategies/replay.py): a hand-checked replay, the P&L identity, the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from strategies.backtest import BacktestSettings, main, run_backtest, settings_from_metadata
from strategies.config import STRATEGY_TYPES, OrderConfig, StrategyConfig
from strategies.marketdata import (
    MarketDataError,
    generate_market_data,
    load_market_data,
    write_market_data,
)
from strategies.selection import create_strategy
from strategies.types import RiskContext

TINY = """# symbol=T/USD tick_size=0.01 lot_size=0.1 min_notional=0
ts,kind,bid,bid_size,ask,ask_size,price,size,side,bids,asks
0.0,quote,99.99,1.0,100.01,1.0,,,,,
1.0,trade,,,,,100.10,2.0,buy,,
2.0,quote,99.80,1.0,99.85,1.0,,,,,
"""


def grid(**order_changes) -> object:
    config = StrategyConfig(grid_levels=1, spread_bps=20.0, inventory_skew_bps=0.0)
    order = OrderConfig(**{"maker_fee_bps": 10.0, "min_spread_bps": 0.0, **order_changes})
    return create_strategy("GRID_TRADING", "T/USD", None, config, order)


def test_tiny_file_hand_checked(tmp_path) -> None:
    """Bot quotes 99.90 x 1.0 / 100.10 x 0.9 around mid 100. A buy trade of 2.0 at 100.10 is at the
    bot's ask price, where the L1 book showed nothing ahead of it: it fills the ask's 0.9. Then the ask
    drops to 99.85, through the bot's bid (a crossed quote, 1.0 displayed): the bot buys 1.0 at 99.90.
    Maker fee 10 bps in the asset received."""
    path = tmp_path / "tiny.csv"
    path.write_text(TINY)
    data = load_market_data(path)
    settings = settings_from_metadata(data, initial_base=5.0, initial_quote=1000.0, analysis_interval_secs=0.0)
    risk = RiskContext(min_order_size_quote=1.0)
    result = run_backtest(data, grid(), settings, risk)

    assert (result.fills, result.sell_fills, result.buy_fills) == (2, 1, 1)
    assert result.volume_base == pytest.approx(1.9)
    assert result.volume_quote == pytest.approx(0.9 * 100.10 + 99.90)
    # balances, as the replay holds them
    assert result.final_base == pytest.approx(5.0 - 0.9 + 1.0 - 0.001, abs=1e-12)
    assert result.final_quote == pytest.approx(1000.0 + 90.09 - 0.09009 - 99.90, abs=1e-9)
    assert result.fees == pytest.approx(0.09009 + 0.001 * 99.90, abs=1e-12)
    average_cost = (4.1 * 100.0 + 99.90) / 5.1
    realised = 0.9 * 0.10 + (99.90 - average_cost) * 0.001
    assert result.realised_pnl == pytest.approx(realised, abs=1e-9)
    assert result.unrealised_pnl == pytest.approx(5.099 * (99.825 - average_cost), abs=1e-9)
    assert result.equity_start == pytest.approx(1500.0)
    assert result.equity_end == pytest.approx(990.09991 + 5.099 * 99.825, abs=1e-9)
    assert result.total_pnl == pytest.approx(-0.892415, abs=1e-6)
    assert result.equity_change == pytest.approx(result.total_pnl, abs=1e-9)
    assert result.spread_capture == pytest.approx(0.9 * 0.10 + 1.0 * 0.10)
    assert result.quote_uptime == pytest.approx(0.5)  # both sides from 0 to 1 s, only the bid after
    assert result.max_drawdown == pytest.approx(0.892415, abs=1e-6)


@pytest.mark.parametrize("kind", STRATEGY_TYPES)
def test_pnl_identity_and_engine_balances(kind) -> None:
    data = generate_market_data(6000, seed=11, volatility_bps_per_sqrt_sec=3.0)
    settings = dataclasses.replace(settings_from_metadata(data), initial_base=10.0, initial_quote=1000.0,
                                   analysis_interval_secs=30.0)
    config = StrategyConfig(grid_levels=2, spread_bps=2.0, level_spacing_bps=1.0, as_horizon_secs=20.0,
                            risk_aversion=0.05, trend_pull_threshold=0.9, volatility_spread_multiplier=0.1)
    order = OrderConfig(maker_fee_bps=1.0, min_spread_bps=1.0, order_size_quote=50.0)
    strategy = create_strategy(kind, settings.symbol, None, config, order)
    risk = RiskContext(min_order_size_quote=1.0, volatility_pause_threshold=1.0)
    result = run_backtest(data, strategy, settings, risk)
    assert result.fills > 20, result.summary()
    assert result.fees > 0
    # realised + unrealised - fees = equity change
    assert result.total_pnl == pytest.approx(result.equity_change, abs=1e-6)
    # the average-cost bookkeeping matches the balances the replay holds (kept apart)
    mid = result.series["mid"][-1]
    assert result.equity_end == pytest.approx(result.final_quote + result.final_base * mid, abs=1e-6)
    assert 0.0 < result.quote_uptime <= 1.0
    assert result.orders_rejected == 0


def test_data_only_replay_moves_only_the_valuation() -> None:
    data = generate_market_data(3000, seed=5, book_every=7)
    settings = settings_from_metadata(data)
    result = run_backtest(data, None, settings)
    assert (result.fills, result.orders_placed, result.fees, result.realised_pnl) == (0, 0, 0, 0)
    first_mid, last_mid = result.series["mid"][0], result.series["mid"][-1]
    assert result.equity_change == pytest.approx(settings.initial_base * (last_mid - first_mid), abs=1e-9)
    assert result.quote_uptime == 0.0


def test_l2_book_rows_are_replayed() -> None:
    data = generate_market_data(4000, seed=9, book_every=5)
    assert data.books
    settings = settings_from_metadata(data, analysis_interval_secs=0.0)
    result = run_backtest(data, grid(maker_fee_bps=0.0), settings, RiskContext(min_order_size_quote=1.0))
    assert result.orders_placed > 0
    assert result.total_pnl == pytest.approx(result.equity_change, abs=1e-6)


def test_same_inputs_same_result() -> None:
    data = generate_market_data(3000, seed=2)
    settings = settings_from_metadata(data)
    risk = RiskContext(min_order_size_quote=1.0)
    a = run_backtest(data, grid(maker_fee_bps=0.0), settings, risk).summary()
    b = run_backtest(data, grid(maker_fee_bps=0.0), settings, risk).summary()
    for key in ("wall_secs", "events_per_sec"):
        a.pop(key), b.pop(key)
    assert a == b


def test_bad_settings_are_refused() -> None:
    data = generate_market_data(10, seed=1)
    with pytest.raises(ValueError, match="tick_size must be greater than 0"):
        run_backtest(data, None, BacktestSettings(tick_size=0.0))
    with pytest.raises(ValueError, match="no maker rebates"):
        run_backtest(data, grid(maker_fee_bps=-1.0), settings_from_metadata(data))


# --- market-data files --------------------------------------------------------------------------


def test_generated_data_round_trips_through_csv(tmp_path) -> None:
    data = generate_market_data(500, seed=4, book_every=9)
    path = tmp_path / "md.csv"
    write_market_data(data, path)
    again = load_market_data(path)
    assert again.ts == data.ts and again.kind == data.kind and again.price == data.price
    assert again.books == data.books and again.metadata == data.metadata
    assert set(data.kind) == {0, 1, 2}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1.0,quote,100.0,1.0,99.0,1.0,,,,,", "crossed book"),
        ("1.0,candle,,,,,,,,,", "kind must be quote, trade or book"),
        ("0.5,quote,99.0,1.0,100.0,1.0,,,,,", "goes back in time"),
        ("1.0,trade,,,,,100.0,1.0,up,,", "trade side must be buy or sell"),
        ("1.0,trade,,,,,-5,1.0,buy,,", "must be positive"),
        ("1.0,quote,abc,1.0,100.0,1.0,,,,,", "cannot read row"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, row, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ts,kind,bid,bid_size,ask,ask_size,price,size,side,bids,asks\n"
                    "0.9,quote,99.0,1.0,100.0,1.0,,,,,\n" + row + "\n")
    with pytest.raises(MarketDataError, match=message) as info:
        load_market_data(path)
    assert "bad.csv:3" in str(info.value)


def test_marketdata_generate_cli(tmp_path) -> None:
    from strategies.marketdata import main as marketdata_main

    out = tmp_path / "gen.csv"
    assert marketdata_main(["generate", "--out", str(out), "--ticks", "300", "--seed", "3"]) == 0
    assert len(load_market_data(out)) == 300
    with pytest.raises(SystemExit):
        marketdata_main(["generate", "--out", str(out), "--ticks", "0"])


# --- the backtest CLI ---------------------------------------------------------------------------


def test_backtest_cli_json_and_report(tmp_path, capsys) -> None:
    data_path = tmp_path / "md.csv"
    write_market_data(generate_market_data(2000, seed=6), data_path)
    report = tmp_path / "report.png"
    code = main(["--data", str(data_path), "--strategy", "INVENTORY_BASED", "--set", "grid_levels=1",
                 "--set", "maker_fee_bps=0", "--set", "as_horizon_secs=30", "--min-order-size-quote", "1",
                 "--report", str(report), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["strategy"] == "INVENTORY_BASED" and summary["events"] == 2000
    assert summary["total_pnl"] == pytest.approx(summary["equity_change"], abs=1e-6)
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "spread_bps=-1"], "Invalid strategy parameters"),
        (["--set", "colour=blue"], "unknown field 'colour'"),
        (["--set", "grid_levels=many"], "not a valid int"),
        (["--report", "out.txt"], "must name a .png file"),
        (["--tick-size", "0"], "tick_size must be greater than 0"),
    ],
)
def test_backtest_cli_bad_input_is_one_clear_line(tmp_path, capsys, args, message) -> None:
    data_path = tmp_path / "md.csv"
    write_market_data(generate_market_data(50, seed=1), data_path)
    assert main(["--data", str(data_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_backtest_cli_missing_file(capsys) -> None:
    assert main(["--data", "/nonexistent/md.csv"]) == 2
    assert "no such file" in capsys.readouterr().err
