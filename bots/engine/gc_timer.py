"""How much of a worker process's time goes to Python's cyclic garbage collector, by generation.

A collection stops every thread of the process (it runs holding the GIL), and the engine keeps thousands of
long-lived objects (each bot's engine, its rows, the shared views) that a full collection walks. The timer
is one ``gc.callbacks`` entry: two clock reads per collection. The driver publishes its totals with its
stats (``gc_ms_<generation>``, ``gc_runs_<generation>``), so a bench run says what collections cost.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

_totals: Counter[str] = Counter()
_started: list[float] = [0.0]


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


def totals() -> dict[str, int]:
    """Microseconds spent in collections and their number, by generation, since ``install``."""
    return dict(_totals)
