"""One command for the whole platform: migrate, seed the demo, start an exchange emulator per venue of the
registry (Binance, OKX, Bybit dialects on consecutive ports, one market: a shared mid walk; the demo
tenant has a funded account on each), daphne, a Celery worker and Celery beat, start the demo bot (on
every venue), and supervise them until Ctrl-C.

Whatever it starts, it stops: on Ctrl-C (SIGINT) or SIGTERM it stops its children, the web, worker and beat
before the emulators (SIGTERM, at most
``STOP_GRACE_SECS`` for all of them, then SIGKILL to each child's whole process group), then the embedded
Redis (if it started one, ``mmplatform.embedded_redis``); if it is killed outright (``kill -9``) the kernel
sends each child SIGTERM and the reaper kills what is left after the same grace
(``mmplatform.children.Supervisor``)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from exchanges.venues import VENUES
from mmplatform.children import Supervisor
from mmplatform.demo import (
    DEMO_ADMIN,
    DEMO_API_KEY,
    DEMO_API_SECRET,
    DEMO_BALANCES,
    DEMO_CLIENT,
    DEMO_OPERATOR,
    DEMO_PAIRS,
    DEMO_VENUES,
    demo_passphrase,
)
from mmplatform.queues import worker_queues

START_WAIT_SECS = 150
"""How long the web server and each emulator may take to listen (a loaded 2-core machine starts seven
Python processes at once: 30 s was not always enough)."""

MAX_RESTARTS_PER_MINUTE = 5
STOP_GRACE_SECS = 20.0
"""How long the children may take to stop (SIGTERM) before each one's process group is killed."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout_secs: float, stopping: Any = lambda: False) -> bool:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline and not stopping():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


