"""The engine on real Celery worker processes, real Redis, the real database and the exchange
emulator: start, quote, fill, stop; crashes; overlap; kill switch."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal
from typing import Any

import pytest

from bots import services
from bots.engine.gateways import warm_up
from bots.engine.lease import cycle_records
from bots.models import Bot, BotEvent, BotStatus, Fill, LiquidityPosition, Order
from tests.bots.conftest import emulator_bot, emulator_open_orders
from tests.processes import start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def status_of(bot: Bot) -> str:
    return Bot.objects.values_list("status", flat=True).get(pk=bot.pk)


def assert_one_exchange_order_per_row(server: Any, bot: Bot) -> None:
    """Every open exchange order of the bot maps to exactly one Order row the database holds open (or
    pending): no orphan, no duplicate. An order the venue listed that ended (filled, cancelled) before the
    rows were read is not one: a second look at the venue must not list it any more."""
    remote = [o for o in emulator_open_orders(server) if (o.client_order_id or "").startswith(f"mm-{bot.pk}-")]
    remote_ids = [o.client_order_id for o in remote]
    assert len(remote_ids) == len(set(remote_ids)), "duplicate client order id on the exchange"
    statuses = dict(Order.objects.filter(bot=bot, client_order_id__in=remote_ids).values_list(
        "client_order_id", "status"))
    assert set(remote_ids) <= statuses.keys(), "an exchange order the database does not know (orphan)"
    ended = {cid for cid, status in statuses.items() if status not in ("open", "partially_filled", "pending")}
    if ended:  # ended between the venue's listing and the rows' read (the noise flow fills quotes)
        time.sleep(0.5)
        still = ended & {o.client_order_id for o in emulator_open_orders(server)}
        assert not still, f"orders ended in the database but still open on the exchange: {sorted(still)}"


def test_start_quote_fill_stop_with_a_real_worker(world_a: Any, emulator: Any, celery_queue: str) -> None:
    bot = emulator_bot(world_a, emulator)
    worker = start_worker()
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.RUNNING, 60, message="bot never reached RUNNING")
        wait_until(lambda: len(emulator_open_orders(emulator)) == 8, 20, message="quotes never rested")
        rows = {o.client_order_id: o for o in Order.objects.filter(bot=bot, status="open")}
        for remote in emulator_open_orders(emulator):
            row = rows[remote.client_order_id]
            assert row.price == remote.price and row.side == remote.side.lower()
        wait_until(lambda: Fill.objects.filter(bot=bot).count() >= 2, 60, message="no fills from noise flow")
        wait_until(lambda: len(cycle_records(bot.pk)) >= 3, 30, message="cycles did not continue")
        assert_one_exchange_order_per_row(emulator, bot)

        services.bot_request_stop(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.STOPPED, 60, message="bot never stopped")
        assert emulator_open_orders(emulator) == []
        assert BotEvent.objects.filter(bot=bot, event_type="MarketMakingStopped").exists()

        fills = list(Fill.objects.filter(bot=bot))
        for position in LiquidityPosition.objects.filter(bot=bot):
            base = position.trading_pair.split("/")[0]
            own = [f for f in fills if f.trading_pair == position.trading_pair]
            expected = sum(((f.amount if f.side == "buy" else -f.amount) - (f.fee if f.fee_currency == base else 0)
                            for f in own), Decimal(0))
            assert position.base_position == expected
            assert position.fill_count == len(own)
        started, finished = zip(*[(s, f) for _, s, f, _ in cycle_records(bot.pk)], strict=True)
        for i in range(1, len(started)):
            assert started[i] >= finished[i - 1], "two cycles of one bot overlapped"
    finally:
        worker.stop()


def test_kill_switch_cancels_everything_before_returning(world_a: Any, emulator: Any, celery_queue: str) -> None:
    bot = emulator_bot(world_a, emulator)
    worker = start_worker()
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: len(emulator_open_orders(emulator)) == 8, 60, message="quotes never rested")
        warm_up()  # as daphne does at start: the kill runs in the web process
        clicked = time.monotonic()
        services.bot_kill(bot=bot, user=world_a.operator)
        # the kill cancels synchronously: when it returns, nothing of the bot rests on the exchange
        assert emulator_open_orders(emulator) == []
        print(f"kill switch: click to zero open orders {1000 * (time.monotonic() - clicked):.0f} ms")
        time.sleep(2)  # a cycle that was in flight must not re-quote
        assert emulator_open_orders(emulator) == []
        assert Bot.objects.get(pk=bot.pk).kill_switch_engaged
        assert BotEvent.objects.filter(bot=bot, event_type="KillSwitchEngaged").exists()
    finally:
        worker.stop()


def test_worker_killed_mid_cycle_resumes_on_a_new_worker_without_duplicates(
    world_a: Any, emulator: Any, celery_queue: str, settings: Any
) -> None:
    from bots.engine.lease import BotLease
    from mmplatform.schedules import install_default_schedules
    from tests.processes import start_beat

    settings.BOT_WATCHDOG_INTERVAL_SECS = 1.0
    install_default_schedules()
    fast = {"BOT_WATCHDOG_INTERVAL_SECS": "1"}
    bot = emulator_bot(world_a, emulator)
    first = start_worker(name="doomed", **fast)
    beat = start_beat(**fast)
    second = None
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: len(emulator_open_orders(emulator)) == 8, 60, message="quotes never rested")
        wait_until(lambda: len(cycle_records(bot.pk)) >= 2, 30, message="no cycles")
        wait_until(lambda: BotLease.is_held(bot.pk), 10, interval_secs=0.002, message="never caught a cycle")
        first.kill9()
        killed_at = time.monotonic()
        cycles_before = len(cycle_records(bot.pk))
        second = start_worker(name="rescuer", **fast)
        wait_until(lambda: len(cycle_records(bot.pk)) >= cycles_before + 3, 60,
                   message="the bot did not resume after its worker was killed")
        print(f"resumed {time.monotonic() - killed_at:.1f} s after kill -9")
        wait_until(lambda: not Order.objects.filter(bot=bot, status="pending").exists(), 30,
                   message="an order stored by the killed cycle was never resolved")
        assert_one_exchange_order_per_row(emulator, bot)
        remote = [o.client_order_id for o in emulator_open_orders(emulator)]
        assert len(remote) == len(set(remote))
        assert len(remote) <= 8, f"more quotes than the strategy wants: {remote}"
    finally:
        for proc in (second, beat):
            if proc is not None:
                proc.stop()


def test_exchange_faults_cause_no_duplicate_and_no_lost_fill(world_a: Any, emulator: Any, celery_queue: str) -> None:
    from exchanges.emulator.server import FaultConfig
    from tests.bots.conftest import emulator_known_orders, emulator_trades

    bot = emulator_bot(world_a, emulator, order_refresh_secs=2.0, order_refresh_tolerance_bps=1.0)
    worker = start_worker()
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.RUNNING, 60, message="bot never reached RUNNING")
        emulator.set_faults(FaultConfig(error_rate=0.08, rate_limit_burst_rate=0.03, retry_after_secs=1,
                                        lost_reply_rate=0.08, latency_ms=2, latency_jitter_ms=3))
        cycles_at_faults = len(cycle_records(bot.pk))
        wait_until(lambda: len(cycle_records(bot.pk)) >= cycles_at_faults + 20, 120,
                   message="the loop stopped under faults")
        emulator.set_faults(FaultConfig())
        settled = len(cycle_records(bot.pk))
        wait_until(lambda: len(cycle_records(bot.pk)) >= settled + 4, 60, message="no cycles after faults")
        wait_until(lambda: not Order.objects.filter(bot=bot, status="pending").exists(), 30,
                   message="pending orders never resolved")
        services.bot_request_stop(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.STOPPED, 60, message="bot never stopped")
        assert emulator_open_orders(emulator) == []

        # every exchange order maps to exactly one Order row, none twice
        remote = [o for o in emulator_known_orders(emulator) if o.client_order_id.startswith(f"mm-{bot.pk}-")]
        remote_ids = [o.client_order_id for o in remote]
        assert len(remote_ids) == len(set(remote_ids)), "an order was placed twice"
        rows = dict(Order.objects.filter(bot=bot).values_list("client_order_id", "exchange_order_id"))
        for order in remote:
            assert order.client_order_id in rows, f"orphan exchange order {order.client_order_id}"
        # no lost fill: the database has exactly the emulator's trades of this bot
        for pair in bot.pairs:
            exchange_fills = {str(t.trade_id) for t in emulator_trades(emulator, pair)
                              if t.client_order_id.startswith(f"mm-{bot.pk}-")}
            recorded = set(Fill.objects.filter(bot=bot, trading_pair=pair).values_list("exchange_trade_id", flat=True))
            assert recorded == exchange_fills, pair
        assert Fill.objects.filter(bot=bot).count() > 0
    finally:
        worker.stop()


def test_two_workers_twenty_bots_never_overlap_and_survive_losing_a_worker(
    world_a: Any, emulator: Any, celery_queue: str
) -> None:
    import psutil

    from exchanges.emulator.server import AccountConfig
    from tests.bots.conftest import BALANCES
    from tests.conftest import make_account, make_bot

    bots = []
    for i in range(20):
        key, secret = f"fleet-key-{i:02d}-xxxx", f"fleet-secret-{i:02d}-yyyyyyyy"
        emulator.add_account(AccountConfig(key, secret, dict(BALANCES)))
        account = make_account(world_a.tenant, f"fleet-{i}", api_key=key, api_secret=secret,
                               api_base_url=emulator.base_url, rate_limit_per_sec=500.0)
        bots.append(make_bot(world_a.tenant, account, name=f"fleet-{i}", pairs="BTC/USDT", grid_levels=1,
                             order_size_quote=Decimal("500"), monitoring_interval_secs=1.0,
                             error_recovery_delay_secs=1.0, adaptation_enabled=False))
    one, two = start_worker(name="w1"), start_worker(name="w2")
    try:
        for bot in bots:
            services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: Bot.objects.filter(pk__in=[b.pk for b in bots], status="running").count() == 20, 120,
                   message="not every bot reached RUNNING")
        wait_until(lambda: all(len(cycle_records(b.pk)) >= 3 for b in bots), 120, message="bots not cycling")

        def pids(proc: Any) -> set[str]:
            return {str(c.pid) for c in psutil.Process(proc.pid).children(recursive=True)}

        used = {rec[3].rsplit(":", 1)[1] for b in bots for rec in cycle_records(b.pk)}
        assert used & pids(one) and used & pids(two), "both workers should carry bots"

        one.stop()  # warm shutdown: its reserved cycles go back to the broker
        survivors = pids(two)
        marks = {b.pk: len(cycle_records(b.pk)) for b in bots}
        wait_until(lambda: all(len(cycle_records(b.pk)) >= marks[b.pk] + 3 for b in bots), 120,
                   message="some bot stopped cycling after its worker left")
        for bot in bots:
            records = cycle_records(bot.pk)
            for previous, current in itertools.pairwise(records):
                assert current[1] >= previous[2], f"bot {bot.pk}: two cycles overlapped"
            assert {r[3].rsplit(":", 1)[1] for r in records[marks[bot.pk]:]} <= survivors
    finally:
        one.stop()
        two.stop()
