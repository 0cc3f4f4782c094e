"""Alerts against the real database and a real HTTP receiver on loopback: rules, de-duplication,
throttling, signed webhook deliveries retried through failures and dead-lettered, email through Django's
locmem backend, bad webhook URLs refused in the admin, and one tenant never seeing another's alerts.

The attempts are run here one after another (``delivery_attempt`` with a clock moved past each backoff)
instead of waiting for Celery's countdowns; ``test_alerts_worker.py`` runs the same path on a real worker."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from alerts import hooks, services, signing
from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule, DeadLetter
from tests.alerts.receiver import WebhookReceiver
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_0123456789abcdef"


@pytest.fixture(autouse=True)
def loopback_allowed(settings: Any) -> None:
    settings.ALERTS_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    settings.ALERTS_MAX_ATTEMPTS = 4
    settings.ALERTS_RETRY_BASE_SECS = 1.0
    settings.ALERTS_WEBHOOK_TIMEOUT_SECS = 2.0


def webhook_channel(tenant: Any, url: str, **fields: Any) -> AlertChannel:
    channel = AlertChannel(tenant=tenant, name=fields.pop("name", "desk hook"), kind="webhook", url=url, **fields)
    services.channel_set_secret(channel=channel, secret=SECRET)
    channel.full_clean()
    channel.save()
    return channel


def rule_for(tenant: Any, channels: list[AlertChannel], kinds: list[str], **fields: Any) -> AlertRule:
    rule = AlertRule.objects.create(tenant=tenant, name=fields.pop("name", "desk"), kinds=kinds, **fields)
    rule.channels.set(channels)
    return rule


def breach(world: Any, pair: str = "BTC/USDT", **extra: Any) -> services.Raised:
    return services.alerts_raise(tenant_id=world.tenant.pk, bot_id=world.bot.pk, event_type="SlaBreached",
                                 payload={"sla_id": 1, "sla_name": "issuer uptime", "trading_pair": pair,
                                          "metric": "uptime_bid", "value": "0.87", "threshold": "0.9", **extra})


def attempt_until_done(delivery_id: int) -> int:
    """Run attempts as the worker would, each at the time its backoff says; returns the attempts made."""
    now = timezone.now()
    for made in range(1, 20):
        delay = services.delivery_attempt(delivery_id=delivery_id, now=now)
        if delay is None:
            return made
        now += timedelta(seconds=delay)
    raise AssertionError("never finished")


def test_a_breach_raises_one_alert_delivered_signed_through_two_failures(world_a: Any) -> None:
    with WebhookReceiver(statuses=[500, 500, 200]) as receiver:
        rule_for(world_a.tenant, [webhook_channel(world_a.tenant, receiver.url)], ["sla_breach"])
        first = breach(world_a)
        repeats = [breach(world_a, value="0.86"), breach(world_a, value="0.85")]  # the same breach, again
        assert len(first.alert_ids) == 1 and len(first.delivery_ids) == 1
        assert all(r.alert_ids == [] and r.deduplicated == 1 and r.delivery_ids == [] for r in repeats)
        assert attempt_until_done(first.delivery_ids[0]) == 3
        bodies = [r for r in receiver.received]

    assert [r.status for r in bodies] == [500, 500, 200]
    for received in bodies:
        header = received.headers[signing.SIGNATURE_HEADER.lower()]
        assert signing.verify(SECRET, header, received.body, now=time.time())
        assert not signing.verify("whsec_someone_elses_secret", header, received.body, now=time.time())
    payload = json.loads(bodies[-1].body)
    alert = Alert.objects.get()
    assert payload["alert_id"] == alert.pk and payload["kind"] == "sla_breach" and payload["severity"] == "error"
    assert payload["bot"] == {"id": world_a.bot.pk, "name": world_a.bot.name}
    assert [json.loads(r.body)["attempt"] for r in bodies] == [1, 2, 3]
    assert alert.occurrences == 3
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert delivery.latency_ms is not None and delivery.latency_ms >= 0


def test_a_delivery_that_keeps_failing_is_dead_lettered_after_the_limit(world_a: Any) -> None:
    with WebhookReceiver(default_status=503) as receiver:
        rule_for(world_a.tenant, [webhook_channel(world_a.tenant, receiver.url)], ["sla_breach"])
        raised = breach(world_a)
        now = timezone.now()
        delays = []
        for _ in range(10):
            delay = services.delivery_attempt(delivery_id=raised.delivery_ids[0], now=now)
            if delay is None:
                break
            delays.append(delay)
            assert services.delivery_attempt(delivery_id=raised.delivery_ids[0], now=now) is None  # not due yet
            now += timedelta(seconds=delay)
        assert len(receiver.received) == 4  # ALERTS_MAX_ATTEMPTS
    assert delays == [1.0, 2.0, 4.0]  # exponential backoff
    dead = DeadLetter.objects.filter(status="dead").get()
    assert dead.pk == raised.delivery_ids[0] and dead.attempts == 4 and dead.last_status_code == 503
    assert "HTTP 503" in dead.last_error
    # a dead letter is not attempted again unless requeued
    assert services.delivery_attempt(delivery_id=dead.pk, now=now + timedelta(days=1)) is None
    assert services.deliveries_requeue(tenant_id=world_a.tenant.pk, delivery_ids=[dead.pk]) == [dead.pk]
    assert AlertDelivery.objects.get(pk=dead.pk).status == "retrying"


def test_throttling_sends_at_most_the_rules_limit_and_logs_the_rest(world_a: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="desk@a.example")
    rule_for(world_a.tenant, [channel], ["sla_breach"], throttle_max_alerts=2, throttle_window_secs=600)
    results = [breach(world_a, pair=pair) for pair in ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")]
    assert [len(r.delivery_ids) for r in results] == [1, 1, 0, 0]
    assert [r.throttled for r in results] == [0, 0, 1, 1]
    assert list(Alert.objects.order_by("id").values_list("status", flat=True)) == ["sent", "sent", "throttled",
                                                                                   "throttled"]


def test_email_goes_through_djangos_backend(world_a: Any, settings: Any) -> None:
    assert settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend"
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email",
                                          emails="desk@a.example, risk@a.example")
    rule_for(world_a.tenant, [channel], ["kill_switch"])
    raised = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk,
                                   event_type="KillSwitchEngaged", payload={"reason": "kill switch engaged by ops"})
    assert attempt_until_done(raised.delivery_ids[0]) == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["desk@a.example", "risk@a.example"]
    assert message.subject == f"[CRITICAL] Kill switch engaged — {world_a.bot.name}"
    assert "kill switch engaged by ops" in message.body
    assert AlertDelivery.objects.get().status == "delivered"


def test_slack_format_is_text_and_blocks(world_a: Any) -> None:
    with WebhookReceiver() as receiver:
        channel = webhook_channel(world_a.tenant, receiver.url, payload_format="slack")
        rule_for(world_a.tenant, [channel], ["bot_error"])
        raised = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk, event_type="BotError",
                                       payload={"error": "no exchange could be connected"})
        attempt_until_done(raised.delivery_ids[0])
        body = json.loads(receiver.received[0].body)
    assert body["text"] == "[CRITICAL] Bot in ERROR: no exchange could be connected"
    assert body["blocks"][0]["type"] == "section" and body["blocks"][-1]["type"] == "context"


def test_rules_filter_by_kind_bot_and_severity(world_a: Any) -> None:
    from tests.conftest import make_bot

    other_bot = make_bot(world_a.tenant, world_a.account, name="other")
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["risk_event"], bot=world_a.bot, min_severity="error")

    def risk(bot_id: int, risk_type: str) -> int:
        return len(services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=bot_id, event_type="RiskEventHandled",
                                         payload={"event_type": risk_type, "trading_pair": "BTC/USDT"}).alert_ids)

    assert risk(world_a.bot.pk, "MARKET_VOLATILITY") == 0  # warning < error
    assert risk(other_bot.pk, "DAILY_LOSS_LIMIT") == 0  # another bot
    assert risk(world_a.bot.pk, "DAILY_LOSS_LIMIT") == 1
    assert services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk, event_type="OrdersAdjusted",
                                 payload={}).alert_ids == []


def test_another_tenants_rules_never_see_an_event(world_a: Any, world_b: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_b.tenant, name="mail", kind="email", emails="d@b.example")
    rule_for(world_b.tenant, [channel], ["kill_switch"])
    raised = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk,
                                   event_type="KillSwitchEngaged", payload={})
    assert raised.alert_ids == [] and not Alert.objects.exists()


def test_venue_unreadable_for_long_enough_is_reported_once(world_a: Any, settings: Any, monkeypatch: Any) -> None:
    settings.ALERTS_VENUE_DOWN_SECS = 0.05
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(hooks, "_put", lambda task, args: sent.append((task, args)))  # no broker in this test
    monkeypatch.setattr(hooks, "_down_since", {})
    monkeypatch.setattr(hooks, "_reported", set())
    account = world_a.account.pk
    hooks.venue_read(account, "ExchangeUnavailableError: down")
    assert sent == []  # not yet long enough
    time.sleep(0.06)
    hooks.venue_read(account, "ExchangeUnavailableError: down")
    hooks.venue_read(account, "ExchangeUnavailableError: down")
    assert [task for task, _ in sent] == ["venue_disconnected"]
    hooks.venue_read(account, None)  # read again (reported reconnected): a later outage is a new report
    hooks.venue_read(account, "timeout")
    time.sleep(0.06)
    hooks.venue_read(account, "timeout")
    assert [task for task, _ in sent] == ["venue_disconnected", "venue_reconnected", "venue_disconnected"]

    world_a.bot.status = "running"
    world_a.bot.save()
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["venue_disconnected"])
    raised = services.venue_disconnected_raise(account_id=account, down_secs=16.0, error="timeout")
    alert = Alert.objects.get(pk=raised.alert_ids[0])
    assert alert.kind == "venue_disconnected" and alert.bot_id == world_a.bot.pk and len(raised.delivery_ids) == 1


def test_routine_events_cost_one_lookup_and_alerting_ones_wait_for_commit(world_a: Any, monkeypatch: Any,
                                                                          django_capture_on_commit_callbacks: Any
                                                                          ) -> None:
    from bots.events import publish_event

    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(hooks, "_put", lambda task, args: sent.append((task, args)))  # no broker in this test
    with django_capture_on_commit_callbacks(execute=True):
        publish_event(bot=world_a.bot, event_type="OrdersAdjusted", payload={"new_order_count": 2})
        event = publish_event(bot=world_a.bot, event_type="KillSwitchEngaged", payload={"reason": "r"})
        assert sent == []  # nothing before the commit
    assert sent == [("raise_alerts", (world_a.tenant.pk, world_a.bot.pk, "KillSwitchEngaged", {"reason": "r"},
                                      event.pk, event.created_at.isoformat()))]


# --- the admin: bad input and tenancy ----------------------------------------------------------------


def channel_form(tenant: Any, **fields: Any) -> dict[str, Any]:
    return {"tenant": tenant.pk, "name": "hook", "kind": "webhook", "enabled": "on", "emails": "", "url": "",
            "payload_format": "json", "signing_secret": "", **fields}


@pytest.mark.parametrize(("url", "allowed", "error"), [
    ("ftp://hooks.example.com/alert", [], "scheme must be http or https"),
    ("http://10.0.0.5/alert", [], "private or reserved"),
    ("http://127.0.0.1:8000/alert", [], "loopback"),
    ("http://169.254.169.254/latest", ["127.0.0.0/8"], "link-local"),
    ("", [], "needs a URL"),
])
def test_a_bad_webhook_url_is_a_field_error_and_nothing_is_saved(client: Any, world_a: Any, settings: Any,
                                                                 url: str, allowed: list[str], error: str) -> None:
    settings.ALERTS_ALLOWED_PRIVATE_NETWORKS = allowed
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(reverse("admin:alerts_alertchannel_add"), channel_form(world_a.tenant, url=url))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["url"] and error in errors["url"][0]
    assert not AlertChannel.objects.exists()


def test_an_allowed_webhook_is_saved_with_a_generated_secret_shown_once(client: Any, world_a: Any) -> None:
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(reverse("admin:alerts_alertchannel_add"),
                           channel_form(world_a.tenant, url="http://127.0.0.1:9/alert"), follow=True)
    assert response.status_code == 200
    channel = AlertChannel.objects.get()
    secret = channel.signing_secret()
    assert secret.startswith("whsec_") and secret in response.content.decode()
    assert secret not in channel.secret_encrypted  # encrypted at rest
    page = client.get(reverse("admin:alerts_alertchannel_change", args=[channel.pk])).content.decode()
    assert secret not in page


def test_an_email_channel_needs_valid_addresses(client: Any, world_a: Any) -> None:
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(reverse("admin:alerts_alertchannel_add"),
                           channel_form(world_a.tenant, kind="email", emails="desk@a.example, not-an-address"))
    assert "is not an email address" in response.context["adminform"].form.errors["emails"][0]
    assert not AlertChannel.objects.exists()


def test_a_rule_cannot_use_another_firms_channel_or_no_kind(client: Any, world_a: Any, world_b: Any) -> None:
    foreign = AlertChannel.objects.create(tenant=world_b.tenant, name="b-mail", kind="email", emails="d@b.example")
    client.login(username="a-operator", password=PASSWORD)
    form = {"tenant": world_a.tenant.pk, "name": "r", "enabled": "on", "min_severity": "warning",
            "channels": [foreign.pk], "dedup_window_secs": 300, "throttle_max_alerts": 5,
            "throttle_window_secs": 3600}
    response = client.post(reverse("admin:alerts_alertrule_add"), form)
    errors = response.context["adminform"].form.errors
    assert "channels" in errors and "kinds" in errors
    assert not AlertRule.objects.exists()


def test_another_tenants_alert_log_is_404_and_never_listed(client: Any, world_a: Any, world_b: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_b.tenant, name="b-mail", kind="email", emails="d@b.example")
    rule_for(world_b.tenant, [channel], ["kill_switch"], name="b-rule")
    raised = services.alerts_raise(tenant_id=world_b.tenant.pk, bot_id=world_b.bot.pk,
                                   event_type="KillSwitchEngaged", payload={"reason": "b's secret reason"})
    alert = Alert.objects.get(pk=raised.alert_ids[0])
    client.login(username="a-owner", password=PASSWORD)
    for name, obj in (("alert", alert), ("alertrule", alert.rule), ("alertchannel", channel),
                      ("alertdelivery", AlertDelivery.objects.get(alert=alert))):
        assert client.get(reverse(f"admin:alerts_{name}_change", args=[obj.pk])).status_code == 404
        listing = client.get(reverse(f"admin:alerts_{name}_changelist"))
        assert listing.status_code == 200 and obj.pk not in {o.pk for o in listing.context["cl"].result_list}
        assert "b&#x27;s secret reason" not in listing.content.decode()


def test_the_alert_log_is_read_only_for_every_role(client: Any, world_a: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["kill_switch"])
    raised = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk,
                                   event_type="KillSwitchEngaged", payload={"reason": "r"})
    client.login(username="a-owner", password=PASSWORD)
    url = reverse("admin:alerts_alert_change", args=[raised.alert_ids[0]])
    assert client.get(url).status_code == 200
    assert client.post(url, {"title": "edited"}).status_code == 403
    assert client.post(reverse("admin:alerts_alert_delete", args=[raised.alert_ids[0]]), {"post": "yes"}
                       ).status_code == 403
    assert Alert.objects.get().title == "Kill switch engaged"


def test_the_sweeper_requeues_lost_retries_and_attempts_whose_sender_died(world_a: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["sla_breach"], throttle_max_alerts=10)
    lost, died, fresh = (breach(world_a, pair=p).delivery_ids[0] for p in ("BTC/USDT", "ETH/USDT", "SOL/USDT"))
    now = timezone.now()
    AlertDelivery.objects.filter(pk=lost).update(status="retrying", next_attempt_at=now - timedelta(minutes=2))
    AlertDelivery.objects.filter(pk=died).update(status="sending", attempts=1,
                                                 last_attempt_at=now - timedelta(minutes=5))
    AlertDelivery.objects.filter(pk=fresh).update(next_attempt_at=now)  # its task is on the queue right now
    assert sorted(services.deliveries_due(now=now)) == sorted([lost, died])
    assert AlertDelivery.objects.get(pk=died).status == "retrying"
    assert services.delivery_attempt(delivery_id=died, now=now) is None and len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_breach_reported_by_many_workers_at_once_is_one_alert(world_a: Any) -> None:
    """Eight threads (own connections, as worker processes would have) raise the same breach together."""
    import threading

    from django.db import connection

    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["sla_breach"])
    start = threading.Barrier(8)
    results: list[services.Raised] = []

    def report() -> None:
        try:
            start.wait()
            results.append(breach(world_a))
        finally:
            connection.close()

    threads = [threading.Thread(target=report) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8
    assert sum(len(r.alert_ids) for r in results) == 1 and sum(r.deduplicated for r in results) == 7
    assert Alert.objects.get().occurrences == 8 and AlertDelivery.objects.count() == 1


@pytest.mark.parametrize(("role", "resent"), [("operator", True), ("viewer", False)])
def test_dead_letters_are_resent_by_owners_and_operators_only(client: Any, world_a: Any, world_b: Any,
                                                              role: str, resent: bool) -> None:
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["kill_switch"])
    own = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk,
                                event_type="KillSwitchEngaged", payload={}).delivery_ids[0]
    foreign_channel = AlertChannel.objects.create(tenant=world_b.tenant, name="mail", kind="email",
                                                  emails="d@b.example")
    rule_for(world_b.tenant, [foreign_channel], ["kill_switch"])
    foreign = services.alerts_raise(tenant_id=world_b.tenant.pk, bot_id=world_b.bot.pk,
                                    event_type="KillSwitchEngaged", payload={}).delivery_ids[0]
    AlertDelivery.objects.update(status="dead", attempts=6)
    client.login(username=f"a-{role}", password=PASSWORD)
    listing = client.get(reverse("admin:alerts_deadletter_changelist"))
    assert [d.pk for d in listing.context["cl"].result_list] == [own]
    client.post(reverse("admin:alerts_deadletter_changelist"),
                {"action": "retry_dead_letters", "_selected_action": [own, foreign]})
    assert AlertDelivery.objects.get(pk=own).status == ("retrying" if resent else "dead")
    assert AlertDelivery.objects.get(pk=foreign).status == "dead"


def test_an_operator_adds_a_rule_in_the_admin(client: Any, world_a: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    client.login(username="a-operator", password=PASSWORD)
    form = {"tenant": world_a.tenant.pk, "name": "desk", "enabled": "on", "kinds": ["sla_breach", "sla_at_risk"],
            "bot": world_a.bot.pk, "min_severity": "warning", "channels": [channel.pk], "dedup_window_secs": 600,
            "throttle_max_alerts": 5, "throttle_window_secs": 3600}
    response = client.post(reverse("admin:alerts_alertrule_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = AlertRule.objects.get()
    assert rule.kinds == ["sla_breach", "sla_at_risk"] and list(rule.channels.all()) == [channel]
    assert client.get(reverse("admin:alerts_alertrule_change", args=[rule.pk])).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_owners_see_a_webhooks_full_url(client: Any, world_a: Any, role: str) -> None:
    channel = webhook_channel(world_a.tenant, "http://127.0.0.1:9/services/T000/B000/very-secret-token")
    client.login(username=f"a-{role}", password=PASSWORD)
    for url in (reverse("admin:alerts_alertchannel_changelist"),
                reverse("admin:alerts_alertchannel_change", args=[channel.pk])):
        page = client.get(url).content.decode()
        assert "http://127.0.0.1:9/…" in page and "very-secret-token" not in page
    client.logout()
    client.login(username="a-owner", password=PASSWORD)
    assert "very-secret-token" in client.get(reverse("admin:alerts_alertchannel_change", args=[channel.pk])
                                             ).content.decode()


def test_a_channel_whose_secret_cannot_be_decrypted_fails_its_attempts_instead_of_hanging(world_a: Any) -> None:
    with WebhookReceiver() as receiver:
        channel = webhook_channel(world_a.tenant, receiver.url)
        AlertChannel.objects.filter(pk=channel.pk).update(secret_encrypted="gAAAA-not-a-token")
        rule_for(world_a.tenant, [channel], ["bot_error"])
        raised = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk, event_type="BotError",
                                       payload={"error": "x"})
        assert attempt_until_done(raised.delivery_ids[0]) == 4
        assert receiver.received == []
    dead = AlertDelivery.objects.get()
    assert dead.status == "dead" and "CredentialDecryptionError" in dead.last_error


def test_rotating_the_credential_keys_keeps_webhook_secrets_readable(world_a: Any, settings: Any) -> None:
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    channel = webhook_channel(world_a.tenant, "http://127.0.0.1:9/hook")
    old_key, new_key = settings.CREDENTIAL_KEYS[0], Fernet.generate_key().decode()
    settings.CREDENTIAL_KEYS = [new_key, old_key]
    call_command("rotate_credential_keys")
    settings.CREDENTIAL_KEYS = [new_key]  # the old key is dropped
    assert AlertChannel.objects.get(pk=channel.pk).signing_secret() == SECRET


# --- resolved: the condition that alerted clears ------------------------------------------------------


def run_enqueued(sent: list[tuple[str, tuple]]) -> list[services.Raised]:
    """What the worker's alert tasks do with what this process enqueued (``hooks._put`` replaced by a list)."""
    done = []
    for task, args in sent:
        if task in ("raise_alerts", "resolve_alerts"):
            tenant_id, bot_id, event_type, payload, event_id, _ = args
            if task == "raise_alerts":
                done.append(services.alerts_raise(tenant_id=tenant_id, bot_id=bot_id, event_type=event_type,
                                                  payload=payload, event_id=event_id))
            else:
                done.append(services.alerts_resolve(tenant_id=tenant_id, bot_id=bot_id, event_type=event_type,
                                                    payload=payload))
        elif task == "venue_disconnected":
            done.append(services.venue_disconnected_raise(account_id=args[0], down_secs=args[1], error=args[2]))
        elif task == "venue_reconnected":
            done.append(services.venue_reconnected_resolve(account_id=args[0]))
        else:
            raise AssertionError(f"unknown alerts task {task}")
    sent.clear()
    return done


