"""Bot starts on the worker process's start pool (``bots.engine.starts``): a mass start runs ``BOT_START_THREADS``
starts at a time per process instead of one per task; a start waiting there keeps its start-queued mark until it
begins; a stopping worker sends the starts that have not begun back to the broker. The pool's mechanics with
stand-in starts, then a real start (the emulator, the database, Redis) handed over by the ``start_bot`` task."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bots import tasks
from bots.engine import keys, starts
from bots.models import Bot, BotStatus
from exchanges.emulator.server import EmulatorServer
from mmplatform.redis_client import get_redis
from tests.bots.conftest import emulator_bot, emulator_open_orders
from tests.processes import wait_until


def test_starts_run_side_by_side_on_the_pool() -> None:
    """Four starts that each wait for the other three: they all get past only if they run at once."""
    together = threading.Barrier(4, timeout=10)
    done: list[int] = []

    def start(bot_id: int, epoch: int) -> None:
        together.wait()  # BrokenBarrierError after 10 s if the pool ran them one at a time
        done.append(bot_id)

    starts.enable(4)
    try:
        for bot_id in range(1, 5):
            assert starts.hand_over(bot_id, 1, start, requeue=lambda *a: None)
        wait_until(lambda: len(done) == 4, 15, message="the starts did not run side by side")
    finally:
        starts.stop()
    assert sorted(done) == [1, 2, 3, 4] and not together.broken


def test_a_stopping_pool_sends_back_the_starts_that_have_not_begun() -> None:
    release = threading.Event()
    began: list[int] = []
    requeued: list[tuple[int, int]] = []

    def start(bot_id: int, epoch: int) -> None:
        began.append(bot_id)
        release.wait(10)

    starts.enable(1)
    try:
        for bot_id in (1, 2, 3):
            assert starts.hand_over(bot_id, 7, start, requeue=lambda b, e: requeued.append((b, e)))
        wait_until(lambda: began == [1], 10, message="the first start never began")
        assert starts.queued() == 2
        stopping = threading.Thread(target=starts.stop)
        stopping.start()
        wait_until(lambda: len(requeued) == 2, 10, message="the waiting starts were not sent back")
        assert stopping.is_alive(), "stop waits for the running start"
        release.set()
        stopping.join(10)
        assert not stopping.is_alive()
    finally:
        release.set()
        starts.stop()
    assert began == [1] and requeued == [(2, 7), (3, 7)]


def test_no_pool_where_no_engine_runs_or_none_is_wanted() -> None:
    starts.stop()  # (a process that runs no driver: nothing enabled)
    assert not starts.hand_over(1, 1, lambda *a: None, requeue=lambda *a: None)
    starts.enable(0)  # BOT_START_THREADS=0
    assert not starts.hand_over(1, 1, lambda *a: None, requeue=lambda *a: None)
    assert starts.queued() == 0


@pytest.mark.django_db(transaction=True)
def test_the_start_task_hands_the_start_to_the_pool_and_the_bot_runs(world_a: Any, frozen_emulator: EmulatorServer,
                                                                      monkeypatch: Any) -> None:
    """In a process that runs an engine driver the task returns at once; the pool's thread begins the start (the
    start-queued mark cleared then, not before), places the first quotes and marks the bot RUNNING."""
    starts.enable(2)  # (what the bootstep does in a process that runs a driver)
    bot = emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING, epoch=1, trading_pairs="BTC/USDT")
    get_redis().set(keys.start_queued(bot.pk), "1")  # (as ``queue_start`` left it)
    began = threading.Event()
    real = tasks.run_start

    def start(bot_id: int, epoch: int) -> str:
        assert get_redis().get(keys.start_queued(bot_id)) == b"1", "the mark went before the start began"
        began.set()
        return real(bot_id, epoch)

    monkeypatch.setattr(tasks, "run_start", start)
    try:
        assert tasks.start_bot(bot.pk, 1) == "handed to the start pool"
        wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.RUNNING, 20,
                   message="the handed-over start never made the bot RUNNING")
    finally:
        starts.stop()
    assert began.is_set()
    assert not get_redis().exists(keys.start_queued(bot.pk))
    resting = emulator_open_orders(frozen_emulator)
    assert {o.side for o in resting} == {"BUY", "SELL"}, "the start placed the first quotes"
    assert all(o.client_order_id.startswith(f"mm-{bot.pk}-") for o in resting)
