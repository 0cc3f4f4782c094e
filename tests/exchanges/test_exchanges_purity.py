"""The engine and synthetic market stay pure (the backtester imports them); only the ccxt gateway
imports ccxt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_roots(module: str) -> set[str]:
    code = f"import sys, {module}; print(','.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.strip().split(","))


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("exchanges.emulator.engine", {"django", "ccxt", "aiohttp"}),
        ("exchanges.emulator.market", {"django", "ccxt", "aiohttp"}),
        ("exchanges.ratelimit", {"django", "ccxt"}),
        ("exchanges.ccxt_config", {"django", "ccxt"}),
        # mmplatform/__init__.py loads the Celery app (and so Django): only ccxt is checked here
        ("exchanges.gateway", {"ccxt"}),
    ],
)
def test_module_does_not_import(module, forbidden):
    assert not imported_roots(module) & forbidden
