"""Latency of moving a quote: one cancel-replace request vs a cancel, then a placement.

``python -m exchanges.emulator.replace_latency --moves 500 [--latency-ms 0]`` starts a frozen-market
emulator as a child process (its own interpreter, as in production; ``--latency-ms`` is its injected
per-request latency, a stand-in for the network), then moves one resting post-only bid ``--moves``
times each way through ``CcxtGateway``, alternating the two variants so both see the same conditions:

* replace: ``replace_order`` (``POST /api/v3/order/cancelReplace``);
* cancel-then-place: ``cancel_order``, then ``place_order`` (the new order is not sent before the old
  one is gone).

Prints p50/p99/max in milliseconds per variant, each move timed from the call to the returned order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal

from exchanges.ccxt_gateway import CcxtGateway
from exchanges.emulator.child import emulator_process, summary
from exchanges.gateway import ExchangeOrder, GatewayCredentials, OrderRequest
from exchanges.ratelimit import LocalTokenBucket

API_KEY = "replace-latency-key"
API_SECRET = "replace-latency-secret"
PAIR = "BTC/USDT"


async def measure(base_url: str, moves: int, warmup: int) -> tuple[list[float], list[float]]:
    """Milliseconds per move: (replace, cancel-then-place)."""
    credentials = GatewayCredentials("replace-latency", "binance", API_KEY, API_SECRET, api_base_url=base_url,
                                     rate_limit_per_sec=1e6)
    gateway = CcxtGateway(credentials, rate_limiter=LocalTokenBucket(1e6))
    replace_ms: list[float] = []
    two_requests_ms: list[float] = []
    try:
        await gateway.load_markets()
        bid = (await gateway.fetch_order_book(PAIR, 1)).bids[0].price
        order: ExchangeOrder = await gateway.place_order(OrderRequest(PAIR, "buy", bid - 50, Decimal("0.001"), "rl-0"))
        for move in range(1, 2 * (warmup + moves) + 1):
            new = OrderRequest(PAIR, "buy", bid - 50 - (move % 7), Decimal("0.001"), f"rl-{move}")
            started = time.perf_counter()
            if move % 2:
                order = await gateway.replace_order(PAIR, cancel_exchange_order_id=order.exchange_order_id,
                                                    cancel_client_order_id=None, new=new)
            else:
                await gateway.cancel_order(PAIR, exchange_order_id=order.exchange_order_id)
                order = await gateway.place_order(new)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if not order.is_open:
                raise RuntimeError(f"move {move}: the new order is {order.status}")
            if move > 2 * warmup:
                (replace_ms if move % 2 else two_requests_ms).append(elapsed_ms)
    finally:
        await gateway.close()
    return replace_ms, two_requests_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchanges.emulator.replace_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=500, help="moves per variant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the emulator's injected latency per request")
    options = parser.parse_args(argv)
    try:
        with emulator_process("--symbols", PAIR, "--account", f"{API_KEY}:{API_SECRET}:USDT=1000000,BTC=10",
                              "--latency-ms", str(options.latency_ms)) as base_url:
            replace_ms, two_requests_ms = asyncio.run(measure(base_url, options.moves, options.warmup))
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"moving one post-only bid, emulator in its own process, injected latency {options.latency_ms:g} ms")
    print(summary(f"{'replace':<18}", replace_ms))
    print(summary(f"{'cancel-then-place':<18}", two_requests_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