class Command(BaseCommand):
    help = "Run the whole platform (emulator, web, worker, beat) with a demo tenant and a running demo bot."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1",
                            help="interface of the web server and the emulator (default %(default)s)")
        parser.add_argument("--port", type=int, default=8000, help="web server port (default %(default)s)")
        parser.add_argument("--emulator-port", type=int, default=8900,
                            help="port of the first venue's exchange emulator; the others follow on the next "
                                 f"ports ({', '.join(DEMO_VENUES)}; default %(default)s)")
        parser.add_argument("--no-emulator", action="store_true",
                            help="do not start the local exchange emulators (default: start them)")
        parser.add_argument("--no-demo-start", action="store_true",
                            help="do not start the demo bot (default: start it)")
        parser.add_argument("--worker-concurrency", type=int, default=2,
                            help="Celery worker processes (default %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, emulator_port = options["host"], options["port"], options["emulator_port"]
        for name, value in (("--port", port), ("--emulator-port", emulator_port)):
            if not 0 < value < 65536:
                raise CommandError(f"{name} must be a TCP port (1-65535), got {value}")
        venue_ports = {exchange_id: emulator_port + index for index, exchange_id in enumerate(DEMO_VENUES)}
        if max(venue_ports.values()) > 65535:
            raise CommandError(f"--emulator-port {emulator_port}: the {len(venue_ports)} emulators need the ports "
                               f"{emulator_port}-{max(venue_ports.values())}")
        if not port_is_free(host, port):
            raise CommandError(f"{host}:{port} is already in use; pass --port to choose another")
        for exchange_id, venue_port in venue_ports.items():
            if not options["no_emulator"] and not port_is_free(host, venue_port):
                raise CommandError(f"{host}:{venue_port} ({exchange_id} emulator) is already in use; pass "
                                   "--emulator-port to choose other ports")

        self.stdout.write("applying migrations...")
        call_command("migrate", interactive=False, verbosity=0)
        from django_celery_beat.models import PeriodicTask  # noqa: F401  (tables exist after migrate)

        from mmplatform.demo import ensure_demo_world
        from mmplatform.schedules import install_default_schedules

        emulator_url = f"http://{host}:{emulator_port}"
        venue_urls = {exchange_id: f"http://{host}:{venue_port}" for exchange_id, venue_port in venue_ports.items()}
        world = ensure_demo_world(emulator_url, venue_urls)
        install_default_schedules()

        if not settings.EMULATOR_ADMIN_TOKEN:
            settings.EMULATOR_ADMIN_TOKEN = secrets.token_urlsafe(24)  # this run's emulator; the admin uses it
        env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "DATABASE_URL": settings.DATABASE_URL,
               "EMULATOR_ADMIN_TOKEN": settings.EMULATOR_ADMIN_TOKEN}
        python = sys.executable
        # each child in a process group of its own; stopped together, boundedly, even if this is kill -9'd
        supervisor = Supervisor(env, stop_grace_secs=STOP_GRACE_SECS)
        commands: dict[str, list[str]] = {}

        def spawn(name: str, argv: list[str]) -> None:
            commands[name] = argv
            supervisor.spawn(name, argv)

        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        # from the first child on, Ctrl-C and SIGTERM stop everything through the `finally` below
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        # the emulators are one market on three venues: one mid walk (each its own book, noise flow, fills)
        walk_epoch_ms = int(time.time() * 1000)
        try:
            for seed, (exchange_id, venue_port) in enumerate(venue_ports.items(), 1):
                if options["no_emulator"]:
                    break
                passphrase = demo_passphrase(exchange_id)
                spawn(
                    "emulator" if seed == 1 else f"emulator-{exchange_id}",
                    [python, "manage.py", "run_exchange_emulator", "--venue", VENUES[exchange_id].emulator_dialect,
                     "--host", host,
                     "--port", str(venue_port), "--seed", str(seed), "--symbols", DEMO_PAIRS,
                     "--mid-walk-seed", "1", "--mid-walk-epoch-ms", str(walk_epoch_ms),
                     "--account", f"{DEMO_API_KEY}:{DEMO_API_SECRET}:{DEMO_BALANCES}",
                     *(["--passphrase", passphrase] if passphrase else [])],
                )
            spawn("web", [python, "-m", "daphne", "-b", host, "-p", str(port), "mmplatform.asgi:application"])
            spawn(
                "worker",
                [python, "-m", "celery", "-A", "mmplatform", "worker", "--loglevel", "INFO",
                 "--concurrency", str(options["worker_concurrency"]), "--without-gossip", "--without-mingle",
                 "-Q", worker_queues()],  # the bots' tasks, alerts and bookkeeping (mmplatform/queues.py)
            )
            spawn("beat", [python, "-m", "celery", "-A", "mmplatform", "beat", "--loglevel", "INFO"])
            if not wait_for_port(host, port, START_WAIT_SECS, lambda: stopping) and not stopping:
                raise CommandError("the web server did not start; see the output above")
            for exchange_id, venue_port in venue_ports.items():
                if (not options["no_emulator"] and not stopping
                        and not wait_for_port(host, venue_port, START_WAIT_SECS, lambda: stopping) and not stopping):
                    raise CommandError(f"the {exchange_id} exchange emulator did not start; see the output above")
            if not options["no_demo_start"] and not stopping:
                from bots.services import bot_request_start

                bot_request_start(bot=world.bot, user=None)
            if stopping:
                return
            self.stdout.write(self.style.SUCCESS(
                "\nmmplatform is running\n"
                f"  dashboard: http://{host}:{port}/   operator login: {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}\n"
                f"  admin:     http://{host}:{port}/admin/   admin login: {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}\n"
                f"  SLA:       http://{host}:{port}/sla/   client login: {DEMO_CLIENT[0]} / {DEMO_CLIENT[1]}\n"
                f"  exchange emulators: {', '.join(f'{v} {u}' for v, u in venue_urls.items())}"
                f"{'' if not options['no_emulator'] else ' (not started: --no-emulator)'}\n"
                f"  database: {settings.DATABASES['default']['ENGINE']}\n"
                "  Ctrl-C stops everything.\n"
            ))
            restarts: dict[str, list[float]] = {}
            while not stopping:
                for name, process in list(supervisor.children):
                    if process.poll() is None:
                        continue
                    # supervise like systemd would: restart a crashed process (e.g. a Celery worker
                    # that exits when Redis restarts), but give up on one that keeps crashing
                    recent = [t for t in restarts.get(name, []) if time.monotonic() - t < 60] + [time.monotonic()]
                    restarts[name] = recent
                    if len(recent) > MAX_RESTARTS_PER_MINUTE:
                        raise CommandError(f"{name} exited with code {process.returncode} "
                                           f"{len(recent)} times within a minute; stopping")
                    self.stderr.write(f"{name} exited with code {process.returncode}; restarting it")
                    supervisor.spawn(name, commands[name])
                time.sleep(0.5)
        finally:
            # SIGTERM to each, at most STOP_GRACE_SECS for all, then SIGKILL to each whole process group:
            # a worker whose warm shutdown hangs (its Redis gone first) is not waited for forever
            killed = supervisor.stop(last=lambda name: name.startswith("emulator"))
            if killed:
                self.stderr.write(f"{', '.join(killed)} did not stop within {STOP_GRACE_SECS:g} s; killed")
            self.stdout.write("mmplatform stopped")
