"""Admin for bots (the essentials first, the rest in collapsible groups defined as data) and their read-only history."""

from __future__ import annotations

import asyncio
import csv
import difflib
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.forms.utils import ErrorList
from django.http import HttpRequest, HttpResponse

from bots import services
from bots.config import TRADING_PAIR_PATTERN
from bots.engine.gateways import gateway_for_account
from bots.models import (
    Bot,
    BotEvent,
    Fill,
    Hedge,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    PerformanceSnapshot,
    RebalanceRun,
)
from bots.services import BotStateError
from exchanges.crypto import CredentialDecryptionError
from exchanges.models import ExchangeAccount
from mmplatform import aio
from mmplatform.errors import ExchangeError, MarketMakingError
from mmplatform.tenancy.admin import TenantScopedAdminMixin, user_roles

# --- the bot form's labels and groups (data: a new setting is one label and one group entry) ---------

BOT_LABELS: dict[str, str] = {
    "tenant": "Firm",
    "name": "Name",
    "exchange_accounts": "Exchange accounts",
    "trading_pairs": "Trading pairs",
    "default_strategy": "Strategy",
    "adaptation_enabled": "Adapt the strategy to the market",
    "spread_bps": "Spread (bps)",
    "order_size_quote": "Order size (quote)",
    "grid_levels": "Levels per side",
    "monitoring_interval_secs": "Monitoring interval (s)",
    "error_recovery_delay_secs": "Error recovery delay (s)",
    "min_order_size_quote": "Minimum order size (quote)",
    "max_order_size_quote": "Maximum order size (quote)",
    "performance_tracking": "Performance tracking",
    "metrics_interval_secs": "Metrics interval (s)",
    "high_volatility_threshold": "High volatility threshold (daily fraction)",
    "low_liquidity_threshold_quote": "Low liquidity threshold (quote)",
    "strong_trend_threshold": "Strong trend threshold (0–1)",
    "inventory_target_ratio": "Inventory target ratio (0–1)",
    "level_spacing_bps": "Level spacing (bps)",
    "inventory_skew_bps": "Inventory skew (bps)",
    "analysis_band_bps": "Liquidity band (bps)",
    "volatility_half_life_secs": "Volatility half-life (s)",
    "adapt_volatility_change_ratio": "Re-tune on a volatility change of (ratio)",
    "volatility_spread_multiplier": "Volatility spread multiplier",
    "volatility_horizon_secs": "Volatility horizon (s)",
    "risk_aversion": "Risk aversion γ",
    "as_horizon_mode": "Horizon mode",
    "as_horizon_secs": "Horizon (s)",
    "order_arrival_k_per_bps": "Fallback order arrival k (1/bps)",
    "order_arrival_a_per_sec": "Fallback order arrival A (fills/s)",
    "volatility_fallback_bps_per_sqrt_sec": "Fallback volatility (bps/√s)",
    "trend_skew_bps": "Trend skew (bps)",
    "trend_against_widen_bps": "Against-trend widening (bps)",
    "trend_pull_threshold": "Trend pull threshold (0–1)",
    "level_size_multiplier": "Level size multiplier",
    "order_refresh_secs": "Order refresh (s)",
    "order_refresh_tolerance_bps": "Refresh tolerance (bps)",
    "min_spread_bps": "Minimum spread (bps)",
    "max_spread_bps": "Maximum spread (bps)",
    "maker_fee_bps": "Maker fee (bps)",
    "price_ceiling": "Price ceiling (quote)",
    "price_floor": "Price floor (quote)",
    "post_only": "Post-only",
    "target_ratios": "Per-pair target ratios",
    "rebalance_thresholds": "Per-pair rebalance thresholds",
    "default_rebalance_threshold": "Rebalance threshold",
    "min_trade_value_quote": "Minimum rebalancing trade (quote)",
    "max_rebalance_slippage_bps": "Maximum rebalancing slippage (bps)",
    "reference_price": "Reference price",
    "reference_venue": "Reference venue",
    "hedge_enabled": "Hedge every fill on another venue",
    "hedge_account": "Hedge account",
    "hedged_accounts": "Hedged maker accounts",
    "hedge_max_slippage_bps": "Maximum hedge slippage (bps)",
    "max_position_quote": "Maximum position (quote)",
    "max_daily_loss_quote": "Maximum daily loss (quote)",
    "max_drawdown_ratio": "Maximum drawdown (fraction)",
    "inventory_deviation_limit": "Inventory deviation limit",
    "volatility_pause_threshold": "Volatility pause threshold (daily fraction)",
    "max_open_orders": "Maximum open orders",
    "price_collar_bps": "Price collar (bps)",
    "volatility_spread_widen_factor": "Spread widening on high volatility (×)",
    "position_size_reduction_factor": "Size reduction at the position limit (×)",
}


