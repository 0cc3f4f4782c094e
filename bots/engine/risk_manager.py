"""The spec's risk manager: start-up conditions, per-pair limits and adjustments, active breaches."""

from __future__ import annotations

from dataclasses import dataclass

from bots.config import MarketMakingConfig
from bots.engine import keys
from bots.models import (
    Bot,
)
from mmplatform.redis_client import get_redis, text
from risk import checks
from risk.limits import RiskLimits
from strategies.types import RiskContext


@dataclass
class PairRiskAdjustments:
    spread_multiplier: float = 1.0
    reduced_side: str = ""  # POSITION_LIMIT_EXCEEDED: the side that grows the position ...
    reduced_side_factor: float = 1.0  # ... has its sizes multiplied by this


class MarketMakingRiskManager:
    """Start-up conditions, the current risk assessment and per-pair limits (spec risk manager)."""

    def __init__(self, bot: Bot, limits: RiskLimits, config: MarketMakingConfig):
        self.bot = bot
        self.limits = limits
        self.config = config
        self.adjustments: dict[str, PairRiskAdjustments] = {}
        self._pair_limits: dict[float, RiskContext] = {}  # by spread multiplier (the config is the engine's for life)

    def adjustment(self, pair: str) -> PairRiskAdjustments:
        """The pair's risk adjustments in this cycle (created neutral on first use)."""
        return self.adjustments.setdefault(pair, PairRiskAdjustments())

    def validate_startup_conditions(self, daily_pnl_quote: float) -> list[str]:
        tenant_killed = type(self.bot.tenant).objects.filter(pk=self.bot.tenant_id,
                                                             kill_switch_engaged=True).exists()
        return checks.startup_problems(
            self.limits, kill_switch=self.bot.kill_switch_engaged or tenant_killed, daily_pnl_quote=daily_pnl_quote
        )

    def get_pair_limits(self, pair: str) -> RiskContext:
        adjust = self.adjustments.get(pair)
        multiplier = adjust.spread_multiplier if adjust is not None else 1.0
        limits = self._pair_limits.get(multiplier)
        if limits is None:  # (a frozen value of the engine's config: built once per multiplier, every check reads it)
            if len(self._pair_limits) >= 8:  # (1.0 and the widen factor in practice: a bound all the same)
                self._pair_limits.clear()
            limits = self._pair_limits[multiplier] = self.config.pair_risk(multiplier)  # as the backtester builds it
        return limits

    def active_key(self) -> str:
        return keys.risk_active(self.bot.pk)

    def newly_active(self, statuses: list[checks.RiskStatus]) -> list[checks.RiskStatus]:
        """Statuses that were not active in the previous cycle (events are recorded once per breach)."""
        r = get_redis()
        keys = {f"{s.event_type}|{s.trading_pair}": s for s in statuses}
        previous = {text(k) for k in r.smembers(self.active_key())}
        pipe = r.pipeline()
        pipe.delete(self.active_key())
        if keys:
            pipe.sadd(self.active_key(), *keys)
        pipe.execute()
        return [s for k, s in keys.items() if k not in previous]
