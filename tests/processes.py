"""Real processes for integration tests: Celery workers and beat against the test database and
the test Redis. Nothing is mocked: the processes are the ones production runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from django.db import connection

from mmplatform.children import child_options
from mmplatform.queues import worker_queues

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def test_database_url() -> str:
    """A DATABASE_URL for the database pytest-django created (what the tests see)."""
    sd = connection.settings_dict
    if sd["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{sd['NAME']}"
    user = sd.get("USER") or ""
    password = f":{sd['PASSWORD']}" if sd.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{sd.get('HOST') or '127.0.0.1'}:{sd.get('PORT') or 5432}/{sd['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="mmplatform.test_settings",
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        CELERY_ALERTS_QUEUE=settings.CELERY_ALERTS_QUEUE,
        CREDENTIAL_KEYS=",".join(settings.CREDENTIAL_KEYS),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Proc:
    """A child process with its output in test-artifacts/ (read it when a test fails)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        ARTIFACTS.mkdir(exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True, **child_options())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill9(self) -> None:
        """kill -9 the whole process group (a prefork worker and its children)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)
        if not self._log.closed:
            self._log.close()

    def stop(self, timeout_secs: float = 20) -> None:
        """SIGTERM to the main process only (Celery's warm shutdown), then -9 if it hangs."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=timeout_secs)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # leftovers of the group, if any
        except (ProcessLookupError, PermissionError):
            pass
        if not self._log.closed:
            self._log.close()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def start_worker(name: str = "worker", concurrency: int = 2, **env: str) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "mmplatform", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "-Q", worker_queues()]
    return Proc(name, argv, process_env(**env))


def start_beat(**env: str) -> Proc:
    ARTIFACTS.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "celery", "-A", "mmplatform", "beat", "--loglevel", "INFO",
            "--schedule", str(ARTIFACTS / f"beat-{uuid.uuid4().hex[:6]}")]
    return Proc("beat", argv, process_env(**env))


def wait_until(predicate: Any, timeout_secs: float, interval_secs: float = 0.1, message: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout_secs
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s: {message}")
        time.sleep(interval_secs)


# --- which processes are still running, and where this process's Redis clients point -------------------

PROCESS_TAG_VARIABLE = "MMPLATFORM_PROCESS_TAG"


def processes_tagged(tag: str, *, cmdline_contains: str | None = None,
                     known: tuple[psutil.Process, ...] = ()) -> list[psutil.Process]:
    """Live processes (not zombies) started, directly or not, under the tag ``tag``: those whose environment
    carries ``MMPLATFORM_PROCESS_TAG=<tag>``, whatever became of their parent; those whose command line
    contains ``cmdline_contains`` (redis-server rewrites its title over its environment, so it is found by
    its socket path or port); and those of ``known`` still running (a snapshot of descendants)."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["pid", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(PROCESS_TAG_VARIABLE) == tag or (
                    cmdline_contains and cmdline_contains in " ".join(process.cmdline())):
                found[process.pid] = process
        except (psutil.Error, OSError):
            continue  # another user's process, or gone meanwhile
    for process in known:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(process.pid, process)
        except psutil.Error:
            continue
    return list(found.values())


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        try:
            lines.append(f"  pid {process.pid}: {' '.join(process.cmdline())[:200]}")
        except psutil.Error:
            lines.append(f"  pid {process.pid}: (gone)")
    return "\n".join(lines)


def wait_gone(tag: str, timeout_secs: float, *, ignore: set[int] | None = None, cmdline_contains: str | None = None,
              known: tuple[psutil.Process, ...] = ()) -> list[psutil.Process]:
    """Wait up to ``timeout_secs`` for every process of ``processes_tagged`` (but ``ignore``) to exit; return
    those left."""
    deadline = time.monotonic() + timeout_secs
    while True:
        left = [p for p in processes_tagged(tag, cmdline_contains=cmdline_contains, known=known)
                if p.pid not in (ignore or set())]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def redis_state() -> dict[str, Any]:
    """Where this process's Redis users point: the settings and Celery's live configuration."""
    from mmplatform.celery import app

    return {"REDIS_URL": settings.REDIS_URL, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "celery broker_url": app.conf.broker_url, "celery result_backend": app.conf.result_backend,
            "celery task_default_queue": app.conf.task_default_queue}


def _point_celery_at(broker_url: str, result_backend: str) -> None:
    from mmplatform import redis_client
    from mmplatform.celery import app

    redis_client._client = None
    app.conf.broker_url = broker_url
    app.conf.result_backend = result_backend
    app._after_fork()  # drop pooled broker connections to the previous server
    app._backend_cache = None  # and the result backend bound to it
    app._local.__dict__.pop("backend", None)


@contextmanager
def redis_pointed_at(settings_fixture: Any, url: str) -> Iterator[None]:
    """Point this process's Redis users (settings, the sync client, Celery's producer and result backend)
    at ``url`` in the spelling each needs (``mmplatform.redis_config``), and back to exactly what they
    were afterwards (the ``settings`` fixture restores the settings themselves)."""
    from mmplatform.celery import app
    from mmplatform.redis_config import redis_settings

    previous = (app.conf.broker_url, app.conf.result_backend)
    values = redis_settings(url)
    for name, value in values.items():
        setattr(settings_fixture, name, value)
    _point_celery_at(values["CELERY_BROKER_URL"], values["CELERY_RESULT_BACKEND"])
    try:
        yield
    finally:
        _point_celery_at(*previous)
