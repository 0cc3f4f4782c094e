"""Bad configuration is rejected with field-level errors, in the pure validator and in the admin."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from bots.config import HedgeConfig, InventoryConfig, MarketMakingConfig, validate_market_making_config
from bots.models import Bot
from mmplatform.errors import ConfigValidationError
from risk.limits import RiskLimits
from strategies.config import OrderConfig, StrategyConfig
from tests.conftest import PASSWORD, TenantWorld


def base_config(**top: Any) -> MarketMakingConfig:
    fields: dict[str, Any] = {"bot_id": "1", "exchanges": ("account-1",), "trading_pairs": ("BTC/USDT",), **top}
    return MarketMakingConfig(**fields)


def with_part(part: str, **changes: Any) -> MarketMakingConfig:
    config = base_config()
    return dataclasses.replace(config, **{part: dataclasses.replace(getattr(config, part), **changes)})


BAD_CONFIGS = [
    # (description, config, field expected in the errors)
    ("negative min size", base_config(min_order_size_quote=-1), "min_order_size_quote"),
    ("zero max size", base_config(max_order_size_quote=0), "max_order_size_quote"),
    ("min > max size", base_config(min_order_size_quote=500, max_order_size_quote=100), "min_order_size_quote"),
    ("negative interval", base_config(monitoring_interval_secs=-5), "monitoring_interval_secs"),
    ("NaN interval", base_config(monitoring_interval_secs=math.nan), "monitoring_interval_secs"),
    ("malformed pair", base_config(trading_pairs=("btc-usdt",)), "trading_pairs"),
    ("lower-case pair", base_config(trading_pairs=("btc/usdt",)), "trading_pairs"),
    ("no pairs", base_config(trading_pairs=()), "trading_pairs"),
    ("duplicate pair", base_config(trading_pairs=("BTC/USDT", "BTC/USDT")), "trading_pairs"),
    ("no exchanges", base_config(exchanges=()), "exchanges"),
    ("unknown strategy", with_part("strategy_settings", default_strategy="MOON"), "default_strategy"),
    ("target ratio > 1", with_part("strategy_settings", inventory_target_ratio=1.5), "inventory_target_ratio"),
    ("target ratio < 0", with_part("strategy_settings", inventory_target_ratio=-0.1), "inventory_target_ratio"),
    ("trend threshold > 1", with_part("strategy_settings", strong_trend_threshold=2), "strong_trend_threshold"),
    ("zero grid levels", with_part("strategy_settings", grid_levels=0), "grid_levels"),
    ("negative spread", with_part("strategy_settings", spread_bps=-1), "spread_bps"),
    ("negative volatility threshold", with_part("strategy_settings", high_volatility_threshold=-1),
     "high_volatility_threshold"),
    ("negative order size", with_part("order_settings", order_size_quote=-10), "order_size_quote"),
    ("min spread > max spread", with_part("order_settings", min_spread_bps=50, max_spread_bps=10), "min_spread_bps"),
    ("floor above ceiling", with_part("order_settings", price_floor=200.0, price_ceiling=100.0), "price_floor"),
    ("negative max position", with_part("risk_limits", max_position_quote=-1), "max_position_quote"),
    ("zero daily loss", with_part("risk_limits", max_daily_loss_quote=0), "max_daily_loss_quote"),
    ("drawdown > 1", with_part("risk_limits", max_drawdown_ratio=1.5), "max_drawdown_ratio"),
    ("deviation > 1", with_part("risk_limits", inventory_deviation_limit=1.2), "inventory_deviation_limit"),
    ("negative volatility pause", with_part("risk_limits", volatility_pause_threshold=-0.1),
     "volatility_pause_threshold"),
    ("zero max open orders", with_part("risk_limits", max_open_orders=0), "max_open_orders"),
    ("per-pair target > 1", with_part("inventory_settings", target_ratios={"BTC/USDT": 2}), "target_ratios"),
    ("per-pair target bad pair", with_part("inventory_settings", target_ratios={"BTC": 0.5}), "target_ratios"),
    ("rebalance threshold > 1", with_part("inventory_settings", default_rebalance_threshold=3),
     "default_rebalance_threshold"),
    ("negative min trade value", with_part("inventory_settings", min_trade_value_quote=-1), "min_trade_value_quote"),
    ("order size below min", with_part("order_settings", order_size_quote=1), "order_size_quote"),
    ("hedging without a hedge account", with_part("hedge_settings", hedge_enabled=True), "hedge_account"),
    ("zero hedge slippage", with_part("hedge_settings", hedge_max_slippage_bps=0), "hedge_max_slippage_bps"),
    ("negative hedge slippage", with_part("hedge_settings", hedge_max_slippage_bps=-5), "hedge_max_slippage_bps"),
    ("NaN hedge slippage", with_part("hedge_settings", hedge_max_slippage_bps=math.nan), "hedge_max_slippage_bps"),
    ("hedge slippage over 10 %", with_part("hedge_settings", hedge_max_slippage_bps=1500), "hedge_max_slippage_bps"),
    ("hedge account not the bot's", with_part("hedge_settings", hedge_enabled=True, hedge_account="account-9"),
     "hedge_account"),
    ("hedge account the only account", with_part("hedge_settings", hedge_enabled=True, hedge_account="account-1"),
     "hedge_account"),
    ("hedge account hedging itself", dataclasses.replace(base_config(exchanges=("account-1", "account-2")),
     hedge_settings=HedgeConfig(hedge_enabled=True, hedge_account="account-2", hedged_accounts=("account-2",))),
     "hedged_accounts"),
    ("hedged account not the bot's", dataclasses.replace(base_config(exchanges=("account-1", "account-2")),
     hedge_settings=HedgeConfig(hedge_enabled=True, hedge_account="account-2", hedged_accounts=("account-7",))),
     "hedged_accounts"),
]


@pytest.mark.parametrize(("description", "config", "field"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_validator_rejects_with_field_error(description: str, config: MarketMakingConfig, field: str) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        validate_market_making_config(config)
    assert field in caught.value.errors, caught.value.errors
    assert all(message for message in caught.value.errors[field])


def test_defaults_are_valid_and_returned() -> None:
    config = base_config()
    assert validate_market_making_config(config) is config


def test_model_defaults_mirror_the_config_dataclasses() -> None:
    """The Bot model and the pure config must not drift apart."""
    for cls in (StrategyConfig, OrderConfig, RiskLimits, InventoryConfig):
        for field in dataclasses.fields(cls):
            model_field = Bot._meta.get_field(field.name)
            default = model_field.get_default()
            expected = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            if isinstance(default, Decimal):
                default = float(default)
            assert default == expected, f"{cls.__name__}.{field.name}: model {default!r} != config {expected!r}"
    for name in ("hedge_enabled", "hedge_max_slippage_bps"):
        assert Bot._meta.get_field(name).get_default() == HedgeConfig.__dataclass_fields__[name].default, name
    for name in ("monitoring_interval_secs", "error_recovery_delay_secs", "min_order_size_quote",
                 "max_order_size_quote", "performance_tracking", "metrics_interval_secs"):
        default = Bot._meta.get_field(name).get_default()
        expected = MarketMakingConfig.__dataclass_fields__[name].default
        assert (float(default) if isinstance(default, Decimal) else default) == expected, name


ADMIN_BAD_VALUES = [
    ("min_order_size_quote", "-5"),
    ("max_order_size_quote", "0"),
    ("inventory_target_ratio", "1.7"),
    ("default_strategy", "MOON"),
    ("trading_pairs", "BTCUSDT"),
    ("max_drawdown_ratio", "3"),
    ("inventory_deviation_limit", "-0.2"),
    ("max_daily_loss_quote", "-100"),
    ("spread_bps", "NaN"),
    ("order_size_quote", "abc"),
    ("target_ratios", '{"BTC/USDT": 5}'),
    ("target_ratios", "not json"),
    ("grid_levels", "-3"),
]


def admin_payload(world: TenantWorld, bot: Bot) -> dict[str, Any]:
    from django.forms.models import model_to_dict

    data = model_to_dict(bot)
    payload: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("id", "epoch") or value is None:
            continue
        if key in ("exchange_accounts", "hedged_accounts"):
            payload[key] = [a.pk for a in value]
        elif key in ("target_ratios", "rebalance_thresholds"):
            import json

            payload[key] = json.dumps(value)
        elif isinstance(value, bool):
            if value:
                payload[key] = "on"
        else:
            payload[key] = str(value)
    for prefix in ("positions", "orders"):
        payload.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return payload


@pytest.mark.parametrize(("field", "value"), ADMIN_BAD_VALUES)
def test_admin_rejects_bad_config_with_field_error_and_saves_nothing(
    client: Any, world_a: TenantWorld, field: str, value: str
) -> None:
    client.login(username="a-operator", password=PASSWORD)
    bot = world_a.bot
    before = {f.attname: getattr(bot, f.attname) for f in Bot._meta.concrete_fields}
    payload = admin_payload(world_a, bot)
    assert client.post(reverse("admin:bots_bot_change", args=[bot.pk]), payload).status_code == 302, "valid save"
    bot.refresh_from_db()
    payload[field] = value
    response = client.post(reverse("admin:bots_bot_change", args=[bot.pk]), payload)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    bot.refresh_from_db()
    after = {f.attname: getattr(bot, f.attname) for f in Bot._meta.concrete_fields}
    changed = {k for k in before if before[k] != after[k]} - {"updated_at"}
    assert not changed, f"half-saved: {changed}"