@dataclass(frozen=True)
class FieldGroup:
    """One fieldset of an admin form, as data. ``collapsed`` groups start closed (and open by
    themselves when one of their fields has an error); ``change_only`` groups are left off the add page."""

    title: str
    fields: tuple[str, ...]
    description: str = ""
    collapsed: bool = True
    change_only: bool = False

    def fieldset(self) -> tuple[str, dict[str, Any]]:
        options: dict[str, Any] = {"fields": list(self.fields)}
        if self.description:
            options["description"] = self.description
        if self.collapsed:
            options["classes"] = ["collapse"]
        return (self.title, options)


STATUS_FIELDS = ["status", "status_reason", "last_error", "kill_switch_engaged"]
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

BOT_FIELD_GROUPS: list[FieldGroup] = [
    FieldGroup(
        "Bot",
        ("tenant", "name", "exchange_accounts", "trading_pairs", "default_strategy", "adaptation_enabled",
         "spread_bps", "order_size_quote", "grid_levels"),
        "What to quote, where and how wide. The defaults quote on the demo market as they are; "
        "the groups below are for fine-tuning.",
        collapsed=False,
    ),
    FieldGroup(
        "Status", tuple(STATUS_FIELDS),
        "Read-only. Start, stop and the kill switch are actions on the bot list.",
        collapsed=False, change_only=True,
    ),
    FieldGroup(
        "Quoting and cross-venue hedging",
        ("level_spacing_bps", "level_size_multiplier", "min_spread_bps", "max_spread_bps", "maker_fee_bps",
         "order_refresh_secs", "order_refresh_tolerance_bps", "post_only", "price_ceiling", "price_floor",
         "reference_price", "reference_venue",
         "hedge_enabled", "hedge_account", "hedged_accounts", "hedge_max_slippage_bps"),
        "How the levels are laid out and refreshed. The spread is never quoted below two maker fees, "
        "so a round trip at level 0 does not lose money to fees. Reference price, for a pair quoted on "
        "several exchange accounts: the mid each venue's quotes are centred on: its own (default); one "
        "chosen venue's (the thin venues follow the deep one); or a composite of the venues whose books are "
        "healthy: the median, or weighted by the depth near each mid. A venue whose book is stale or whose "
        "connection fails stops quoting alone, with its reason on the bot page. "
        "Cross-venue hedging: each fill of a quote on a hedged account is hedged at once by an IOC on the hedge "
        "account: the opposite side, the base the fill moved (what is below the hedge venue's lot or minimum "
        "goes with the next fill), limited to the fill's price plus (a buy) or minus (a sell) the maximum "
        "slippage. The hedge account only hedges: the bot quotes nothing there, and its venue must list every "
        "pair (to quote off its book, choose its venue as the reference). A hedge not filled within the limit "
        "(slippage breach) or refused by its venue (failed) is a risk event, and the maker account stops quoting "
        "that pair until a retry within the limit fills it (every 5 s) or an operator accepts the exposure (bot "
        "page: Retry hedges / Accept unhedged exposure). Hedge fills are booked with the bot's positions and "
        "flagged as hedges in the fills.",
    ),
    FieldGroup(
        "Inventory and rebalancing",
        ("inventory_target_ratio", "inventory_skew_bps", "target_ratios", "rebalance_thresholds",
         "default_rebalance_threshold", "min_trade_value_quote", "max_rebalance_slippage_bps"),
        "The share of the pair's value held in the base asset, how hard quotes lean back towards it, "
        "and when a rebalancing trade is made.",
    ),
    FieldGroup(
        "Rebalancing schedule",
        ("rebalance_schedule_enabled", "rebalance_crontab"),
        "Besides the threshold check of every cycle: trade every pair back to its target at these times "
        "(UTC). Runs are listed under Rebalance runs.",
    ),
    FieldGroup(
        "Risk limits",
        ("max_position_quote", "max_daily_loss_quote", "max_drawdown_ratio", "inventory_deviation_limit",
         "volatility_pause_threshold", "max_open_orders", "price_collar_bps", "volatility_spread_widen_factor",
         "position_size_reduction_factor"),
        "Checked before every order and every cycle; a breach pauses, widens or shrinks quoting and is "
        "logged as a risk event.",
    ),
    FieldGroup(
        "Order sizes and timing",
        ("min_order_size_quote", "max_order_size_quote", "monitoring_interval_secs", "error_recovery_delay_secs",
         "performance_tracking", "metrics_interval_secs"),
        "Bounds on every order's value and the engine's clock.",
    ),
    FieldGroup(
        "Strategy selection",
        ("high_volatility_threshold", "low_liquidity_threshold_quote", "strong_trend_threshold",
         "analysis_band_bps", "volatility_half_life_secs", "adapt_volatility_change_ratio"),
        "With adaptation on, the strategy is chosen from the market analysis: volatility above its "
        "threshold -> volatility-adaptive; else thin liquidity -> inventory-based; else a strong trend -> "
        "trend following; else grid.",
    ),
    FieldGroup(
        "Volatility-adaptive strategy",
        ("volatility_spread_multiplier", "volatility_horizon_secs"),
        "Widens the spread with the measured volatility over the horizon.",
    ),
    FieldGroup(
        "Inventory-based strategy (Avellaneda–Stoikov)",
        ("risk_aversion", "as_horizon_mode", "as_horizon_secs", "order_arrival_k_per_bps",
         "order_arrival_a_per_sec", "volatility_fallback_bps_per_sqrt_sec"),
        "Quotes around a reservation price that leans against the inventory; the fallbacks are used "
        "until enough trades and prices have been seen.",
    ),
    FieldGroup(
        "Trend-following strategy",
        ("trend_skew_bps", "trend_against_widen_bps", "trend_pull_threshold"),
        "Leans the quotes along the trend and widens or pulls the side against it.",
    ),
    FieldGroup(
        "Engine state",
        tuple(f for f in STATE_FIELDS if f not in STATUS_FIELDS),
        "Read-only bookkeeping of the engine.",
        change_only=True,
    ),
]


