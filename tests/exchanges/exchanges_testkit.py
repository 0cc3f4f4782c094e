"""Helpers for the exchange-layer tests: emulator configs and admin calls (imported by conftest and tests)."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

from exchanges.emulator.server import ADMIN_HEADER, AccountConfig, EmulatorConfig

ADMIN_TOKEN = "test-admin-token"
API_KEY = "test-key"
API_SECRET = "test-secret"
START_BALANCES = {"USDT": Decimal("1000000"), "BTC": Decimal("10"), "ETH": Decimal("100")}


def emulator_config(**overrides) -> EmulatorConfig:
    """A frozen-market emulator (no timer) with one funded account, for deterministic tests."""
    values = {
        "port": 0,
        "seed": 11,
        "accounts": (AccountConfig(API_KEY, API_SECRET, dict(START_BALANCES)),),
        "admin_token": ADMIN_TOKEN,
        "market_step_ms": 0,
        "dynamics": {
            "BTC/USDT": {"noise_arrival_rate_per_sec": 0.0},
            "ETH/USDT": {"noise_arrival_rate_per_sec": 0.0},
        },
    }
    values.update(overrides)
    return EmulatorConfig(**values)


def admin(base_url: str, method: str, path: str, payload: dict | None = None, token: str | None = ADMIN_TOKEN):
    """Call an admin endpoint; returns (status, json body)."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(base_url + path, data=data, method=method)
    if token is not None:
        request.add_header(ADMIN_HEADER, token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
