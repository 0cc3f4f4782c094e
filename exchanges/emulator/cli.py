"""Command-line options of the emulator, shared by ``python -m exchanges.emulator`` and the
``run_exchange_emulator`` management command so both accept exactly the same arguments."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import os
import signal
import sys
import time
from dataclasses import replace
from decimal import Decimal, InvalidOperation

from exchanges.emulator.market import (
    DEMO_DAILY_VOLATILITY,
    DEMO_DEFAULT_DAILY_VOLATILITY,
    DEMO_MAKER_FEE_RATE,
    DEMO_TAKER_FEE_RATE,
    MAX_WALK_CATCH_UP_MS,
    bps_per_sqrt_sec,
    demo_dynamics,
)
from exchanges.emulator.server import AccountConfig, EmulatorConfig, EmulatorServer, FaultConfig, market_spec_for


class ArgumentError(ValueError):
    """A malformed command-line value, reported as one line without a traceback."""


def parse_account(text: str) -> AccountConfig:
    """``KEY:SECRET:BTC=10,USDT=1000000`` -> AccountConfig (balances optional)."""
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ArgumentError(f"--account {text!r}: expected KEY:SECRET[:ASSET=AMOUNT,...]")
    balances: dict[str, Decimal] = {}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            asset, sep, amount = item.partition("=")
            try:
                value = Decimal(amount)
            except InvalidOperation:
                value = Decimal("NaN")
            if not sep or not asset.isalnum() or not value.is_finite() or value < 0:
                raise ArgumentError(f"--account {text!r}: bad balance {item!r}, expected ASSET=AMOUNT")
            balances[asset.upper()] = value
    return AccountConfig(api_key=parts[0], secret=parts[1], balances=balances)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the emulator's options on ``parser`` (each help shows its default)."""
    from exchanges.emulator.market import SymbolDynamics

    dynamics = {f.name: f.default for f in dataclasses.fields(SymbolDynamics)}
    parser.add_argument("--venue", choices=["binance", "okx", "bybit"], default="binance",
                        help="the REST dialect to speak, one matching engine either way (default %(default)s)")
    parser.add_argument("--passphrase", default="",
                        help="passphrase of every --account, for venues that sign with one (OKX) (default: none)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8900, help="TCP port (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic market (default %(default)s)")
    parser.add_argument("--symbols", default="BTC/USDT,ETH/USDT",
                        help="comma-separated symbols to list (default %(default)s)")
    parser.add_argument("--account", action="append", default=[], metavar="KEY:SECRET:ASSET=AMOUNT,...",
                        help="an API key pair and starting balances (repeatable; default: no account)")
    parser.add_argument("--admin-token", default=None,
                        help="shared token for the /admin endpoints (default: $EMULATOR_ADMIN_TOKEN; "
                             "neither set: the admin API is off)")
    demo_vols = ", ".join(
        f"{symbol} {daily:.1%}/day = {bps_per_sqrt_sec(daily):.2f}" for symbol, daily in DEMO_DAILY_VOLATILITY.items()
    )
    parser.add_argument("--maker-fee", default=str(DEMO_MAKER_FEE_RATE),
                        help="maker fee rate, e.g. 0.001 = 0.1%% (default %(default)s: a top-volume VIP tier)")
    parser.add_argument("--taker-fee", default=str(DEMO_TAKER_FEE_RATE), help="taker fee rate (default %(default)s)")
    parser.add_argument("--market-step-ms", type=int, default=100,
                        help="synthetic market step in ms, 0 = frozen (default %(default)s)")
    parser.add_argument("--volatility-bps", type=float, default=None,
                        help="mid volatility of every symbol, bps per sqrt(second) (default: the demo market's, "
                             f"{demo_vols}, others {DEMO_DEFAULT_DAILY_VOLATILITY:.1%}/day)".replace("%", "%%"))
    parser.add_argument("--noise-rate", type=float, default=None,
                        help="noise-trader market orders per second per symbol "
                             f"(default {dynamics['noise_arrival_rate_per_sec']:g})")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="added latency per request, ms (default %(default)s)")
    parser.add_argument("--latency-jitter-ms", type=float, default=0.0,
                        help="random extra latency per request, up to this many ms (default %(default)s)")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="probability of a 503 per request (default %(default)s)")
    parser.add_argument("--rate-limit-burst-rate", type=float, default=0.0,
                        help="probability a 429 burst starts at a request (default %(default)s)")
    parser.add_argument("--rate-limit-burst-length", type=int, default=3,
                        help="requests answered 429 in a burst (default %(default)s)")
    parser.add_argument("--retry-after-secs", type=int, default=1,
                        help="Retry-After of a 429, seconds (default %(default)s)")
    parser.add_argument("--lost-reply-rate", type=float, default=0.0,
                        help="probability a placement is applied but its reply is lost (default %(default)s)")
    parser.add_argument("--lost-reply-mode", choices=["504", "drop"], default="504",
                        help="how a lost reply looks: a 504 or a dropped connection (default %(default)s)")
    parser.add_argument("--mid-walk-seed", type=int, default=None,
                        help="the mid follows the shared walk of this seed (on a 100 ms grid from "
                             "--mid-walk-epoch-ms): emulators given the same two values are one market, each with "
                             "its own book, noise flow and fills (default: the market's own walk, from --seed)")
    parser.add_argument("--mid-walk-epoch-ms", type=int, default=None,
                        help="start of the shared walk, unix ms, at most 7 days ago (default: the emulator's start)")
    parser.add_argument("--no-stp", action="store_true",
                        help="a venue without self-trade prevention: the STP parameter is ignored and an "
                             "account's orders match each other (default: the venue's STP and its default mode)")


