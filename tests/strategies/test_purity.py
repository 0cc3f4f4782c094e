"""strategies/ is pure: no module but apps.py and management/ imports Django or ccxt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"
FORBIDDEN = ("django", "ccxt")


def pure_modules() -> list[Path]:
    return [
        path
        for path in sorted(STRATEGIES.rglob("*.py"))
        if path.name != "apps.py" and "management" not in path.relative_to(STRATEGIES).parts
    ]


def test_no_pure_module_imports_django_or_ccxt_in_its_source() -> None:
    offenders = []
    for path in pure_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert len(pure_modules()) >= 10
    assert offenders == []


def loaded_forbidden_modules(imports: list[str]) -> set[str]:
    """Import ``imports`` in a fresh interpreter; the django/ccxt modules it then has loaded."""
    code = (
        "import importlib, sys\n"
        f"for name in {imports!r}: importlib.import_module(name)\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=STRATEGIES.parent, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(filter(None, result.stdout.strip().split(",")))


def test_importing_every_pure_module_loads_neither_django_nor_ccxt() -> None:
    """Strategies, the pure risk checks and the pure bot config load no Django and no ccxt at all
    (the Celery app is created in ``mmplatform.apps``, not on ``import mmplatform``)."""
    modules = [
        "strategies." + ".".join(p.relative_to(STRATEGIES).with_suffix("").parts)
        for p in pure_modules()
        if p.name != "__init__.py"
    ]
    modules += ["risk.checks", "risk.limits", "bots.config", "bots.accounting", "bots.inventory", "mmplatform.errors"]
    assert loaded_forbidden_modules(modules) == set()
