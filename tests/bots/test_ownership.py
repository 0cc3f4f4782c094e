"""One writer for each piece of a bot's live state (issue 14; docs/architecture.md, "Who owns what").

Read from the code (AST), not run: every method of the engine driver that writes one of its attributes
(assigns it, an item of it, or calls a mutating method on it) must be the attribute's owner on the
owner's thread, or a producer of a hand-over queue that only its owner drains. A new writer fails here
until this table, the declarations in bots/engine/driver_state.py and the architecture page say so.
And no module outside the bot's own ones assigns an attribute of a ``MarketMakingBot``.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Callable
from pathlib import Path

from bots.engine.bot_state import BotState
from bots.engine.driver_state import DriverState

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "bots" / "engine"
DRIVER_MODULES = ("driver", "shards", "feed", "order_feed", "verdict", "requote", "schedule")
MUTATORS = {"append", "appendleft", "extend", "pop", "popleft", "clear", "update", "setdefault", "add", "discard",
            "remove", "set", "__setitem__"}
LIFECYCLE = {"Driver.__init__", "Driver.start", "Driver.stop"}  # before the threads start / after they joined

# the thread each writing method runs on
THREAD = {
    "Driver.tick": "driver", "Driver._run_due": "driver", "Driver._take_back": "driver",
    "ScheduleMixin._apply_moves": "driver", "Driver._take_depth": "driver", "ScheduleMixin._index_quoted": "driver",
    "ScheduleMixin._pop_due": "driver", "ScheduleMixin._schedule": "driver",
    "ScheduleMixin.bring_forward": "driver",  # (tests and tools, from the thread that ticks the driver)
    "Driver._flush": "driver", "Driver._keep_leases": "driver",
    "ShardsMixin._housekeep": "driver",
    "ShardsMixin._refresh_bots": "driver", "FeedMixin._want": "driver", "FeedMixin._ensure_streams": "driver",
    "AnalysisMixin._analysis": "driver",  # only from VerdictMixin._check
    "FeedMixin._read_books": "feeder", "FeedMixin._read_accounts": "feeder", "FeedMixin._read_balances": "feeder",
    "FeedMixin._take_handovers": "feeder", "FeedMixin._probe_loop": "feeder",
    "AnalysisMixin._read_mids": "feeder",
    "FeedMixin._watch": "io-loop", "OrderFeedMixin._watch_orders": "io-loop",
    "OrderFeedMixin._ensure_order_streams": "driver",
    "FeedMixin._feed_once": "feeder", "OrderFeedMixin._apply_pushed_orders": "feeder", "FeedMixin._feed": "feeder",
    "OrderFeedMixin._apply_pushes": "feeder", "ScheduleMixin._bring_traded": "driver",
    "RequoteMixin._cycle": "pool", "RequoteMixin._run_cycle": "pool", "RequoteMixin._sync_and_requote": "pool",
    "RequoteMixin._ready_connection": "pool", "RequoteMixin._store_snapshots": "pool",
    "Driver._hand_snapshot": "driver", "Driver._hand_snapshots": "driver",
    "FeedMixin._book": "driver or pool", "FeedMixin._snapshot": "driver or pool",  # the check, or a fill sync
    "Driver._record_quiet": "driver", "VerdictMixin._check": "driver", "Driver._capture": "pool",
    "RequoteMixin._on_kept_engine": "pool", "Driver._write_high_water": "driver or pool",
}

# attribute -> its owner thread (the only one whose methods write it)
OWNER = {
    "owned": "driver", "runners": "driver", "stats": "driver", "analyses": "driver", "_urgent": "driver",
    "due_queue": "driver", "shared": "driver", "by_pair": "driver", "bots_read": "driver", "snapshots_due": "driver",
    "wanted_accounts": "driver", "wanted_books": "driver", "streams": "driver", "stream_tasks": "driver",
    "stream_symbols": "driver", "_housekeeping_at": "driver", "_flush_at": "driver",
    "accounts": "feeder", "_books": "feeder", "feed_stats": "feeder", "loop_probe": "feeder",
    "mids": "feeder", "mids_read_at": "feeder", "resync_wanted": "feeder",
    "tops": "io-loop", "order_stream_tasks": "driver", "order_streams_live": "io-loop",
}

# hand-over queues: attribute -> (the threads that append, the one that drains)
QUEUES = {
    "moved": ({"io-loop"}, "driver"),
    "finished": ({"pool"}, "driver"),
    "fresh_books": ({"driver or pool", "driver"}, "feeder"),
    "outdated": ({"pool"}, "feeder"),
    "fresh_balances": ({"pool"}, "feeder"),
    "pushed_orders": ({"io-loop"}, "feeder"),
    "traded_bots": ({"feeder"}, "driver"),
}

# per pool thread, each its own key (``threading.get_ident()``); an Event anyone may set
OTHER = {"_pool_connections": "each pool thread its own key", "_connection_checked": "each pool thread its own key",
         "wake": "threading.Event: set by any thread, cleared by the driver thread",
         "feed_wake": "threading.Event: set by the order-stream watchers (and stop), cleared by the feeder thread",
         "_book_keys": "the driver thread's: ``_snapshot`` writes it only for a check (``seen`` given)"}


def attribute_writes(tree: ast.AST, holder: Callable[[ast.expr], bool]) -> dict[str, set[str]]:
    """attribute of an object ``holder`` accepts (the expression before the dot) -> the ``Class.method``
    names that write it: assign, delete, augment, or call a mutator on it (``x.attr[k] = v`` counts)."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        for fn in [n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
            where = f"{cls.name}.{fn.name}"
            for node in ast.walk(fn):
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign | ast.Delete):
                    targets = list(node.targets)
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr in MUTATORS):
                    targets = [node.func.value]
                for target in [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]:
                    while isinstance(target, ast.Subscript):
                        target = target.value
                    if isinstance(target, ast.Attribute) and holder(target.value):
                        found[target.attr].add(where)
    return found


