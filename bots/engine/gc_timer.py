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

The periodic pass freezes what survived it (``gc.freeze``), so the next one walks only the objects made since:
in one process of 1,250 bots (``bench_quiet_tick --bots 1250``) a full pass walked 335,000 objects in ~250 ms, the
next one after the freeze 20,000 in 15-18 ms; at active N=600 with a pass every 8 s (two processes) 134 -> 42 ms per
pass. An object frozen is still freed by reference counting; only a reference cycle among frozen objects waits, for
the pass every ``ENGINE_GC_THAW_PASSES`` (96: a day at 900 s), which unfreezes everything first and walks it all, the
start-up objects too: ~2.2 times an unfrozen pass of the same heap (600 bots: 233 against 104 ms). What waits is
small: 600 bots, 8 frozen passes of 10 ticks each, 1,281 objects freed by the thaw of 455,000.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

_totals: Counter[str] = Counter()
_started: list[float] = [0.0]
_next_full: list[float] = [0.0]  # time.monotonic() of the next full pass (0: not scheduled yet)
_passes: list[int] = [0]  # periodic full passes so far
_thaw_every: list[int] = [0]  # freeze each periodic pass's survivors, thaw every n-th (0: no freezing: ``install``)


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = info.get("generation", 0)
    _totals[f"gc_us_{generation}"] += int(1e6 * (time.perf_counter() - _started[0]))
    _totals[f"gc_runs_{generation}"] += 1


def install(thresholds: tuple[int, ...] | None = None, thaw_every: int = 0) -> None:
    """Start timing collections in this process (the callback added once), with ``gc.set_threshold(*thresholds)``
    when given. ``thaw_every`` > 0: each periodic full pass (``collect_if_due``) freezes what survived it, and every
    ``thaw_every``-th unfreezes everything first (a process that runs a driver: ``bootstep.prepare_process``)."""
    if thresholds:
        gc.set_threshold(*thresholds)
    _thaw_every[0] = max(0, thaw_every)
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def collect_if_due(every_secs: float, now: float | None = None) -> bool:
    """A full collection when ``every_secs`` have passed since the last one (the first call only schedules it);
    returns whether one ran. The driver thread's housekeeping calls it. Under ``install(thaw_every=n)`` it walks
    what is not frozen, then freezes the survivors; every n-th pass walks everything (unfrozen first)."""
    now = time.monotonic() if now is None else now
    if _next_full[0] == 0.0:
        _next_full[0] = now + every_secs
        return False
    if now < _next_full[0]:
        return False
    _next_full[0] = now + every_secs
    _passes[0] += 1
    thaw_every = _thaw_every[0]
    if thaw_every and _passes[0] % thaw_every == 0:
        gc.unfreeze()  # (a cycle among objects frozen by earlier passes is freed here, at worst n passes late)
    gc.collect()
    if thaw_every:
        gc.freeze()
    return True


def totals() -> dict[str, int]:
    """Microseconds spent in collections and their number, by generation, since ``install``."""
    return dict(_totals)
