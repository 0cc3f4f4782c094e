"""Kill switch benchmark through the real stack: a Celery worker (its engine driver), a private Redis, a
throwaway database (Postgres ``mmbench_kill`` when ``DATABASE_URL`` points at Postgres, else SQLite) and
the exchange emulator, each in its own process.

One bot (BTC/USDT, two levels a side, 50 ms monitoring interval) re-quotes on every mid move; a thread
moves the emulator's mid every 50 ms (``POST /admin/mid``, +-5 bps, past the bot's 2 bps refresh
tolerance). Each round starts the bot, waits until the driver re-quotes it, then engages the kill switch
(``bots.services.bot_kill``, in this process, as the web process runs it) at a random moment and measures:

* kill -> zero open orders: from the call to the first moment the venue lists none of the bot's orders
  (read right after the call returns, then polled), and the call's own duration;
* orders sent after the kill committed: orders of the killed epoch the venue accepted (its own accept
  time, ``GET /api/v3/order``) after the kill's ``stopped_at`` (written in the kill's transaction: a lower
  bound of its commit), after the call returned, and orders resting 1 s after it returned.

Prints figures and writes ``bench/results/kill.json``; it never fails on a time.

    python -m bench.bench_kill [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import (  # noqa: E402
    ADMIN_TOKEN,
    OrderWatch,
    make_account,
    make_bot,
    make_tenant,
    setup_django,
    use_queue,
    wait_for,
)
from bench.common import (  # noqa: E402
    BenchDatabase,
    PrivateRedis,
    admin_post,
    free_port,
    release,
    start_emulator,
    start_worker,
    summary_ms,
    write_result,
)

MOVE_EVERY_SECS = 0.05
TARGETS = {"kill_to_zero_open_p99_ms": 1000.0, "orders_sent_after_kill": 0}


class MidMover:
    """Moves the emulator's mid every 50 ms, alternating +-5 bps around 60,000."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.moves = 0

    def _run(self) -> None:
        up = False
        while not self.stopping.wait(MOVE_EVERY_SECS):
            up = not up
            mid = 60000.0 * (1.0005 if up else 0.9995)
            try:
                admin_post(self.base_url, "/admin/mid", {"symbol": "BTC/USDT", "mid": f"{mid:.2f}"}, ADMIN_TOKEN)
                self.moves += 1
            except OSError:
                pass

    def __enter__(self) -> MidMover:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)


def _cycles_seen(watch: OrderWatch, epoch: int, seen: set[str]) -> int:
    for order in watch.orders():
        parts = order["clientOrderId"].split("-")
        if int(parts[2]) == epoch:
            seen.add(parts[3])
    return len(seen)


def accept_times(gateway: Any, pair: str, client_ids: list[str]) -> dict[str, int]:
    """The venue's accept time (ms, its clock) of each order it knows."""
    import asyncio

    from mmplatform import aio

    async def one(cid: str) -> Any:
        return await gateway.fetch_order(pair, client_order_id=cid)

    async def every() -> list[Any]:
        return await asyncio.gather(*(one(cid) for cid in client_ids), return_exceptions=True)

    out = {}
    for cid, result in zip(client_ids, aio.run(every()), strict=True):
        if not isinstance(result, BaseException) and result.timestamp_ms is not None:
            out[cid] = int(result.timestamp_ms)
    return out