def config_from_options(options: dict) -> EmulatorConfig:
    """Build an EmulatorConfig from parsed options (argparse namespace vars or Django options)."""
    symbols = tuple(s.strip().upper() for s in str(options["symbols"]).split(",") if s.strip())
    if not symbols:
        raise ArgumentError("--symbols: at least one symbol is required")
    for symbol in symbols:
        try:
            market_spec_for(symbol)
        except ValueError as error:
            raise ArgumentError(f"--symbols: {error}") from None
    if not 0 <= int(options["port"]) <= 65535:
        raise ArgumentError(f"--port {options['port']}: must be within 0..65535")
    try:
        maker, taker = Decimal(str(options["maker_fee"])), Decimal(str(options["taker_fee"]))
    except InvalidOperation:
        raise ArgumentError("--maker-fee/--taker-fee must be decimal numbers") from None
    if not (maker.is_finite() and taker.is_finite()) or maker < 0 or taker < 0:
        raise ArgumentError("--maker-fee/--taker-fee must be >= 0")
    try:
        faults = FaultConfig(
            latency_ms=options["latency_ms"], latency_jitter_ms=options["latency_jitter_ms"],
            error_rate=options["error_rate"], rate_limit_burst_rate=options["rate_limit_burst_rate"],
            rate_limit_burst_length=options["rate_limit_burst_length"], retry_after_secs=options["retry_after_secs"],
            lost_reply_rate=options["lost_reply_rate"], lost_reply_mode=options["lost_reply_mode"],
        )
    except ValueError as error:
        raise ArgumentError(str(error)) from None
    accounts = tuple(parse_account(text) for text in options["account"] or [])
    venue, passphrase = options.get("venue") or "binance", options.get("passphrase") or ""
    if venue == "okx" and accounts and not passphrase:
        raise ArgumentError("--venue okx signs every request with a passphrase: pass --passphrase")
    accounts = tuple(replace(account, passphrase=passphrase) for account in accounts)
    if options["market_step_ms"] < 0:
        raise ArgumentError("--market-step-ms must be >= 0")
    walk_seed, walk_epoch_ms = options.get("mid_walk_seed"), options.get("mid_walk_epoch_ms")
    if walk_epoch_ms is not None:
        if walk_seed is None:
            raise ArgumentError("--mid-walk-epoch-ms needs --mid-walk-seed")
        if time.time() * 1000 - walk_epoch_ms > MAX_WALK_CATCH_UP_MS:
            raise ArgumentError("--mid-walk-epoch-ms: at most 7 days ago")
    overrides: dict = {}
    for name, key in (("volatility_bps", "volatility_bps_per_sqrt_sec"), ("noise_rate", "noise_arrival_rate_per_sec")):
        value = options.get(name)
        if value is None:
            continue
        if not value >= 0:
            raise ArgumentError(f"--{name.replace('_', '-')} must be >= 0")
        overrides[key] = float(value)
    return EmulatorConfig(
        host=options["host"], port=int(options["port"]), seed=int(options["seed"]), symbols=symbols,
        accounts=accounts, maker_fee_rate=maker, taker_fee_rate=taker,
        admin_token=options["admin_token"] or os.environ.get("EMULATOR_ADMIN_TOKEN") or None,
        faults=faults, market_step_ms=int(options["market_step_ms"]),
        dynamics={symbol: {**demo_dynamics(symbol), **overrides} for symbol in symbols},
        venue=venue, self_trade_prevention=not options.get("no_stp"),
        mid_walk_seed=walk_seed, mid_walk_epoch_ms=walk_epoch_ms,
    )


def say(line: str) -> None:
    """Print ``line`` at once: a parent that reads this process's stdout through a pipe (the latency tools,
    the tests) waits for the readiness line, which a block-buffered pipe would hold back."""
    print(line, flush=True)


async def serve(config: EmulatorConfig, announce=say) -> None:
    """Run the emulator until SIGINT/SIGTERM."""
    server = EmulatorServer(config)
    base_url = await server.start()
    announce(f"exchange emulator ({config.venue}) listening on {base_url} "
             f"(symbols {', '.join(config.symbols)}, seed {config.seed}, "
             f"{len(config.accounts)} account(s), admin API {'on' if config.admin_token else 'off'})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not on the main thread
            pass
    try:
        await stop.wait()
    finally:
        await server.stop()


def run(config: EmulatorConfig, announce=say) -> int:
    """Serve ``config``; returns a process exit code and prints a one-line reason on failure."""
    try:
        asyncio.run(serve(config, announce))
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            reason = "is already in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
            print(f"error: {config.host}:{config.port} {reason}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m exchanges.emulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m exchanges.emulator", description="Local Binance-compatible exchange"
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(config)