@pytest.fixture
def enqueued(monkeypatch: Any) -> list[tuple[str, tuple]]:
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(hooks, "_put", lambda task, args: sent.append((task, args)))  # no broker in these tests
    return sent


def test_a_released_kill_switch_sends_one_resolved_notice_to_the_channels_that_were_alerted(
        world_a: Any, enqueued: list, django_capture_on_commit_callbacks: Any) -> None:
    from bots import services as bot_services
    from exchanges.registry import clear_gateway_cache

    mail_channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email",
                                               emails="desk@a.example")
    quiet_channel = AlertChannel.objects.create(tenant=world_a.tenant, name="risk", kind="email",
                                                emails="risk@a.example")
    with WebhookReceiver() as receiver:
        hook = webhook_channel(world_a.tenant, receiver.url)
        rule_for(world_a.tenant, [hook, mail_channel], ["kill_switch"], name="desk")
        rule_for(world_a.tenant, [quiet_channel], ["kill_switch"], name="risk", notify_resolved=False)
        with django_capture_on_commit_callbacks(execute=True):
            bot_services.bot_kill(bot=world_a.bot, user=world_a.operator)  # (its sweep fails: a closed port)
        clear_gateway_cache()
        [raised] = run_enqueued(enqueued)
        assert len(raised.alert_ids) == 2 and len(raised.delivery_ids) == 3
        for delivery_id in raised.delivery_ids:
            attempt_until_done(delivery_id)

        with django_capture_on_commit_callbacks(execute=True):
            bot_services.bot_release_kill_switch(bot=world_a.bot, user=world_a.operator)
        assert [task for task, _ in enqueued] == ["resolve_alerts"]
        [resolved] = run_enqueued(enqueued)
        assert sorted(resolved.alert_ids) == sorted(raised.alert_ids)  # both rules' alerts are resolved
        notices = AlertDelivery.objects.filter(pk__in=resolved.delivery_ids)
        assert {(d.channel_id, d.resolution) for d in notices} == {(hook.pk, True), (mail_channel.pk, True)}
        for delivery_id in resolved.delivery_ids:
            assert attempt_until_done(delivery_id) == 1
        bodies = [json.loads(r.body) for r in receiver.received]
        for received in receiver.received:
            assert signing.verify(SECRET, received.headers[signing.SIGNATURE_HEADER.lower()], received.body,
                                  now=time.time())

    assert [(b["type"], b["status"], b["title"]) for b in bodies] == [
        ("alert", "firing", "Kill switch engaged"), ("alert_resolved", "resolved", "Resolved: Kill switch engaged")]
    assert bodies[1]["alert_id"] == bodies[0]["alert_id"] and bodies[1]["resolved_at"]
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == sorted([f"[CRITICAL] Kill switch engaged — {world_a.bot.name}"] * 2
                              + [f"[RESOLVED] Resolved: Kill switch engaged — {world_a.bot.name}"])
    assert all(a.resolved_at is not None for a in Alert.objects.all())

    # the same clearing reported again: nothing is open, nothing is sent
    assert services.alerts_resolve(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk,
                                   event_type="KillSwitchReleased", payload={}) == services.Raised([], 0, 0, [])
    # engaged again within the dedup window: a new alert, not a repeat of the resolved one
    again = services.alerts_raise(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk,
                                  event_type="KillSwitchEngaged", payload={"reason": "again"})
    assert len(again.alert_ids) == 2 and again.deduplicated == 0


