"""A test session runs offline: this machine only.

``install(log_path)`` makes this process refuse to resolve a name or open a connection to anything but
this machine (loopback and unspecified addresses, ``localhost``, this host's name, unix sockets) and the
hosts ``DATABASE_URL`` / ``REDIS_URL`` name. A refused call raises ``NetworkRefusedError`` (an
``OSError``, so the caller fails as it would with the network down) and appends one JSON line to
``log_path``: the process, the host it wanted and the stack that asked. ``tests/conftest.py`` installs it
in the pytest process and names the log in ``MMPLATFORM_NETWORK_GUARD``, which every process a test
starts inherits and ``mmplatform.test_settings`` installs from (Celery workers and beat, daphne, the
emulator, ``run_platform``); after each test it fails that test with the lines written meanwhile, so a
path that would reach a real venue (an exchange account without ``api_base_url``) is named, not hidden
behind a DNS error of an offline machine.
"""

from __future__ import annotations

import asyncio.base_events
import ipaddress
import json
import os
import socket
import sys
import threading
import traceback
from typing import Any
from urllib.parse import urlsplit

ENVIRONMENT_VARIABLE = "MMPLATFORM_NETWORK_GUARD"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}

_installed: str | None = None
_allowed_names: set[str] = set()
_allowed_addresses: set[str] = set()
_lock = threading.Lock()
_original_getaddrinfo = socket.getaddrinfo
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_loop_getaddrinfo = asyncio.base_events.BaseEventLoop.getaddrinfo


class NetworkRefusedError(ConnectionRefusedError):
    """A test process asked for a host that is not this machine."""


def _is_local_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _name_allowed(host: Any) -> bool:
    if host is None:
        return True  # a passive (bind) lookup
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).rstrip(".").lower()
    return (not name or name in _allowed_names or name.endswith(".localhost") or _is_local_address(name)
            or name in _allowed_addresses)


PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _waiting_project_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """The coroutine stacks of the loop's tasks that run project code: a resolution that a library runs
    in a task of its own (aiohttp) has its caller there, not on its own stack."""
    stacks = []
    for task in asyncio.all_tasks(loop):
        chain, coro = [], task.get_coro()
        while coro is not None and getattr(coro, "cr_frame", None) is not None and len(chain) < 40:
            chain.append(coro.cr_frame)  # the await chain, outermost first
            coro = getattr(coro, "cr_await", None)
        frames = traceback.format_list([traceback.FrameSummary(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
                                        for f in chain])
        if any(PROJECT in frame and "site-packages" not in frame for frame in frames):
            stacks.append(f"  task {task.get_name()}:\n" + "".join(frames))
    waiting_threads = []
    aio_run = os.path.join(PROJECT, "mmplatform", "aio.py")
    for thread_id, frame in sys._current_frames().items():  # the threads waiting on the loop (aio.run)
        if thread_id == threading.get_ident():
            continue
        summary = traceback.extract_stack(frame)
        if any(f.filename == aio_run and f.name == "run" for f in summary):
            shown = [f for f in summary if PROJECT in f.filename and "site-packages" not in f.filename]
            waiting_threads.append(f"  thread {thread_id} waiting in mmplatform.aio.run:\n"
                                   + "".join(traceback.format_list(shown[-12:])))
    return "".join(stacks[:8] + waiting_threads[:4])


def _record_and_refuse(what: str, loop: asyncio.AbstractEventLoop | None = None) -> NetworkRefusedError:
    stack = [line for line in traceback.format_stack()[:-2] if "network_guard.py" not in line]
    waiting = _waiting_project_tasks(loop) if loop is not None else ""
    entry = {"pid": os.getpid(), "argv": " ".join(sys.argv)[:300], "host": what,
             "stack": "".join(stack[-25:]) + (f"  awaited by the loop's tasks:\n{waiting}" if waiting else "")}
    if _installed:
        with _lock, open(_installed, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
    return NetworkRefusedError(f"{what}: this test process may reach only this machine "
                               f"(mmplatform.network_guard)")


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _name_allowed(host):
        raise _record_and_refuse(f"resolve {host!r}")
    infos = _original_getaddrinfo(host, *args, **kwargs)
    for info in infos:  # what an allowed name (e.g. REDIS_URL's host) resolves to may be connected to
        if info[0] in (socket.AF_INET, socket.AF_INET6):
            _allowed_addresses.add(str(info[4][0]))
    return infos


async def _guarded_loop_getaddrinfo(self: asyncio.AbstractEventLoop, host: Any, *args: Any, **kwargs: Any) -> Any:
    # checked on the loop, where the awaiting coroutines are on the stack (the executor thread that
    # resolves has none of them: the refusal would not name its caller)
    if not _name_allowed(host):
        raise _record_and_refuse(f"resolve {host!r}", self)
    return await _original_loop_getaddrinfo(self, host, *args, **kwargs)  # type: ignore[arg-type]


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple) or not address:
        return
    if not _name_allowed(address[0]):
        raise _record_and_refuse(f"connect to {address[0]}:{address[1] if len(address) > 1 else '?'}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _original_connect_ex(self, address)


def _configured_hosts() -> set[str]:
    hosts = set()
    for name in ("DATABASE_URL", "REDIS_URL"):
        value = os.environ.get(name, "")
        if "://" in value:
            try:
                host = urlsplit(value).hostname
            except ValueError:
                continue
            if host:
                hosts.add(host.lower())
    return hosts


def install(log_path: str) -> None:
    """Refuse every host but this machine's (and the configured servers') in this process, recording each
    refusal in ``log_path``. Idempotent."""
    global _installed
    _allowed_names.update(LOCAL_NAMES | _configured_hosts())
    try:
        _allowed_names.add(socket.gethostname().lower())
    except OSError:
        pass
    _installed = log_path
    socket.getaddrinfo = _guarded_getaddrinfo
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop.getaddrinfo = _guarded_loop_getaddrinfo  # type: ignore[method-assign]


def install_from_environment() -> None:
    """``install`` with the log the environment names (a process a test started), else nothing."""
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if path:
        install(path)


def read_refusals(log_path: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The refusals recorded in ``log_path`` from ``offset`` on, and the offset after them."""
    try:
        with open(log_path, encoding="utf-8") as log:
            log.seek(offset)
            text = log.read()
    except FileNotFoundError:
        return [], offset
    complete = text[:text.rfind("\n") + 1]  # a line being written is read next time
    entries = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return entries, offset + len(complete.encode("utf-8"))


def describe_refusals(entries: list[dict[str, Any]]) -> str:
    return "\n\n".join(f"pid {e['pid']} ({e['argv']}) tried to {e['host']}:\n{e['stack']}" for e in entries)
