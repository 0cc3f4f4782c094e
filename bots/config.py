"""The spec's configuration schema (MarketMakingConfig, InventoryConfig) and its validation.

Pure: no Django, no ccxt. The Bot model mirrors these fields one to one (a test guards the
defaults against drift); ``validate_market_making_config`` is the single validation used by the
admin, the dashboard and the engine, so a bad config gets the same field-level errors everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mmplatform.errors import ConfigValidationError
from risk.limits import RiskLimits
from strategies.config import FieldChecker, OrderConfig, StrategyConfig, coerce_numbers
from strategies.pipeline import QuotingRules
from strategies.types import RiskContext

TRADING_PAIR_PATTERN = re.compile(r"^[A-Z]+/[A-Z]+$")

PENDING_ACCOUNTS = ("pending",)
"""The exchange keys of a config whose accounts are not saved yet (a form's model validation): the
checks that need the accounts are the form's (``Bot.hedge_errors``)."""


@dataclass(frozen=True, slots=True)
class InventoryConfig:
    """Inventory targets and rebalancing (spec InventoryConfig)."""

    target_ratios: dict[str, float] = field(default_factory=dict)
    """Per pair: target base value / total value (0..1); pairs not listed use inventory_target_ratio."""
    rebalance_thresholds: dict[str, float] = field(default_factory=dict)
    """Per pair: |ratio - target| above which a rebalancing trade is made."""
    default_rebalance_threshold: float = 0.15
    """Threshold for pairs without their own (spec default_threshold)."""
    min_trade_value_quote: float = 10.0
    """Rebalancing trades smaller than this (quote currency) are skipped (spec min_trade_value)."""
    max_rebalance_slippage_bps: float = 50.0
    """A rebalancing trade is an IOC limit at most this far through the mid."""

    def __post_init__(self) -> None:
        coerce_numbers(self)

    def validate(self) -> dict[str, list[str]]:
        c = FieldChecker(self)
        for name in ("target_ratios", "rebalance_thresholds"):
            mapping = getattr(self, name)
            if not isinstance(mapping, dict):
                c.add(name, f"must be a mapping of trading pair to a number between 0 and 1, got {mapping!r}")
                continue
            for pair, value in mapping.items():
                if not isinstance(pair, str) or not TRADING_PAIR_PATTERN.match(pair):
                    c.add(name, f"{pair!r} is not a trading pair like BTC/USDT")
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    c.add(name, f"{pair}: must be a number between 0 and 1, got {value!r}")
        c.ratio("default_rebalance_threshold")
        c.non_negative("min_trade_value_quote")
        c.positive("max_rebalance_slippage_bps")
        return c.errors


MAX_HEDGE_SLIPPAGE_BPS = 1000.0
"""The widest hedge slippage accepted (10 %): beyond it an IOC is no longer a hedge but a market order."""


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """Cross-venue hedging: each fill of a quote on a hedged maker account is hedged by an IOC on the
    hedge account (opposite side, the base the fill moved), limited to ``hedge_max_slippage_bps`` from
    the fill's price, so the round trip never loses more than that to the hedge's price."""

    hedge_enabled: bool = False
    hedge_account: str = ""
    """The account key (``account-<id>``) hedges are sent on; it only hedges (quotes nothing)."""
    hedged_accounts: tuple[str, ...] = ()
    """The maker accounts whose fills are hedged; empty: every account of the bot but the hedge account."""
    hedge_max_slippage_bps: float = 20.0
    """A hedge buys at most this far above (sells at most this far below) the maker fill's price."""

    def __post_init__(self) -> None:
        coerce_numbers(self)

    def validate(self) -> dict[str, list[str]]:
        c = FieldChecker(self)
        c.boolean("hedge_enabled")
        slippage = c.positive("hedge_max_slippage_bps")
        if slippage is not None and slippage > MAX_HEDGE_SLIPPAGE_BPS:
            c.add("hedge_max_slippage_bps", f"must be at most {MAX_HEDGE_SLIPPAGE_BPS:g} bps, got {slippage!r}")
        account, hedged = self.hedge_account, self.hedged_accounts
        if not isinstance(account, str):
            c.add("hedge_account", f"must be an exchange account key, got {account!r}"[:200])
        elif self.hedge_enabled is True and not account:
            c.add("hedge_account", "choose the exchange account hedges are sent on")
        if not isinstance(hedged, (tuple, list)) or not all(isinstance(key, str) for key in hedged):
            c.add("hedged_accounts", f"must be a list of exchange account keys, got {hedged!r}"[:200])
        elif isinstance(account, str) and account and account in hedged:
            c.add("hedged_accounts", "the hedge account cannot hedge its own fills; leave it out")
        return c.errors


def hedge_account_errors(hedge: HedgeConfig, exchanges: tuple[str, ...]) -> dict[str, list[str]]:
    """The hedge accounts against the bot's accounts (``exchanges``, their keys): the hedge account is one
    of them, so is every hedged account, and at least one account is left to quote on."""
    if hedge.hedge_enabled is not True or not hedge.hedge_account or not isinstance(hedge.hedge_account, str):
        return {}  # off, or a malformed setting HedgeConfig.validate reports
    if not isinstance(hedge.hedged_accounts, (tuple, list)):
        return {}
    errors: dict[str, list[str]] = {}
    if hedge.hedge_account not in exchanges:
        errors["hedge_account"] = ["must be one of the bot's exchange accounts"]
    elif not [key for key in exchanges if key != hedge.hedge_account]:
        errors["hedge_account"] = ["the bot needs another exchange account to quote on (the hedge account "
                                   "only hedges)"]
    foreign = [str(key) for key in hedge.hedged_accounts if key not in exchanges]
    if foreign:
        errors["hedged_accounts"] = [f"not accounts of the bot: {', '.join(foreign)}"]
    return errors


@dataclass(frozen=True, slots=True)
class MarketMakingConfig:
    """One bot's whole configuration (spec MarketMakingConfig)."""

    bot_id: str
    exchanges: tuple[str, ...]
    """Exchange account keys the bot trades on."""
    trading_pairs: tuple[str, ...]
    strategy_settings: StrategyConfig = field(default_factory=StrategyConfig)
    inventory_settings: InventoryConfig = field(default_factory=InventoryConfig)
    risk_limits: RiskLimits = field(default_factory=RiskLimits)
    order_settings: OrderConfig = field(default_factory=OrderConfig)
    hedge_settings: HedgeConfig = field(default_factory=HedgeConfig)
    monitoring_interval_secs: float = 5.0
    error_recovery_delay_secs: float = 10.0
    min_order_size_quote: float = 10.0
    """Smallest order value (quote currency); smaller intents are dropped (spec min_order_size)."""
    max_order_size_quote: float = 10000.0
    """Largest order value (quote currency) (spec max_order_size)."""
    performance_tracking: bool = True
    metrics_interval_secs: float = 60.0

    def __post_init__(self) -> None:
        coerce_numbers(self)

    def quoting_rules(self) -> QuotingRules:
        """The order settings ``strategies.pipeline.decide`` applies (live engine and backtester alike)."""
        return QuotingRules(
            min_order_size_quote=float(self.min_order_size_quote),
            max_order_size_quote=float(self.max_order_size_quote),
            order_refresh_tolerance_bps=self.order_settings.order_refresh_tolerance_bps,
            order_refresh_secs=self.order_settings.order_refresh_secs,
        )

    def pair_risk(self, spread_multiplier: float = 1.0) -> RiskContext:
        """The per-pair limits the strategy quotes within (spec ``get_pair_limits``); ``spread_multiplier``
        is a MARKET_VOLATILITY widening in force."""
        return RiskContext(
            min_order_size_quote=float(self.min_order_size_quote),
            max_order_size_quote=float(self.max_order_size_quote),
            max_position_quote=float(self.risk_limits.max_position_quote),
            volatility_pause_threshold=float(self.risk_limits.volatility_pause_threshold),
            spread_multiplier=spread_multiplier,
        )


def _validate_top_level(config: MarketMakingConfig) -> dict[str, list[str]]:
    c = FieldChecker(config)
    if not isinstance(config.exchanges, (tuple, list)) or not all(isinstance(e, str) for e in config.exchanges):
        c.add("exchanges", f"must be a list of exchange account keys, got {config.exchanges!r}"[:200])
    elif not config.exchanges:
        c.add("exchanges", "at least one exchange account is required")
    pairs = config.trading_pairs
    if not isinstance(pairs, (tuple, list)):
        c.add("trading_pairs", f"must be a list of trading pairs like BTC/USDT, got {pairs!r}"[:200])
        pairs = ()
    elif not pairs:
        c.add("trading_pairs", "at least one trading pair is required")
    for pair in pairs:
        if not isinstance(pair, str) or not TRADING_PAIR_PATTERN.match(pair):
            c.add("trading_pairs", f"{pair!r} is not a trading pair like BTC/USDT (upper-case BASE/QUOTE)")
    if all(isinstance(p, str) for p in pairs) and len(set(pairs)) != len(pairs):
        c.add("trading_pairs", "a trading pair is listed twice")
    interval = c.positive("monitoring_interval_secs")
    if interval is not None and interval < 0.05:
        c.add("monitoring_interval_secs", f"must be at least 0.05 s, got {interval!r}")
    c.non_negative("error_recovery_delay_secs")
    low = c.positive("min_order_size_quote")
    high = c.positive("max_order_size_quote")
    if low is not None and high is not None and low > high:
        c.add("min_order_size_quote", f"must not exceed max_order_size_quote ({high!r}), got {low!r}")
    c.boolean("performance_tracking")
    c.positive("metrics_interval_secs")
    return c.errors


def config_errors(config: MarketMakingConfig) -> dict[str, list[str]]:
    """All field-level problems of a config, keyed by bare field name (names are unique across parts)."""
    errors: dict[str, list[str]] = {}
    parts: list[Any] = [
        config.strategy_settings,
        config.inventory_settings,
        config.risk_limits,
        config.order_settings,
        config.hedge_settings,
    ]
    for found in [_validate_top_level(config)] + [part.validate() for part in parts]:
        for name, messages in found.items():
            errors.setdefault(name, []).extend(messages)
    order = config.order_settings
    size = order.order_size_quote
    if "order_size_quote" not in errors and not errors.get("min_order_size_quote") and not errors.get(
        "max_order_size_quote"
    ) and not config.min_order_size_quote <= size <= config.max_order_size_quote:
        errors.setdefault("order_size_quote", []).append(
            f"must be between min_order_size_quote ({config.min_order_size_quote!r}) and "
            f"max_order_size_quote ({config.max_order_size_quote!r}), got {size!r}"
        )
    if not _validate_top_level(config).get("exchanges") and config.exchanges != PENDING_ACCOUNTS:
        for name, messages in hedge_account_errors(config.hedge_settings, tuple(config.exchanges)).items():
            errors.setdefault(name, []).extend(messages)
    targets = config.inventory_settings.target_ratios
    if isinstance(targets, dict):
        for pair in targets:
            if pair not in config.trading_pairs:
                errors.setdefault("target_ratios", []).append(f"{pair!r} is not one of the bot's trading pairs")
    return errors


def validate_market_making_config(config: MarketMakingConfig) -> MarketMakingConfig:
    """Return the config if valid, else raise ConfigValidationError with every field's problems."""
    errors = config_errors(config)
    if errors:
        raise ConfigValidationError(errors)
    return config
