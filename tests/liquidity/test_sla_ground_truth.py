"""SLA figures of a real run, recomputed independently from the venue's own journal.

The demo bot (the demo's pairs and settings: grid of 3 levels, 12 bps, 2 bps refresh tolerance, 1 s
interval) runs in a real Celery worker against the emulator's live demo market (its noise traders fill
the quotes). Afterwards the platform's figures for a window in the middle of the run (computed from the
order rows and fills, ``liquidity.services.compute``) are compared with figures this test derives from
the emulator's order journal (``GET /admin/journal``: every accept, fill and cancel on the venue's
clock), sampled every millisecond -- a different method on a different record. Uptime within 1
percentage point, spread and depth within 2 %. Nothing is mocked."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bots import services as bot_services
from bots.engine.gateways import warm_up
from bots.models import Bot, BotStatus
from exchanges.emulator.server import ADMIN_HEADER, EmulatorServer
from liquidity import services
from mmplatform.demo import DEMO_BOT_SETTINGS, DEMO_PAIRS
from tests.bots.conftest import ADMIN_TOKEN, EMULATOR_KEY, emulator_bot
from tests.processes import Proc, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RUN_SECS = 24.0
WINDOW = (6.0, 22.0)  # seconds after the first accept: a window well inside the run


def journal(server: EmulatorServer) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{server.base_url}/admin/journal?account={EMULATOR_KEY}",
                                     headers={ADMIN_HEADER: ADMIN_TOKEN})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["entries"]


def from_journal(entries: list[dict[str, Any]], prefix: str, pair: str, start_ms: int, end_ms: int) -> dict[str, float]:
    """Uptime per side / two-sided, time-weighted spread (bps of the quotes' midpoint) and depth within
    +-2 % per side (quote), by sampling the journal's book of the bot's orders every millisecond."""
    life: dict[int, dict[str, Any]] = {}
    for e in entries:
        if e["pair"] != pair or not e["client_order_id"].startswith(prefix):
            continue
        order = life.setdefault(e["order_id"], {"side": e["side"], "price": float(e["price"]), "steps": []})
        # (ms, remaining after the step): accept -> the whole quantity, a fill -> what is left, cancel -> 0
        order["steps"].append((e["time_ms"], float(e["remaining"])))
    up = {"BUY": 0, "SELL": 0}
    two_sided = 0
    spread_sum = 0.0
    depth = {"BUY": 0.0, "SELL": 0.0}
    orders = list(life.values())
    for t in range(start_ms, end_ms):
        best = {"BUY": None, "SELL": None}
        resting = []
        for order in orders:
            remaining = 0.0
            for at, left in order["steps"]:
                if at > t:
                    break
                remaining = left
            if remaining > 0:
                resting.append((order, remaining))
                side, price = order["side"], order["price"]
                if best[side] is None or (price > best[side] if side == "BUY" else price < best[side]):
                    best[side] = price
        for side in up:
            up[side] += best[side] is not None
        if best["BUY"] is not None and best["SELL"] is not None:
            mid = (best["BUY"] + best["SELL"]) / 2
            two_sided += 1
            spread_sum += (best["SELL"] - best["BUY"]) / mid * 10_000
            for order, remaining in resting:
                if abs(order["price"] - mid) / mid <= 0.02:
                    depth[order["side"]] += order["price"] * remaining
    span = end_ms - start_ms
    return {"uptime_bid": up["BUY"] / span, "uptime_ask": up["SELL"] / span, "uptime_two_sided": two_sided / span,
            "avg_spread_bps": spread_sum / two_sided, "depth_bid_2": depth["BUY"] / span,
            "depth_ask_2": depth["SELL"] / span}


@pytest.fixture
def worker(celery_queue: str) -> Iterator[Proc]:
    proc = start_worker(concurrency=1)
    warm_up()
    yield proc
    proc.stop()


def test_figures_of_a_demo_run_match_the_venue_journal(world_a: Any, emulator: EmulatorServer, worker: Proc) -> None:
    bot = emulator_bot(world_a, emulator, trading_pairs=DEMO_PAIRS, **DEMO_BOT_SETTINGS)
    bot_services.bot_request_start(bot=bot, user=world_a.owner)
    prefix = f"mm-{bot.pk}-"
    wait_until(lambda: any(e["client_order_id"].startswith(prefix) for e in journal(emulator)), 60,
               message="the bot never quoted")
    first_ms = min(e["time_ms"] for e in journal(emulator) if e["client_order_id"].startswith(prefix))
    time.sleep(max(first_ms / 1000 + RUN_SECS - time.time(), 0))
    bot_services.bot_request_stop(bot=Bot.objects.get(pk=bot.pk), user=world_a.owner)
    wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.STOPPED, 60, message="the bot never stopped")
    entries = journal(emulator)
    start_ms, end_ms = first_ms + int(WINDOW[0] * 1000), first_ms + int(WINDOW[1] * 1000)
    start, end = (datetime.fromtimestamp(v / 1000, tz=UTC) for v in (start_ms, end_ms))
    computed = services.compute([bot], start, end)
    account_id = bot.exchange_accounts.get().pk
    events = defaultdict(int)
    for e in entries:
        if e["client_order_id"].startswith(prefix) and start_ms <= e["time_ms"] < end_ms:
            events[e["event"]] += 1
    assert events["accept"] >= 20 and events["cancel"] >= 20, f"too little happened in the window: {dict(events)}"
    report = {}
    for pair in bot.pairs:
        truth = from_journal(entries, prefix, pair, start_ms, end_ms)
        figures, _ = computed[(bot.pk, account_id, pair)]
        ours = services.metrics.summarize(figures)
        report[pair] = (truth, ours)
        for name, value in (("uptime_bid", ours.uptime_bid), ("uptime_ask", ours.uptime_ask),
                            ("uptime_two_sided", ours.uptime_two_sided)):
            assert abs(value - truth[name]) <= 0.01, f"{pair} {name}: ours {value:.4f}, journal {truth[name]:.4f}"
        assert ours.avg_spread_bps == pytest.approx(truth["avg_spread_bps"], rel=0.02), pair
        assert ours.depth_quote["bid_2"] == pytest.approx(truth["depth_bid_2"], rel=0.02), pair
        assert ours.depth_quote["ask_2"] == pytest.approx(truth["depth_ask_2"], rel=0.02), pair
        assert truth["depth_bid_2"] > 500 and truth["uptime_two_sided"] > 0.5  # a run that quoted
    print("\n" + "\n".join(f"{pair}: journal {t} / ours up {o.uptime_bid:.4f} {o.uptime_ask:.4f} "
                           f"{o.uptime_two_sided:.4f} spread {o.avg_spread_bps:.3f} depth {o.depth_quote}"
                           for pair, (t, o) in report.items()))
