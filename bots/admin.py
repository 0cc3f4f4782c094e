"""Admin for bots (configuration grouped as the spec's config classes) and their read-only history."""

from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest, HttpResponse

from bots import services
from bots.models import (
    Bot,
    BotEvent,
    Fill,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    PerformanceSnapshot,
    RebalanceRun,
)
from bots.services import BotStateError
from mmplatform.errors import MarketMakingError
from mmplatform.tenancy.admin import TenantScopedAdminMixin, user_roles


class BotForm(forms.ModelForm):
    class Meta:
        model = Bot
        exclude = ["epoch"]  # noqa: DJ006 -- every config field is edited here; state is read-only

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant = cleaned.get("tenant")
        accounts = cleaned.get("exchange_accounts")
        if tenant is not None and accounts is not None:
            foreign = [a.label for a in accounts if a.tenant_id != tenant.pk]
            if foreign:
                self.add_error("exchange_accounts", f"Accounts of another tenant: {', '.join(foreign)}.")
        return cleaned


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # the parent bot admin already scoped the page to the user's tenants; roles, not Django perms
        return request.user.is_superuser or bool(user_roles(request))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PositionInline(ReadOnlyInline):
    model = LiquidityPosition
    fields = ["trading_pair", "strategy_type", "is_active", "base_position", "realised_pnl_quote", "fill_count"]
    readonly_fields = fields


class RecentOrderInline(ReadOnlyInline):
    model = Order
    fields = ["client_order_id", "trading_pair", "side", "price", "amount", "filled", "status", "created_at"]
    readonly_fields = fields
    max_num = 0
    verbose_name_plural = "Recent orders (the last 50; full history under Orders)"

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        """The bot's 50 most recent orders (the page's bot, from the URL; the admin already
        checked the user may see it)."""
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        bot_id = match.kwargs.get("object_id") if match else None
        if bot_id is None:
            return queryset.none()
        recent = list(queryset.filter(bot_id=bot_id).order_by("-created_at").values_list("pk", flat=True)[:50])
        return queryset.filter(pk__in=recent).order_by("-created_at")


STATE_FIELDS = [
    "status",
    "epoch",
    "status_reason",
    "last_error",
    "kill_switch_engaged",
    "cycle_count",
    "last_cycle_started_at",
    "last_cycle_finished_at",
    "started_at",
    "stopped_at",
    "daily_reset_at",
    "daily_pnl_baseline_quote",
    "equity_high_water_quote",
]


