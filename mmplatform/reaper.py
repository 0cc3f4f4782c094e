"""The reaper of a supervisor's children: ``python -m mmplatform.reaper --grace-secs N``.

A supervisor (``mmplatform.children.Supervisor``: ``run_platform``, the benchmarks) starts it first, in a
session of its own and without a parent-death signal, and writes the process group of every child it
starts to its stdin, one number a line. When that stdin ends (the supervisor exited, or died however:
``kill -9`` too, when the kernel closes its end of the pipe), the reaper gives the groups ``N`` seconds to
end (each child got SIGTERM from its parent-death signal, or from the supervisor's own shutdown), then
sends SIGKILL to every group still there, and exits. So a child whose warm shutdown hangs (a Celery
worker reconnecting to a Redis that is gone) never outlives its supervisor by more than ``N`` seconds.

Standard library only: it must not depend on the settings, Redis or the database it outlives."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, not ours to signal (never the case for our own children)
    return True


def reap(groups: set[int], grace_secs: float, *, terminate: bool = False) -> list[int]:
    """Wait up to ``grace_secs`` for ``groups`` to end (SIGTERM to each first with ``terminate``), then
    SIGKILL each one left; returns those that had to be killed."""
    if terminate:
        for group in groups:
            try:
                os.killpg(group, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + grace_secs
    left = {group for group in groups if alive(group)}
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {group for group in left if alive(group)}
    for group in left:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return sorted(left)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grace-secs", type=float, default=20.0,
                        help="how long the groups may take to end before SIGKILL (default %(default)s)")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the end of stdin ends it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line.isdigit():
            groups.add(int(line))
    # without a parent-death signal (not Linux) nobody sent the children SIGTERM: the reaper does
    killed = reap(groups, options.grace_secs, terminate=not sys.platform.startswith("linux"))
    if killed:
        print(f"mmplatform reaper: killed process groups {killed} (still running {options.grace_secs:g} s "
              "after their supervisor ended)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
