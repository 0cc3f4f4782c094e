"""Latency from ``POST /admin/mid`` to the bookTicker update arriving in ccxt.pro (``BookTickerStream``).

``python -m exchanges.emulator.stream_latency --moves 500`` starts a frozen-market emulator as a child
process (its own interpreter, as in production), then for each move: note the time, POST a new mid,
and wait for that symbol's next update; the latency is the update's ``received_at`` (stamped when
ccxt read the frame) minus the time before the POST. Prints p50/p99/max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiohttp

from exchanges.emulator.child import emulator_process, summary
from exchanges.emulator.server import ADMIN_HEADER
from exchanges.streams import BookTickerStream

ADMIN_TOKEN = "latency-admin-token"


async def measure(base_url: str, symbol: str, moves: int, warmup: int) -> list[float]:
    """Milliseconds from before each POST /admin/mid to the matching update's arrival."""
    stream = BookTickerStream("binance", base_url)
    latencies_ms: list[float] = []
    try:
        async with aiohttp.ClientSession(headers={ADMIN_HEADER: ADMIN_TOKEN}) as session:
            last_update_id = None
            while last_update_id is None:  # the subscription's first frame: the current top
                for quote in await asyncio.wait_for(stream.watch([symbol]), 30):
                    last_update_id = quote.update_id
            for move in range(warmup + moves):
                mid = 60100 + (move % 2) * 50 + move % 7  # differs from the previous mid (and the initial 60000)
                started_at = time.time()
                post = asyncio.ensure_future(session.post(f"{base_url}/admin/mid", json={"symbol": symbol, "mid": mid}))
                arrived_at = None
                while arrived_at is None:
                    for quote in await asyncio.wait_for(stream.watch([symbol]), 30):
                        if quote.update_id is not None and quote.update_id > last_update_id:
                            arrived_at, last_update_id = quote.received_at, quote.update_id
                response = await post
                if response.status != 200:
                    raise RuntimeError(f"POST /admin/mid answered {response.status}: {await response.text()}")
                response.release()
                if move >= warmup:
                    latencies_ms.append((arrived_at - started_at) * 1000)
    finally:
        await stream.close()
    return latencies_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchanges.emulator.stream_latency", description=__doc__)
    parser.add_argument("--moves", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--symbol", default="BTC/USDT")
    options = parser.parse_args(argv)
    try:
        with emulator_process("--admin-token", ADMIN_TOKEN, "--symbols", options.symbol) as base_url:
            latencies_ms = asyncio.run(measure(base_url, options.symbol, options.moves, options.warmup))
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary("POST /admin/mid -> ccxt.pro bookTicker update,", latencies_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