def labelled_message(message: str, labels: dict[str, str]) -> str:
    """Replace internal field names in a validation message by the form's labels (longest first,
    whole words only: ``spread_bps`` inside ``min_spread_bps`` is left to its own label). Only
    identifiers with an underscore: a plain word such as "tenant" or "name" is English."""
    for name in sorted(labels, key=len, reverse=True):
        if "_" in name and name in message:
            message = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", f"“{labels[name]}”", message)
    return message


# --- pairs on the venue ---------------------------------------------------------------------------

VENUE_CHECK_TIMEOUT_SECS = 8.0
"""How long saving a bot waits for an account's venue to list its markets before saving unchecked."""


@dataclass
class PairCheck:
    """Which of a bot's pairs its accounts' venues list, and which accounts could not be asked."""

    unlisted: dict[str, list[str]] = field(default_factory=dict)
    """Pair -> close matches among the listed markets, for pairs no reachable venue lists."""
    unreachable: dict[str, str] = field(default_factory=dict)
    """Account label -> why its venue could not be asked."""


async def _venue_markets(account: ExchangeAccount, pairs: list[str]) -> set[str]:
    gateway = gateway_for_account(account)
    await gateway.load_markets()
    if not all(gateway.supports_trading_pair(pair) for pair in pairs):
        await gateway.load_markets(reload=True)  # a pair listed since the markets were cached
    return set((await gateway.load_markets()).keys())


def check_pairs_on_venues(accounts: list[ExchangeAccount], pairs: list[str]) -> PairCheck:
    """Load each account's markets through the project's gateway; a pair is fine when one
    reachable venue lists it. Pairs are unlisted only when every venue answered."""
    result = PairCheck()
    listed: set[str] = set()
    for account in accounts:
        try:
            coroutine = asyncio.wait_for(_venue_markets(account, pairs), VENUE_CHECK_TIMEOUT_SECS)
            listed |= aio.run(coroutine, timeout_secs=VENUE_CHECK_TIMEOUT_SECS + 2)
        except TimeoutError:
            result.unreachable[account.label] = f"no answer within {VENUE_CHECK_TIMEOUT_SECS:g} s"
        except (ExchangeError, CredentialDecryptionError) as exc:
            result.unreachable[account.label] = f"{type(exc).__name__}: {exc}"[:200]
    missing = [pair for pair in pairs if pair not in listed]
    if not missing:
        result.unreachable = {}  # every pair is listed on a venue that answered: nothing left to check
    elif not result.unreachable:
        result.unlisted = {pair: difflib.get_close_matches(pair, sorted(listed), n=3, cutoff=0.5) for pair in missing}
    else:
        result.unreachable = {
            label: f"{reason}; not checked: {', '.join(missing)}" for label, reason in result.unreachable.items()
        }
    return result


