"""Every engine Redis key is spelled in one module (bots/engine/keys.py), with its meaning, writer and TTL."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from bots.engine import keys

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bots", "exchanges", "mmplatform", "risk", "strategies", "accounts")
ALLOWED = {Path("bots/engine/keys.py")}


def string_parts(node: ast.AST) -> list[str]:
    """The literal text of a string constant or of an f-string's constant parts."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def literal_keys(path: Path) -> list[str]:
    """Strings in code (docstrings and comments left out) that start an ``mm:`` key."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
    }
    inside_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in docstrings or id(node) in inside_fstrings:
            continue
        for text in string_parts(node):
            if text.startswith("mm:"):
                found.append(f"{path.name}:{node.lineno}: {text!r}")
    return found


def test_no_module_but_keys_spells_an_engine_redis_key() -> None:
    scanned = [p for top in PACKAGES if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*.py")]
    assert len(scanned) > 50
    offenders = [f"{p.relative_to(ROOT)} {hit}" for p in scanned if p.relative_to(ROOT) not in ALLOWED
                 for hit in literal_keys(p)]
    assert offenders == []


def test_the_check_sees_an_f_string_key(tmp_path: Path) -> None:
    """The scan above would catch a key spelled inline (it is not vacuous)."""
    probe = tmp_path / "probe.py"
    probe.write_text('def key(bot_id: int) -> str:\n    """mm:docstring is fine"""\n    return f"mm:x:{bot_id}"\n\n'
                     'LOCK = "mm:lock"\n')
    assert sorted(literal_keys(probe)) == ["probe.py:3: 'mm:x:'", "probe.py:5: 'mm:lock'"]


def test_every_key_is_documented_with_its_writer_and_ttl() -> None:
    doc = keys.__doc__ or ""
    builders = [obj for name, obj in vars(keys).items() if inspect.isfunction(obj) and not name.startswith("_")]
    samples = {
        fn.__name__: fn(*(["book" if p == "kind" else 7 if p != "pair" and p != "venue" and p != "token" else "x"
                           for p in inspect.signature(fn).parameters]))
        for fn in builders
    }
    assert len(samples) >= 15
    for name, key in samples.items():
        assert key.startswith(keys.PREFIX), name
        family = key.split(":")[:3] if key.startswith(("mm:engine", "mm:risk", "mm:md", "mm:trades", "mm:perf")) \
            else key.split(":")[:2]
        assert "``" + ":".join(family) in doc, f"{name} ({key}) is not documented in bots/engine/keys.py"
        assert fn_doc(name), f"{name} has no docstring"
    section = doc.split("``mm:engine:drivers``")[1]
    assert "Writer" in section and "TTL" in section


def fn_doc(name: str) -> str:
    return getattr(keys, name).__doc__ or ""


def test_a_market_data_key_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown market data key kind 'bok'"):
        keys.market_data("bok", "emulator", "BTC/USDT")


# --- one owner per key ------------------------------------------------------------------------------------

KEY_MODULES = {
    # key function: (the one module that writes the key, the modules that only read it)
    "shard": ("bots.engine.shards", set()),
    "driver_stats": ("bots.engine.shards", {"bots.engine.health"}),
    "lease": ("bots.engine.lease", set()),
    "lease_started": ("bots.engine.lease", set()),
    "fence": ("bots.engine.lease", set()),
    "chain": ("bots.engine.lease", set()),
    "cycles": ("bots.engine.lease", {"bots.engine.health"}),  # lease.add_cycle_record, for every kind of cycle
    "uptime": ("bots.engine.performance", set()),  # performance.count_quoting, for every kind of cycle
    "quoting": ("bots.quoting", set()),
    "risk_active": ("bots.engine.risk_manager", {"bots.selectors"}),
    "risk_denied": ("bots.engine.quotes", set()),
    "risk_rejected": ("bots.engine.quotes", set()),
    "daily_reset": ("bots.engine.cycle", set()),
    "start_queued": ("bots.tasks", set()),
    "listening": ("bots.consumers", {"bots.events"}),
    "performance_due": ("bots.engine.performance", set()),
    "trades_pending": ("bots.engine.trade_marks", set()),
    "trades_recent": ("bots.engine.trade_marks", set()),
    "trades_owed": ("bots.engine.trade_marks", set()),
    "trades_checked": ("bots.engine.trade_marks", set()),
    "trades_through": ("bots.engine.trade_marks", set()),
    "market_data": ("bots.engine.market_data", set()),
    "quote_guard": ("bots.engine.self_trades", set()),  # QuoteGuard: the per-(account, pair) no-self-trade lock
}


def key_calls(path: Path) -> set[str]:
    """The key functions ``path`` calls as ``keys.<name>(...)``."""
    return {node.func.attr for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "keys"}


def test_each_key_is_written_by_one_module() -> None:
    """A key function is called only by its owner (the writer) and its declared readers, so a second
    writer of a key cannot appear without this table (and keys.py's docstring) saying so."""
    builders = {name for name, obj in vars(keys).items() if inspect.isfunction(obj) and not name.startswith("_")}
    builders -= {"market_data_pattern"}  # a SCAN pattern (retention, bench), not a key
    assert builders == KEY_MODULES.keys()
    callers: dict[str, set[str]] = {name: set() for name in builders}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py") if (ROOT / top).is_dir() else ():
            if path.relative_to(ROOT) in ALLOWED or "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for name in key_calls(path) & builders:
                callers[name].add(module)
    unexpected = {name: sorted(mods - {KEY_MODULES[name][0], *KEY_MODULES[name][1]})
                  for name, mods in callers.items()}
    assert {name: mods for name, mods in unexpected.items() if mods} == {}
    assert all(KEY_MODULES[name][0] in mods for name, mods in callers.items())  # the table names real writers
