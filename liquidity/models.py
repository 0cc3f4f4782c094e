"""Liquidity agreements (SLAs): the figures per (bot, venue account, pair) and minute / hour / day, the
agreements, their planned exclusions, the venue outages the platform observed, each agreement's last
status per (venue, pair), and the client logins a bot is shared with. Every row but the outages (a fact
about a venue, shared by all tenants) belongs to a tenant."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from bots.models import Bot
from exchanges.models import ExchangeAccount
from mmplatform.tenancy.models import TenantOwned

RATIO = {"max_digits": 7, "decimal_places": 4}


class Resolution(models.TextChoices):
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


RESOLUTION_SECS = {Resolution.MINUTE: 60, Resolution.HOUR: 3600, Resolution.DAY: 86400}


class LiquidityStats(TenantOwned):
    """The sums of ``liquidity.metrics.Figures`` for one (bot, venue account, pair) and one minute, hour
    or day: milliseconds and quote x milliseconds (statistics, not balances: floats), fills and volume
    (Decimal, quote). Minutes are computed from the order lifecycle on the venue's times; hours and days
    are the sums of their minutes."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="liquidity_stats")
    exchange_account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="+")
    trading_pair = models.CharField(max_length=40)
    resolution = models.CharField(max_length=8, choices=Resolution.choices)
    bucket_start = models.DateTimeField()
    duration_ms = models.BigIntegerField()
    bid_ms = models.BigIntegerField(default=0)
    ask_ms = models.BigIntegerField(default=0)
    two_sided_ms = models.BigIntegerField(default=0)
    spread_bps_ms = models.FloatField(default=0.0)
    spread_histogram = models.JSONField(default=dict, help_text="0.5 bps bucket -> ms two-sided at that spread.")
    bid_distance_histogram = models.JSONField(default=dict)
    ask_distance_histogram = models.JSONField(default=dict)
    depth_quote_ms = models.JSONField(default=dict, help_text='"bid_2" -> quote x ms within +-2 % of mid, ...')
    fills = models.PositiveIntegerField(default=0)
    volume_quote = models.DecimalField(max_digits=30, decimal_places=12, default=Decimal(0))
    maker_volume_quote = models.DecimalField(max_digits=30, decimal_places=12, default=Decimal(0))
    venue_share_sum = models.FloatField(
        default=0.0, help_text="Sum over samples of the bot's share of the venue's visible depth within +-2 %.")
    venue_share_samples = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "liquidity figures"
        verbose_name_plural = "liquidity figures"
        constraints = [
            models.UniqueConstraint(fields=["bot", "exchange_account", "trading_pair", "resolution", "bucket_start"],
                                    name="uniq_liquidity_stats_bucket"),
        ]
        indexes = [models.Index(fields=["bot", "resolution", "bucket_start"], name="liquidity_stats_bot_time")]
        ordering = ["-bucket_start"]

    def __str__(self) -> str:
        return f"{self.bot_id} {self.trading_pair} {self.resolution} {self.bucket_start:%Y-%m-%d %H:%M}"


class SlaWindow(models.TextChoices):
    DAY = "day", "Calendar day (UTC)"
    MONTH = "month", "Calendar month (UTC)"


class ReportSchedule(models.TextChoices):
    NONE = "", "No scheduled report"
    DAILY = "daily", "Daily (yesterday, at 00:10 UTC)"
    MONTHLY = "monthly", "Monthly (last month, on the 1st)"


DEPTH_BANDS = [(1, "±1 %"), (2, "±2 %"), (5, "±5 %")]


