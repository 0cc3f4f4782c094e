"""The engine and synthetic market stay pure (the backtester imports them); only the ccxt gateway and
the market streams import ccxt."""

from __future__ import annotations

import ast
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
        ("exchanges.emulator.market_streams", {"django", "ccxt"}),
        ("exchanges.emulator.server", {"django", "ccxt"}),
        ("exchanges.ratelimit", {"django", "ccxt"}),
        ("exchanges.ccxt_config", {"django", "ccxt"}),
        ("exchanges.venues", {"django", "ccxt", "aiohttp"}),
        # mmplatform/__init__.py loads the Celery app (and so Django): only ccxt is checked here
        ("exchanges.gateway", {"ccxt"}),
    ],
)
def test_module_does_not_import(module, forbidden):
    assert not imported_roots(module) & forbidden


CCXT_MODULES = {"exchanges/ccxt_gateway.py", "exchanges/streams.py"}
APP_PACKAGES = ("exchanges", "bots", "strategies", "risk", "mmplatform")


def test_only_the_gateway_and_the_streams_import_ccxt():
    importers = set()
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                else:
                    continue
                if any(name.split(".")[0] == "ccxt" for name in names):
                    importers.add(str(path.relative_to(ROOT)))
    assert importers == CCXT_MODULES
