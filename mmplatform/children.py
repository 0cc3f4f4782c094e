"""Child processes that do not outlive the process that started them.

A command that starts servers (the embedded Redis, the platform's web / worker / beat / emulator) stops
them itself when it exits normally or on SIGINT/SIGTERM. ``die_with_parent`` covers the rest: as a
``preexec_fn`` it asks the Linux kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when its
parent dies, so even ``kill -9`` of the parent takes its children down. Elsewhere it does nothing.
``Supervisor`` starts children so that none outlives its supervisor, whatever it hangs on: SIGTERM, a
bounded wait, then SIGKILL to each child's whole process group (``mmplatform.reaper`` when the supervisor
was killed outright).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(parent_pid: int, signum: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        os._exit(70)  # cannot promise the child dies with its parent: do not start it
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os._exit(70)


def child_options(signum: int = signal.SIGTERM) -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments that make the child receive ``signum`` when this process
    dies. Only on Linux, and only from the main thread: the kernel ties the signal to the *thread* that
    forked, so a child started from a short-lived thread would die with that thread."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return {}
    parent_pid = os.getpid()
    return {"preexec_fn": lambda: _set_parent_death_signal(parent_pid, signum)}


class Supervisor:
    """Children that never outlive their supervisor, even one whose warm shutdown hangs (a Celery worker
    reconnecting to a Redis that is already gone).

    Each child runs in a process group of its own (with whatever it forks: a prefork worker's pool) and gets
    SIGTERM when this process dies (``child_options``). ``stop`` sends each SIGTERM, waits at most
    ``stop_grace_secs`` for all of them, then SIGKILLs every child's whole group. A reaper process
    (``mmplatform.reaper``, started first) holds the groups too and does the same wait-then-SIGKILL if this
    process dies without stopping them (``kill -9``)."""

    def __init__(self, env: dict[str, str] | None = None, *, stop_grace_secs: float = 20.0):
        self.env = env
        self.stop_grace_secs = stop_grace_secs
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._reaper: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "mmplatform.reaper", "--grace-secs", str(stop_grace_secs)],
            stdin=subprocess.PIPE, start_new_session=True)

    def spawn(self, name: str, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` as the child ``name`` (a name already used is replaced: a restart)."""
        process = subprocess.Popen(argv, env=self.env, start_new_session=True, **child_options(), **popen)
        self._register(process.pid)
        self.children = [(n, p) for n, p in self.children if n != name] + [(name, process)]
        return process

    def _register(self, group: int) -> None:
        if self._reaper is None or self._reaper.stdin is None:
            return
        try:
            self._reaper.stdin.write(f"{group}\n".encode())
            self._reaper.stdin.flush()
        except OSError:  # the reaper is gone: stop() still kills the groups
            pass

    def stop(self, last: Callable[[str], bool] | None = None) -> list[str]:
        """SIGTERM to every child, a bounded wait, then SIGKILL to each child's whole group (the child, if it
        hangs, and anything it left: pool processes, grandchildren); returns the children that had to be
        killed. The children ``last`` names are signalled only once the others are gone (the emulators after
        the worker whose engine still cancels through them), within the same grace. Then the reaper is let go."""
        deadline = time.monotonic() + self.stop_grace_secs
        killed = []
        later = [(n, p) for n, p in self.children if last is not None and last(n)]
        first = [(n, p) for n, p in self.children if (n, p) not in later]
        for wave in (first, later):
            for _, process in wave:
                if process.poll() is None:
                    try:
                        process.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            for name, process in wave:
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired:
                    killed.append(name)
        for _, process in self.children:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone (the usual case)
            process.wait(timeout=10)
        if self._reaper is not None:
            if self._reaper.stdin is not None:
                self._reaper.stdin.close()
            self._reaper.wait(timeout=self.stop_grace_secs + 10)
            self._reaper = None
        return killed
