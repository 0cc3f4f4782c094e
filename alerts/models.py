"""Alert channels (where alerts go), rules (which events alert whom) and the alert log with its
deliveries. Every row belongs to a tenant; a rule only ever sees its own tenant's bots and channels."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from alerts import matching
from alerts.urls_check import WebhookURLError, check_webhook_url, parse_networks
from exchanges.crypto import decrypt_secret
from mmplatform.tenancy.models import TenantOwned

SEVERITY_CHOICES = [(s, s.title()) for s in matching.SEVERITIES]
KIND_CHOICES = [
    (matching.RISK_EVENT, "Risk event (limit breach)"),
    (matching.SLA_BREACH, "SLA breached"),
    (matching.SLA_AT_RISK, "SLA at risk"),
    (matching.BOT_ERROR, "Bot in ERROR"),
    (matching.STALE_CYCLES, "Bot cycles stale"),
    (matching.VENUE_DISCONNECTED, "Venue disconnected"),
    (matching.KILL_SWITCH, "Kill switch engaged"),
]


def allowed_private_networks() -> list[Any]:
    return parse_networks(settings.ALERTS_ALLOWED_PRIVATE_NETWORKS)


def email_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.replace(";", ",").replace("\n", ",").split(",") if part.strip()]


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (signed)"


class PayloadFormat(models.TextChoices):
    JSON = "json", "JSON (the platform's fields)"
    SLACK = "slack", "Slack-compatible (text + blocks)"


class AlertChannel(TenantOwned):
    """Where alerts go: email addresses (Django's email backend) or a signed webhook."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True)
    emails = models.TextField(blank=True, default="", help_text="Email channel: addresses, comma-separated.")
    url = models.CharField(max_length=500, blank=True, default="", verbose_name="webhook URL",
                           help_text="Webhook channel: an http(s) URL on a public address.")
    payload_format = models.CharField(max_length=16, choices=PayloadFormat.choices, default=PayloadFormat.JSON)
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_alert_channel_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def recipients(self) -> list[str]:
        return email_list(self.emails)

    def signing_secret(self) -> str:
        return decrypt_secret(self.secret_encrypted)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == ChannelKind.EMAIL:
            if not self.recipients:
                errors["emails"] = "An email channel needs at least one address."
            for address in self.recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    errors["emails"] = f"{address!r} is not an email address."
                    break
        elif self.kind == ChannelKind.WEBHOOK:
            if not self.url.strip():
                errors["url"] = "A webhook channel needs a URL."
            else:
                try:
                    check_webhook_url(self.url, allowed_private_networks())
                except WebhookURLError as exc:
                    errors["url"] = str(exc)
        if errors:
            raise ValidationError(errors)


class AlertRule(TenantOwned):
    """Which events alert which channels: kinds, an optional bot, a minimum severity; repeats of one
    alert within ``dedup_window_secs`` are counted on it, and at most ``throttle_max_alerts`` are sent per
    ``throttle_window_secs`` (the rest are logged as throttled)."""

    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    kinds = models.JSONField(default=list, help_text="Alert kinds this rule matches.")
    bot = models.ForeignKey("bots.Bot", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules",
                            help_text="Only this bot's events; empty: every bot of the firm.")
    min_severity = models.CharField(max_length=16, choices=SEVERITY_CHOICES, default=matching.WARNING)
    channels = models.ManyToManyField(AlertChannel, related_name="rules")
    dedup_window_secs = models.PositiveIntegerField(
        default=300, help_text="The same alert (rule, kind, bot, subject) again within this many seconds is "
                               "counted on the first one, not sent again.")
    throttle_max_alerts = models.PositiveIntegerField(
        default=20, help_text="At most this many alerts of this rule are sent per throttle window.")
    throttle_window_secs = models.PositiveIntegerField(default=3600)
    notify_resolved = models.BooleanField(
        default=True, verbose_name="send a resolved notice",
        help_text="When the condition of an alert this rule sent clears (SLA back to green, venue reconnected, "
                  "cycles resumed, kill switch released), send one 'resolved' notice to the channels the alert "
                  "went to.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        known = {kind for kind, _ in KIND_CHOICES}
        if not isinstance(self.kinds, list) or not self.kinds:
            errors["kinds"] = "Choose at least one kind of alert."
        elif unknown := [k for k in self.kinds if k not in known]:
            errors["kinds"] = f"Unknown kinds: {', '.join(map(str, unknown))}."
        if self.throttle_max_alerts < 1:
            errors["throttle_max_alerts"] = "At least 1 (disable the rule to send nothing)."
        if self.throttle_window_secs < 1:
            errors["throttle_window_secs"] = "At least 1 second."
        if self.bot_id is not None and self.tenant_id is not None and self.bot.tenant_id != self.tenant_id:
            errors["bot"] = "The bot belongs to another firm."
        if errors:
            raise ValidationError(errors)

    def matches(self, *, kind: str, severity: str, bot_id: int | None) -> bool:
        return (self.enabled and kind in self.kinds and matching.at_least(severity, self.min_severity)
                and (self.bot_id is None or self.bot_id == bot_id))


class AlertStatus(models.TextChoices):
    SENT = "sent", "Sent to its channels"
    THROTTLED = "throttled", "Throttled (not sent)"


class Alert(TenantOwned):
    """One alert raised by a rule: the log the admin shows. Repeats within the rule's dedup window are
    counted here (``occurrences``, ``last_at``) instead of raising another, until the condition clears
    (``resolved_at``); a repeat after that is a new alert."""

    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL, related_name="alerts")
    bot = models.ForeignKey("bots.Bot", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=KIND_CHOICES)
    severity = models.CharField(max_length=16, choices=SEVERITY_CHOICES)
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True, default="")
    dedup_key = models.CharField(max_length=300)
    event_type = models.CharField(max_length=40)
    event_id = models.BigIntegerField(null=True, blank=True, help_text="The BotEvent that raised it, if any.")
    details = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.SENT)
    occurrences = models.PositiveIntegerField(default=1)
    occurred_at = models.DateTimeField(help_text="When the event happened.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_at = models.DateTimeField(help_text="The latest repeat counted on this alert.")
    resolved_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When its condition cleared (empty: still open).")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["rule", "dedup_key", "-created_at"], name="alert_dedup"),
                   # the open alerts a clearing event resolves (and the watchdog's open stale-cycles alerts)
                   models.Index(fields=["kind", "dedup_key"], condition=models.Q(resolved_at__isnull=True),
                                name="alert_open")]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Failed, retry scheduled"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead letter (gave up)"


class AlertDelivery(TenantOwned):
    """One alert to one channel: attempts with exponential backoff, then delivered or dead-lettered. A
    ``resolution`` delivery is the alert's "resolved" notice (its condition cleared), sent the same way."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, null=True, on_delete=models.SET_NULL, related_name="deliveries")
    resolution = models.BooleanField(default=False, help_text="The alert's resolved notice, not the alert.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True, help_text="From the event to the channel's acceptance.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alert deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="alert_delivery_due")]

    def __str__(self) -> str:
        return f"{self.alert_id} -> {self.channel or 'deleted channel'}: {self.status}"


class DeadLetter(AlertDelivery):
    """The dead-letter list: deliveries that failed ``ALERTS_MAX_ATTEMPTS`` times."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"
