"""Alerts end to end on a real Celery worker (consuming the default queue and alert delivery's own): the
kill switch (engaged in this process, as the dashboard does), a bot whose start fails on the worker (ERROR)
and the watchdog's stale-cycles check each reach a real HTTP receiver as one signed webhook, retried
through the receiver's failures with the worker's backoff; the released kill switch sends one "resolved"
notice; an SLA breach reported twice is one alert. The worker runs no engine driver
(ENGINE_DRIVER_ENABLED=false): only tasks."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts import hooks, services, signing
from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule
from bots import services as bot_services
from bots.events import publish_event
from bots.models import Bot, BotStatus
from bots.tasks import watchdog
from tests.alerts.receiver import WebhookReceiver
from tests.bots.conftest import emulator_bot
from tests.conftest import make_account, make_bot
from tests.processes import start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRET = "whsec_worker_test_0123456789"
WORKER_ENV = {"ENGINE_DRIVER_ENABLED": "false", "ALERTS_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
              "ALERTS_RETRY_BASE_SECS": "0.2", "ALERTS_MAX_ATTEMPTS": "4"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kinds_received(receiver: WebhookReceiver) -> list[tuple[str, int]]:
    return [(json.loads(r.body)["kind"], r.status) for r in receiver.received]


def types_received(receiver: WebhookReceiver) -> list[tuple[str, str]]:
    return [(json.loads(r.body)["type"], json.loads(r.body)["kind"]) for r in receiver.received if r.status == 200]


def test_kill_switch_error_breach_and_stale_cycles_alert_through_a_real_worker(
    world_a: Any, frozen_emulator: Any, celery_queue: str, settings: Any
) -> None:
    settings.ALERTS_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    killed = emulator_bot(world_a, frozen_emulator)
    broken = make_bot(world_a.tenant, make_account(world_a.tenant, "dead", api_base_url=f"http://127.0.0.1:"
                                                   f"{closed_port()}"), name="broken", pairs="BTC/USDT")
    stale = make_bot(world_a.tenant, world_a.account, name="silent", status=BotStatus.RUNNING,
                     monitoring_interval_secs=1.0, error_recovery_delay_secs=1.0,
                     last_cycle_finished_at=timezone.now() - timedelta(minutes=5))
    with WebhookReceiver(statuses=[500, 500]) as receiver:  # the first two requests fail, then 200
        channel = AlertChannel(tenant=world_a.tenant, name="desk", kind="webhook", url=receiver.url)
        services.channel_set_secret(channel=channel, secret=SECRET)
        channel.full_clean()
        channel.save()
        rule = AlertRule.objects.create(tenant=world_a.tenant, name="page the desk",
                                        kinds=["kill_switch", "bot_error", "stale_cycles", "sla_breach"])
        rule.channels.add(channel)
        worker = start_worker(**WORKER_ENV)
        try:
            # the kill switch, twice: one alert (the second is a repeat within the dedup window)
            bot_services.bot_kill(bot=killed, user=world_a.operator)
            bot_services.bot_kill(bot=Bot.objects.get(pk=killed.pk), user=world_a.operator)
            assert hooks.flush()
            wait_until(lambda: ("kill_switch", 200) in kinds_received(receiver), 30,
                       message=f"kill switch alert never delivered: {kinds_received(receiver)}")
            assert kinds_received(receiver) == [("kill_switch", 500), ("kill_switch", 500), ("kill_switch", 200)]
            wait_until(lambda: Alert.objects.filter(kind="kill_switch", occurrences=2).exists(), 10,
                       message="the second kill was not counted on the first alert")
            # released: one "resolved" notice to the same webhook
            bot_services.bot_release_kill_switch(bot=Bot.objects.get(pk=killed.pk), user=world_a.operator)
            assert hooks.flush()
            wait_until(lambda: ("alert_resolved", "kill_switch") in types_received(receiver), 30,
                       message=f"the resolved notice never arrived: {types_received(receiver)}")

            # a start that cannot connect: the worker puts the bot in ERROR
            bot_services.bot_request_start(bot=broken, user=world_a.operator)
            wait_until(lambda: Bot.objects.get(pk=broken.pk).status == BotStatus.ERROR, 60,
                       message="the broken bot never reached ERROR")
            wait_until(lambda: ("bot_error", 200) in kinds_received(receiver), 30,
                       message=f"bot error alert never delivered: {kinds_received(receiver)}")

            # the SLA engine reports one breach twice (bots.events.publish_event, as it does): one alert
            breach = {"sla_id": 7, "sla_name": "issuer uptime", "trading_pair": "BTC/USDT", "metric": "uptime_bid",
                      "value": "0.88", "threshold": "0.9"}
            publish_event(bot=broken, event_type="SlaBreached", payload=breach)
            publish_event(bot=broken, event_type="SlaBreached", payload={**breach, "value": "0.87"})
            assert hooks.flush()
            wait_until(lambda: ("sla_breach", 200) in kinds_received(receiver), 30,
                       message=f"SLA breach alert never delivered: {kinds_received(receiver)}")
            wait_until(lambda: Alert.objects.filter(kind="sla_breach", occurrences=2).exists(), 10,
                       message="the repeated breach was not counted on the first alert")

            # beat's watchdog finds a running bot silent for 5 minutes
            watchdog()
            assert hooks.flush()
            wait_until(lambda: ("stale_cycles", 200) in kinds_received(receiver), 30,
                       message=f"stale cycles alert never delivered: {kinds_received(receiver)}")
        finally:
            worker.stop()
            time.sleep(0.1)

    alerts = {a.kind: a for a in Alert.objects.all()}
    assert set(alerts) == {"kill_switch", "bot_error", "stale_cycles", "sla_breach"} and Alert.objects.count() == 4
    assert [kind for kind, _ in kinds_received(receiver)].count("sla_breach") == 1
    assert alerts["kill_switch"].bot_id == killed.pk and alerts["bot_error"].bot_id == broken.pk
    assert alerts["stale_cycles"].bot_id == stale.pk
    for received in receiver.received:
        assert signing.verify(SECRET, received.headers[signing.SIGNATURE_HEADER.lower()], received.body,
                              now=time.time())
    deliveries = {d.alert.kind: d for d in AlertDelivery.objects.select_related("alert").filter(resolution=False)}
    assert (deliveries["kill_switch"].status, deliveries["kill_switch"].attempts) == ("delivered", 3)
    assert all(d.status == "delivered" for d in AlertDelivery.objects.all())
    resolved = AlertDelivery.objects.get(resolution=True)
    assert resolved.alert.kind == "kill_switch" and resolved.alert.resolved_at is not None
    assert types_received(receiver).count(("alert_resolved", "kill_switch")) == 1
    print("\nevent -> webhook delivered (ms; the kill switch's includes the worker's start-up and two retries): "
          + ", ".join(f"{deliveries[k].latency_ms:.0f}" for k in ("kill_switch", "bot_error", "stale_cycles")))
