"""Admin of the alerts app, tenant-scoped like every other: channels (owners: they hold signing
secrets), rules (owners and operators), and the read-only alert log, deliveries and dead letters."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.http import HttpRequest

from alerts import services
from alerts.models import (
    KIND_CHOICES,
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertRule,
    ChannelKind,
    DeadLetter,
    DeliveryStatus,
)
from bots.admin import HistoryAdmin, ReadOnlyInline
from mmplatform.tenancy.admin import TenantScopedAdminMixin
from mmplatform.tenancy.models import CONTROL_ROLES, Membership, Role


class AlertChannelForm(forms.ModelForm):
    signing_secret = forms.CharField(
        required=False, strip=True, min_length=16, max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhook channel: the HMAC-SHA256 secret the receiver checks (X-MM-Signature: t=<unix>,v1=<hex> "
                  "over '<unix>.<body>'). Leave empty to keep the current one; a new webhook channel without one "
                  "gets a random secret, shown once after saving.")

    class Meta:
        model = AlertChannel
        fields = ["tenant", "name", "kind", "enabled", "emails", "url", "payload_format"]


@admin.register(AlertChannel)
class AlertChannelAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = AlertChannelForm
    write_roles = frozenset({Role.OWNER})
    list_display = ["name", "tenant", "kind", "enabled", "destination", "payload_format"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "emails"]

    readonly_fields = ["destination"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """Who may not change the channel sees its destination masked, never the webhook's full URL."""
        fields = [f for f in super().get_fields(request, obj) if f != "destination"]
        if obj is not None and not self.has_change_permission(request, obj):
            return ["destination" if f == "url" else f for f in fields if f != "signing_secret"]
        return fields

    @admin.display(description="destination")
    def destination(self, obj: AlertChannel) -> str:
        """The addresses, or only the webhook's scheme and host (a Slack URL's path is its credential)."""
        if obj.kind == ChannelKind.EMAIL:
            return ", ".join(obj.recipients)
        parts = urlsplit(obj.url)
        return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else ""

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: AlertChannelForm, change: bool) -> None:
        given = form.cleaned_data.get("signing_secret") or ""
        shown = ""
        if given:
            services.channel_set_secret(channel=obj, secret=given)
        elif obj.kind == ChannelKind.WEBHOOK and not obj.secret_encrypted:
            shown = services.channel_set_secret(channel=obj)
        super().save_model(request, obj, form, change)
        if shown:
            self.message_user(request, f"{obj.name}: signing secret {shown} (shown once: give it to the receiver).",
                              messages.WARNING)


class AlertRuleForm(forms.ModelForm):
    kinds = forms.MultipleChoiceField(choices=KIND_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = AlertRule
        fields = ["tenant", "name", "enabled", "kinds", "bot", "min_severity", "channels", "dedup_window_secs",
                  "throttle_max_alerts", "throttle_window_secs", "notify_resolved"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant, channels = cleaned.get("tenant"), cleaned.get("channels")
        if tenant is not None and channels is not None:
            foreign = [c.name for c in channels if c.tenant_id != tenant.pk]
            if foreign:
                self.add_error("channels", f"Channels of another firm: {', '.join(foreign)}.")
        return cleaned


@admin.register(AlertRule)
class AlertRuleAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["name", "tenant", "enabled", "kinds", "bot", "min_severity", "dedup_window_secs",
                    "throttle_max_alerts", "throttle_window_secs", "notify_resolved"]
    list_filter = ["enabled", "min_severity"]
    search_fields = ["name"]


class DeliveryInline(ReadOnlyInline):
    model = AlertDelivery
    fields = ["channel", "resolution", "status", "attempts", "last_status_code", "last_error", "next_attempt_at",
              "delivered_at", "latency_ms"]
    readonly_fields = fields
    show_change_link = False


@admin.register(Alert)
class AlertAdmin(HistoryAdmin):
    """The alert log: what was raised, by which rule, how often, where it went, and when it cleared."""

    list_display = ["created_at", "tenant", "severity", "title", "bot", "kind", "status", "occurrences", "rule",
                    "resolved_at"]
    list_filter = ["severity", "kind", "status"]
    search_fields = ["title", "message"]
    inlines = [DeliveryInline]


def _may_control(request: HttpRequest, tenant_id: int) -> bool:
    return request.user.is_superuser or Membership.objects.filter(
        user=request.user, tenant_id=tenant_id, role__in=CONTROL_ROLES).exists()


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(HistoryAdmin):
    list_display = ["created_at", "tenant", "alert", "channel", "resolution", "status", "attempts",
                    "last_status_code", "delivered_at", "latency_ms"]
    list_filter = ["status", "resolution"]


@admin.register(DeadLetter)
class DeadLetterAdmin(AlertDeliveryAdmin):
    """Deliveries that failed every attempt; owners and operators may send them again."""

    actions = ["retry_dead_letters"]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).filter(status=DeliveryStatus.DEAD)

    @admin.action(description="Send the selected dead letters again (a new round of attempts)")
    def retry_dead_letters(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        from alerts.tasks import deliver_alert

        requeued = 0
        for tenant_id in set(queryset.values_list("tenant_id", flat=True)):
            if not _may_control(request, tenant_id):
                self.message_user(request, "Your role may not resend alerts of this firm (Owner or Operator may).",
                                  messages.ERROR)
                continue
            selected = list(queryset.filter(tenant_id=tenant_id).values_list("pk", flat=True))
            ids = services.deliveries_requeue(tenant_id=tenant_id, delivery_ids=selected)
            for delivery_id in ids:
                transaction.on_commit(lambda pk=delivery_id: deliver_alert.delay(pk))
            requeued += len(ids)
        if requeued:
            self.message_user(request, f"{requeued} dead letter(s) queued again.", messages.SUCCESS)
