"""Tenants (firms), memberships with roles, and the base class of every tenant-owned model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


# Roles that may change trading state (start/stop/kill bots, edit configuration).
CONTROL_ROLES = frozenset({Role.OWNER, Role.OPERATOR})


class Tenant(models.Model):
    """A firm using the platform. Its kill switch stops every bot of the firm."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    is_active = models.BooleanField(default=True)
    kill_switch_engaged = models.BooleanField(
        default=False, help_text="When set, every bot of this tenant cancels its orders and stops quoting."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in a tenant. A user may belong to several tenants."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="uniq_membership_user_tenant")]
        ordering = ["tenant__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class TenantQuerySet(models.QuerySet):
    """Every tenant-owned queryset can be narrowed to one tenant or to a user's tenants."""

    def for_tenant(self, tenant: Tenant | int) -> TenantQuerySet:
        tenant_id = tenant if isinstance(tenant, int) else tenant.pk
        return self.filter(tenant_id=tenant_id)

    def for_user(self, user: AbstractBaseUser | AnonymousUser) -> TenantQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        if getattr(user, "is_superuser", False):
            return self
        return self.filter(tenant__memberships__user=user, tenant__is_active=True)


class TenantOwned(models.Model):
    """Abstract base: a ``tenant`` FK and the scoped queryset."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")

    objects: Any = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
