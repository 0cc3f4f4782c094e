"""Whatever a command starts, it stops. Each command runs as a fresh clone would run it (no DATABASE_URL,
REDIS_URL or DEBUG: SQLite and the embedded Redis in a temporary var dir of its own) with a process tag
in its environment, which every process it starts inherits; afterwards no process with the tag may run.
(The test session itself is checked the same way by ``pytest_sessionfinish`` in tests/conftest.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import ccxt
import psutil
import pytest

from exchanges.ccxt_config import config_for
from mmplatform.demo import DEMO_API_KEY, DEMO_API_SECRET, DEMO_VENUES, demo_passphrase
from tests.processes import PROCESS_TAG_VARIABLE, describe, processes_tagged, wait_gone

ROOT = Path(__file__).resolve().parents[2]
# what a fresh clone's shell does not have (pytest-django and the session set some of these)
NOT_ON_A_FRESH_MACHINE = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DEBUG", "DJANGO_ENV", "SECURE_SSL",
                          "SECRET_KEY", "ALLOWED_HOSTS", "CREDENTIAL_KEYS", "CELERY_QUEUE", "CELERY_ALERTS_QUEUE",
                          "EMULATOR_ADMIN_TOKEN", "MMPLATFORM_SESSION_PID", PROCESS_TAG_VARIABLE)


def fresh_env(var_dir: Path, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_FRESH_MACHINE}
    env.update(MMPLATFORM_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", **{PROCESS_TAG_VARIABLE: tag})
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (the emulators of every venue)."""
    import socket

    while True:
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


def test_a_management_command_stops_the_embedded_redis_it_started(tmp_path: Path) -> None:
    tag = f"help-{uuid.uuid4().hex}"
    result = subprocess.run([sys.executable, "manage.py", "help"], cwd=ROOT, env=fresh_env(tmp_path, tag),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "run_platform" in result.stdout and "simulate_as" in result.stdout, "the project's commands are not listed"
    assert (tmp_path / "redis.log").exists(), "the command did not start the embedded Redis (nothing to check)"
    left = wait_gone(tag, 10, cmdline_contains=str(tmp_path))
    assert not left, f"`manage.py help` left processes running:\n{describe(left)}"
    assert not (tmp_path / "redis.sock").exists(), "the embedded Redis socket is still there"


@pytest.fixture(scope="module")
def platform_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One var dir for the platform runs of this module: the first run migrates, the others reuse it."""
    return tmp_path_factory.mktemp("platform-var")


@pytest.mark.integration
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "kill-9"])
def test_run_platform_leaves_no_process_behind(platform_var_dir: Path, tmp_path: Path, how: str) -> None:
    """``manage.py run_platform`` (emulator, daphne, Celery worker and beat, the embedded Redis) on free
    ports, stopped as a user stops it: Ctrl-C in its terminal (SIGINT to the whole foreground process
    group), ``kill`` (SIGTERM to the command), or ``kill -9`` (the command dies at once)."""
    tag = f"platform-{how}-{uuid.uuid4().hex}"
    log_path = tmp_path / "run_platform.log"
    emulator_port = free_ports(len(DEMO_VENUES))
    argv = [sys.executable, "manage.py", "run_platform", "--port", str(free_port()),
            "--emulator-port", str(emulator_port), "--worker-concurrency", "1", "--no-demo-start"]
    with open(log_path, "wb") as log:
        platform = subprocess.Popen(argv, cwd=ROOT, env=fresh_env(platform_var_dir, tag), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "mmplatform is running" not in log_path.read_text(errors="replace"):
            assert platform.poll() is None, f"run_platform exited early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"run_platform did not start:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        running = tuple(processes_tagged(tag, cmdline_contains=str(platform_var_dir)))
        running += tuple(psutil.Process(platform.pid).children(recursive=True))
        started = {" ".join(p.cmdline()) for p in running}
        for name in ("redis-server", "daphne", "celery", "run_exchange_emulator"):
            assert any(name in cmdline for cmdline in started), f"{name} is not running: {started}"
        worker = next(cmdline for cmdline in started if "celery" in cmdline and " worker " in cmdline)
        assert "-Q mmplatform,mmplatform.alerts" in worker, f"alert delivery's queue is not consumed: {worker}"
        for venue in DEMO_VENUES:  # an emulator per venue, the demo key funded on each
            assert any(f"--venue {venue}" in cmdline for cmdline in started), f"no {venue} emulator: {started}"
        if how == "ctrl-c":
            for index, venue in enumerate(DEMO_VENUES):
                exchange = getattr(ccxt, venue)(config_for(venue, f"http://127.0.0.1:{emulator_port + index}",
                                                           DEMO_API_KEY, DEMO_API_SECRET, demo_passphrase(venue)))
                assert exchange.fetch_balance()["USDT"]["free"] == 60000, venue

        if how == "ctrl-c":
            os.killpg(platform.pid, signal.SIGINT)
        elif how == "sigterm":
            platform.send_signal(signal.SIGTERM)
        else:
            platform.kill()
        platform.wait(timeout=90)
        left = wait_gone(tag, 60, cmdline_contains=str(platform_var_dir), known=running)
        assert not left, f"after {how}, run_platform left processes running:\n{describe(left)}"
        assert not (platform_var_dir / "redis.sock").exists(), "the embedded Redis socket is still there"
        if how != "kill-9":
            assert platform.returncode == 0, log_path.read_text()[-3000:]
    finally:
        for process in processes_tagged(tag, cmdline_contains=str(platform_var_dir)):
            process.kill()
        if platform.poll() is None:
            platform.kill()
            platform.wait(timeout=10)
