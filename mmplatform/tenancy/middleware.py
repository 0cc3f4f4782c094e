"""Attach the user's current tenant and role to each request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from mmplatform.tenancy.models import Tenant
from mmplatform.tenancy.scoping import tenants_for_user

SESSION_KEY = "current_tenant_id"


def current_tenant(request: HttpRequest) -> Tenant | None:
    """The tenant chosen in the session if the user still belongs to it, else their first tenant."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    tenants = tenants_for_user(user)
    chosen = request.session.get(SESSION_KEY)
    if chosen is not None:
        tenant = tenants.filter(pk=chosen).first()
        if tenant is not None:
            return tenant
    return tenants.order_by("name").first()


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = SimpleLazyObject(lambda: current_tenant(request))  # type: ignore[attr-defined]
        return self.get_response(request)
