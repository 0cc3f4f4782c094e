"""Credentials are encrypted at rest, write-only in the admin, never logged, and rotate cleanly."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from exchanges.crypto import CredentialDecryptionError
from exchanges.models import ExchangeAccount
from tests.conftest import PASSWORD, TenantWorld, make_account

API_KEY = "AKIA-PLAINTEXT-KEY-7f3c9e"
API_SECRET = "s3cr3t-PLAINTEXT-VALUE-b81d0a"


@pytest.fixture
def account(world_a: TenantWorld) -> ExchangeAccount:
    return make_account(world_a.tenant, "secret-test", api_key=API_KEY, api_secret=API_SECRET)


def raw_row(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exchanges_exchangeaccount WHERE id = %s", [pk])
        return repr(cursor.fetchone())


def test_raw_database_row_holds_no_plaintext(account: ExchangeAccount) -> None:
    row = raw_row(account.pk)
    assert API_KEY not in row and API_SECRET not in row
    creds = ExchangeAccount.objects.get(pk=account.pk).credentials()
    assert (creds.api_key, creds.api_secret) == (API_KEY, API_SECRET)
    assert API_SECRET not in repr(creds)


def test_admin_never_renders_secrets(client: Any, account: ExchangeAccount) -> None:
    client.login(username="a-owner", password=PASSWORD)
    for url in (
        reverse("admin:exchanges_exchangeaccount_change", args=[account.pk]),
        reverse("admin:exchanges_exchangeaccount_changelist"),
    ):
        html = client.get(url).content.decode()
        assert API_KEY not in html and API_SECRET not in html
        assert account.api_secret_encrypted not in html


def test_admin_blank_secrets_kept_new_secret_replaces(client: Any, account: ExchangeAccount) -> None:
    client.login(username="a-owner", password=PASSWORD)
    url = reverse("admin:exchanges_exchangeaccount_change", args=[account.pk])
    form = {"tenant": account.tenant_id, "label": "renamed", "exchange_id": "binance", "api_base_url": "",
            "rate_limit_per_sec": "10", "is_active": "on", "api_key": "", "api_secret": "", "passphrase": ""}
    assert client.post(url, form).status_code == 302
    account.refresh_from_db()
    assert account.label == "renamed"
    assert account.credentials().api_secret == API_SECRET
    assert client.post(url, {**form, "api_secret": "brand-new-secret-123"}).status_code == 302
    account.refresh_from_db()
    assert account.credentials().api_secret == "brand-new-secret-123"
    assert account.credentials().api_key == API_KEY


def test_admin_create_requires_credentials(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(
        reverse("admin:exchanges_exchangeaccount_add"),
        {"tenant": world_a.tenant.pk, "label": "x", "exchange_id": "binance", "rate_limit_per_sec": "10"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "api_key" in errors and "api_secret" in errors
    assert not ExchangeAccount.objects.filter(label="x").exists()


def test_unsupported_exchange_is_a_field_error(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(
        reverse("admin:exchanges_exchangeaccount_add"),
        {"tenant": world_a.tenant.pk, "label": "x", "exchange_id": "nope", "rate_limit_per_sec": "10",
         "api_key": "k" * 10, "api_secret": "s" * 10},
    )
    assert "exchange_id" in response.context["adminform"].form.errors


def test_decrypted_secret_is_redacted_from_logs(account: ExchangeAccount, caplog: Any) -> None:
    from mmplatform.logging import RedactSecretsFilter

    account.credentials()  # decrypting registers the secret with the redaction filter
    logger = logging.getLogger("mmplatform.test")
    handler_filter = RedactSecretsFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="mmplatform.test"):
            logger.info("connecting with %s / %s", API_KEY, API_SECRET)
            try:
                raise RuntimeError(f"auth failed for {API_SECRET}")
            except RuntimeError:
                logger.exception("boom")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert API_SECRET not in caplog.text and API_KEY not in caplog.text
    assert "[REDACTED]" in caplog.text


def test_key_rotation(account: ExchangeAccount, settings: Any) -> None:
    old_key = settings.CREDENTIAL_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.CREDENTIAL_KEYS = [new_key, old_key]
    call_command("rotate_credential_keys")
    settings.CREDENTIAL_KEYS = [new_key]  # the old key is dropped
    creds = ExchangeAccount.objects.get(pk=account.pk).credentials()
    assert (creds.api_key, creds.api_secret) == (API_KEY, API_SECRET)


def test_wrong_key_fails_with_clear_error(account: ExchangeAccount, settings: Any) -> None:
    settings.CREDENTIAL_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CredentialDecryptionError, match="cannot be decrypted"):
        ExchangeAccount.objects.get(pk=account.pk).credentials()
