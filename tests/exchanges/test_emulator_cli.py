"""``python -m exchanges.emulator``: serves ccxt, and says clearly (no traceback) what is wrong."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest

from exchanges.ccxt_config import binance_config_for, config_for
from exchanges.emulator.cli import ArgumentError, parse_account
from mmplatform.ports import free_port

ROOT = Path(__file__).resolve().parents[2]




def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exchanges.emulator", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_parse_account():
    account = parse_account("K1:S1:BTC=10,usdt=1000000.5")
    assert (account.api_key, account.secret) == ("K1", "S1")
    assert account.balances == {"BTC": Decimal("10"), "USDT": Decimal("1000000.5")}
    assert parse_account("K:S").balances == {}
    for bad in ("K", ":S", "K:S:BTC", "K:S:BTC=abc", "K:S:BTC=-1", "K:S:B-C=1"):
        with pytest.raises(ArgumentError):
            parse_account(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "nokey"], "--account 'nokey'"),
        (["--symbols", "BTCUSDT"], "bad symbol 'BTCUSDT'"),
        (["--error-rate", "1.5"], "error_rate must be within 0..1"),
        (["--maker-fee", "x"], "--maker-fee/--taker-fee"),
        (["--port", "70000"], "--port 70000"),
        (["--venue", "okx", "--account", "K:S"], "--passphrase"),
        (["--venue", "kraken"], "invalid choice: 'kraken'"),
    ],
)
def test_malformed_arguments_exit_2_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_serves_ccxt_and_reports_a_taken_port():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exchanges.emulator", "--port", str(port), "--seed", "3", "--symbols", "ETH/USDT",
         "--account", "KEY:SECRET:ETH=2,USDT=1000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/ping", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.time() < deadline, "the emulator did not start"
                time.sleep(0.1)
        exchange = ccxt.binance(binance_config_for(f"http://127.0.0.1:{port}", "KEY", "SECRET"))
        assert list(exchange.load_markets()) == ["ETH/USDT"]
        assert exchange.fetch_balance()["ETH"]["free"] == 2
        taken = run_cli("--port", str(port))
        assert taken.returncode == 2
        assert taken.stderr.strip() == f"error: 127.0.0.1:{port} is already in use"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(("venue", "ping"), [("okx", "/api/v5/public/time"), ("bybit", "/v5/market/time")])
def test_serves_the_okx_and_bybit_dialects(venue, ping):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exchanges.emulator", "--venue", venue, "--passphrase", "PASS", "--port", str(port),
         "--symbols", "ETH/USDT", "--account", "KEY:SECRET:ETH=2,USDT=1000", "--market-step-ms", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{ping}", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.time() < deadline, "the emulator did not start"
                time.sleep(0.1)
        exchange = getattr(ccxt, venue)(config_for(venue, f"http://127.0.0.1:{port}", "KEY", "SECRET",
                                                   "PASS" if venue == "okx" else ""))
        assert list(exchange.load_markets()) == ["ETH/USDT"]
        assert exchange.fetch_balance()["ETH"]["free"] == 2
    finally:
        process.terminate()
        process.wait(10)


def test_no_stp_runs_a_venue_without_self_trade_prevention():
    import argparse

    from exchanges.emulator.cli import add_arguments, config_from_options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_options(vars(parser.parse_args([]))).self_trade_prevention
    assert not config_from_options(vars(parser.parse_args(["--no-stp"]))).self_trade_prevention
