"""The driver's shared views (bots/engine/shared_views.py): each gives exactly what the per-bot function it
stands for gives (so no decision changes), and a quiet tick of N bots on one (account, pair) builds each
shared view once, against the real emulator, database and Redis."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots.engine.client_ids import client_id_prefix
from bots.engine.driver import Driver
from bots.engine.market_data import BookData, without_own
from bots.engine.self_trades import from_view
from bots.engine.shared_views import AccountIndex, BookIndex, SharedViews, bot_key
from exchanges.emulator.server import EmulatorServer
from exchanges.gateway import ExchangeOrder
from tests.bots.conftest import started_bot
from tests.conftest import make_bot

PAIRS = ("BTC/USDT", "ETH/USDT")


def random_order(rng: random.Random, cid: str) -> ExchangeOrder:
    price = None if rng.random() < 0.1 else Decimal(str(round(rng.uniform(90, 110), 2)))
    return ExchangeOrder(exchange_order_id=str(rng.randrange(10**9)), client_order_id=cid, pair=rng.choice(PAIRS),
                         side=rng.choice(("buy", "sell")), order_type="limit", price=price, amount=Decimal("1"),
                         filled=Decimal("0"), remaining=Decimal("1"), average_price=None, status="open",
                         timestamp_ms=None)


def random_cid(rng: random.Random, bots: list[int]) -> str:
    kind = rng.random()
    if kind < 0.7:
        return f"mm-{rng.choice(bots)}-1-{rng.randrange(100)}-{rng.randrange(50)}b{rng.randrange(3)}"
    return rng.choice(["hand-placed-1", f"mm-{rng.choice(bots)}", "mm-", "x-mm-3-1", f"mm-{rng.choice(bots)}0-1",
                       f"web_{rng.randrange(10**6)}"])


def test_an_account_index_gives_each_bot_what_from_view_and_the_stray_scan_give() -> None:
    rng = random.Random(14)
    bots = [3, 30, 31, 300]
    for _ in range(300):
        orders = {}
        for _ in range(rng.randrange(0, 40)):
            cid = random_cid(rng, bots)
            orders[cid] = random_order(rng, cid)
        index = AccountIndex(orders)
        for bot_id in [*bots, 7]:
            assert index.own(bot_id) == [c for c in orders if c.startswith(client_id_prefix(bot_id))]
            for pair in PAIRS:
                assert index.others(bot_id, pair) == from_view(bot_id, orders.values(), pair)
                assert index.others(bot_id, pair) == from_view(bot_id, orders.values(), pair)  # (held: asked again)


def test_bot_key_names_the_bot_exactly_when_the_prefix_matches() -> None:
    for cid, key in [("mm-12-1-2-3b0", "12"), ("mm-12", None), ("mm-", None), ("xmm-1-2", None), ("mm--1", "")]:
        assert bot_key(cid) == key
        assert (key == "12") == cid.startswith(client_id_prefix(12))


def random_levels(rng: random.Random, best: float, step: float) -> list[tuple[float, float]]:
    return [(round(best + i * step, 2), round(rng.uniform(0.001, 3), 3)) for i in range(rng.randrange(0, 8))]


def test_a_book_index_takes_a_bots_own_orders_out_as_without_own_does() -> None:
    rng = random.Random(4)
    for _ in range(2000):
        bids, asks = random_levels(rng, 99.9, -0.1), random_levels(rng, 100.1, 0.1)
        if rng.random() < 0.1 and bids:
            bids.append(bids[0])  # a repeated price: rebuilt the old way
        if rng.random() < 0.1 and asks:
            asks[-1] = (asks[-1][0], 0.0)  # an empty level: rebuilt the old way
        book = BookData(bids, asks, 1.0)
        own = []
        for _ in range(rng.randrange(0, 4)):
            levels, side = (bids, "buy") if rng.random() < 0.5 else (asks, "sell")
            price = rng.choice(levels)[0] if levels and rng.random() < 0.8 else round(rng.uniform(99, 101), 2)
            size = rng.choice([levels[0][1] if levels else 1.0, rng.uniform(0.001, 4)])
            own.append((side, price, size))
        assert BookIndex(book).without_own(own) == without_own(book, own), (book, own)


def test_equal_strategy_settings_share_a_token_that_is_never_given_to_others(monkeypatch: Any) -> None:
    import bots.engine.shared_views as shared_views

    shared = SharedViews()
    a, b, c = ("grid", 1.0), ("grid", 1.0), ("grid", 2.0)
    assert shared.settings_token(a) == shared.settings_token(b) != shared.settings_token(c)
    unhashable = [1]
    assert shared.settings_token(unhashable) == shared.settings_token(unhashable) != shared.settings_token([1])
    seen = {shared.settings_token(a), shared.settings_token(c)}
    monkeypatch.setattr(shared_views, "MAX_ENTRIES", 1)
    shared.settings_token(("other", 3.0))  # the tables are emptied: a's token is not handed out again
    assert shared.settings_token(("new", 4.0)) not in seen


# --- in a tick, against the emulator ----------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)  # the driver's pool threads have their own connections
BOT_FIELDS = dict(trading_pairs="BTC/USDT", grid_levels=1, monitoring_interval_secs=0.2, metrics_interval_secs=3600.0,
                  volatility_pause_threshold=1000.0, inventory_deviation_limit=1.0, order_size_quote=Decimal("1000"),
                  error_recovery_delay_secs=0.5, adaptation_enabled=False)


def more_bots_on_the_account(world: Any, server: EmulatorServer, count: int) -> list[Any]:
    """``count`` bots quoting BTC/USDT on the world's one account (the first one is the world's bot)."""
    from bots.engine.core import MarketMakingBot
    from bots.models import Bot, BotStatus

    bots = [started_bot(world, server, **BOT_FIELDS)]
    for index in range(count - 1):
        fields = {k: v for k, v in BOT_FIELDS.items() if k != "trading_pairs"}
        bot = make_bot(world.tenant, world.account, name=f"peer-{index}", pairs="BTC/USDT",
                       status=BotStatus.STARTING, epoch=1, **fields)
        engine = MarketMakingBot(bot)
        assert engine.initialize_exchanges() and engine.start_market_making(bot.pairs)
        Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
        bots.append(Bot.objects.get(pk=bot.pk))
    return bots


@pytestmark_db
def test_a_quiet_tick_of_n_bots_on_one_account_and_pair_builds_the_shared_views_once(
        world_a: Any, frozen_emulator: EmulatorServer, settings: Any) -> None:
    from bots.engine.shards import DRIVERS_KEY, shard_key
    from mmplatform.redis_client import get_redis

    settings.ENGINE_BOOK_STREAMS = False
    settings.ENGINE_ORDER_STREAMS = False
    settings.ENGINE_FULL_CYCLE_SECS = 3600.0
    # every check decides in full: a bot whose settling ticks left a reusable quiet verdict would skip its reads
    # (seen in CI on a slow machine: 4 account-index reuses instead of 5)
    settings.ENGINE_QUIET_REUSE_SECS = 0.0
    bots = more_bots_on_the_account(world_a, frozen_emulator, 3)
    get_redis().delete(DRIVERS_KEY, *(shard_key(s) for s in range(64)))
    driver = Driver("test")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            driver._feed_once(time.time())
            driver.tick()
            runners = [driver.runners.get(b.pk) for b in bots]
            if all(r is not None and r.engine is not None and not r.busy for r in runners):
                break
        runners = [driver.runners[b.pk] for b in bots]
        assert all(r.engine is not None for r in runners), [r.last_verdict for r in runners]
        driver._housekeeping_at = driver._flush_at = time.time() + 3600  # this tick: the checks only
        driver._feed_once(time.time())
        for runner in runners:
            driver.bring_forward(runner)
            runner.quiet_cycles = 0  # (the settling ticks may have run quiet cycles already)
        driver.shared = SharedViews()  # nothing cached from the settling ticks: this tick builds what it uses
        with CaptureQueriesContext(connection) as queries:
            driver.tick()
        assert [r.quiet_cycles for r in runners] == [1, 1, 1], [r.last_verdict for r in runners]
        assert len(queries) == 0, [q["sql"] for q in queries]
        stats = driver.shared.stats
        # each bot reads the account's index twice (its stray scan, the self-trade view) and the book once
        assert (stats["account_index_built"], stats["account_index_reused"]) == (1, 5), stats
        assert (stats["book_index_built"], stats["book_index_reused"]) == (1, 2), stats
    finally:
        driver.stop()
