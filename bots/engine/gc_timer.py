"""The engine worker's cyclic garbage collector: its thresholds, a full pass on a clock, and what it costs.

A collection stops every thread of the process (it runs holding the GIL), and a full one walks every object the
engine keeps (each bot's engine, its rows, the views): ~1 s for 1,250 bots in one process. With Python's default
thresholds (700, 10, 10) the young generations were collected ~20 times a second, the objects a cycle keeps for a
few seconds were promoted on the way, and the oldest generation filled up fast enough for a full pass every ~20 s
per process: at calm N=2,500, 8.7 s of collections in a 40 s window of two processes (18 % of their CPU) and a
~1 s stop of every bot of a process four times in it, the p99 cycle lag of 1.4-1.7 s. An engine worker sets
``ENGINE_GC_THRESHOLDS`` (default 50,000, 20, 100: young collections rarely, the oldest generation in practice
never by itself) and its driver runs one full pass every ``ENGINE_GC_FULL_SECS`` (``collect_if_due``), which frees
what reference cycles remain (a caught exception's traceback, a task's result). A dropped engine is no longer one
of them (``OrderManager`` holds its gate weakly): ~100 objects per periodic full cycle of a bot.

``install`` adds one ``gc.callbacks`` entry (two clock reads per collection); the driver publishes the totals with
its stats (``gc_us_<generation>``, ``gc_runs_<generation>``).
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

_totals: Counter[str] = Counter()
_started: list[float] = [0.0]
_next_full: list[float] = [0.0]  # time.monotonic() of the next full pass (0: not scheduled yet)


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = info.get("generation", 0)
    _totals[f"gc_us_{generation}"] += int(1e6 * (time.perf_counter() - _started[0]))
    _totals[f"gc_runs_{generation}"] += 1


def install(thresholds: tuple[int, ...] | None = None) -> None:
    """Start timing collections in this process (once; later calls do nothing), with ``gc.set_threshold(*thresholds)``
    when given."""
    if thresholds:
        gc.set_threshold(*thresholds)
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def collect_if_due(every_secs: float, now: float | None = None) -> bool:
    """A full collection when ``every_secs`` have passed since the last one (the first call only schedules it);
    returns whether one ran. The driver thread's housekeeping calls it."""
    now = time.monotonic() if now is None else now
    if _next_full[0] == 0.0:
        _next_full[0] = now + every_secs
        return False
    if now < _next_full[0]:
        return False
    _next_full[0] = now + every_secs
    gc.collect()
    return True


def totals() -> dict[str, int]:
    """Microseconds spent in collections and their number, by generation, since ``install``."""
    return dict(_totals)
