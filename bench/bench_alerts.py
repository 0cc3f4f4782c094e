"""Alert latency: a bot event (``bots.events.publish_event``) until the alert's signed webhook is received.

Everything is real and private to this run: its own database (Postgres when ``$DATABASE_URL`` names a
server, else SQLite) and its own redis-server, a Celery worker (prefork, no engine driver: the tasks only)
and an HTTP receiver in this process that checks every signature. Each event is a distinct SLA breach
(``SlaBreached``, its own pair, so none is a repeat), published from this process as the engine would;
latency = the receiver's clock at receipt − the clock just before ``publish_event`` (one machine, one
clock). Two loads: a steady pace (``--events`` at ``--rate`` per second) and a burst (``--burst`` events
back to back, as a tenant-wide kill of that many bots). Also measured: what the matcher costs the engine
per routine event (``alerts.hooks.notice`` on ``OrdersAdjusted``) and the ``publish_event`` call of an
alerting event.

    python -m bench.bench_alerts                       # 200 events at 10/s, a burst of 100
    python -m bench.bench_alerts --events 50 --burst 20 --quick

Prints the figures and writes bench/results/alerts.json. A benchmark, not a test: it never fails on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import make_tenant, setup_django, use_queue, wait_for  # noqa: E402
from bench.common import BenchDatabase, PrivateRedis, release, start_worker, summary_ms, write_result  # noqa: E402

TARGET_P99_MS = 5000.0
SECRET = "whsec_bench_" + uuid.uuid4().hex


class Receiver:
    """A webhook receiver on loopback: verifies each signature, stamps each alert's receipt."""

    def __init__(self) -> None:
        from alerts import signing

        self.received: dict[int, float] = {}  # event id -> receipt (time.time())
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not signing.verify(SECRET, self.headers.get(signing.SIGNATURE_HEADER, ""), body, now=at):
                    receiver.bad_signatures += 1
                receiver.received.setdefault(json.loads(body)["event_id"], at)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seed(receiver_url: str) -> Any:
    from alerts import services
    from alerts.models import AlertChannel, AlertRule
    from bots.models import Bot

    tenant = make_tenant(f"alerts-{uuid.uuid4().hex[:4]}")
    bot = Bot.objects.create(tenant=tenant, name="alerting-bot", trading_pairs="BTC/USDT")
    channel = AlertChannel(tenant=tenant, name="desk", kind="webhook", url=receiver_url)
    services.channel_set_secret(channel=channel, secret=SECRET)
    channel.full_clean()
    channel.save()
    rule = AlertRule.objects.create(tenant=tenant, name="every breach", kinds=["sla_breach"],
                                    throttle_max_alerts=1_000_000, throttle_window_secs=1)
    rule.channels.add(channel)
    return bot


def publish(bot: Any, n: int, sent: dict[int, float], call_ms: list[float]) -> None:
    from bots.events import publish_event

    started = time.time()
    event = publish_event(bot=bot, event_type="SlaBreached", payload={
        "sla_id": 1, "sla_name": "issuer uptime", "trading_pair": f"P{n}/USDT", "metric": "uptime_bid",
        "value": "0.87", "threshold": "0.9"})
    call_ms.append((time.time() - started) * 1000)
    sent[event.pk] = started


def measure(bot: Any, receiver: Receiver, *, events: int, rate: float, offset: int) -> dict[str, Any]:
    """``events`` events at ``rate`` per second (0: back to back); latency per event."""
    from alerts import hooks

    sent: dict[int, float] = {}
    call_ms: list[float] = []
    began = time.perf_counter()
    for i in range(events):
        if rate > 0:
            pause = began + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        publish(bot, offset + i, sent, call_ms)
    hooks.flush(30)
    wait_for(lambda: all(e in receiver.received for e in sent), 60 + events / 10)
    latencies = [(receiver.received[e] - t) * 1000 for e, t in sent.items() if e in receiver.received]
    return {"events": events, "rate_per_sec": rate or None, "delivered": len(latencies),
            "lost": events - len(latencies), "latency": summary_ms(latencies),
            "publish_call": summary_ms(call_ms)}


def matcher_cost(samples: int = 200_000) -> dict[str, float]:
    """ns per ``alerts.hooks.notice`` call on the routine event (what every re-quote pays)."""
    from alerts import hooks

    payload = {"new_order_count": 2, "cancelled": 2, "kept": 0, "trading_pair": "BTC/USDT"}
    started = time.perf_counter()
    for _ in range(samples):
        hooks.notice(tenant_id=1, bot_id=1, event_type="OrdersAdjusted", payload=payload, event_id=1)
    return {"routine_notice_ns": round((time.perf_counter() - started) / samples * 1e9, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="steady-pace events (default 200, quick 50)")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second of the steady pace")
    parser.add_argument("--burst", type=int, help="events published back to back (default 100, quick 20)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    events = options.events or (50 if options.quick else 200)
    burst = options.burst or (20 if options.quick else 100)
    os.environ["ALERTS_ALLOWED_PRIVATE_NETWORKS"] = "127.0.0.0/8"  # the receiver is on loopback
    database = BenchDatabase("mmbench_alerts")
    redis = PrivateRedis()
    worker = receiver = None
    try:
        env = setup_django(database.url, redis.url)
        queue = f"bench-alerts-{uuid.uuid4().hex[:6]}"
        use_queue(queue)
        worker = start_worker({**env, "CELERY_QUEUE": queue, "ENGINE_DRIVER_ENABLED": "false"}, queue,
                              options.concurrency, name="alerts-worker")
        receiver = Receiver()
        bot = seed(receiver.url)
        warm = measure(bot, receiver, events=3, rate=2.0, offset=1_000_000)  # the worker is up and warm
        if warm["delivered"] < 3:
            raise RuntimeError(f"the worker delivered {warm['delivered']}/3 warm-up alerts; see {worker.log_path}")
        steady = measure(bot, receiver, events=events, rate=options.rate, offset=0)
        bursty = measure(bot, receiver, events=burst, rate=0.0, offset=events)
        cost = matcher_cost()
        bad = receiver.bad_signatures
    finally:
        if receiver is not None:
            receiver.stop()
        if worker is not None:
            worker.stop()
        release(database, redis)
    figures = {
        "benchmark": "alert latency: publish_event -> signed webhook received (Celery worker, real HTTP)",
        "command": "python -m bench.bench_alerts " + " ".join(argv if argv is not None else sys.argv[1:]),
        "database": database.kind, "quick": options.quick, "worker_concurrency": options.concurrency,
        "target": {"p99_ms": TARGET_P99_MS, "met": max(steady["latency"].get("p99_ms", 1e9),
                                                      bursty["latency"].get("p99_ms", 1e9)) <= TARGET_P99_MS},
        "steady": steady, "burst": bursty, "matcher": cost, "bad_signatures": bad,
    }
    for name, run in (("steady", steady), ("burst", bursty)):
        lat = run["latency"]
        pace = f"{run['rate_per_sec']:g}/s" if run["rate_per_sec"] else "back to back"
        print(f"event -> webhook, {name} ({run['events']} events, {pace}): p50 {lat['p50_ms']:.0f} ms, "
              f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms; delivered {run['delivered']}/{run['events']}; "
              f"publish_event call p99 {run['publish_call']['p99_ms']:.2f} ms")
    print(f"matcher on a routine event (OrdersAdjusted): {cost['routine_notice_ns']:.0f} ns per call; "
          f"bad signatures: {bad}")
    path = write_result("alerts", figures)
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