class Sla(TenantOwned):
    """A liquidity agreement on a bot: for each of its (venue, pair)s, or only one venue and / or pair.
    Each term is optional; at least one is required. Evaluated over the current calendar day or month
    (UTC), minus planned exclusions and, when asked, the venue outages the platform observed."""

    name = models.CharField(max_length=120)
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="slas")
    exchange_account = models.ForeignKey(
        ExchangeAccount, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
        help_text="Only this venue account of the bot (empty: each of its venues).")
    trading_pair = models.CharField(max_length=40, blank=True, default="",
                                    help_text="Only this pair, e.g. BTC/USDT (empty: each pair of the bot).")
    max_spread_bps = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Time-weighted average quoted spread at most this (bps of mid); uptime counts only time "
                  "within it.")
    min_depth_quote = models.DecimalField(
        max_digits=30, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Time-weighted depth per side within the band, in quote currency, at least this.")
    depth_band_pct = models.PositiveSmallIntegerField(choices=DEPTH_BANDS, default=2)
    min_uptime_pct = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0.01"))], help_text="Per side, % of the counted window (0-100].")
    window = models.CharField(max_length=8, choices=SlaWindow.choices, default=SlaWindow.DAY)
    effective_from = models.DateTimeField(
        default=timezone.now, help_text="The agreement counts from here: a window it starts in is counted from "
                                        "this moment (to the minute), not from its beginning.")
    exclude_venue_outages = models.BooleanField(
        default=True, help_text="Leave out the time the platform could not read the venue's book.")
    is_active = models.BooleanField(default=True)
    report_schedule = models.CharField(max_length=8, choices=ReportSchedule.choices, default="", blank=True)
    report_recipients = models.TextField(blank=True, default="", help_text="E-mail addresses, one per line.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "SLA"
        verbose_name_plural = "SLAs"
        ordering = ["bot__name", "name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(max_spread_bps__isnull=True) | models.Q(max_spread_bps__gt=0),
                                   name="sla_spread_positive"),
            models.CheckConstraint(condition=models.Q(min_depth_quote__isnull=True) | models.Q(min_depth_quote__gt=0),
                                   name="sla_depth_positive"),
            models.CheckConstraint(
                condition=models.Q(min_uptime_pct__isnull=True)
                | (models.Q(min_uptime_pct__gt=0) & models.Q(min_uptime_pct__lte=100)), name="sla_uptime_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.min_uptime_pct is not None and self.min_uptime_pct > 100:
            errors["min_uptime_pct"] = "An uptime is at most 100 %."
        if self.max_spread_bps is None and self.min_depth_quote is None and self.min_uptime_pct is None:
            errors["__all__"] = "Give at least one term: a max spread, a min depth or a min uptime."
        if self.bot_id and self.tenant_id and self.bot.tenant_id != self.tenant_id:
            errors["bot"] = "This bot belongs to another tenant."
        if self.bot_id and self.exchange_account_id and not self.bot.exchange_accounts.filter(
                pk=self.exchange_account_id).exists():
            errors["exchange_account"] = "The bot does not trade on this account."
        if self.bot_id and self.trading_pair and self.trading_pair not in self.bot.pairs:
            quoted = ", ".join(self.bot.pairs)
            errors["trading_pair"] = f"The bot does not quote {self.trading_pair} (it quotes {quoted})."
        bad = [a for a in self.recipients if "@" not in a or " " in a]
        if bad:
            errors["report_recipients"] = f"Not an e-mail address: {', '.join(bad)}."
        if self.report_schedule and not self.recipients:
            errors["report_recipients"] = "A scheduled report needs at least one recipient."
        if errors:
            raise ValidationError(errors)

    @property
    def recipients(self) -> list[str]:
        return [line.strip() for line in self.report_recipients.replace(",", "\n").splitlines() if line.strip()]


class SlaExclusion(TenantOwned):
    """Planned time an agreement does not count (maintenance): the minutes it touches are left out."""

    sla = models.ForeignKey(Sla, on_delete=models.CASCADE, related_name="exclusions")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-starts_at"]
        constraints = [models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                              name="sla_exclusion_not_empty")]

    def __str__(self) -> str:
        return f"{self.sla} {self.starts_at:%Y-%m-%d %H:%M} - {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "An exclusion ends after it starts (this window is empty)."})
        if self.sla_id and self.tenant_id and self.sla.tenant_id != self.tenant_id:
            raise ValidationError({"sla": "This SLA belongs to another tenant."})


class VenueOutage(models.Model):
    """Time the platform could not read a venue's book for a pair while a bot quoted it (a gap in the
    shared mid history longer than ``STALE_BOOK_SECS``). A fact about the venue: not tenant-owned."""

    venue = models.CharField(max_length=200)
    trading_pair = models.CharField(max_length=40)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["venue", "trading_pair", "started_at"], name="venue_outage_time")]

    def __str__(self) -> str:
        return f"{self.venue} {self.trading_pair} {self.started_at:%Y-%m-%d %H:%M:%S} - {self.ended_at:%H:%M:%S}"


class SlaState(TenantOwned):
    """The last status (green / amber / red) of an agreement on one (venue, pair) in one window: a
    ``SlaBreached`` / ``SlaAtRisk`` bot event is recorded when it turns red / amber, once per change."""

    sla = models.ForeignKey(Sla, on_delete=models.CASCADE, related_name="states")
    exchange_account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="+")
    trading_pair = models.CharField(max_length=40)
    window_start = models.DateTimeField()
    status = models.CharField(max_length=8)
    changed_at = models.DateTimeField()
    figures = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sla", "exchange_account", "trading_pair"],
                                               name="uniq_sla_state")]


class ClientAccess(TenantOwned):
    """A client login (a token issuer) may see this bot's SLA pages and reports: aggregates only, no
    controls, no orders. A client has no membership in the tenant, so nothing else of it is visible."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_accesses")
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="client_accesses")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "client access"
        constraints = [models.UniqueConstraint(fields=["user", "bot"], name="uniq_client_access")]

    def __str__(self) -> str:
        return f"{self.user} -> {self.bot}"

    def clean(self) -> None:
        if self.bot_id and self.tenant_id and self.bot.tenant_id != self.tenant_id:
            raise ValidationError({"bot": "This bot belongs to another tenant."})
        if self.user_id and self.tenant_id and self.user.memberships.exists():
            raise ValidationError({"user": "A client login must not be a member of any tenant (it would see "
                                           "the tenant's bots); create a separate login for the client."})
