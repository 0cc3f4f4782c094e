"""Websocket routes (the dashboard's live updates)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