def self_writes(tree: ast.AST) -> dict[str, set[str]]:
    """attribute of ``self`` -> the ``Class.method`` names that write it."""
    return attribute_writes(tree, lambda value: isinstance(value, ast.Name) and value.id == "self")


def driver_writes() -> dict[str, set[str]]:
    writes: dict[str, set[str]] = collections.defaultdict(set)
    for name in DRIVER_MODULES:
        for attr, methods in self_writes(ast.parse((ENGINE / f"{name}.py").read_text())).items():
            writes[attr] |= methods
    return writes


def test_every_driver_attribute_has_one_writing_thread() -> None:
    writes = driver_writes()
    declared = set(DriverState.__annotations__)
    assert set(writes) <= declared, f"undeclared in DriverState: {sorted(set(writes) - declared)}"
    problems = []
    for attr, methods in sorted(writes.items()):
        threads = {THREAD.get(m, f"unknown ({m})") for m in methods - LIFECYCLE}
        if attr in OWNER:
            if threads - {OWNER[attr]}:
                problems.append(f"{attr}: owned by the {OWNER[attr]} thread, written from {sorted(threads)}")
        elif attr in QUEUES:
            producers, consumer = QUEUES[attr]
            if threads - producers - {consumer}:
                problems.append(f"{attr}: a queue, written from {sorted(threads)}")
        elif attr not in OTHER and threads:
            problems.append(f"{attr}: no owner declared here, written from {sorted(threads)}")
    assert problems == []


def test_the_queues_are_drained_by_their_owner_alone() -> None:
    writes = driver_writes()
    for attr, (_producers, consumer) in QUEUES.items():
        drains = {m for m in writes[attr] if THREAD.get(m) == consumer}
        assert drains, f"{attr} is never drained by the {consumer} thread"


def test_the_check_sees_a_second_writer() -> None:
    """Not vacuous: a method writing another thread's attribute is found."""
    tree = ast.parse("class FeedMixin:\n    def _read_books(self):\n        self.runners[1] = None\n"
                     "        self.stats.update(x=1)\n        self.a, self.b = 1, 2\n")
    assert self_writes(tree) == {"runners": {"FeedMixin._read_books"}, "stats": {"FeedMixin._read_books"},
                                 "a": {"FeedMixin._read_books"}, "b": {"FeedMixin._read_books"}}


