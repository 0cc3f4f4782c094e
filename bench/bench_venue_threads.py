"""How a worker's threads should reach a venue, under the GIL: every request through the process's one I/O loop
(``mmplatform.aio.run``, what the engine does), or each thread on an event loop of its own (no hand-over to the
loop's thread and back). Prints requests per second and CPU per request; asserts nothing.

    python -m bench.bench_venue_threads [--threads 1,2,4,8] [--accounts 4] [--calls 300]

Each request is a ``CcxtGateway.fetch_open_orders`` (ccxt's real binance class) against the emulator in its own
process, with an in-process rate limiter (no Redis). Measured 2026-12-05 (docs/performance.md, "A fill sync's
booking in one statement"): with 2 or more threads the own loops do half the requests per second at 1.5-2x the
CPU per request (each blocking socket call gives up the GIL and waits to get it back behind the other threads).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, start_emulator  # noqa: E402


def measure(mode: str, threads: int, make_gateways: Callable[[], list], calls: int) -> dict:
    """``threads`` threads each making ``calls`` requests over gateways of their own, the ``mode`` way; only the
    requests are timed (each thread first sends one request per gateway: clients made, connections open)."""
    from mmplatform import aio

    ready, done = threading.Barrier(threads + 1), threading.Barrier(threads + 1)

    def work(index: int) -> None:
        gateways = make_gateways()
        loop = asyncio.new_event_loop() if mode == "own" else None

        def send(request: Coroutine[Any, Any, Any]) -> None:
            aio.run(request) if loop is None else loop.run_until_complete(request)

        try:
            for gateway in gateways:
                send(gateway.fetch_open_orders("BTC/USDT"))
            ready.wait()
            for call in range(calls):
                send(gateways[(index + call) % len(gateways)].fetch_open_orders("BTC/USDT"))
            done.wait()
        finally:
            for gateway in gateways:
                send(gateway.close())
            if loop is not None:
                loop.close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    started, cpu = time.perf_counter(), time.process_time()
    done.wait()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    for worker in workers:
        worker.join()
    requests = threads * calls
    return {"mode": mode, "threads": threads, "requests_per_sec": round(requests / wall),
            "cpu_ms_per_request": round(1000 * cpu / requests, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2,4,8")
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    import django

    django.setup()
    from exchanges.ccxt_gateway import CcxtGateway
    from exchanges.gateway import GatewayCredentials
    from exchanges.ratelimit import LocalTokenBucket

    port = free_port()
    emulator = start_emulator(port, account="bench:benchsecret:BTC=1000,USDT=100000000", admin_token="bench")
    try:
        def make_gateways() -> list:
            return [CcxtGateway(GatewayCredentials(f"threads-{i}", "binance", "bench", "benchsecret",
                                                   api_base_url=f"http://127.0.0.1:{port}"),
                                rate_limiter=LocalTokenBucket(1_000_000), rate_limit_burst=1_000_000)
                    for i in range(args.accounts)]

        for threads in (int(n) for n in args.threads.split(",")):
            for mode in ("loop", "own"):
                result = measure(mode, threads, make_gateways, args.calls)
                print(f"{threads} threads, {'the process loop' if mode == 'loop' else 'own loops':>16}: "
                      f"{result['requests_per_sec']:>5} requests/s, {result['cpu_ms_per_request']:.2f} ms CPU each")
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
