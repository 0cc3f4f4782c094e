"""Admin for risk events (read-only log)."""

from __future__ import annotations

from django.contrib import admin

from bots.admin import HistoryAdmin
from risk.models import RiskEvent


@admin.register(RiskEvent)
class RiskEventAdmin(HistoryAdmin):
    list_display = ["created_at", "tenant", "bot", "event_type", "trading_pair", "action_taken", "message"]
    list_filter = ["event_type"]
    search_fields = ["message"]
