"""Bots, their positions, orders, fills, events and snapshots. Every row belongs to a tenant."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from bots.config import (
    PENDING_ACCOUNTS,
    HedgeConfig,
    InventoryConfig,
    MarketMakingConfig,
    config_errors,
    hedge_account_errors,
)
from exchanges.models import EXCHANGE_CHOICES, ExchangeAccount
from mmplatform.tenancy.models import TenantOwned
from risk.limits import RiskLimits
from strategies.config import AS_HORIZON_MODES, STRATEGY_TYPES, OrderConfig, StrategyConfig
from strategies.reference import (
    REFERENCE_DEPTH_WEIGHTED,
    REFERENCE_MEDIAN,
    REFERENCE_OWN,
    REFERENCE_VENUE,
)

MONEY = {"max_digits": 30, "decimal_places": 12}


def validate_crontab(value: str) -> None:
    """Five crontab fields celery understands (minute hour day-of-month month day-of-week)."""
    from bots.schedule import parse_crontab

    try:
        parse_crontab(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def money_field(default: str | None = None, **kwargs: Any) -> models.DecimalField:
    """A quote-currency amount, price or quantity: exact decimal, never float."""
    if default is not None:
        kwargs["default"] = Decimal(default)
    return models.DecimalField(**MONEY, **kwargs)


def same_venue_key(one: ExchangeAccount, other: ExchangeAccount) -> bool:
    """Two accounts that are one key on one venue (a hedge there would trade against the quotes it hedges)."""
    if one.exchange_id != other.exchange_id or (one.api_base_url or "") != (other.api_base_url or ""):
        return False
    from exchanges.crypto import CredentialDecryptionError

    try:
        return bool(one.has_credentials) and one.credentials().api_key == other.credentials().api_key
    except CredentialDecryptionError:
        return False


REFERENCE_PRICE_CHOICES = [
    (REFERENCE_OWN, "Each venue's own mid"),
    (REFERENCE_VENUE, "One chosen venue's mid"),
    (REFERENCE_MEDIAN, "Median of the healthy venues' mids"),
    (REFERENCE_DEPTH_WEIGHTED, "Depth-weighted mid of the healthy venues"),
]


class BotStatus(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    PAUSED = "paused", "Paused"
    ERROR = "error", "Error"


class Bot(TenantOwned):
    """A market-making bot: its configuration (the spec's config classes, flattened) and its state."""

    name = models.CharField(max_length=100)
    exchange_accounts = models.ManyToManyField(ExchangeAccount, related_name="bots")
    trading_pairs = models.CharField(
        max_length=500, help_text="Comma-separated pairs in BASE/QUOTE form, e.g. BTC/USDT,ETH/USDT."
    )

    # --- MarketMakingConfig ---
    monitoring_interval_secs = models.FloatField(default=5.0, help_text="Seconds between monitoring cycles.")
    error_recovery_delay_secs = models.FloatField(
        default=10.0, help_text="Pause after a failed cycle before the next one (seconds)."
    )
    min_order_size_quote = money_field("10", help_text="Smallest order value, quote currency.")
    max_order_size_quote = money_field("10000", help_text="Largest order value, quote currency.")
    performance_tracking = models.BooleanField(default=True)
    metrics_interval_secs = models.FloatField(default=60.0, help_text="Seconds between performance snapshots.")

    # --- StrategyConfig ---
    default_strategy = models.CharField(
        max_length=32, default="GRID_TRADING", choices=[(s, s.replace("_", " ").title()) for s in STRATEGY_TYPES]
    )
    adaptation_enabled = models.BooleanField(
        default=True, help_text="Select the strategy from market analysis and re-tune it as conditions change."
    )
    high_volatility_threshold = models.FloatField(
        default=0.05, help_text="Daily volatility (fraction, 0.05 = 5%/day) above which VOLATILITY_ADAPTIVE is used."
    )
    low_liquidity_threshold_quote = money_field(
        "1000", help_text="Book depth near the mid (quote currency) below which INVENTORY_BASED is used."
    )
    strong_trend_threshold = models.FloatField(
        default=0.7, help_text="Trend strength (0..1) above which TREND_FOLLOWING is used."
    )
    grid_levels = models.PositiveIntegerField(default=10, help_text="Orders per side.")
    spread_bps = models.FloatField(default=20.0, help_text="Total spread of level 0, basis points.")
    inventory_target_ratio = models.FloatField(default=0.5, help_text="Target base value / total value (0..1).")
    level_spacing_bps = models.FloatField(default=10.0, help_text="Distance between levels on one side, bps.")
    inventory_skew_bps = models.FloatField(default=20.0, help_text="Quote shift at full inventory imbalance, bps.")
    volatility_spread_multiplier = models.FloatField(
        default=2.0, help_text="Spread added per unit of volatility over the horizon (VOLATILITY_ADAPTIVE)."
    )
    volatility_horizon_secs = models.FloatField(default=60.0, help_text="Volatility horizon for spread widening.")
    risk_aversion = models.FloatField(default=0.01, help_text="Avellaneda–Stoikov gamma, 1/(bps·lot).")
    as_horizon_mode = models.CharField(
        max_length=16, default="infinite", choices=[(m, m.title()) for m in AS_HORIZON_MODES]
    )
    as_horizon_secs = models.FloatField(default=900.0, help_text="Avellaneda–Stoikov session or window length.")
    order_arrival_k_per_bps = models.FloatField(default=0.1, help_text="Fallback k of λ(δ)=A·e^(−kδ), 1/bps.")
    order_arrival_a_per_sec = models.FloatField(default=1.0, help_text="Fallback A of λ(δ)=A·e^(−kδ), fills/s.")
    volatility_fallback_bps_per_sqrt_sec = models.FloatField(
        default=0.7, help_text="σ used until enough data is observed, bps/√s."
    )
    trend_skew_bps = models.FloatField(default=10.0, help_text="Quote shift along the trend at strength 1, bps.")
    trend_against_widen_bps = models.FloatField(
        default=20.0, help_text="Extra distance of the against-trend side at strength 1, bps."
    )
    trend_pull_threshold = models.FloatField(
        default=0.85, help_text="Trend strength above which the against-trend side is pulled."
    )
    analysis_band_bps = models.FloatField(default=100.0, help_text="Band around the mid counted as liquidity, bps.")
    volatility_half_life_secs = models.FloatField(default=300.0, help_text="EWMA half-life of volatility, s.")
    adapt_volatility_change_ratio = models.FloatField(
        default=0.25, help_text="Relative change of volatility that triggers re-tuning."
    )

    # --- OrderConfig ---
    order_size_quote = money_field("100", help_text="Size of level 0, quote currency.")
    level_size_multiplier = models.FloatField(default=1.0, help_text="Level i size = size × multiplier^i.")
    order_refresh_secs = models.FloatField(default=30.0, help_text="Orders older than this are re-placed.")
    order_refresh_tolerance_bps = models.FloatField(
        default=5.0, help_text="A live order within this distance of its new price is kept, bps."
    )
    min_spread_bps = models.FloatField(default=5.0, help_text="Smallest total spread, bps.")
    max_spread_bps = models.FloatField(default=1000.0, help_text="Largest total spread, bps.")
    maker_fee_bps = models.FloatField(default=10.0, help_text="Maker fee per fill, bps (negative: rebate).")
    price_ceiling = money_field(null=True, blank=True, help_text="No quote above this price (empty: none).")
    price_floor = money_field(null=True, blank=True, help_text="No quote below this price (empty: none).")
    post_only = models.BooleanField(default=True, help_text="Send orders post-only; never cross the book.")

    # --- InventoryConfig ---
    target_ratios = models.JSONField(
        default=dict, blank=True, help_text='Per pair target base ratio, e.g. {"BTC/USDT": 0.5}.'
    )
    rebalance_thresholds = models.JSONField(
        default=dict, blank=True, help_text='Per pair rebalance threshold, e.g. {"BTC/USDT": 0.1}.'
    )
    default_rebalance_threshold = models.FloatField(
        default=0.15, help_text="|ratio − target| above which a rebalancing trade is made."
    )
    min_trade_value_quote = money_field("10", help_text="Smallest rebalancing trade, quote currency.")
    max_rebalance_slippage_bps = models.FloatField(
        default=50.0, help_text="Rebalancing trades are IOC limits at most this far through the mid, bps."
    )
    # --- scheduled rebalancing (beyond the every-cycle threshold check): every pair to its target ---
    rebalance_schedule_enabled = models.BooleanField(
        default=False, help_text="Also trade every pair back to its target on the schedule below.")
    rebalance_crontab = models.CharField(
        max_length=100, default="0 * * * *", validators=[validate_crontab],
        help_text="When, in UTC, as a crontab: minute hour day-of-month month day-of-week (e.g. 0 */4 * * *).")
    rebalance_schedule_since = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When the schedule was last switched on or changed: fire times before it are not run.")

    # --- reference price (a pair quoted on several venues) ---
    reference_price = models.CharField(
        max_length=16, default=REFERENCE_OWN, choices=REFERENCE_PRICE_CHOICES,
        help_text="The mid each venue's quotes are centred on: its own, one chosen venue's, or a composite of "
                  "the healthy venues' (median, or weighted by the depth near the mid).")
    reference_venue = models.CharField(
        max_length=32, blank=True, default="", choices=EXCHANGE_CHOICES,
        help_text="The venue whose mid every venue follows, for 'one venue's mid' (one of the bot's accounts' venues).")

    # --- cross-venue hedging (bots/engine/hedging.py) ---
    hedge_enabled = models.BooleanField(
        default=False, help_text="Hedge every fill of a quote on a hedged account at once with an IOC on the hedge "
                                 "account: the opposite side, the base the fill moved.")
    hedge_account = models.ForeignKey(
        ExchangeAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="One of the bot's exchange accounts, on another venue or key than the ones it hedges. It only "
                  "hedges: the bot quotes nothing there. Its venue must list every pair of the bot.")
    hedged_accounts = models.ManyToManyField(
        ExchangeAccount, blank=True, related_name="+",
        help_text="The maker accounts whose fills are hedged. None ticked: every account of the bot but the hedge "
                  "account.")
    hedge_max_slippage_bps = models.FloatField(
        default=20.0, help_text="A hedge buys at most this far above, or sells at most this far below, the maker "
                                "fill's price (its IOC limit): what is not filled within it is a slippage breach, "
                                "and that maker account stops quoting the pair until the hedge is done or accepted.")

    # --- RiskLimits ---
    max_position_quote = money_field("100000", help_text="Largest inventory value per pair, quote currency.")
    max_daily_loss_quote = money_field("1000", help_text="Daily loss that pauses quoting, quote currency.")
    max_drawdown_ratio = models.FloatField(default=0.1, help_text="Largest fall from the equity peak (fraction).")
    inventory_deviation_limit = models.FloatField(
        default=0.3, help_text="Largest |ratio − target| before a forced rebalance."
    )
    volatility_pause_threshold = models.FloatField(
        default=0.1, help_text="Daily volatility (fraction) above which quoting widens or pauses."
    )
    max_open_orders = models.PositiveIntegerField(default=50, help_text="Open orders per bot, all pairs.")
    price_collar_bps = models.FloatField(default=500.0, help_text="Orders further than this from the mid are denied.")
    volatility_spread_widen_factor = models.FloatField(
        default=2.0, help_text="Spread multiplier applied on a MARKET_VOLATILITY risk event."
    )
    position_size_reduction_factor = models.FloatField(
        default=0.5, help_text="Size multiplier on the growing side on a POSITION_LIMIT_EXCEEDED event."
    )

    # --- state ---
    status = models.CharField(max_length=16, choices=BotStatus.choices, default=BotStatus.STOPPED)
    epoch = models.PositiveIntegerField(default=0, help_text="Bumped at each start; fences stale cycles.")
    status_reason = models.TextField(blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    kill_switch_engaged = models.BooleanField(default=False)
    cycle_count = models.PositiveBigIntegerField(default=0)
    last_cycle_started_at = models.DateTimeField(null=True, blank=True)
    last_cycle_finished_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    daily_reset_at = models.DateTimeField(null=True, blank=True)
    daily_pnl_baseline_quote = money_field("0")
    equity_high_water_quote = money_field("0")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_bot_name_per_tenant")]
        ordering = ["tenant_id", "name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Bot:
        instance = super().from_db(db, field_names, values)
        instance._schedule_as_loaded = instance._rebalance_schedule()
        return instance

    def _rebalance_schedule(self) -> tuple[Any, Any]:
        return self.__dict__.get("rebalance_schedule_enabled"), self.__dict__.get("rebalance_crontab")

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A schedule switched on or changed takes effect from its next fire time (``rebalance_schedule_since``)."""
        schedule = self._rebalance_schedule()
        if self.rebalance_schedule_enabled and schedule != getattr(self, "_schedule_as_loaded", None):
            from django.utils import timezone

            self.rebalance_schedule_since = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "rebalance_schedule_since"}
        super().save(*args, **kwargs)
        self._schedule_as_loaded = schedule

    @property
    def pairs(self) -> list[str]:
        return [p.strip() for p in self.trading_pairs.split(",") if p.strip()]

    def strategy_config(self) -> StrategyConfig:
        return StrategyConfig(**{name: getattr(self, name) for name in StrategyConfig.__dataclass_fields__})

    def order_config(self) -> OrderConfig:
        return OrderConfig(**{name: getattr(self, name) for name in OrderConfig.__dataclass_fields__})

    def risk_limits(self) -> RiskLimits:
        return RiskLimits(**{name: getattr(self, name) for name in RiskLimits.__dataclass_fields__})

    def inventory_config(self) -> InventoryConfig:
        return InventoryConfig(**{name: getattr(self, name) for name in InventoryConfig.__dataclass_fields__})

    def hedge_config(self, hedged_keys: tuple[str, ...] | None = None) -> HedgeConfig:
        """The hedging settings, accounts as engine keys (``hedged_keys`` given when the M2M is not saved)."""
        if hedged_keys is None:
            hedged_keys = tuple(f"account-{pk}" for pk in self.hedged_accounts.values_list("pk", flat=True)) \
                if self.pk is not None and self.hedge_enabled else ()
        return HedgeConfig(
            hedge_enabled=self.hedge_enabled,
            hedge_account=f"account-{self.hedge_account_id}" if self.hedge_account_id else "",
            hedged_accounts=hedged_keys,
            hedge_max_slippage_bps=self.hedge_max_slippage_bps,
        )

    def to_config(self, exchange_keys: tuple[str, ...] | None = None) -> MarketMakingConfig:
        """The pure config the engine runs (exchange keys given when the M2M is not saved yet)."""
        if exchange_keys is None:
            exchange_keys = tuple(f"account-{pk}" for pk in self.exchange_accounts.values_list("pk", flat=True))
        return MarketMakingConfig(
            bot_id=str(self.pk),
            exchanges=exchange_keys,
            trading_pairs=tuple(self.pairs),
            strategy_settings=self.strategy_config(),
            inventory_settings=self.inventory_config(),
            risk_limits=self.risk_limits(),
            order_settings=self.order_config(),
            hedge_settings=self.hedge_config(hedged_keys=() if exchange_keys == PENDING_ACCOUNTS else None),
            monitoring_interval_secs=self.monitoring_interval_secs,
            error_recovery_delay_secs=self.error_recovery_delay_secs,
            min_order_size_quote=self.min_order_size_quote,
            max_order_size_quote=self.max_order_size_quote,
            performance_tracking=self.performance_tracking,
            metrics_interval_secs=self.metrics_interval_secs,
        )

    def clean(self) -> None:
        """Field-level errors from the one validation (bots.config.validate_market_making_config)."""
        config = self.to_config(exchange_keys=PENDING_ACCOUNTS)
        errors = config_errors(config)
        errors.update(self.reference_errors())
        if errors:
            field_names = {f.name for f in self._meta.get_fields()}
            raise ValidationError(
                {(name if name in field_names else "__all__"): messages for name, messages in errors.items()}
            )


    def reference_errors(self, exchange_ids: set[str] | None = None) -> dict[str, list[str]]:
        """The reference price's field errors; ``exchange_ids``: the venues of the bot's accounts when
        known (the admin form passes the accounts it is saving)."""
        from exchanges.venues import VENUES

        if self.reference_price != REFERENCE_VENUE:
            if self.reference_venue:
                return {"reference_venue": ["Only for 'One chosen venue's mid'; leave it empty."]}
            return {}
        if not self.reference_venue:
            return {"reference_venue": ["Choose the venue whose mid every venue follows."]}
        if self.reference_venue not in VENUES:
            return {"reference_venue": [f"Unknown venue {self.reference_venue!r}; one of {', '.join(VENUES)}."]}
        if exchange_ids is not None and self.reference_venue not in exchange_ids:
            return {"reference_venue": [f"None of the bot's exchange accounts is on {self.reference_venue} "
                                        f"(its venues: {', '.join(sorted(exchange_ids)) or 'none'})."]}
        return {}

    def hedge_errors(self, accounts: list[ExchangeAccount], hedged: list[ExchangeAccount]) -> dict[str, list[str]]:
        """The hedging settings against the accounts the bot is saved with (the admin form passes them):
        the hedge account is one of them and not one it hedges, a bot account of the same firm is left to
        quote on. Whether its venue lists the pairs is checked on the venue (``bots.admin``)."""
        hedge = self.hedge_config(hedged_keys=tuple(f"account-{a.pk}" for a in hedged))
        errors = hedge_account_errors(hedge, tuple(f"account-{a.pk}" for a in accounts))
        if self.hedge_account_id is not None and self.hedge_account_id in {a.pk for a in hedged}:
            errors["hedged_accounts"] = [f"{self.hedge_account} is the hedge account: it cannot hedge its own "
                                         "fills; untick it."]
        if "hedge_account" in errors and self.hedge_account_id not in {a.pk for a in accounts}:
            labels = ", ".join(a.label for a in accounts) or "none"
            errors["hedge_account"] = [f"{self.hedge_account} is not one of the bot's exchange accounts "
                                       f"(ticked: {labels})."]
        if "hedged_accounts" in errors and not errors["hedged_accounts"][0].endswith("untick it."):
            ids = {a.pk for a in accounts}
            errors["hedged_accounts"] = ["Not among the bot's exchange accounts: "
                                         + ", ".join(a.label for a in hedged if a.pk not in ids) + "."]
        if not errors and self.hedge_enabled and self.hedge_account is not None:
            makers = [a for a in (hedged or accounts) if a.pk != self.hedge_account_id]
            same = [a.label for a in makers if same_venue_key(a, self.hedge_account)]
            if same:
                errors["hedge_account"] = [f"The hedge account is the same venue and key as {', '.join(same)}: a "
                                           "hedge would trade against the quotes it hedges."]
        return errors


class LiquidityPosition(TenantOwned):
    """One pair a bot makes a market in (spec LiquidityPosition), with its running accounting."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="positions")
    exchange_account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="+")
    trading_pair = models.CharField(max_length=40)
    strategy_type = models.CharField(max_length=32, blank=True, default="")
    strategy_params = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    base_position = money_field("0", help_text="Net base bought minus sold by this bot, less fees paid in base.")
    cost_basis_quote = money_field(
        "0", help_text="What the open position cost, quote currency (negative for a short); see bots/accounting.py.")
    average_cost = money_field("0", help_text="Average cost of the open base position, quote per base (shown only).")
    realised_pnl_quote = money_field("0")
    fees_paid_quote = money_field("0")
    volume_quote = money_field("0")
    fill_count = models.PositiveIntegerField(default=0)
    last_trade_sync_ms = models.BigIntegerField(default=0, help_text="Exchange time of the last trade synced.")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "exchange_account", "trading_pair"],
                condition=models.Q(is_active=True),
                name="uniq_active_position_per_bot_account_pair",
            )
        ]
        ordering = ["bot_id", "trading_pair"]

    def __str__(self) -> str:
        return f"{self.bot} {self.trading_pair} on {self.exchange_account_id}"

    def unrealised_pnl_quote(self, mid: Decimal) -> Decimal:
        """The open position marked to ``mid`` against its cost basis (exact; bots/accounting.py)."""
        from bots.accounting import unrealised_pnl_quote

        return unrealised_pnl_quote(self.base_position, self.cost_basis_quote, mid)


