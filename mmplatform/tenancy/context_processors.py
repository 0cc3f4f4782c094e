"""Template context: the current tenant, the user's tenants and role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from mmplatform.tenancy.scoping import role_in_tenant, tenants_for_user


def tenancy(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    tenant = getattr(request, "tenant", None)
    tenant = tenant if tenant else None
    role = role_in_tenant(user, tenant) if tenant else None
    return {
        "current_tenant": tenant,
        "user_tenants": list(tenants_for_user(user).order_by("name")),
        "current_role": role,
        "can_control": role in ("owner", "operator"),
    }
