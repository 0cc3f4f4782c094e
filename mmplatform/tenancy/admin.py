"""Admin for tenants and memberships, and the mixin that scopes every tenant-owned admin.

Non-superuser staff see only their tenants' rows; every foreign-key choice is narrowed to the
same tenants; actions run on the scoped queryset; an object of another tenant is a 404.
Permissions follow the membership role: viewers read, operators change trading models,
owners also manage credentials and members. Superusers see and change everything.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from mmplatform.tenancy.models import CONTROL_ROLES, Membership, Role, Tenant
from mmplatform.tenancy.scoping import for_user, tenants_for_user


def user_roles(request: HttpRequest) -> set[str]:
    """Roles the request's user holds in any tenant (cached on the request)."""
    cached = getattr(request, "_tenancy_roles", None)
    if cached is None:
        cached = set(Membership.objects.filter(user=request.user).values_list("role", flat=True))
        request._tenancy_roles = cached  # type: ignore[attr-defined]
    return cached


ROLE_ORDER = [Role.OWNER, Role.OPERATOR, Role.VIEWER]

# What a denied request tried to do, as the page's sentence says it ("... may not <verb> <object>").
ACTION_VERBS = {"add": "add", "change": "change", "delete": "delete", "view": "view", "history": "view the history of"}


def role_names(roles: frozenset[str] | set[str]) -> str:
    """``{"owner", "operator"}`` -> ``"Owner or Operator"`` (in the roles' rank order)."""
    names = [str(Role(role).label) for role in ROLE_ORDER if role in roles]
    return " or ".join(names) if names else "no role"


def tenants_with_role(request: HttpRequest, roles: frozenset[str]) -> models.QuerySet[Tenant]:
    if request.user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=request.user, memberships__role__in=roles).distinct()