BOT_MODULES = {"bot.py", "bot_state.py", "cycle.py", "quotes.py", "risk_actions.py", "hedging.py"}


def test_only_the_bot_assigns_its_attributes() -> None:
    """``engine.<attribute> = ...`` (or ``runner.engine.<attribute>``) outside the bot's own modules is a
    second writer: the driver and the tasks hand data over through the bot's methods instead."""
    attrs = set(BotState.__annotations__)
    offenders = []
    for top in ("bots", "exchanges", "strategies", "risk", "mmplatform"):
        for path in (ROOT / top).rglob("*.py"):
            if path.parent == ENGINE and path.name in BOT_MODULES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign):
                    targets = list(node.targets)
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                for target in [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]:
                    while isinstance(target, ast.Subscript):
                        target = target.value
                    if isinstance(target, ast.Attribute) and target.attr in attrs \
                            and "engine" in ast.unparse(target.value):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(target)}")
    assert offenders == []


COMPONENTS = {"inventory_manager", "order_manager", "risk_manager", "performance_tracker", "strategy_engine"}


def component_writes(tree: ast.AST) -> list[str]:
    """Writes to an attribute of a bot's component reached through another object (``x.order_manager.stored =
    ...``, ``x.inventory_manager.balances[k] = ...``, ``x.risk_manager.adjustments.pop()``)."""
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
            targets = [node.func.value]
        for target in [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]:
            while isinstance(target, ast.Subscript):
                target = target.value
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) \
                    and target.value.attr in COMPONENTS:
                found.append(f"{node.lineno}: {ast.unparse(target)}")
    return found


def test_a_bots_components_are_written_by_their_own_methods() -> None:
    """The bot's managers keep their own state: others call their methods (``observe_balances``,
    ``take_synced``, ``reset_stored``, ``adjustment``...) instead of assigning into them."""
    offenders = [f"{path.relative_to(ROOT)}:{hit}" for top in ("bots", "mmplatform")
                 for path in (ROOT / top).rglob("*.py") for hit in component_writes(ast.parse(path.read_text()))]
    assert offenders == []
    probe = ast.parse("engine.order_manager.stored = []\nself.inventory_manager.balances[1] = {}\n"
                      "self.risk_manager.adjustments.setdefault('p', None)\n")
    assert len(component_writes(probe)) == 3


# a Runner's fields (runner.py): the driver thread's alone, or the cycle holder's (the pool thread while
# ``busy``, else the driver thread)
RUNNER_DRIVER_ONLY = {"busy", "dropped", "stale", "signature", "interval", "error_delay", "woken", "wake_after",
                      "wait_until",
                      "last_verdict", "quiet_cycles", "touched", "indexed", "lease", "lease_until", "quiet"}
RUNNER_CYCLE = {"engine", "rows", "live", "open_count", "known", "gone", "quoted_mid", "last_full_at", "perf_due_at",
                "high_water", "high_water_dirty", "next_due"}


def runner_writes() -> dict[str, set[str]]:
    """Runner field -> the ``Class.method`` names of the driver's modules that write it."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for name in DRIVER_MODULES:
        tree = ast.parse((ENGINE / f"{name}.py").read_text())
        for attr, methods in attribute_writes(tree, lambda value: "runner" in ast.unparse(value)).items():
            found[attr] |= methods
    return found


def test_a_runners_fields_have_their_writers() -> None:
    from bots.engine.runner import Runner

    writes = runner_writes()
    fields = set(Runner.__dataclass_fields__)
    assert RUNNER_DRIVER_ONLY | RUNNER_CYCLE <= fields
    assert set(writes) <= RUNNER_DRIVER_ONLY | RUNNER_CYCLE, "a Runner field written but not classified here"
    problems = {field: sorted(m for m in methods if THREAD.get(m) != "driver")
                for field, methods in writes.items() if field in RUNNER_DRIVER_ONLY}
    assert {f: m for f, m in problems.items() if m} == {}
    unknown = {m for methods in writes.values() for m in methods if m not in THREAD}
    assert unknown == set(), "a method writing a Runner runs on which thread?"
