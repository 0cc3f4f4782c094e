"""Admin of the liquidity agreements: SLAs with their planned exclusions (owners and operators), the
figures (read-only history) and the client logins bots are shared with (owners only). Every list and
object is scoped to the user's tenants; another tenant's object is a 404."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from bots.admin import HistoryAdmin
from liquidity.models import ClientAccess, LiquidityStats, Sla, SlaExclusion, SlaState
from mmplatform.tenancy.admin import TenantScopedAdminMixin
from mmplatform.tenancy.models import Role

STATUS_COLOURS = {"green": "#1a7f37", "amber": "#9a6700", "red": "#cf222e"}


class SlaExclusionInline(admin.TabularInline):
    """Planned exclusions, editable by whoever may edit the agreement (the firm's roles, not Django's
    per-model permissions)."""

    model = SlaExclusion
    fields = ["starts_at", "ends_at", "reason"]
    extra = 0

    def _parent(self) -> SlaAdmin:
        return self.admin_site._registry[Sla]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._parent().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._parent().has_change_permission(request, obj) if obj else self._parent().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._parent().has_change_permission(request, obj) if obj else self._parent().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)


@admin.register(Sla)
class SlaAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "bot", "scope", "terms", "window", "is_active", "status", "report_schedule"]
    list_filter = ["window", "is_active"]
    search_fields = ["name", "bot__name"]
    inlines = [SlaExclusionInline]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "bot", "exchange_account", "trading_pair", "is_active"]}),
        ("Terms (each optional, at least one)", {"fields": ["max_spread_bps", "min_depth_quote", "depth_band_pct",
                                                            "min_uptime_pct"]}),
        ("Window", {"fields": ["window", "effective_from", "exclude_venue_outages"],
                    "description": "Planned exclusions (maintenance) are listed below; every minute they touch "
                                   "is left out of the window."}),
        ("Reports", {"fields": ["report_schedule", "report_recipients"]}),
    ]

    @admin.display(description="venue / pair")
    def scope(self, obj: Sla) -> str:
        venue = obj.exchange_account.label if obj.exchange_account_id else "every venue"
        return f"{venue} / {obj.trading_pair or 'every pair'}"

    @admin.display(description="terms")
    def terms(self, obj: Sla) -> str:
        parts = []
        if obj.max_spread_bps is not None:
            parts.append(f"spread <= {obj.max_spread_bps} bps")
        if obj.min_depth_quote is not None:
            parts.append(f"depth >= {obj.min_depth_quote} within ±{obj.depth_band_pct} %")
        if obj.min_uptime_pct is not None:
            parts.append(f"uptime >= {obj.min_uptime_pct} % per side")
        return "; ".join(parts)

    @admin.display(description="status")
    def status(self, obj: Sla) -> str:
        states = list(SlaState.objects.filter(sla=obj).values_list("status", flat=True))
        if not states:
            return "-"
        worst = "red" if "red" in states else "amber" if "amber" in states else "green"
        url = reverse("liquidity:bot_sla", args=[obj.bot_id])
        return format_html('<a href="{}" style="color:{};font-weight:600">{}</a>', url, STATUS_COLOURS[worst], worst)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for inline_form in formset.forms:
            if inline_form.instance is not None and not inline_form.instance.tenant_id:
                inline_form.instance.tenant_id = form.instance.tenant_id
        super().save_formset(request, form, formset, change)


@admin.register(LiquidityStats)
class LiquidityStatsAdmin(HistoryAdmin):
    list_display = ["bucket_start", "resolution", "bot", "exchange_account", "trading_pair", "uptime_bid",
                    "uptime_ask", "avg_spread_bps", "fills"]
    list_filter = ["resolution"]
    search_fields = ["trading_pair", "bot__name"]

    @staticmethod
    def _share(part: int, whole: int) -> str:
        return f"{part / whole * 100:.2f} %" if whole else "-"

    @admin.display(description="uptime bid")
    def uptime_bid(self, obj: LiquidityStats) -> str:
        return self._share(obj.bid_ms, obj.duration_ms)

    @admin.display(description="uptime ask")
    def uptime_ask(self, obj: LiquidityStats) -> str:
        return self._share(obj.ask_ms, obj.duration_ms)

    @admin.display(description="avg spread (bps)")
    def avg_spread_bps(self, obj: LiquidityStats) -> str:
        return f"{obj.spread_bps_ms / obj.two_sided_ms:.2f}" if obj.two_sided_ms else "-"


class ClientAccessForm(forms.ModelForm):
    """A client login by exact username; created here (with the password given) when it does not exist.
    A login that is a member of any tenant cannot be a client (it would see that tenant's bots)."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                               help_text="Only to create a new client login.")

    class Meta:
        model = ClientAccess
        fields = ["tenant", "bot"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["username"].initial = self.instance.user.get_username()

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            password = self.data.get("password") or ""
            if len(password) < 12:
                raise forms.ValidationError("No such login: give a password of at least 12 characters to create it.")
            self.new_login = (username, password)  # created on save, when everything else is valid
            return username
        if user.is_staff or user.is_superuser or user.memberships.exists():
            raise forms.ValidationError("This login belongs to the desk (staff or a tenant member); a client "
                                        "needs a login of its own.")
        self.instance.user = user
        return username


@admin.register(ClientAccess)
class ClientAccessAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ClientAccessForm
    write_roles = frozenset({Role.OWNER})
    list_display = ["user", "bot", "tenant", "created_at"]
    fields = ["tenant", "bot", "username", "password"]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).select_related("user", "bot")

    def save_model(self, request: HttpRequest, obj: ClientAccess, form: ClientAccessForm, change: bool) -> None:
        new_login = getattr(form, "new_login", None)
        if new_login is not None:
            obj.user = get_user_model().objects.create_user(username=new_login[0], password=new_login[1],
                                                            is_staff=False)
        super().save_model(request, obj, form, change)
