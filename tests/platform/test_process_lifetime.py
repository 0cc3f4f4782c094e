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
from mmplatform.ports import free_port, free_ports
from tests.processes import PROCESS_TAG_VARIABLE, describe, processes_tagged, wait_gone

ROOT = Path(__file__).resolve().parents[2]
# what a fresh clone's shell does not have (pytest-django and the session set some of these)
NOT_ON_A_FRESH_MACHINE = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DEBUG", "DJANGO_ENV", "SECURE_SSL",
                          "SECRET_KEY", "ALLOWED_HOSTS", "CREDENTIAL_KEYS", "CELERY_QUEUE", "CELERY_ALERTS_QUEUE",
                          "EMULATOR_ADMIN_TOKEN", "MMPLATFORM_SESSION_PID", PROCESS_TAG_VARIABLE)


def alive_command_lines(processes: tuple[psutil.Process, ...]) -> dict[psutil.Process, str]:
    """Each listed process still running, with its command line; one that exited since it was listed (a
    short-lived child of the platform) is left out: it is not running."""
    out = {}
    for process in processes:
        try:
            out[process] = " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
    return out


def fresh_env(var_dir: Path, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_FRESH_MACHINE}
    env.update(MMPLATFORM_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", **{PROCESS_TAG_VARIABLE: tag})
    return env


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
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "kill-9", "redis-gone-first"])
def test_run_platform_leaves_no_process_behind(platform_var_dir: Path, tmp_path: Path, how: str) -> None:
    """``manage.py run_platform`` (emulator, daphne, Celery worker and beat, the embedded Redis) on free
    ports, stopped as a user stops it: Ctrl-C in its terminal (SIGINT to the whole foreground process
    group), ``kill`` (SIGTERM to the command), or ``kill -9`` (the command dies at once); or stopped with
    ``kill`` after its Redis died (the worker's warm shutdown cannot reach it)."""
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
        listed = (*processes_tagged(tag, cmdline_contains=str(platform_var_dir)),
                  *psutil.Process(platform.pid).children(recursive=True))
        command_lines = alive_command_lines(listed)  # (a short-lived child may exit between listing and reading)
        running = tuple(command_lines)
        started = set(command_lines.values())
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
        elif how == "redis-gone-first":
            [redis] = {p.pid: p for p, cmdline in command_lines.items() if "redis-server" in cmdline}.values()
            redis.kill()  # (a zombie until run_platform, its parent, exits)
            platform.send_signal(signal.SIGTERM)
        else:
            platform.kill()
        platform.wait(timeout=90)
        left = wait_gone(tag, 60, cmdline_contains=str(platform_var_dir), known=running)
        assert not left, f"after {how}, run_platform left processes running:\n{describe(left)}"
        if how != "redis-gone-first":  # (a Redis killed with -9 leaves its socket; the next start replaces it)
            assert not (platform_var_dir / "redis.sock").exists(), "the embedded Redis socket is still there"
        if how in ("ctrl-c", "sigterm"):
            assert platform.returncode == 0, log_path.read_text()[-3000:]
    finally:
        for process in processes_tagged(tag, cmdline_contains=str(platform_var_dir)):
            process.kill()
        if platform.poll() is None:
            platform.kill()
            platform.wait(timeout=10)


# A child whose shutdown hangs (a Celery worker's warm shutdown reconnecting to a Redis that is gone):
# it ignores SIGTERM, and so does the process it forked into its group (a pool process).
STUBBORN = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = os.fork()\n"
            "if child:\n"
            "    with open(sys.argv[1], 'w') as out:\n"
            "        out.write(f'{os.getpid()} {child}')\n"
            "time.sleep(600)\n")


def stubborn_pids(path: Path) -> list[int]:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, "the stubborn child did not start"
        time.sleep(0.05)
    return [int(pid) for pid in path.read_text().split()]


def running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_the_supervisor_kills_the_whole_group_of_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    from mmplatform.children import Supervisor

    supervisor = Supervisor(stop_grace_secs=1.0)
    supervisor.spawn("quick", [sys.executable, "-c", "import time; time.sleep(600)"])
    supervisor.spawn("stubborn", [sys.executable, "-c", STUBBORN, str(tmp_path / "pids")])
    pids = stubborn_pids(tmp_path / "pids")
    assert supervisor.stop() == ["stubborn"]  # the quick one stopped on SIGTERM, the other was killed
    assert running(pids) == [], "a process of the stubborn child's group outlived the supervisor's stop"


def test_a_supervisor_killed_with_9_leaves_nothing_behind_past_the_grace(tmp_path: Path) -> None:
    """The supervisor dies at once: its children get SIGTERM (parent-death signal), the one that ignores it
    and its fork are killed by the reaper once the grace is over, the reaper exits."""
    tag = f"supervisor-{uuid.uuid4().hex}"
    script = ("import sys, time\n"
              "from mmplatform.children import Supervisor\n"
              "supervisor = Supervisor(stop_grace_secs=1.0)\n"
              f"supervisor.spawn('stubborn', [sys.executable, '-c', {STUBBORN!r}, {str(tmp_path / 'pids')!r}])\n"
              "print('supervising', flush=True)\n"
              "time.sleep(600)\n")
    env = {**os.environ, PROCESS_TAG_VARIABLE: tag}
    supervisor = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        assert supervisor.stdout is not None and supervisor.stdout.readline().strip() == b"supervising"
        pids = stubborn_pids(tmp_path / "pids")
        supervisor.kill()
        supervisor.wait(timeout=10)
        left = wait_gone(tag, 60)
        assert not left, f"after kill -9 of the supervisor, still running:\n{describe(left)}"
        assert running(pids) == []
    finally:
        for process in processes_tagged(tag):
            process.kill()
        if supervisor.poll() is None:
            supervisor.kill()
