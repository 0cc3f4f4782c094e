"""Risk events: every breach of a limit and every kill switch is one row."""

from __future__ import annotations

from django.db import models

from mmplatform.tenancy.models import TenantOwned


class RiskEventType(models.TextChoices):
    POSITION_LIMIT_EXCEEDED = "POSITION_LIMIT_EXCEEDED"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    INVENTORY_IMBALANCE = "INVENTORY_IMBALANCE"
    MARKET_VOLATILITY = "MARKET_VOLATILITY"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    ORDER_DENIED = "ORDER_DENIED"
    KILL_SWITCH = "KILL_SWITCH"
    KILL_SWITCH_RELEASED = "KILL_SWITCH_RELEASED"
    DAILY_RESET = "DAILY_RESET"
    HEDGE_FAILED = "HEDGE_FAILED"
    HEDGE_SLIPPAGE = "HEDGE_SLIPPAGE"
    HEDGE_RESOLVED = "HEDGE_RESOLVED"


class RiskEvent(TenantOwned):
    """A risk breach, denial or kill switch, with the action the platform took."""

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, null=True, blank=True, related_name="risk_events")
    event_type = models.CharField(max_length=32, choices=RiskEventType.choices)
    trading_pair = models.CharField(max_length=40, blank=True, default="")
    message = models.TextField()
    action_taken = models.CharField(max_length=64, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["bot", "-created_at"], name="risk_bot_time")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_type}: {self.message}"
