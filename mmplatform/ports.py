"""Free TCP ports on 127.0.0.1 for the child servers that tests, benches and the latency tools start.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range, the same range
every outgoing connection's source port comes from: between the probe's close and the child's own bind,
any connection on the machine (another test's Redis client, an HTTP request) may take it, and the child
then fails with "address already in use". Ports here are drawn below that range instead, where only an
explicit bind lands, and each one is probed before it is handed out."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FALLBACK_EPHEMERAL_LOW = 32768
_LOWEST = 10000  # below: well-known services of a developer machine (8000, 8080, 9200, ...)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive ports that are free now and outside the ephemeral range."""
    high = _ephemeral_low() - count
    if high <= _LOWEST:  # an unusual port range: let the kernel choose (the race above remains)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    rng = random.SystemRandom()
    for _ in range(1000):
        first = rng.randrange(_LOWEST, high)
        if all(_bindable(port) for port in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports between {_LOWEST} and {high + count}")


def free_port() -> int:
    """A port that is free now and outside the ephemeral range."""
    return free_ports(1)