def test_a_throttled_alert_is_resolved_without_a_notice(world_a: Any) -> None:
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["sla_breach"], throttle_max_alerts=1)
    breach(world_a, pair="ETH/USDT")  # sent: the rule's one alert this window
    throttled = breach(world_a, pair="BTC/USDT")
    assert throttled.throttled == 1
    resolved = services.alerts_resolve(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk, event_type="SlaRecovered",
                                       payload={"sla_id": 1, "sla_name": "issuer uptime", "trading_pair": "BTC/USDT",
                                                "metric": "uptime_bid"})
    assert resolved.alert_ids == throttled.alert_ids and resolved.delivery_ids == []
    assert Alert.objects.get(pk=throttled.alert_ids[0]).resolved_at is not None
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1  # ETH's breach is still open


def test_a_venue_read_again_resolves_its_disconnection_alerts(world_a: Any, settings: Any, enqueued: list,
                                                              monkeypatch: Any) -> None:
    settings.ALERTS_VENUE_DOWN_SECS = 0.0
    monkeypatch.setattr(hooks, "_down_since", {})
    monkeypatch.setattr(hooks, "_reported", set())
    world_a.bot.status = "running"
    world_a.bot.save()
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["venue_disconnected"])
    account = world_a.account.pk
    hooks.venue_read(account, "ExchangeUnavailableError: down")
    [raised] = run_enqueued(enqueued)
    assert len(raised.alert_ids) == 1
    hooks.venue_read(account, None)
    hooks.venue_read(account, None)  # read again and again: reported reconnected once
    assert [task for task, _ in enqueued] == ["venue_reconnected"]
    [resolved] = run_enqueued(enqueued)
    assert resolved.alert_ids == raised.alert_ids and len(resolved.delivery_ids) == 1
    assert AlertDelivery.objects.get(pk=resolved.delivery_ids[0]).resolution


