"""Push latency: an engine event (``bots.events.publish_event``: BotEvent row + push through the
Redis channel layer) until N browsers' websockets on a real daphne receive it.

Everything is real and private to this run: a throwaway SQLite database and an embedded Redis (owned
by this process, stopped when it exits) under ``var/bench-push/<run>/``, removed at the end; daphne as
a subprocess (it dies with the bench), N websocket clients (the ``websockets`` package)
signed in with a session cookie on ``ws/bots/<id>/``. Events are published at a steady pace from a
thread of this process (as a Celery worker would) and stamped with ``time.perf_counter()``; each
client stamps its receipt with the same clock, so latency = receipt − publish call.

    python -m bench.bench_push                  # N = 1, 50, 200; 200 events each at 20 events/s
    python -m bench.bench_push --clients 1,500 --events 100 --rate 50

Prints a table and writes bench/results/push.json (or ``--output``). A benchmark, not a test: it never fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmplatform.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-push" / uuid.uuid4().hex[:12]  # this run's own: never another run's files
RESULTS = ROOT / "bench" / "results"
TARGET_P99_MS_AT_200 = 50.0


def configure_environment() -> None:
    """A private var dir: its own SQLite file and its own embedded Redis (never the shared ones)."""
    VAR.mkdir(parents=True)
    from cryptography.fernet import Fernet

    # Production settings (DEBUG=0: no query logging), plain HTTP on loopback.
    os.environ.update(MMPLATFORM_VAR_DIR=str(VAR), DEBUG="0", SECURE_SSL="0", LOG_LEVEL="WARNING",
                      SECRET_KEY=Fernet.generate_key().decode() * 2, CREDENTIAL_KEYS=Fernet.generate_key().decode(),
                      ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_SETTINGS_MODULE="mmplatform.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed_world(sessions: int) -> tuple[int, list[str]]:
    """A tenant, a viewer and a bot; returns the bot id and ``sessions`` signed-in session keys
    (one per client, as separate browsers would have: each socket re-checks its own session)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.core.management import call_command
    from django.utils.module_loading import import_string

    from bots.models import Bot
    from mmplatform.tenancy.models import Membership, Role, Tenant

    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.create(name="Bench Desk", slug="bench")
    user = get_user_model().objects.create_user(username="bench-viewer", password="bench-password-123")
    Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
    bot = Bot.objects.create(tenant=tenant, name="bench-bot", trading_pairs="BTC/USDT")
    keys = []
    for _ in range(sessions):
        session = import_string(settings.SESSION_ENGINE + ".SessionStore")()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        keys.append(session.session_key)
    return bot.pk, keys




def start_daphne(port: int) -> subprocess.Popen:
    from mmplatform.children import child_options

    log = open(VAR / "daphne.log", "wb")  # kept open for the child's lifetime
    process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                "mmplatform.asgi:application"], cwd=ROOT, env=dict(os.environ),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **child_options())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"daphne did not start; see {VAR / 'daphne.log'}")


