"""Admin for exchange accounts. Secrets are write-only: typed in, encrypted, never rendered."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest

from exchanges.crypto import CredentialDecryptionError
from exchanges.models import ExchangeAccount, credential_errors
from exchanges.services import EmulatorRegistrationError, emulator_open_account
from mmplatform.tenancy.admin import TenantScopedAdminMixin
from mmplatform.tenancy.models import Role

SECRET_WIDGET = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


class ExchangeAccountForm(forms.ModelForm):
    """Credentials are required when an account is created; left blank on edit they stay as they are."""

    api_key = forms.CharField(required=False, strip=True, widget=SECRET_WIDGET, max_length=512)
    api_secret = forms.CharField(required=False, strip=True, widget=SECRET_WIDGET, max_length=512)
    passphrase = forms.CharField(required=False, strip=True, widget=SECRET_WIDGET, max_length=512)
    api_base_url = forms.URLField(
        required=False,
        assume_scheme="http",
        help_text=ExchangeAccount._meta.get_field("api_base_url").help_text,
    )

    class Meta:
        model = ExchangeAccount
        fields = ["tenant", "label", "exchange_id", "api_base_url", "rate_limit_per_sec", "is_active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        creating = self.instance.pk is None
        for name in ("api_key", "api_secret"):
            if creating and not cleaned.get(name):
                self.add_error(name, "Required when the account is created.")
        new_secret = any(cleaned.get(name) for name in ("api_key", "api_secret", "passphrase"))
        if cleaned.get("exchange_id") and (creating or new_secret or "exchange_id" in self.changed_data):
            current = self.instance.credentials() if self.instance.has_credentials else None
            errors = credential_errors(
                cleaned["exchange_id"],
                api_key=cleaned.get("api_key") or (current.api_key if current else "") or "-",
                api_secret=cleaned.get("api_secret") or (current.api_secret if current else "") or "-",
                passphrase=cleaned.get("passphrase") or (current.passphrase if current else ""),
            )
            for name, message in errors.items():
                self.add_error(name, message)
        return cleaned

    def save(self, commit: bool = True) -> ExchangeAccount:
        account: ExchangeAccount = super().save(commit=False)
        data = self.cleaned_data
        if data.get("api_key") or data.get("api_secret") or data.get("passphrase"):
            current = account.credentials() if account.has_credentials else None
            account.set_credentials(
                api_key=data.get("api_key") or (current.api_key if current else ""),
                api_secret=data.get("api_secret") or (current.api_secret if current else ""),
                passphrase=data.get("passphrase") or (current.passphrase if current else ""),
            )
        if commit:
            account.save()
        return account


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ExchangeAccountForm
    write_roles = frozenset({Role.OWNER})
    list_display = ["label", "tenant", "exchange_id", "api_base_url", "credentials_set", "is_active"]
    list_filter = ["exchange_id", "is_active"]
    search_fields = ["label"]
    fieldsets = [
        (None, {"fields": ["tenant", "label", "exchange_id", "api_base_url", "rate_limit_per_sec", "is_active"]}),
        (
            "Credentials (write-only: stored encrypted, never shown; leave blank to keep)",
            {"fields": ["api_key", "api_secret", "passphrase"]},
        ),
    ]

    actions = ["open_on_emulator"]

    @admin.action(description="Open on the local exchange emulator (topped up to the demo balances)",
                  permissions=["change"])
    def open_on_emulator(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        for account in queryset:
            if not self.has_change_permission(request, account):
                self.message_user(request, f"{account}: your role may not manage this account", messages.ERROR)
                continue
            try:
                funding = emulator_open_account(account=account)
            except (EmulatorRegistrationError, CredentialDecryptionError) as exc:
                self.message_user(request, f"{account}: {exc}", messages.ERROR)
                continue
            target = ", ".join(f"{asset} {amount}" for asset, amount in funding.target.items())
            if funding.deposited:
                done = "deposited " + ", ".join(f"{asset} {amount}" for asset, amount in funding.deposited.items())
            else:
                done = "already at those balances, nothing deposited"
            self.message_user(
                request,
                f"{account}: opened on the emulator with API key {funding.masked_key}; topped up to {target} "
                f"({done}).",
                messages.SUCCESS,
            )

    @admin.display(boolean=True, description="credentials")
    def credentials_set(self, obj: ExchangeAccount) -> bool:
        return obj.has_credentials
