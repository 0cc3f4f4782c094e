"""Writes on exchange accounts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
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


def mask_secret(text: str) -> str:
    """A key as it may be shown: its first and last four characters (``demo…0001``), or only
    asterisks when it is too short for that to hide most of it."""
    if len(text) < 12:
        return "*" * 8
    return f"{text[:4]}…{text[-4:]}"


@dataclass(frozen=True)
class EmulatorFunding:
    """What opening an account on the emulator did: its (masked) key and what was deposited."""

    masked_key: str
    deposited: dict[str, Decimal]
    """Asset -> amount deposited to reach the target (assets already at or above it are absent)."""
    target: dict[str, Decimal]


def _emulator_call(account: ExchangeAccount, path: str, payload: dict | None) -> dict:
    """One admin request to the emulator at the account's base URL (POST with a payload, else GET)."""
    request = urllib.request.Request(
        account.api_base_url.rstrip("/") + path,
        data=json.dumps(payload).encode() if payload is not None else None,
        method="POST" if payload is not None else "GET",
        headers={"Content-Type": "application/json", "X-Emulator-Admin": settings.EMULATOR_ADMIN_TOKEN},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.EXCHANGE_HTTP_TIMEOUT_SECS) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        raise EmulatorRegistrationError(f"the emulator refused ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EmulatorRegistrationError(f"the emulator at {account.api_base_url} did not answer: {exc}") from None
    if not isinstance(answer, dict):
        raise EmulatorRegistrationError(f"the emulator at {account.api_base_url} answered {answer!r:.100}")
    return answer


def emulator_open_account(*, account: ExchangeAccount, balances: dict[str, Decimal] | None = None) -> EmulatorFunding:
    """Open the account's API key on the local exchange emulator at its ``api_base_url`` and top each
    asset up to ``balances`` (default EMULATOR_DEMO_BALANCES), counting what is free and locked.
    Idempotent: run again, it deposits nothing (or only what trading has spent since)."""
    if not account.api_base_url:
        raise EmulatorRegistrationError("the account has no API base URL; point it at the emulator first")
    if not settings.EMULATOR_ADMIN_TOKEN:
        raise EmulatorRegistrationError("EMULATOR_ADMIN_TOKEN is not configured for this platform")
    creds = account.credentials()
    target = balances if balances is not None else parse_balances(settings.EMULATOR_DEMO_BALANCES)
    opened = _emulator_call(account, "/admin/accounts",
                            {"api_key": creds.api_key, "secret": creds.api_secret,
                             "passphrase": creds.passphrase, "balances": {}})
    account_id = str(opened.get("account_id", ""))
    held = _emulator_call(account, "/admin/state", None).get("accounts", {}).get(account_id)
    if not isinstance(held, dict):
        raise EmulatorRegistrationError("the emulator did not report the account's balances after opening it")
    deposited: dict[str, Decimal] = {}
    for asset, amount in target.items():
        row = held.get(asset) or {}
        try:
            have = Decimal(str(row.get("free", "0"))) + Decimal(str(row.get("locked", "0")))
        except InvalidOperation:
            raise EmulatorRegistrationError(f"the emulator reported a bad {asset} balance: {row!r:.100}") from None
        if have < amount:
            _emulator_call(account, "/admin/deposit", {"api_key": creds.api_key, "asset": asset,
                                                       "amount": str(amount - have)})
            deposited[asset] = amount - have
    return EmulatorFunding(masked_key=mask_secret(creds.api_key), deposited=deposited, target=dict(target))