class TenantScopedAdminMixin:
    """Mix into a ModelAdmin of a model with a ``tenant`` FK (or ``tenant_path`` to reach one)."""

    # Roles that may add/change/delete rows of this model (viewers always read).
    write_roles: frozenset[str] = CONTROL_ROLES
    tenant_path = "tenant"

    # --- scoping ---
    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.tenant_path}__in": tenants_for_user(request.user)})

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        """Another tenant's object is indistinguishable from a missing one: 404, before any permission check."""
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is None:
            raise Http404("not found")
        return obj

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        self._narrow_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        self._narrow_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]

    def _narrow_choices(self, db_field: Any, request: HttpRequest, kwargs: dict[str, Any]) -> None:
        if request.user.is_superuser:
            return
        related = db_field.remote_field.model
        if related is Tenant:
            kwargs["queryset"] = tenants_with_role(request, self.write_roles)
        elif any(f.name == "tenant" for f in related._meta.get_fields()):
            kwargs["queryset"] = for_user(related, request.user)

    # --- the page a denied request gets ---
    # A role that may not do something gets a page saying what it tried, which role may, the user's
    # own role in the firm and who holds the needed role there; never a bare "403 Forbidden".
    # (Another firm's object stays a 404: get_object raises before any permission check.)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)  # type: ignore[misc]
        except PermissionDenied:
            return self.permission_denied_page(request, "add")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except PermissionDenied:
            return self.permission_denied_page(request, "change", self.get_object(request, object_id))

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]
        except PermissionDenied:
            return self.permission_denied_page(request, "delete", self.get_object(request, object_id))

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().history_view(request, object_id, extra_context)  # type: ignore[misc]
        except PermissionDenied:
            return self.permission_denied_page(request, "history", self.get_object(request, object_id))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)  # type: ignore[misc]
        except PermissionDenied:
            return self.permission_denied_page(request, "view")

    def roles_allowed(self, action: str) -> frozenset[str]:
        """Roles that may do ``action`` (add/change/delete/view/history) on this model."""
        if action in ("view", "history"):
            return frozenset(ROLE_ORDER)
        return frozenset(self.write_roles)

    def nobody_may(self, action: str) -> str:
        """A sentence when no firm role may do ``action`` at all (overridden by read-only and
        platform-managed models), else empty."""
        return ""

    def permission_denied_page(self, request: HttpRequest, action: str, obj: Any = None) -> HttpResponse:
        """The 403 page: what was refused, which role may, the user's role and the firm's holders."""
        opts = self.model._meta  # type: ignore[attr-defined]
        allowed = self.roles_allowed(action)
        tenant_id = self._tenant_id_of(obj) if obj is not None else None
        memberships = Membership.objects.filter(user=request.user).select_related("tenant")
        if tenant_id is not None:
            memberships = memberships.filter(tenant_id=tenant_id)
        yours = [(m.tenant.name, str(Role(m.role).label)) for m in memberships.order_by("tenant__name")]
        holders: list[tuple[str, list[str]]] = []
        if allowed:
            tenant_ids = [tenant_id] if tenant_id is not None else [m.tenant_id for m in memberships]
            for tenant in Tenant.objects.filter(pk__in=tenant_ids).order_by("name"):
                names = list(
                    Membership.objects.filter(tenant=tenant, role__in=allowed)
                    .order_by("user__username").values_list("user__username", flat=True)
                )
                holders.append((tenant.name, names))
        verb = ACTION_VERBS.get(action, action)
        thing = str(opts.verbose_name) if action == "add" or obj is None else f"{opts.verbose_name} “{obj}”"
        if action == "view" and obj is None:
            thing = str(opts.verbose_name_plural)
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": f"Your role may not {verb} {thing}",
            "opts": opts,
            "action": action,
            "verb": verb,
            "thing": thing,
            "obj": obj,
            "nobody": self.nobody_may(action),
            "allowed_roles": role_names(allowed),
            "yours": yours,
            "holders": holders,
        }
        return TemplateResponse(request, "admin/permission_denied.html", context, status=403)

    # --- permissions by role ---
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and (request.user.is_superuser or bool(user_roles(request)))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def _may_write(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(user_roles(request) & self.write_roles)
        tenant_id = self._tenant_id_of(obj)
        return Membership.objects.filter(
            user=request.user, tenant_id=tenant_id, role__in=self.write_roles
        ).exists()

    def _tenant_id_of(self, obj: Any) -> int | None:
        target = obj
        for part in self.tenant_path.split("__"):
            target = getattr(target, part, None)
        return getattr(target, "pk", None) if target is not None else None

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._may_write(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_write(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_write(request, obj)


class MembershipForm(forms.ModelForm):
    """Members are added by exact username, so the form never lists users of other firms."""

    username = forms.CharField(max_length=150, help_text="Exact username of an existing user.")

    class Meta:
        model = Membership
        fields = ["tenant", "role"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["username"].initial = self.instance.user.get_username()

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"No user named {username!r}.")
        self.instance.user = user
        return username


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    fields = ["username", "role"]
    extra = 0


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "kill_switch_engaged", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    write_roles = frozenset({Role.OWNER})
    tenant_path = "pk"
    inlines = [MembershipInline]
    actions = ["engage_kill_switch", "release_kill_switch"]

    @admin.action(description="Kill switch: cancel every order of every bot of the firm", permissions=["change"])
    def engage_kill_switch(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        from bots.services import tenant_kill

        for tenant in queryset:
            if self.has_change_permission(request, tenant):
                cancelled = tenant_kill(tenant=tenant, user=request.user)
                self.message_user(request, f"{tenant}: kill switch engaged, {cancelled} order(s) cancelled.")

    @admin.action(description="Release the firm's kill switch", permissions=["change"])
    def release_kill_switch(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        from bots.services import tenant_release_kill_switch

        for tenant in queryset:
            if self.has_change_permission(request, tenant):
                tenant_release_kill_switch(tenant=tenant, user=request.user)
                self.message_user(request, f"{tenant}: kill switch released (bots stay stopped).")

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=tenants_for_user(request.user).values("pk"))

    def _tenant_id_of(self, obj: Any) -> int | None:
        return obj.pk

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser  # new firms are onboarded by the platform's staff

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def nobody_may(self, action: str) -> str:
        if action in ("add", "delete"):
            return "Firms are added and removed by the platform's staff (a superuser), not by a firm's members."
        return ""


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = MembershipForm
    fields = ["username", "tenant", "role"]
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "tenant__name"]
    write_roles = frozenset({Role.OWNER})