class OrderSide(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (stored, not yet acknowledged)"
    OPEN = "open", "Open"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCEL_PENDING = "cancel_pending", "Cancel pending"
    CANCELED = "canceled", "Canceled"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    LOST = "lost", "Lost (never found on the exchange)"


OPEN_ORDER_STATUSES = (
    OrderStatus.PENDING,
    OrderStatus.OPEN,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.CANCEL_PENDING,
)


class OrderPurpose(models.TextChoices):
    QUOTE = "quote", "Quote"
    REBALANCE = "rebalance", "Rebalance"
    HEDGE = "hedge", "Hedge"


class Order(TenantOwned):
    """An order of a bot. The client order id is stored before the order is sent."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="orders")
    position = models.ForeignKey(
        LiquidityPosition, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    exchange_account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="+")
    trading_pair = models.CharField(max_length=40)
    client_order_id = models.CharField(max_length=36, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    order_type = models.CharField(max_length=16, default="limit")
    time_in_force = models.CharField(max_length=3, default="GTC", choices=[("GTC", "GTC"), ("IOC", "IOC")])
    purpose = models.CharField(max_length=16, choices=OrderPurpose.choices, default=OrderPurpose.QUOTE)
    post_only = models.BooleanField(default=True)
    price = money_field()
    amount = money_field()
    filled = money_field("0")
    average_price = money_field(null=True, blank=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    epoch = models.PositiveIntegerField(default=0)
    cycle = models.PositiveBigIntegerField(default=0)
    level = models.IntegerField(default=0)
    missing_count = models.PositiveSmallIntegerField(
        default=0, help_text="Consecutive lookups in which the exchange did not know the order."
    )
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["bot", "status"], name="order_bot_status"),
            models.Index(fields=["exchange_account", "exchange_order_id"], name="order_account_exchange_id"),
            models.Index(fields=["status", "closed_at"], name="order_status_closed"),  # retention
            # the open rows of an account's pair (the quote guard's read of the other bots' orders, under the
            # guard: rows.other_bots_open_orders); only open rows, so it stays small as the table grows
            models.Index(fields=["exchange_account", "trading_pair"], name="order_open_account_pair",
                         condition=models.Q(status__in=OPEN_ORDER_STATUSES)),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="order_price_positive"),
            models.CheckConstraint(condition=models.Q(filled__gte=0), name="order_filled_non_negative"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.trading_pair} @ {self.price} ({self.status})"

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


class Fill(TenantOwned):
    """An execution of one of a bot's orders. Unique per account and exchange trade id."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="fills")
    order = models.ForeignKey(Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="fills")
    position = models.ForeignKey(
        LiquidityPosition, on_delete=models.SET_NULL, null=True, blank=True, related_name="fills"
    )
    exchange_account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="+")
    exchange_trade_id = models.CharField(max_length=64)
    trading_pair = models.CharField(max_length=40)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    price = money_field()
    amount = money_field()
    fee = money_field("0")
    fee_currency = models.CharField(max_length=16, blank=True, default="")
    fee_quote = money_field("0", help_text="The fee valued in quote currency.")
    is_maker = models.BooleanField(default=True)
    is_hedge = models.BooleanField(default=False, help_text="A fill of a hedge order (cross-venue hedging).")
    mid_at_fill = money_field(null=True, blank=True, help_text="Mid price when the fill was detected.")
    executed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["exchange_account", "exchange_trade_id"], name="uniq_fill_account_trade"
            )
        ]
        indexes = [models.Index(fields=["bot", "executed_at"], name="fill_bot_time")]
        ordering = ["-executed_at"]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.trading_pair} @ {self.price}"


