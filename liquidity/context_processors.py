"""Template context: whether the user is a client login (bots shared with it, no tenant membership)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from liquidity.models import ClientAccess


def client(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    tenant = getattr(request, "tenant", None)
    if tenant:
        return {"sla_client": False}
    return {"sla_client": ClientAccess.objects.filter(user=user).exists()}