@pytest.mark.django_db(transaction=True)  # the watchdog task closes its connection first, as a task does
def test_the_watchdog_resolves_stale_cycles_once_the_bot_cycles_again(world_a: Any, enqueued: list) -> None:
    from bots.models import Bot
    from bots.tasks import watchdog

    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["stale_cycles"])
    Bot.objects.filter(pk=world_a.bot.pk).update(status="running", monitoring_interval_secs=1.0,
                                                 error_recovery_delay_secs=1.0,
                                                 last_cycle_finished_at=timezone.now() - timedelta(minutes=5))
    watchdog()
    [raised] = run_enqueued(enqueued)
    assert len(raised.alert_ids) == 1
    watchdog()  # still silent: no resolution
    assert [task for task, _ in enqueued] == ["raise_alerts"]  # (a repeat, counted on the alert)
    enqueued.clear()
    Bot.objects.filter(pk=world_a.bot.pk).update(last_cycle_finished_at=timezone.now())
    watchdog()
    assert [(task, args[2]) for task, args in enqueued] == [("resolve_alerts", "CyclesResumed")]
    [resolved] = run_enqueued(enqueued)
    assert resolved.alert_ids == raised.alert_ids and len(resolved.delivery_ids) == 1
    watchdog()  # cycling, nothing open: nothing to report
    assert enqueued == []


