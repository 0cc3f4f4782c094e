"""Writes on exchange accounts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation

from django.conf import settings

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


class EmulatorRegistrationError(Exception):
    """The account could not be opened on the local exchange emulator (the message says why)."""


def parse_balances(text: str) -> dict[str, Decimal]:
    """``BTC=1,USDT=60000`` -> {"BTC": Decimal("1"), ...}; a clear error on anything else."""
    balances: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        asset, sep, amount = part.partition("=")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            value = Decimal("NaN")
        if not sep or not asset.isalnum() or not asset.isupper() or not value.is_finite() or value < 0:
            raise EmulatorRegistrationError(f"balance {part!r} must look like ASSET=AMOUNT, e.g. USDT=60000")
        balances[asset] = value
    return balances


def emulator_open_account(*, account: ExchangeAccount, balances: dict[str, Decimal] | None = None) -> str:
    """Open the account's API key on the local exchange emulator at its ``api_base_url``, funded
    with ``balances`` (default EMULATOR_DEMO_BALANCES). Returns the emulator's account id."""
    if not account.api_base_url:
        raise EmulatorRegistrationError("the account has no API base URL; point it at the emulator first")
    if not settings.EMULATOR_ADMIN_TOKEN:
        raise EmulatorRegistrationError("EMULATOR_ADMIN_TOKEN is not configured for this platform")
    creds = account.credentials()
    funds = balances if balances is not None else parse_balances(settings.EMULATOR_DEMO_BALANCES)
    body = json.dumps({"api_key": creds.api_key, "secret": creds.api_secret, "passphrase": creds.passphrase,
                       "balances": {asset: str(amount) for asset, amount in funds.items()}}).encode()
    request = urllib.request.Request(
        account.api_base_url.rstrip("/") + "/admin/accounts", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Emulator-Admin": settings.EMULATOR_ADMIN_TOKEN},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.EXCHANGE_HTTP_TIMEOUT_SECS) as response:
            return str(json.loads(response.read())["account_id"])
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        raise EmulatorRegistrationError(f"the emulator refused ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise EmulatorRegistrationError(f"the emulator at {account.api_base_url} did not answer: {exc}") from None
