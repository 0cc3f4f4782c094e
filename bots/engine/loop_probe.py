"""How late the process's I/O loop runs a callback handed to it: every venue call (a placement, a cancel, a
read) waits that long before it leaves, behind the loop's other work (the streams' parsing, the rate
limiter's scripts) and the GIL. The driver's feeder runs the probe on each pass (``LoopProbe.run``)."""

from __future__ import annotations

import time
from collections import Counter

from mmplatform import aio

LOOP_PROBE_SECS = 0.1
"""How often a probe is sent (one in flight at a time)."""


def _ran(probe: list[float]) -> None:
    probe[1] = time.perf_counter()


class LoopProbe:
    """One callback in flight, sent every ``LOOP_PROBE_SECS``; each answered one is counted into the given
    stats: ``aio_lag_probes``, ``aio_lag_ms`` (summed), ``aio_lag_over_10ms``, ``aio_lag_over_50ms``. The
    feeder owns it; the loop writes only the time it ran the probe the feeder handed it (``current[1]``,
    once)."""

    def __init__(self) -> None:
        self.current: list[float] = [0.0, 0.0]  # [sent, ran]: ran 0.0 while in flight, -1.0 once counted

    def run(self, stats: Counter[str]) -> None:
        sent, ran = self.current
        if sent and ran == 0.0:
            return  # still waiting for the loop
        now = time.perf_counter()
        if ran > 0.0:
            lag_ms = 1000 * (ran - sent)
            stats["aio_lag_probes"] += 1
            stats["aio_lag_ms"] += int(lag_ms)
            stats["aio_lag_over_10ms"] += lag_ms > 10
            stats["aio_lag_over_50ms"] += lag_ms > 50
            self.current = [sent, -1.0]
        if now - sent < LOOP_PROBE_SECS:
            return
        probe = [now, 0.0]
        self.current = probe
        aio.get_loop().call_soon_threadsafe(_ran, probe)
