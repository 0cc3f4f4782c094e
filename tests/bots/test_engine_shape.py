"""The engine's shape (issue 14): one job per module under bots/engine/, none over ~500 lines, and no
import cycle, neither inside the engine nor anywhere in bots/, exchanges/, strategies/ and risk/ (imports
inside functions counted too: a local import is a hidden cycle). Not counted: imports under
``if TYPE_CHECKING:`` (for annotations only, never executed) and under ``if __name__ == "__main__":``
(run as the script ``__main__``, a different module from the one the import reaches)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "bots" / "engine"
PACKAGES = ("bots", "exchanges", "strategies", "risk")
MAX_LINES = 520
SHIM = "bots.engine.core"  # the old import path, re-exports only (for code outside the engine)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _not_run_on_import(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if __name__ == "__main__":``."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    if isinstance(test, ast.Name | ast.Attribute):
        return (test.id if isinstance(test, ast.Name) else test.attr) == "TYPE_CHECKING"
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` outside the blocks that do not run when the module is imported."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if _not_run_on_import(node):
            assert isinstance(node, ast.If)
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere in its source (``from a import b`` counts a.b when it is a
    module of the project, else a; ``from . import`` is not used in this project)."""
    found: set[str] = set()
    for node in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.add(candidate)
    return found


def engine_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ENGINE.glob("*.py") if p.name != "__init__.py"}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def packages_graph() -> dict[str, set[str]]:
    """The import graph of every module of bots/, exchanges/, strategies/ and risk/ (migrations aside)."""
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
               if "migrations" not in p.parts}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (empty when there is none)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycle_inside_the_engine() -> None:
    graph = engine_graph()
    assert len(graph) >= 15
    assert find_cycle(graph) == []
    # nothing in the engine goes back through the old path
    assert [m for m, deps in graph.items() if SHIM in deps] == []


def test_no_import_cycle_in_the_packages() -> None:
    graph = packages_graph()
    assert {"bots.services", "bots.tasks", "exchanges.gateway", "exchanges.ccxt_gateway", "strategies.backtest",
            "risk.checks"} <= graph.keys()
    assert sum(len(deps) for deps in graph.values()) > 250  # the real graph (366 edges when this was written)
    assert "bots.services" not in graph["bots.tasks"]  # services enqueue tasks; what both need is below them
    assert find_cycle(graph) == []


def test_imports_that_never_run_on_import_are_not_counted(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nimport a\nif TYPE_CHECKING:\n    import b\nelse:\n"
                      "    import c\nif __name__ == '__main__':\n    import d\ndef f():\n    import e\n")
    assert imports_of(source) == {"typing", "a", "c", "e"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_engine_module_is_over_the_size_limit() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in ENGINE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_old_core_module_only_re_exports() -> None:
    tree = ast.parse((ENGINE / "core.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign"}