class HedgeStatus(models.TextChoices):
    PENDING = "pending", "Pending (to be sent)"
    HEDGED = "hedged", "Hedged"
    CARRIED = "carried", "Carried (below the hedge venue's minimum: hedged with the next fill)"
    SLIPPAGE = "slippage", "Slippage breach (not filled within the limit)"
    FAILED = "failed", "Failed (the hedge venue refused or did not answer)"
    ACCEPTED = "accepted", "Exposure accepted by an operator"


OPEN_HEDGE_STATUSES = (HedgeStatus.SLIPPAGE, HedgeStatus.FAILED)
"""A hedge in one of these is unresolved: its maker account quotes nothing on its pair until it is hedged
(a retry) or its exposure accepted (an operator)."""


class Hedge(TenantOwned):
    """What one maker fill owes the hedge venue (bots/engine/hedging.py), created with the Fill in one
    transaction (exactly once per fill). ``need_base`` is signed (+: the hedge buys); ``amount`` is the
    IOC's size after rounding to the hedge venue's lot with the carried remainders of earlier fills;
    ``carry_base`` (signed) is what was left below the venue's lot or minimum, hedged with a later fill."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="hedges")
    fill = models.OneToOneField(Fill, on_delete=models.CASCADE, related_name="hedge")
    maker_account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="+")
    hedge_account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="+")
    trading_pair = models.CharField(max_length=40)
    need_base = money_field(help_text="The base the maker fill moved, negated: what the hedge trades (+ buys).")
    side = models.CharField(max_length=4, choices=OrderSide.choices, blank=True, default="")
    amount = money_field("0", help_text="The hedge's size, base (rounded to the hedge venue's lot).")
    hedged = money_field("0", help_text="What the hedge orders filled, base.")
    carry_base = money_field("0", help_text="Left below the hedge venue's lot or minimum, signed: hedged later.")
    carried_into = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                     help_text="The hedge that took this one's carried remainder over.")
    reference_price = money_field(help_text="The maker fill's price: the limit is this ± the maximum slippage.")
    limit_price = money_field(null=True, blank=True)
    order = models.ForeignKey("Order", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                              help_text="The latest attempt's IOC.")
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=HedgeStatus.choices, default=HedgeStatus.PENDING)
    reason = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="",
                                   help_text="'retry' (the engine), or the operator who accepted the exposure.")

    class Meta:
        indexes = [models.Index(fields=["bot", "status"], name="hedge_bot_status")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"hedge {self.side} {self.amount} {self.trading_pair} ({self.status})"

    @property
    def open_base(self) -> Decimal:
        """Signed base still owed by this hedge (+: to buy): its unfilled amount, or its need before it was
        sized; a carried remainder is counted apart (``carry_base``)."""
        if self.status in (HedgeStatus.HEDGED, HedgeStatus.CARRIED, HedgeStatus.ACCEPTED):
            return Decimal(0)
        if not self.side:
            return self.need_base
        rest = self.amount - self.hedged
        return rest if self.side == OrderSide.BUY else -rest


class BotEventType(models.TextChoices):
    EXCHANGE_CONNECTED = "ExchangeConnected"
    MARKET_MAKING_STARTED = "MarketMakingStarted"
    MARKET_MAKING_STOPPED = "MarketMakingStopped"
    ORDERS_PLACED = "OrdersPlaced"
    ORDERS_ADJUSTED = "OrdersAdjusted"
    ORDER_FILLED = "OrderFilled"
    INVENTORY_REBALANCED = "InventoryRebalanced"
    RISK_EVENT_HANDLED = "RiskEventHandled"
    STRATEGY_ADAPTED = "StrategyAdapted"
    BOT_ERROR = "BotError"
    KILL_SWITCH = "KillSwitchEngaged"
    KILL_SWITCH_RELEASED = "KillSwitchReleased"
    RECONCILED = "Reconciled"
    SLA_BREACHED = "SlaBreached"
    SLA_AT_RISK = "SlaAtRisk"
    SLA_RECOVERED = "SlaRecovered"


class BotEvent(TenantOwned):
    """One row per spec event; the same payload is pushed to the dashboard. Routine events
    (``bots.events.ROUTINE_EVENTS``, e.g. ``OrdersAdjusted``) are stored as one summary row per bot,
    pair and minute (``bucket_start`` set): their counts summed in ``payload``, ``occurrences`` events
    from ``created_at`` to ``last_at``; every one of them is still pushed live."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="events")
    event_type = models.CharField(max_length=40, choices=BotEventType.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    trading_pair = models.CharField(max_length=40, blank=True, default="",
                                    help_text="The pair a summary row counts (routine events only).")
    bucket_start = models.DateTimeField(
        null=True, blank=True, help_text="The minute a summary row counts; empty for a one-off event.")
    occurrences = models.PositiveIntegerField(default=1, help_text="Events this row stands for.")
    last_at = models.DateTimeField(null=True, blank=True, help_text="The latest event a summary row counts.")

    class Meta:
        indexes = [models.Index(fields=["bot", "-created_at"], name="event_bot_time")]
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "event_type", "trading_pair", "bucket_start"],
                condition=models.Q(bucket_start__isnull=False), name="uniq_event_summary_per_minute")
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_type} ({self.bot_id})"


