"""The engine is part of the Celery worker (``bots.engine.bootstep``): real worker processes with each
pool run a bot against the exchange emulator, ``celery inspect engine`` (a real subprocess) shows the
driver with the bot, the engine-health page shows it to its tenant only, a warm shutdown gives the
shards back at once, and an unsupported pool is refused with the reason."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from bots import services
from bots.engine.health import live_drivers, shard_owners
from bots.engine.lease import cycle_records
from bots.engine.shards import shard_of
from bots.models import Bot, BotStatus
from mmplatform.queues import worker_queues
from tests.bots.conftest import emulator_bot, emulator_open_orders
from tests.conftest import PASSWORD
from tests.processes import Proc, process_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def start_pool_worker(pool: str, *, node: str = "", concurrency: int = 2, **env: str) -> tuple[Proc, str]:
    """A real worker with ``-P pool`` in its own process group; returns it and its node name (for
    ``inspect -d``)."""
    node = node or f"eng-{pool}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    argv = [sys.executable, "-m", "celery", "-A", "mmplatform", "worker", "--loglevel", "INFO", "-P", pool,
            "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", node, "-Q", worker_queues()]
    return Proc(f"worker-{pool}", argv, process_env(**env)), node


def inspect_engine(node: str) -> dict[str, Any] | None:
    """``celery -A mmplatform inspect engine -d node -j``, as an operator types it; None if no reply."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "mmplatform", "inspect", "engine", "-d", node, "-j", "-t", "5"],
        env=process_env(), capture_output=True, text=True, timeout=90)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1]).get(node)


def engine_processes(proc: Proc, pool: str) -> set[int]:
    """The pids that may run this worker's driver: its pool children (prefork), else itself."""
    if pool == "prefork":
        return {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
    return {proc.pid}


def status_of(bot: Bot) -> str:
    return Bot.objects.values_list("status", flat=True).get(pk=bot.pk)


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_each_pool_runs_the_engine_and_inspect_and_the_health_page_show_it(
        pool: str, world_a: Any, world_b: Any, emulator: Any, celery_queue: str) -> None:
    bot = emulator_bot(world_a, emulator, name="Alpha Engine Quoter")
    worker, node = start_pool_worker(pool)
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.RUNNING, 60, message=f"{pool}: bot never reached RUNNING")
        wait_until(lambda: len(emulator_open_orders(emulator)) == 8, 30, message=f"{pool}: quotes never rested")
        wait_until(lambda: len(cycle_records(bot.pk)) >= 3, 30, message=f"{pool}: the engine did not cycle the bot")
        hostname = socket.gethostname()
        allowed = engine_processes(worker, pool)
        ran = {record[3] for record in cycle_records(bot.pk)[-3:]}
        assert ran <= {f"{hostname}:{pid}" for pid in allowed}, f"{pool}: cycles ran outside the worker: {ran}"

        def counted(driver: dict[str, Any]) -> int:
            return sum(driver["verdicts"][k] for k in ("quiet", "requote", "fills", "snapshot", "full"))

        def shows_the_bot() -> dict[str, Any] | None:
            """A reply whose driver of the bot has published (once a second) a few cycles and their lag."""
            reply = inspect_engine(node)
            if reply and any(bot.pk in d["bots"] and d["lag"]["p99_ms"] is not None and counted(d) >= 3
                             for d in reply["drivers"]):
                return reply
            return None

        reply = wait_until(shows_the_bot, 60, interval_secs=1.0, message=f"{pool}: inspect engine never showed the bot")
        module = "thread" if pool == "threads" else pool
        assert reply is not None and reply["pool"] == f"celery.concurrency.{module}:TaskPool"
        assert reply["engine"] == ("children" if pool == "prefork" else "worker")
        drivers = reply["drivers"]
        assert {int(d["worker"].rsplit(":", 1)[1]) for d in drivers} <= allowed
        assert len(drivers) == (2 if pool == "prefork" else 1), drivers  # one driver per pool process
        holder = [d for d in drivers if bot.pk in d["bots"]]
        assert len(holder) == 1, drivers
        assert shard_of(bot.pk, world_a.account.pk) in holder[0]["shards"]
        assert holder[0]["verdicts"]["full"] >= 1  # its first cycle in this driver is a full one
        assert reply["totals"]["bots"] == 1 and reply["totals"]["shards_held"] == settings.ENGINE_SHARDS
        tokens = {d["token"] for d in drivers}

        # the owner's health page shows the bot and the process driving it; another tenant sees the
        # fleet figures but never the bot, and its engine JSON answers 404
        owner = Client()
        assert owner.login(username="a-owner", password=PASSWORD)
        page = owner.get(reverse("dashboard:engine_health")).content.decode()
        assert bot.name in page and holder[0]["worker"] in page
        state = owner.get(reverse("dashboard:bot_engine_json", args=[bot.pk])).json()
        assert state["driven"] and state["worker"] == holder[0]["worker"] and state["cycles_last_minute"] >= 1
        outsider = Client()
        assert outsider.login(username="b-owner", password=PASSWORD)
        response = outsider.get(reverse("dashboard:engine_health"))
        assert response.status_code == 200
        body = response.content.decode()
        assert bot.name not in body and f'data-bot-id="{bot.pk}"' not in body and "Firm A" not in body
        assert f'data-bot-id="{world_b.bot.pk}"' in body
        assert f">{len(drivers)}<" in body  # the fleet's driver count is a fleet-level figure it may see
        assert outsider.get(reverse("dashboard:bot_engine_json", args=[bot.pk])).status_code == 404
    finally:
        worker.stop()
    # a warm shutdown gave the shards back at once (not after their lease TTL) and left the fleet
    assert not tokens & set(shard_owners().values()), f"{pool}: shards still held after a warm shutdown"
    assert not tokens & set(live_drivers())


def test_an_unsupported_pool_is_refused_with_the_reason(emulator: Any, celery_queue: str) -> None:
    # a custom pool (Celery's CELERY_CUSTOM_WORKER_POOL) stands for eventlet/gevent, which are not installed
    worker, _ = start_pool_worker("custom", CELERY_CUSTOM_WORKER_POOL="celery.concurrency.base:BasePool")
    try:
        worker.popen.wait(timeout=60)
        assert worker.popen.returncode == 78
        output = worker.output()
        assert "the bot engine cannot run in a worker with pool celery.concurrency.base:BasePool" in output
        assert "-P prefork (default), -P threads or -P solo" in output
        assert "Traceback" not in output
        assert live_drivers() == {}
    finally:
        worker.stop()


def test_the_health_page_says_when_no_driver_is_alive(world_a: Any, world_b: Any) -> None:
    owner = Client()
    assert owner.login(username="a-owner", password=PASSWORD)
    body = owner.get(reverse("dashboard:engine_health")).content.decode()
    assert 'id="engine-no-driver"' in body and "no bot is cycling" in body
    assert f'data-bot-id="{world_a.bot.pk}"' in body and "not cycled while stopped" in body
    assert f'data-bot-id="{world_b.bot.pk}"' not in body
    assert owner.get(reverse("dashboard:bot_engine_json", args=[world_a.bot.pk])).json() == {
        "bot_id": world_a.bot.pk, "status": "stopped", "driven": False}
    assert owner.get(reverse("dashboard:bot_engine_json", args=[world_b.bot.pk])).status_code == 404
