"""Child processes that do not outlive the process that started them.

A command that starts servers (the embedded Redis, the platform's web / worker / beat / emulator) stops
them itself when it exits normally or on SIGINT/SIGTERM. ``die_with_parent`` covers the rest: as a
``preexec_fn`` it asks the Linux kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when its
parent dies, so even ``kill -9`` of the parent takes its children down. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
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