def _lifecycle_action(name: str, description: str, call: Any) -> Any:
    """An admin action applying one service to each selected bot the user may control."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet) -> None:
        done, refused = 0, []
        for bot in queryset:
            if not modeladmin.has_change_permission(request, bot):
                refused.append(f"{bot.name}: your role may not control this bot")
                continue
            try:
                call(bot=bot, user=request.user)
                done += 1
            except (MarketMakingError, BotStateError, ValueError) as exc:
                refused.append(f"{bot.name}: {exc}")
        if done:
            modeladmin.message_user(request, f"{description}: {done} bot(s).", messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, line, messages.ERROR)

    action.__name__ = name
    action.short_description = description  # type: ignore[attr-defined]
    action.allowed_permissions = ("change",)  # type: ignore[attr-defined]
    return action


@admin.register(Bot)
class BotAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = BotForm
    actions = [
        _lifecycle_action("start_bots", "Start selected bots", services.bot_request_start),
        _lifecycle_action("stop_bots", "Stop selected bots", services.bot_request_stop),
        _lifecycle_action("kill_bots", "Kill switch: cancel every order and stop", services.bot_kill),
        _lifecycle_action("release_kill_switch", "Release the kill switch", services.bot_release_kill_switch),
        _lifecycle_action("reconcile_bots", "Reconcile orders and fills with the exchange",
                          services.bot_request_reconcile),
        _lifecycle_action("rebalance_now", "Rebalance now: trade every pair back to its target",
                          services.bot_request_rebalance),
    ]
    list_display = ["name", "tenant", "status", "trading_pairs", "default_strategy", "last_cycle_finished_at"]
    list_filter = ["status", "default_strategy"]
    search_fields = ["name", "trading_pairs"]
    filter_horizontal = ["exchange_accounts"]
    readonly_fields = STATE_FIELDS
    inlines = [PositionInline, RecentOrderInline]
    fieldsets = [
        ("Bot", {"fields": ["tenant", "name", "exchange_accounts", "trading_pairs"]}),
        (
            "Market making (MarketMakingConfig)",
            {
                "fields": [
                    "monitoring_interval_secs",
                    "error_recovery_delay_secs",
                    "min_order_size_quote",
                    "max_order_size_quote",
                    "performance_tracking",
                    "metrics_interval_secs",
                ]
            },
        ),
        (
            "Strategy engine (StrategyConfig)",
            {
                "fields": [
                    "default_strategy",
                    "adaptation_enabled",
                    "high_volatility_threshold",
                    "low_liquidity_threshold_quote",
                    "strong_trend_threshold",
                    "grid_levels",
                    "spread_bps",
                    "inventory_target_ratio",
                    "level_spacing_bps",
                    "inventory_skew_bps",
                    "analysis_band_bps",
                    "volatility_half_life_secs",
                    "adapt_volatility_change_ratio",
                ]
            },
        ),
        (
            "Strategy parameters",
            {
                "classes": ["collapse"],
                "fields": [
                    "volatility_spread_multiplier",
                    "volatility_horizon_secs",
                    "risk_aversion",
                    "as_horizon_mode",
                    "as_horizon_secs",
                    "order_arrival_k_per_bps",
                    "order_arrival_a_per_sec",
                    "volatility_fallback_bps_per_sqrt_sec",
                    "trend_skew_bps",
                    "trend_against_widen_bps",
                    "trend_pull_threshold",
                ],
            },
        ),
        (
            "Orders (OrderConfig)",
            {
                "fields": [
                    "order_size_quote",
                    "level_size_multiplier",
                    "order_refresh_secs",
                    "order_refresh_tolerance_bps",
                    "min_spread_bps",
                    "max_spread_bps",
                    "maker_fee_bps",
                    "price_ceiling",
                    "price_floor",
                    "post_only",
                ]
            },
        ),
        (
            "Inventory (InventoryConfig)",
            {
                "fields": [
                    "target_ratios",
                    "rebalance_thresholds",
                    "default_rebalance_threshold",
                    "min_trade_value_quote",
                    "max_rebalance_slippage_bps",
                ]
            },
        ),
        (
            "Risk limits (RiskLimits)",
            {
                "fields": [
                    "max_position_quote",
                    "max_daily_loss_quote",
                    "max_drawdown_ratio",
                    "inventory_deviation_limit",
                    "volatility_pause_threshold",
                    "max_open_orders",
                    "price_collar_bps",
                    "volatility_spread_widen_factor",
                    "position_size_reduction_factor",
                ]
            },
        ),
        (
            "Rebalancing schedule",
            {
                "description": "Besides the threshold check of every cycle: trade every pair back to its "
                               "target at these times (UTC). Runs are listed under Rebalance runs.",
                "fields": ["rebalance_schedule_enabled", "rebalance_crontab"],
            },
        ),
        ("State (read-only)", {"classes": ["collapse"], "fields": STATE_FIELDS}),
    ]


def export_csv(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet) -> HttpResponse:
    """CSV of the selected rows (already scoped to the user's tenants by the admin queryset)."""
    opts = queryset.model._meta
    names = [f.name for f in opts.concrete_fields]
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{opts.model_name}s.csv"'
    writer = csv.writer(response)
    writer.writerow(names)
    for row in queryset.values_list(*[f.attname for f in opts.concrete_fields]):
        writer.writerow(row)
    return response


export_csv.short_description = "Export selected rows as CSV"  # type: ignore[attr-defined]


class HistoryAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Read-only history: nobody edits what happened."""

    actions = [export_csv]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Django hides actions of a model the user may not change; history export is a read.
        actions = super().get_actions(request)
        if self.has_view_permission(request):
            actions.setdefault("export_csv", self.get_action(export_csv))
        return actions


@admin.register(Order)
class OrderAdmin(HistoryAdmin):
    list_display = [
        "client_order_id", "bot", "trading_pair", "side", "price", "amount", "filled", "status", "created_at"
    ]
    list_filter = ["status", "side", "purpose"]
    search_fields = ["client_order_id", "exchange_order_id", "trading_pair"]
    date_hierarchy = "created_at"


@admin.register(Fill)
class FillAdmin(HistoryAdmin):
    list_display = [
        "exchange_trade_id", "bot", "trading_pair", "side", "price", "amount", "fee", "fee_currency", "executed_at"
    ]
    list_filter = ["side", "is_maker"]
    search_fields = ["exchange_trade_id", "trading_pair"]
    date_hierarchy = "executed_at"


@admin.register(BotEvent)
class BotEventAdmin(HistoryAdmin):
    list_display = ["created_at", "bot", "event_type"]
    list_filter = ["event_type"]


@admin.register(LiquidityPosition)
class LiquidityPositionAdmin(HistoryAdmin):
    list_display = [
        "bot", "trading_pair", "strategy_type", "is_active", "base_position", "realised_pnl_quote", "fill_count"
    ]
    list_filter = ["is_active", "strategy_type"]


@admin.register(PerformanceSnapshot)
class PerformanceSnapshotAdmin(HistoryAdmin):
    list_display = ["taken_at", "bot", "realised_pnl_quote", "unrealised_pnl_quote", "fees_paid_quote", "equity_quote"]


@admin.register(InventorySnapshot)
class InventorySnapshotAdmin(HistoryAdmin):
    list_display = ["taken_at", "bot", "trading_pair", "base_balance", "quote_balance", "ratio", "target_ratio"]


@admin.register(RebalanceRun)
class RebalanceRunAdmin(HistoryAdmin):
    list_display = ["slot_start", "bot", "trigger", "trades_executed", "outcome"]
