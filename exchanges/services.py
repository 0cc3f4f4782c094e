"""Writes on exchange accounts."""

from __future__ import annotations

from exchanges.crypto import rotate_secret
from exchanges.models import ExchangeAccount

SECRET_COLUMNS = ("api_key_encrypted", "api_secret_encrypted", "passphrase_encrypted")


def rotate_all_credentials() -> int:
    """Re-encrypt every account's credentials under the primary key; returns the number of rows.

    Runs across tenants on purpose (a platform operation); the caller holds the transaction.
    """
    count = 0
    for account in ExchangeAccount.objects.select_for_update().order_by("pk"):
        for column in SECRET_COLUMNS:
            setattr(account, column, rotate_secret(getattr(account, column)))
        account.save(update_fields=[*SECRET_COLUMNS, "updated_at"])
        count += 1
    return count