def bench_kill(env: dict[str, str], *, rounds: int, concurrency: int) -> dict[str, Any]:
    from bots import services
    from bots.engine.gateways import gateway_for_account, warm_up
    from bots.models import Bot, Order

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api_key, secret = "killkey", "killsecret"
    emulator = start_emulator(port, account=f"{api_key}:{secret}:BTC=100,USDT=6000000", admin_token=ADMIN_TOKEN)
    queue = f"bench-kill-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker = start_worker({**env, "CELERY_QUEUE": queue}, queue, concurrency, name="kill-worker")
    try:
        tenant = make_tenant(f"kill-{uuid.uuid4().hex[:4]}")
        account = make_account(tenant, "kill", base_url, api_key, secret)
        bot = make_bot(tenant, account, "kill-bot", "BTC/USDT", MOVE_EVERY_SECS)
        Bot.objects.filter(pk=bot.pk).update(grid_levels=2, order_refresh_tolerance_bps=2.0)
        watch = OrderWatch(base_url, api_key, f"mm-{bot.pk}-")
        gateway = gateway_for_account(account)
        warm_up()  # as daphne does at start
        rng = random.Random(7)
        to_zero, call_ms, commit_to_return = [], [], []
        after_commit = after_return = open_after_1s = rounds_with_late = rounds_requoting = 0
        with MidMover(base_url) as mover:
            for _ in range(rounds):
                bot.refresh_from_db()
                services.bot_request_start(bot=bot, user=None)
                epoch = Bot.objects.values_list("epoch", flat=True).get(pk=bot.pk)
                seen: set[str] = set()
                if not wait_for(lambda epoch=epoch, seen=seen: _cycles_seen(watch, epoch, seen) >= 3, 60, 0.02):
                    raise RuntimeError(f"the bot never re-quoted; see {worker.log_path}")
                time.sleep(rng.uniform(0, 0.1))
                before = len(seen)
                _cycles_seen(watch, epoch, seen)
                began = time.time()
                services.bot_kill(bot=bot, user=None)
                returned = time.time()
                zero_at = returned if not watch.orders() else None
                while zero_at is None and time.time() - began < 10:
                    time.sleep(0.005)
                    zero_at = time.time() if not watch.orders() else None
                killed = Bot.objects.get(pk=bot.pk)
                committed = killed.stopped_at.timestamp()
                to_zero.append(1000 * ((zero_at or time.time()) - began))
                call_ms.append(1000 * (returned - began))
                commit_to_return.append(1000 * (returned - committed))
                rounds_requoting += len(seen) > before or len(seen) >= 3
                time.sleep(max(0.0, returned + 1.0 - time.time()))
                open_after_1s += len(watch.orders())
                # every order that could have been sent after the kill: stored (before sending) at most 5 s
                # before it, of the killed epoch
                recent = list(Order.objects.filter(
                    bot=bot, epoch__lte=epoch, created_at__gte=killed.stopped_at - timedelta(seconds=5),
                ).values_list("client_order_id", flat=True))
                accepted = accept_times(gateway, "BTC/USDT", recent)
                late = [t for t in accepted.values() if t > committed * 1000]
                after_commit += len(late)
                after_return += sum(1 for t in accepted.values() if t > returned * 1000)
                rounds_with_late += bool(late)
                services.bot_release_kill_switch(bot=killed, user=None)
        return {
            "rounds": rounds,
            "rounds_killed_while_requoting": rounds_requoting,
            "mid_moves": mover.moves,
            "kill_to_zero_open_orders": summary_ms(to_zero),
            "kill_call": summary_ms(call_ms),
            "kill_commit_to_return": summary_ms(commit_to_return),
            "orders_accepted_after_kill_committed": after_commit,
            "rounds_with_orders_after_commit": rounds_with_late,
            "orders_accepted_after_kill_returned": after_return,
            "orders_open_1s_after_kill": open_after_1s,
            "monitoring_interval_secs": MOVE_EVERY_SECS,
            "worker_concurrency": concurrency,
            "measured": "bots.services.bot_kill in this process while the bot re-quotes on a mid moved every "
                        "50 ms; zero open orders from the venue's admin order list; accept times from the venue",
        }
    finally:
        worker.stop()
        emulator.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="kill rounds (default 30, quick 10)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes (prefork)")
    options = parser.parse_args(argv)
    rounds = options.rounds or (10 if options.quick else 30)
    database = BenchDatabase("mmbench_kill")  # this run's own database, dropped at the end
    redis = PrivateRedis()
    try:
        env = setup_django(database.url, redis.url)
        result = bench_kill(env, rounds=rounds, concurrency=options.concurrency)
    finally:
        release(database, redis)
    figures = {"database": database.kind, "targets": TARGETS, "quick": options.quick,
               "command": "python -m bench.bench_kill " + " ".join(argv if argv is not None else sys.argv[1:]),
               "kill": result}
    zero = result["kill_to_zero_open_orders"]
    print(f"kill -> zero open orders: p50 {zero['p50_ms']:.0f} ms, p99 {zero['p99_ms']:.0f} ms, max "
          f"{zero['max_ms']:.0f} ms ({result['rounds']} rounds, {result['rounds_killed_while_requoting']} while "
          "re-quoting)")
    print(f"kill commit -> return: p50 {result['kill_commit_to_return']['p50_ms']:.0f} ms; orders accepted after the "
          f"commit: {result['orders_accepted_after_kill_committed']}, after the return: "
          f"{result['orders_accepted_after_kill_returned']}, open 1 s after: {result['orders_open_1s_after_kill']}")
    path = write_result("kill", figures)
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
