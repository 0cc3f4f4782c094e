"""Fixtures for engine tests: a live exchange emulator (market running, noise traders filling
resting quotes) and a bot whose exchange account points at it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from exchanges.emulator.server import AccountConfig, EmulatorConfig, EmulatorServer
from exchanges.registry import clear_gateway_cache

EMULATOR_KEY = "bot-test-key-000111"
EMULATOR_SECRET = "bot-test-secret-000111-abcdef"
ADMIN_TOKEN = "engine-test-admin"
BALANCES = {"BTC": Decimal("1"), "ETH": Decimal("20"), "USDT": Decimal("60000")}


def start_emulator(**overrides: Any) -> EmulatorServer:
    values: dict[str, Any] = {
        "port": 0,
        "seed": 7,
        "accounts": (AccountConfig(EMULATOR_KEY, EMULATOR_SECRET, dict(BALANCES)),),
        "admin_token": ADMIN_TOKEN,
        "market_step_ms": 50,
    }
    values.update(overrides)
    server = EmulatorServer(EmulatorConfig(**values))
    server.start_in_thread()
    return server


TAKER_KEY, TAKER_SECRET = "taker-key-000222", "taker-secret-000222-abcdef"
"""A second emulator account that trades against the bots' quotes (``start_with_taker``)."""


def start_with_taker(**overrides: Any) -> EmulatorServer:
    """A frozen market (moves only when a test moves it) with the bots' account and a well-funded taker's."""
    values: dict[str, Any] = {
        "market_step_ms": 0,
        "dynamics": {s: {"noise_arrival_rate_per_sec": 0.0} for s in ("BTC/USDT", "ETH/USDT")},
        "accounts": (AccountConfig(EMULATOR_KEY, EMULATOR_SECRET, dict(BALANCES)),
                     AccountConfig(TAKER_KEY, TAKER_SECRET, {"BTC": Decimal("100"), "USDT": Decimal("10000000")})),
    }
    values.update(overrides)
    return start_emulator(**values)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = start_emulator()
    yield server
    server.stop_thread()
    clear_gateway_cache()


@pytest.fixture
def frozen_emulator() -> Iterator[EmulatorServer]:
    """A market that only moves when a test moves it (no timer, no noise traders)."""
    server = start_emulator(
        market_step_ms=0,
        dynamics={s: {"noise_arrival_rate_per_sec": 0.0} for s in ("BTC/USDT", "ETH/USDT")},
    )
    yield server
    server.stop_thread()
    clear_gateway_cache()


def emulator_bot(world: Any, server: EmulatorServer, **fields: Any) -> Any:
    """Point the world's account at the emulator and configure its bot for quick tests."""
    account = world.account
    account.api_base_url = server.base_url
    account.rate_limit_per_sec = 500.0  # the emulator's limit; the Redis bucket is tested on its own
    account.set_credentials(api_key=EMULATOR_KEY, api_secret=EMULATOR_SECRET)
    account.save()
    bot = world.bot
    defaults: dict[str, Any] = {
        "trading_pairs": "BTC/USDT,ETH/USDT",
        "grid_levels": 2,
        "order_size_quote": Decimal("1000"),
        "monitoring_interval_secs": 0.5,
        "error_recovery_delay_secs": 0.5,
        "adaptation_enabled": False,
        "metrics_interval_secs": 1.0,
    }
    defaults.update(fields)
    for name, value in defaults.items():
        setattr(bot, name, value)
    bot.save()
    return bot


def started_bot(world: Any, server: EmulatorServer, **fields: Any) -> Any:
    """An emulator bot whose market making was started in this process, marked RUNNING (epoch 1)."""
    from bots.engine.core import MarketMakingBot
    from bots.models import Bot, BotStatus

    bot = emulator_bot(world, server, status=BotStatus.STARTING, epoch=1, **fields)
    engine = MarketMakingBot(bot)
    assert engine.initialize_exchanges()
    assert engine.start_market_making(bot.pairs)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    bot.refresh_from_db()
    return bot


def emulator_open_orders(server: EmulatorServer, api_key: str = EMULATOR_KEY) -> list[Any]:
    """Open orders of the test account, read from the emulator's engine (its own thread)."""
    account_id = server._keys[api_key][0]
    return list(server.call(lambda: server.engine.open_orders(account_id)))  # type: ignore[arg-type]


def emulator_known_orders(server: EmulatorServer, api_key: str = EMULATOR_KEY) -> list[Any]:
    """Every order of the test account the emulator holds (open and closed)."""
    account_id = server._keys[api_key][0]
    return list(server.call(lambda: server.engine.known_orders(account_id)))  # type: ignore[arg-type]


def emulator_trades(server: EmulatorServer, symbol: str, api_key: str = EMULATOR_KEY) -> list[Any]:
    """Every fill of the test account on ``symbol``, from the emulator's own trade list."""
    account_id = server._keys[api_key][0]
    return list(server.call(  # type: ignore[arg-type]
        lambda: server.engine.account_trades(account_id, symbol, from_id=0, limit=100000)))
