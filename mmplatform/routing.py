"""Websocket routes (the dashboard's live updates)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from bots import consumers

websocket_urlpatterns: list[Any] = [
    path("ws/tenant/", consumers.TenantConsumer.as_asgi()),
    path("ws/bots/<int:bot_id>/", consumers.BotConsumer.as_asgi()),
]