class Client:
    """One browser's socket: records when each sequence number arrives."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}

    async def run(self, url: str, origin: str, cookie: str, ready: asyncio.Event, counter: list[int], n: int) -> None:
        from websockets.asyncio.client import connect

        async with connect(url, origin=origin, additional_headers={"Cookie": cookie}, compression=None,
                           max_queue=None, ping_interval=None) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello", hello
            counter[0] += 1
            if counter[0] == n:
                ready.set()
            async for raw in ws:
                now = time.perf_counter()
                message = json.loads(raw)
                if message.get("type") == "update" and message.get("kind") == "event":
                    self.received[message["data"]["payload"]["seq"]] = now


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def measure(bot_id: int, session_keys: list[str], port: int, clients: int, events: int,
                  rate: float) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from bots.events import publish_event
    from bots.models import Bot

    bot = await sync_to_async(Bot.objects.get)(pk=bot_id)
    ready, counter = asyncio.Event(), [0]
    sockets = [Client() for _ in range(clients)]
    tasks = [asyncio.create_task(c.run(f"ws://127.0.0.1:{port}/ws/bots/{bot_id}/", f"http://127.0.0.1:{port}",
                                       f"sessionid={key}", ready, counter, clients))
             for c, key in zip(sockets, session_keys, strict=False)]
    await asyncio.wait_for(ready.wait(), timeout=60)
    await asyncio.sleep(0.5)
    sent: dict[int, float] = {}
    publish_ms: list[float] = []

    def publish(seq: int) -> None:
        sent[seq] = time.perf_counter()
        publish_event(bot=bot, event_type="OrdersAdjusted", payload={"seq": seq, "new_order_count": 8})
        publish_ms.append((time.perf_counter() - sent[seq]) * 1000)

    interval = 1.0 / rate
    start = time.perf_counter()
    for seq in range(events):
        await asyncio.to_thread(publish, seq)
        await asyncio.sleep(max(0.0, start + (seq + 1) * interval - time.perf_counter()))
    await asyncio.sleep(2.0)  # stragglers
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted((c.received[s] - sent[s]) * 1000 for c in sockets for s in c.received if s in sent)
    # The first receipt of each event: how late the whole fan-out started (publisher, Redis, daphne loop).
    first = sorted(min(c.received[s] for c in sockets if s in c.received) - sent[s] for s in sent
                   if any(s in c.received for c in sockets))
    first_ms = [f * 1000 for f in first]
    publish_ms.sort()
    expected = clients * events
    return {
        "clients": clients, "events": events, "rate_per_sec": rate, "deliveries": len(latencies),
        "expected_deliveries": expected, "lost": expected - len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2), "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2), "max_ms": round(latencies[-1], 2) if latencies else None,
        "mean_ms": round(sum(latencies) / len(latencies), 2) if latencies else None,
        "first_receipt_p50_ms": round(percentile(first_ms, 50), 2),
        "first_receipt_p99_ms": round(percentile(first_ms, 99), 2),
        "publish_call_p50_ms": round(percentile(publish_ms, 50), 2),
        "publish_call_p99_ms": round(percentile(publish_ms, 99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,50,200", help="comma-separated numbers of websocket clients")
    parser.add_argument("--events", type=int, default=200, help="events published per run")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--output", default="push.json", help="file name under bench/results/")
    options = parser.parse_args()
    counts = [int(n) for n in options.clients.split(",") if n.strip()]

    configure_environment()
    bot_id, session_keys = seed_world(max(counts))
    port = free_port()
    daphne = start_daphne(port)
    runs = []
    try:
        for n in counts:
            load_before = os.getloadavg()[0]
            result = asyncio.run(measure(bot_id, session_keys, port, n, options.events, options.rate))
            result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            runs.append(result)
            print(f"N={n:>4}  deliveries {result['deliveries']:>6}/{result['expected_deliveries']:<6} "
                  f"p50 {result['p50_ms']:>7.2f} ms  p90 {result['p90_ms']:>7.2f} ms  "
                  f"p99 {result['p99_ms']:>7.2f} ms  max {result['max_ms']:>7.2f} ms  "
                  f"| first receipt p99 {result['first_receipt_p99_ms']:.2f} ms, publish call p99 "
                  f"{result['publish_call_p99_ms']:.2f} ms (load {result['load_average_1m'][0]}→"
                  f"{result['load_average_1m'][1]})", flush=True)
    finally:
        daphne.terminate()
        daphne.wait(timeout=10)
        from django.db import connections

        from mmplatform.embedded_redis import stop_embedded_redis

        connections.close_all()
        stop_embedded_redis()  # this process started it (REDIS_URL was unset)
        shutil.rmtree(VAR, ignore_errors=True)

    at_200 = next((r for r in runs if r["clients"] == 200), None)
    figures = {
        "benchmark": "push latency: publish_event -> N websocket clients on daphne (Redis pub/sub channel layer)",
        "command": "python -m bench.bench_push " + " ".join(sys.argv[1:]),
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "target": {"p99_ms_at_200_clients": TARGET_P99_MS_AT_200,
                   "met": None if at_200 is None else at_200["p99_ms"] <= TARGET_P99_MS_AT_200},
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / options.output
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
