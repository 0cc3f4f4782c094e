"""Writes of the alerts app: raise alerts from an event (rules, de-duplication, throttling) and attempt
deliveries (email, signed webhooks; exponential backoff, then the dead-letter list).

Called by ``alerts.tasks`` (Celery), never on the engine's thread: the engine only enqueues
(``alerts.hooks``)."""

from __future__ import annotations

import logging
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from alerts import matching, payloads, signing
from alerts.models import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertRule,
    AlertStatus,
    ChannelKind,
    DeliveryStatus,
    allowed_private_networks,
)
from alerts.urls_check import WebhookURLError, check_webhook_url
from exchanges.crypto import encrypt_secret
from mmplatform.logging import register_secret

logger = logging.getLogger(__name__)

USER_AGENT = "mmplatform-alerts/1"


@dataclass(frozen=True)
class Raised:
    """What one event did: alerts created (sent or throttled), repeats counted, deliveries to make."""

    alert_ids: list[int]
    deduplicated: int
    throttled: int
    delivery_ids: list[int]


def channel_set_secret(*, channel: AlertChannel, secret: str = "") -> str:
    """Store ``secret`` (or a new random one) encrypted as the channel's signing secret; returns it (the
    caller shows it once). The caller saves."""
    secret = secret or f"whsec_{secrets.token_urlsafe(32)}"
    channel.secret_encrypted = encrypt_secret(secret)
    register_secret(secret)
    return secret


def alerts_raise(*, tenant_id: int, bot_id: int | None, event_type: str, payload: dict[str, Any],
                 event_id: int | None = None, occurred_at: datetime | None = None,
                 now: datetime | None = None) -> Raised:
    """Match one event against its tenant's rules. Per matching rule, under that rule's row lock: a repeat
    of an alert raised within the rule's dedup window (and not resolved since) is counted on it; otherwise
    a new alert, sent to
    the rule's enabled channels unless the rule already sent ``throttle_max_alerts`` in its throttle
    window (then it is logged as throttled). Two workers raising the same alert at once wait for each other
    on the rule's row, so a breach is one alert however many events report it."""
    signal = matching.classify(event_type, payload)
    empty = Raised([], 0, 0, [])
    if signal is None:
        return empty
    now = now or timezone.now()
    occurred_at = occurred_at or now
    rules = [rule for rule in AlertRule.objects.filter(tenant_id=tenant_id, enabled=True)
             if rule.matches(kind=signal.kind, severity=signal.severity, bot_id=bot_id)]
    if not rules:
        return empty
    key = alert_key(signal.kind, bot_id, signal.subject)
    alert_ids: list[int] = []
    delivery_ids: list[int] = []
    deduplicated = throttled = 0
    for rule in rules:
        with transaction.atomic():
            # the rule's row lock, taken by a write first (SQLite has no SELECT ... FOR UPDATE; a transaction
            # that writes first holds the database's write lock until it commits)
            if not AlertRule.objects.filter(pk=rule.pk, enabled=True).update(enabled=True):
                continue
            locked = AlertRule.objects.get(pk=rule.pk)
            repeat = (Alert.objects.filter(rule=locked, dedup_key=key, resolved_at__isnull=True,
                                           created_at__gt=now - timedelta(seconds=locked.dedup_window_secs))
                      .order_by("-created_at", "-id").first())
            if repeat is not None:
                Alert.objects.filter(pk=repeat.pk).update(occurrences=F("occurrences") + 1, last_at=now)
                deduplicated += 1
                continue
            sent_recently = Alert.objects.filter(
                rule=locked, status=AlertStatus.SENT,
                created_at__gt=now - timedelta(seconds=locked.throttle_window_secs)).count()
            status = AlertStatus.THROTTLED if sent_recently >= locked.throttle_max_alerts else AlertStatus.SENT
            alert = Alert.objects.create(
                tenant_id=tenant_id, rule=locked, bot_id=bot_id, kind=signal.kind, severity=signal.severity,
                title=signal.title[:200], message=signal.message, dedup_key=key, event_type=event_type,
                event_id=event_id, details=payload, status=status, occurred_at=occurred_at, last_at=now)
            alert_ids.append(alert.pk)
            if status == AlertStatus.THROTTLED:
                throttled += 1
                continue
            for channel in locked.channels.filter(enabled=True, tenant_id=tenant_id):
                delivery = AlertDelivery.objects.create(tenant_id=tenant_id, alert=alert, channel=channel,
                                                        next_attempt_at=now)
                delivery_ids.append(delivery.pk)
    return Raised(alert_ids, deduplicated, throttled, delivery_ids)