class PerformanceSnapshot(TenantOwned):
    """A bot's performance at a moment, for charts."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="performance_snapshots")
    taken_at = models.DateTimeField(db_index=True)
    realised_pnl_quote = money_field("0")
    unrealised_pnl_quote = money_field("0")
    fees_paid_quote = money_field("0")
    volume_quote = money_field("0")
    fill_count = models.PositiveIntegerField(default=0)
    inventory_value_quote = money_field("0")
    equity_quote = money_field("0")
    spread_capture_bps = models.FloatField(default=0.0)
    quote_uptime_ratio = models.FloatField(default=0.0)

    class Meta:
        indexes = [models.Index(fields=["bot", "-taken_at"], name="perf_bot_time")]
        ordering = ["-taken_at"]


class InventorySnapshot(TenantOwned):
    """A pair's inventory at a moment, for charts."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="inventory_snapshots")
    trading_pair = models.CharField(max_length=40)
    taken_at = models.DateTimeField(db_index=True)
    base_balance = money_field("0")
    quote_balance = money_field("0")
    mid_price = money_field("0")
    base_value_quote = money_field("0")
    ratio = models.FloatField(default=0.0)
    target_ratio = models.FloatField(default=0.5)

    class Meta:
        indexes = [models.Index(fields=["bot", "-taken_at"], name="inv_bot_time")]
        ordering = ["-taken_at"]


class RebalanceRun(TenantOwned):
    """Exactly one scheduled rebalance per (bot, slot): the unique constraint is the guarantee."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="rebalance_runs")
    slot_start = models.DateTimeField()
    trigger = models.CharField(max_length=16, default="schedule")
    trades_executed = models.PositiveIntegerField(default=0)
    outcome = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bot", "slot_start"], name="uniq_rebalance_per_slot")]
        ordering = ["-slot_start"]

    @classmethod
    def claim(cls, *, bot: Bot, slot_start: Any, trigger: str = "schedule") -> RebalanceRun | None:
        """Claim the (bot, slot) rebalance; None when another beat/worker already did (unique row)."""
        from django.db import IntegrityError, transaction

        try:
            with transaction.atomic():
                return cls.objects.create(tenant_id=bot.tenant_id, bot=bot, slot_start=slot_start, trigger=trigger)
        except IntegrityError:
            return None
