"""Gateway placement latency per venue dialect.

``python -m exchanges.emulator.placement_latency --placements 1000 [--venues binance,okx,bybit]`` starts a
frozen-market emulator child process per venue (``--venue V``, its own interpreter, as in production)
and places ``--placements`` resting post-only bids through ``CcxtGateway`` (client ids in the engine's
shape, so OKX's encoding is on the path); the first 50 are warm-up. Prints p50/p99/max per venue in
milliseconds, each placement timed from the call to the returned order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal

from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.child import emulator_process, summary
from exchanges.gateway import GatewayCredentials, OrderRequest
from exchanges.ratelimit import LocalTokenBucket

API_KEY = "placement-latency-key"
API_SECRET = "placement-latency-secret"
PASSPHRASE = "placement-latency-pass"
WARM_UP = 50


async def placements_ms(venue: str, base_url: str, count: int) -> list[float]:
    """Milliseconds of each of ``count`` placements after the warm-up."""
    credentials = GatewayCredentials(f"latency-{venue}", venue, API_KEY, API_SECRET,
                                     passphrase=PASSPHRASE if venue == "okx" else "", api_base_url=base_url,
                                     rate_limit_per_sec=1_000_000)
    gateway = CcxtGateway(credentials, rate_limiter=LocalTokenBucket(1_000_000), rate_limit_burst=1_000_000)
    samples: list[float] = []
    try:
        await gateway.load_markets()
        for index in range(count + WARM_UP):
            request = OrderRequest("BTC/USDT", "buy", price=Decimal(20000) + Decimal(index % 1000) / 100,
                                   amount=Decimal("0.001"), client_order_id=f"mm-1-1-{index}-1b0")
            start = time.perf_counter()
            await gateway.place_order(request)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        await gateway.close()
    return samples[WARM_UP:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchanges.emulator.placement_latency", description=__doc__)
    parser.add_argument("--placements", type=int, default=1000)
    parser.add_argument("--venues", default="binance,okx,bybit")
    options = parser.parse_args(argv)
    if options.placements < 1:
        parser.error("--placements must be >= 1")
    for venue in filter(None, options.venues.split(",")):
        with emulator_process("--venue", venue, "--passphrase", PASSPHRASE,
                              "--account", f"{API_KEY}:{API_SECRET}:USDT=100000000") as base_url:
            print(summary(f"{venue} place_order", asyncio.run(placements_ms(venue, base_url, options.placements))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