class BotForm(forms.ModelForm):
    class Meta:
        model = Bot
        exclude = ["epoch"]  # noqa: DJ006 -- every config field is edited here; state is read-only
        labels = BOT_LABELS
        widgets = {"exchange_accounts": forms.CheckboxSelectMultiple,  # a firm has a few: one line each
                   "hedged_accounts": forms.CheckboxSelectMultiple}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.venue_warnings: list[str] = []
        # money columns hold 12 decimals: show 100, not 100.000000000000
        for name, form_field in self.fields.items():
            value = self.initial.get(name)
            if isinstance(form_field, forms.DecimalField) and isinstance(value, Decimal) and value.is_finite():
                self.initial[name] = value.normalize() if value != value.to_integral_value() else value.quantize(1)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant = cleaned.get("tenant")
        accounts = cleaned.get("exchange_accounts")
        if tenant is not None and accounts is not None:
            foreign = [a.label for a in accounts if a.tenant_id != tenant.pk]
            if foreign:
                self.add_error("exchange_accounts", f"Accounts of another tenant: {', '.join(foreign)}.")
        self._check_pairs(cleaned)
        self._check_hedge_venue(cleaned)
        return cleaned

    def _check_hedge_venue(self, cleaned: dict[str, Any]) -> None:
        """The hedge account's venue lists every pair of the bot (it hedges each of them): a field error when
        it answers, a warning when it cannot be asked; checked when hedging, its account or the pairs change."""
        account = cleaned.get("hedge_account")
        text = cleaned.get("trading_pairs")
        if not cleaned.get("hedge_enabled") or account is None or not text or self.has_error("trading_pairs"):
            return
        if self.instance.pk is not None and not {"hedge_enabled", "hedge_account", "trading_pairs"} & set(
                self.changed_data):
            return
        pairs = [p for p in dict.fromkeys(p.strip() for p in str(text).split(",")) if TRADING_PAIR_PATTERN.match(p)]
        if not pairs:
            return
        check = check_pairs_on_venues([account], pairs)
        if check.unlisted:
            self.add_error("hedge_account", f"{account.label} ({account.exchange_id}) does not list "
                                            f"{', '.join(check.unlisted)}: it could not hedge "
                                            f"{'it' if len(check.unlisted) == 1 else 'them'}.")
        for label, reason in check.unreachable.items():
            self.venue_warnings.append(f"Saved without checking that the hedge account {label} lists the pairs: its "
                                       f"venue could not be reached ({reason}).")

    def _check_pairs(self, cleaned: dict[str, Any]) -> None:
        """A pair the accounts' venues do not list is a field error (when they answer), checked when
        the bot is created or its pairs or accounts change."""
        accounts = cleaned.get("exchange_accounts")
        text = cleaned.get("trading_pairs")
        if self.has_error("exchange_accounts") or self.has_error("trading_pairs") or not accounts or not text:
            return
        if self.instance.pk is not None and not {"trading_pairs", "exchange_accounts"} & set(self.changed_data):
            return
        pairs = [p.strip() for p in str(text).split(",") if p.strip()]
        pairs = [p for p in dict.fromkeys(pairs) if TRADING_PAIR_PATTERN.match(p)]  # the format is the model's
        if not pairs:
            return
        accounts = list(accounts)
        check = check_pairs_on_venues(accounts, pairs)
        venues = ", ".join(f"{a.label} ({a.exchange_id})" for a in accounts)
        for pair, close in check.unlisted.items():
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            self.add_error("trading_pairs", f"{pair} is not listed on {venues}.{hint}")
        for label, reason in check.unreachable.items():
            self.venue_warnings.append(
                f"Saved without checking the trading pairs on {label}: its venue could not be reached ({reason}). "
                "A pair it does not list will fail when the bot starts."
            )

    def _post_clean(self) -> None:
        """After the model's validation (bots.config, which speaks in field names): every message
        names fields by the form's labels."""
        invalid_venue = list(self._errors.get("reference_venue", []))  # not a venue: the model saw it empty
        super()._post_clean()
        if invalid_venue:
            self._errors["reference_venue"] = self.error_class(invalid_venue, renderer=self.renderer)
        accounts = self.cleaned_data.get("exchange_accounts")
        if accounts is not None and not self.has_error("reference_venue"):  # the model checked the rest
            for name, messages in self.instance.reference_errors({a.exchange_id for a in accounts}).items():
                for message in messages:
                    self.add_error(name, message)
        hedged = self.cleaned_data.get("hedged_accounts")
        if accounts is not None and not self.has_error("hedge_account") and not self.has_error("hedged_accounts"):
            for name, messages in self.instance.hedge_errors(list(accounts), list(hedged or [])).items():
                for message in messages:
                    self.add_error(name, message)
        labels = {name: str(f.label) for name, f in self.fields.items() if f.label}
        for name, errors in list(self._errors.items()):
            self._errors[name] = ErrorList(
                [labelled_message(str(message), labels) for message in errors],
                error_class=errors.error_class, renderer=self.renderer,
            )


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
    classes = ["collapse"]
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
        _lifecycle_action("retry_hedges", "Hedges: retry the unresolved ones now (within their limit)",
                          functools.partial(services.bot_resolve_hedges, action="retry")),
        _lifecycle_action("accept_hedges", "Hedges: accept the unhedged exposure and quote again",
                          functools.partial(services.bot_resolve_hedges, action="accept")),
    ]
    list_display = ["name", "tenant", "status", "trading_pairs", "default_strategy", "last_cycle_finished_at"]
    list_filter = ["status", "default_strategy"]
    search_fields = ["name", "trading_pairs"]
    readonly_fields = STATE_FIELDS
    inlines = [PositionInline, RecentOrderInline]
    field_groups = BOT_FIELD_GROUPS

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[str, dict[str, Any]]]:
        return [group.fieldset() for group in self.field_groups if obj is not None or not group.change_only]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """A group holding a field with an error opens by itself, and the note above the form names
        the fields (by label) that need attention."""
        adminform = context.get("adminform")
        if adminform is not None and adminform.form.errors:
            errors = adminform.form.errors
            adminform.fieldsets = [
                (name, {**options, "classes": [c for c in options.get("classes", []) if c != "collapse"]})
                if any(f in errors for f in options["fields"]) else (name, options)
                for name, options in adminform.fieldsets
            ]
            context["error_fields"] = [
                (name, str(adminform.form.fields[name].label)) for name in adminform.form.fields if name in errors
            ]
        return super().render_change_form(request, context, *args, **kwargs)

    def save_model(self, request: HttpRequest, obj: Bot, form: BotForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        for warning in getattr(form, "venue_warnings", []):
            self.message_user(request, warning, messages.WARNING)


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

    def roles_allowed(self, action: str) -> frozenset[str]:
        return super().roles_allowed(action) if action in ("view", "history") else frozenset()

    def nobody_may(self, action: str) -> str:
        if action in ("view", "history"):
            return ""
        plural = self.model._meta.verbose_name_plural
        return (f"{str(plural).capitalize()} are the record of what happened: the engine writes them and "
                "nobody, whatever their role, adds, changes or deletes them. Every member of the firm may read "
                "and export them.")

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
        "exchange_trade_id", "bot", "trading_pair", "side", "price", "amount", "fee", "fee_currency", "is_hedge",
        "executed_at"
    ]
    list_filter = ["side", "is_maker", "is_hedge"]
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


@admin.register(Hedge)
class HedgeAdmin(HistoryAdmin):
    """What each maker fill owed the hedge venue and what became of it (unresolved ones: the bot list's
    "Hedges" actions retry them or accept their exposure)."""

    list_display = ["created_at", "bot", "trading_pair", "side", "amount", "hedged", "carry_base", "limit_price",
                    "status", "attempts", "reason"]
    list_filter = ["status"]
    search_fields = ["trading_pair", "reason"]
    date_hierarchy = "created_at"