def alert_key(kind: str, bot_id: int | None, subject: str) -> str:
    """What makes two events the same alert of a rule: its kind, bot and subject."""
    return f"{kind}:{bot_id or '-'}:{subject}"[:300]


def alerts_resolve(*, tenant_id: int, bot_id: int | None, event_type: str, payload: dict[str, Any],
                   now: datetime | None = None) -> Raised:
    """A condition cleared (``matching.RESOLVING_EVENTS``): every open alert it raised is resolved, and for
    each rule that sent one (its latest) and keeps ``notify_resolved`` on, one "resolved" notice goes to the
    channels that alert went to (a ``resolution`` delivery, sent, retried and dead-lettered like the alert).
    Claimed with a conditional UPDATE: a clearing reported twice, or by two workers at once, is one notice.
    Returns the alerts resolved and the deliveries to make."""
    now = now or timezone.now()
    keys = [alert_key(signal.kind, bot_id, signal.subject) for signal in matching.resolutions(event_type, payload)]
    if not keys:
        return Raised([], 0, 0, [])
    open_alerts = list(Alert.objects.filter(tenant_id=tenant_id, dedup_key__in=keys, resolved_at__isnull=True)
                       .select_related("rule").order_by("-created_at", "-id"))
    resolved: list[int] = []
    delivery_ids: list[int] = []
    notified: set[tuple[int | None, str]] = set()
    for alert in open_alerts:  # newest first: a rule's latest sent alert carries its notice
        with transaction.atomic():
            if not Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now):
                continue  # resolved meanwhile by another worker
            resolved.append(alert.pk)
            rule = alert.rule
            group = (alert.rule_id, alert.dedup_key)
            if (alert.status != AlertStatus.SENT or group in notified or rule is None or not rule.enabled
                    or not rule.notify_resolved):
                continue
            notified.add(group)
            went_to = AlertChannel.objects.filter(deliveries__alert=alert, deliveries__resolution=False, enabled=True,
                                                  tenant_id=tenant_id).distinct()
            for channel in went_to:
                delivery = AlertDelivery.objects.create(tenant_id=tenant_id, alert=alert, channel=channel,
                                                        resolution=True, next_attempt_at=now)
                delivery_ids.append(delivery.pk)
    return Raised(resolved, 0, 0, delivery_ids)


def retry_delay_secs(attempts: int) -> float:
    """Exponential backoff after the ``attempts``-th failure: base, 2 × base, 4 × base, ... capped."""
    return min(settings.ALERTS_RETRY_BASE_SECS * 2 ** max(attempts - 1, 0), settings.ALERTS_RETRY_MAX_SECS)


class DeliveryFailed(Exception):
    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: following it could lead the platform anywhere (the target is not checked)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post_webhook(*, url: str, body: bytes, secret: str, headers: dict[str, str] | None = None) -> int:
    """POST ``body`` signed with ``secret``; returns the status code of a 2xx answer, raises DeliveryFailed
    otherwise (refused address, timeout, connection error, any other status)."""
    try:
        check_webhook_url(url, allowed_private_networks(), must_resolve=True)
    except WebhookURLError as exc:
        raise DeliveryFailed(f"refused: {exc}") from None
    timestamp = int(time.time())
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        signing.SIGNATURE_HEADER: signing.signature_header(secret, timestamp, body), **(headers or {})})
    try:
        with _opener.open(request, timeout=settings.ALERTS_WEBHOOK_TIMEOUT_SECS) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code}", exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None


