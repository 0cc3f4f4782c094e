"""The one way views, tasks, consumers and the admin query tenant-owned rows.

Another tenant's object is indistinguishable from a missing one: every lookup here raises
``Http404`` (or returns ``None``), never ``PermissionDenied``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.http import Http404

from mmplatform.tenancy.models import CONTROL_ROLES, Membership, Role, Tenant

M = TypeVar("M", bound=models.Model)


def tenants_for_user(user: Any) -> models.QuerySet[Tenant]:
    """Active tenants the user belongs to (all tenants for a superuser)."""
    if not getattr(user, "is_authenticated", False):
        return Tenant.objects.none()
    if user.is_superuser:
        return Tenant.objects.filter(is_active=True)
    return Tenant.objects.filter(memberships__user=user, is_active=True).distinct()


def role_in_tenant(user: Any, tenant: Tenant) -> Role | None:
    """The user's role in the tenant; superusers act as owners everywhere."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return Role.OWNER
    role = Membership.objects.filter(user=user, tenant=tenant).values_list("role", flat=True).first()
    return Role(role) if role else None


def can_control(user: Any, tenant: Tenant) -> bool:
    """Whether the user may change trading state in the tenant (owner or operator)."""
    return role_in_tenant(user, tenant) in CONTROL_ROLES


def for_tenant(model_or_queryset: type[M] | models.QuerySet[M], tenant: Tenant | int) -> models.QuerySet[M]:
    """Rows of one tenant. The only sanctioned way to read a tenant-owned model."""
    queryset = (
        model_or_queryset
        if isinstance(model_or_queryset, models.QuerySet)
        else model_or_queryset._default_manager.all()
    )
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    return queryset.filter(tenant_id=tenant_id)


def for_user(model_or_queryset: type[M] | models.QuerySet[M], user: Any) -> models.QuerySet[M]:
    """Rows of every tenant the user belongs to (the admin's view)."""
    queryset = (
        model_or_queryset
        if isinstance(model_or_queryset, models.QuerySet)
        else model_or_queryset._default_manager.all()
    )
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    if user.is_superuser:
        return queryset
    return queryset.filter(tenant__in=tenants_for_user(user))


def get_for_tenant_or_404(
    model_or_queryset: type[M] | models.QuerySet[M], tenant: Tenant | int, **lookup: Any
) -> M:
    """One row of the tenant, or 404 — also when the row exists in another tenant."""
    try:
        return for_tenant(model_or_queryset, tenant).get(**lookup)
    except (models.ObjectDoesNotExist, ValueError, TypeError):
        raise Http404("not found") from None