@pytest.mark.django_db(transaction=True)  # the tasks close their connection first, as a task does
def test_events_waiting_together_go_as_one_task_that_handles_each_as_its_own_task_would(
        world_a: Any, world_b: Any, monkeypatch: Any) -> None:
    """A watchdog pass that finds many bots stale notices an event per bot: the enqueuer thread sends what waits
    together as one ``alert_events`` task (one broker message, one database session on the worker), in order;
    that task raises each alert as ``raise_alerts`` would, and one event that fails stops none of the others."""
    from alerts import tasks

    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(tasks.alert_events, "apply_async", lambda args: sent.append(("alert_events", args)))
    monkeypatch.setattr(tasks.raise_alerts, "apply_async", lambda args: sent.append(("raise_alerts", args)))
    monkeypatch.setattr(tasks.deliver_alert, "delay", lambda delivery_id: None)  # (no broker: sending not tested)
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule_for(world_a.tenant, [channel], ["kill_switch"])
    events = [("raise_alerts", (world.tenant.pk, world.bot.pk, "KillSwitchEngaged", {"reason": f"r{n}"}, None, None))
              for n, world in enumerate([world_a, world_b, world_a])]
    events.insert(1, ("no_such_task", ()))

    hooks.flush()  # (an enqueuer thread of an earlier test is idle: take it over with a queue of our own)
    monkeypatch.setattr(hooks, "_queue", hooks.queue.Queue())
    monkeypatch.setattr(hooks, "_thread", None)
    for name, args in events:  # all waiting before the thread starts: together
        hooks._queue.put_nowait((name, args))
    hooks._ensure_thread()
    assert hooks.flush()
    hooks._queue.put_nowait(None)  # (the thread of this test ends)
    hooks._thread.join(5)
    assert sent == [("alert_events", ([[name, list(args)] for name, args in events],))]

    outcome = tasks.alert_events(*sent[0][1])
    assert outcome == {"handled": 3, "failed": 1}
    # world A's two kill switch events: one alert (the second a repeat within the dedup window); world B: no rule
    alerts = list(Alert.objects.filter(tenant=world_a.tenant))
    assert [(a.kind, a.occurrences) for a in alerts] == [("kill_switch", 2)]
    assert not Alert.objects.filter(tenant=world_b.tenant).exists()

    sent.clear()
    hooks._put("raise_alerts", events[0][1])  # one on its own: its own task, as before
    assert hooks.flush()
    hooks._queue.put_nowait(None)
    hooks._thread.join(5)
    assert sent == [("raise_alerts", events[0][1])]