def _send(delivery: AlertDelivery) -> int | None:
    channel = delivery.channel
    if channel is None:
        raise DeliveryFailed("the channel was deleted")
    fields = payloads.alert_fields(delivery.alert, delivery_id=delivery.pk, attempt=delivery.attempts,
                                   resolution=delivery.resolution)
    if channel.kind == ChannelKind.EMAIL:
        try:
            send_mail(payloads.email_subject(fields), payloads.email_body(fields), settings.DEFAULT_FROM_EMAIL,
                      channel.recipients, fail_silently=False)
        except Exception as exc:  # any backend error is a failed attempt, retried
            raise DeliveryFailed(f"email: {type(exc).__name__}: {exc}") from None
        return None
    return post_webhook(url=channel.url, body=payloads.webhook_body(fields, channel.payload_format),
                        secret=channel.signing_secret(),
                        headers={"X-MM-Alert-Id": str(delivery.alert_id), "X-MM-Delivery-Id": str(delivery.pk),
                                 "X-MM-Attempt": str(delivery.attempts)})


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> float | None:
    """One attempt of a due delivery, claimed with a conditional UPDATE (two workers never send it
    twice at once). Returns the seconds until the next attempt after a failure, None when there is
    nothing more to do (delivered, dead-lettered, not due, or claimed elsewhere)."""
    now = now or timezone.now()
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status__in=(DeliveryStatus.PENDING, DeliveryStatus.RETRYING), next_attempt_at__lte=now,
    ).update(status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:
        return None
    delivery = AlertDelivery.objects.select_related("alert", "alert__bot", "alert__tenant", "channel").get(
        pk=delivery_id)
    try:
        try:
            status_code = _send(delivery)
        except DeliveryFailed:
            raise
        except Exception as exc:  # a bug or an undecryptable secret: a failed attempt too, never stuck "sending"
            logger.exception("alert delivery %s failed", delivery_id)
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    except DeliveryFailed as exc:
        if delivery.attempts >= settings.ALERTS_MAX_ATTEMPTS:
            AlertDelivery.objects.filter(pk=delivery_id).update(
                status=DeliveryStatus.DEAD, last_error=str(exc)[:2000], last_status_code=exc.status_code,
                next_attempt_at=None)
            logger.warning("alert delivery %s dead after %s attempts: %s", delivery_id, delivery.attempts, exc)
            return None
        delay = retry_delay_secs(delivery.attempts)
        AlertDelivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.RETRYING, last_error=str(exc)[:2000], last_status_code=exc.status_code,
            next_attempt_at=now + timedelta(seconds=delay))  # counted from this attempt's start
        return delay
    delivered_at = timezone.now()
    alert = delivery.alert
    since = alert.resolved_at if delivery.resolution and alert.resolved_at else alert.occurred_at
    latency_ms = (delivered_at - since).total_seconds() * 1000
    AlertDelivery.objects.filter(pk=delivery_id).update(
        status=DeliveryStatus.DELIVERED, delivered_at=delivered_at, latency_ms=latency_ms, last_error="",
        last_status_code=status_code, next_attempt_at=None)
    return None


def deliveries_requeue(*, tenant_id: int, delivery_ids: list[int]) -> list[int]:
    """Put dead letters of the tenant back on the queue (a fresh set of attempts); returns those requeued."""
    ids = list(AlertDelivery.objects.filter(tenant_id=tenant_id, pk__in=delivery_ids, status=DeliveryStatus.DEAD)
               .values_list("pk", flat=True))
    AlertDelivery.objects.filter(pk__in=ids).update(status=DeliveryStatus.RETRYING, attempts=0,
                                                    next_attempt_at=timezone.now())
    return ids


def deliveries_due(*, now: datetime | None = None, stuck_after_secs: float = 120.0) -> list[int]:
    """Deliveries whose retry task was lost (due for a while) or whose sender died mid-attempt (sending for
    longer than any attempt takes): moved back to retrying and returned, for the sweeper to enqueue."""
    now = now or timezone.now()
    stuck = list(AlertDelivery.objects.filter(status=DeliveryStatus.SENDING,
                                              last_attempt_at__lt=now - timedelta(seconds=stuck_after_secs))
                 .values_list("pk", flat=True)[:1000])
    AlertDelivery.objects.filter(pk__in=stuck, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.RETRYING, next_attempt_at=now)
    late = now - timedelta(seconds=30)
    return stuck + list(AlertDelivery.objects.filter(status__in=(DeliveryStatus.PENDING, DeliveryStatus.RETRYING),
                                                     next_attempt_at__lte=late).exclude(pk__in=stuck)
                        .values_list("pk", flat=True)[:1000])


