"""Dashboard URLs (namespace ``dashboard``). Every pattern here is covered by the role matrix in
tests/dashboard/test_views.py, which walks this list: a new view cannot escape it."""

from __future__ import annotations

from django.urls import path

from bots import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("bots/", views.bot_list, name="bot_list"),
    path("bots/summary.json", views.bot_list_json, name="bot_list_json"),
    path("bots/<int:bot_id>/", views.bot_detail, name="bot_detail"),
    path("bots/<int:bot_id>/state.json", views.bot_state_json, name="bot_state_json"),
    path("bots/<int:bot_id>/book.json", views.bot_book_json, name="bot_book_json"),
    path("bots/<int:bot_id>/engine.json", views.bot_engine_json, name="bot_engine_json"),
    path("engine/", views.engine_health, name="engine_health"),
    *[
        path(f"bots/<int:bot_id>/{action}/", views.bot_action, {"action": action}, name=f"bot_{action}")
        for action in views.BOT_ACTIONS
    ],
    path("tenant/switch/", views.tenant_switch, name="tenant_switch"),
    path("tenant/kill/", views.tenant_kill, name="tenant_kill"),
    path("tenant/release/", views.tenant_release, name="tenant_release"),
]
