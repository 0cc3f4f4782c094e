"""The emulator as a child process (its own interpreter, as in production) for the latency tools
(``stream_latency``, ``replace_latency``), and how they print a latency distribution."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from mmplatform.ports import free_port


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """``python -m exchanges.emulator`` on a free port with a frozen market (``--market-step-ms 0``) and
    ``args``; yields its base URL once it listens (RuntimeError if it does not), stops it on exit."""
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "exchanges.emulator", "--port", str(port), "--market-step-ms", "0", *args],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = emulator.stdout.readline() if emulator.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line.strip()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        emulator.terminate()
        emulator.wait(10)


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summary(name: str, values_ms: list[float]) -> str:
    """``<name> <n> moves: p50, p99, max, mean`` in milliseconds."""
    ordered = sorted(values_ms)
    return (f"{name} {len(ordered)} moves: p50 {percentile(ordered, 0.50):.2f} ms, "
            f"p99 {percentile(ordered, 0.99):.2f} ms, max {ordered[-1]:.2f} ms, "
            f"mean {statistics.fmean(ordered):.2f} ms")
