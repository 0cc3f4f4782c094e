"""SLA pages (namespace ``liquidity``), for members of the current tenant and for client logins. Every
pattern with a bot id is in the tenant isolation matrix (tests/reliability/test_tenant_matrix.py)."""

from __future__ import annotations

from django.urls import path

from liquidity import views

app_name = "liquidity"

urlpatterns = [
    path("", views.sla_overview, name="overview"),
    path("bots/<int:bot_id>/", views.bot_sla, name="bot_sla"),
    path("bots/<int:bot_id>/status.json", views.bot_sla_json, name="bot_sla_json"),
    path("bots/<int:bot_id>/series.json", views.bot_sla_series, name="bot_sla_series"),
    path("bots/<int:bot_id>/report/", views.bot_sla_report, name="bot_sla_report"),
]