def venue_disconnected_raise(*, account_id: int, down_secs: float, error: str) -> Raised:
    """The engine could not read an exchange account for ``down_secs``: a ``VenueDisconnected`` event for
    each cycling bot quoting on it (the account's tenant's rules decide who hears of it)."""
    from bots.models import Bot, BotStatus
    from exchanges.models import ExchangeAccount

    account = ExchangeAccount.objects.filter(pk=account_id).first()
    if account is None:
        return Raised([], 0, 0, [])
    payload = {"venue": str(account_id), "account": f"{account.label} ({account.exchange_id})",
               "exchange_account_id": account_id, "down_secs": round(down_secs, 1), "error": error[:500]}
    totals = Raised([], 0, 0, [])
    bots = Bot.objects.filter(exchange_accounts=account, status__in=(BotStatus.RUNNING, BotStatus.PAUSED))
    for bot_id in bots.values_list("pk", flat=True):
        raised = alerts_raise(tenant_id=account.tenant_id, bot_id=bot_id,
                              event_type=matching.VENUE_DISCONNECTED_EVENT, payload=payload)
        totals = Raised(totals.alert_ids + raised.alert_ids, totals.deduplicated + raised.deduplicated,
                        totals.throttled + raised.throttled, totals.delivery_ids + raised.delivery_ids)
    return totals


def venue_reconnected_resolve(*, account_id: int) -> Raised:
    """The engine reads an account it had reported disconnected again: the ``VenueDisconnected`` alerts of
    every bot on it are resolved (``alerts_resolve``)."""
    from bots.models import Bot
    from exchanges.models import ExchangeAccount

    account = ExchangeAccount.objects.filter(pk=account_id).first()
    if account is None:
        return Raised([], 0, 0, [])
    payload = {"venue": str(account_id), "account": f"{account.label} ({account.exchange_id})",
               "exchange_account_id": account_id}
    totals = Raised([], 0, 0, [])
    for bot_id in Bot.objects.filter(exchange_accounts=account).values_list("pk", flat=True):
        resolved = alerts_resolve(tenant_id=account.tenant_id, bot_id=bot_id,
                                  event_type=matching.VENUE_RECONNECTED_EVENT, payload=payload)
        totals = Raised(totals.alert_ids + resolved.alert_ids, 0, 0, totals.delivery_ids + resolved.delivery_ids)
    return totals


def open_alert_bot_ids(*, kind: str, bot_ids: list[int]) -> set[int]:
    """Of ``bot_ids``, those with an open (unresolved) alert of ``kind`` (the watchdog: whose cycles to
    report resumed). The open alerts of a kind are few (the partial index ``alert_open``) and ``bot_ids`` are
    every cycling bot: the open ones are read and intersected here -- an ``IN`` of 1,000 ids every 10 s was 1.5 % of
    an engine worker's GIL at active N=1,000 (Django preparing the list)."""
    wanted = set(bot_ids)
    return {bot_id for bot_id in Alert.objects.filter(kind=kind, resolved_at__isnull=True, bot_id__isnull=False)
            .values_list("bot_id", flat=True) if bot_id in wanted}


def channel_secrets_rotate() -> int:
    """Re-encrypt every webhook channel's signing secret under the primary CREDENTIAL_KEYS key (part of
    ``rotate_credential_keys``; across tenants on purpose, the caller holds the transaction)."""
    from exchanges.crypto import rotate_secret

    count = 0
    for channel in AlertChannel.objects.select_for_update().exclude(secret_encrypted="").order_by("pk"):
        channel.secret_encrypted = rotate_secret(channel.secret_encrypted)
        channel.save(update_fields=["secret_encrypted"])
        count += 1
    return count
