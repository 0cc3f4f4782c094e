"""Exchange accounts of a tenant, with API credentials encrypted at rest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from exchanges.crypto import decrypt_secret, encrypt_secret
from exchanges.venues import DEFAULT_EXCHANGE_ID, SUPPORTED_EXCHANGE_IDS, VENUES
from mmplatform.tenancy.models import TenantOwned

__all__ = ["SUPPORTED_EXCHANGE_IDS", "AccountCredentials", "ExchangeAccount", "credential_errors"]

EXCHANGE_CHOICES = [(exchange_id, venue.label) for exchange_id, venue in VENUES.items()]


def credential_errors(exchange_id: str, *, api_key: str, api_secret: str, passphrase: str) -> dict[str, str]:
    """Field errors of a credential set for ``exchange_id`` (empty when it is complete): a venue that
    signs with a passphrase needs one; one that does not must not get one (it would be ignored)."""
    venue = VENUES.get(exchange_id)
    errors: dict[str, str] = {}
    if venue is None:
        return {"exchange_id": f"Unsupported exchange {exchange_id!r}; supported: {', '.join(SUPPORTED_EXCHANGE_IDS)}."}
    if not api_key:
        errors["api_key"] = "Required."
    if not api_secret:
        errors["api_secret"] = "Required."
    if venue.requires_passphrase and not passphrase:
        errors["passphrase"] = f"{venue.label} signs every request with the API key's passphrase: required."
    if passphrase and not venue.requires_passphrase:
        errors["passphrase"] = f"{venue.label} keys have no passphrase: leave it empty."
    return errors


@dataclass(frozen=True, repr=False)
class AccountCredentials:
    """Decrypted credentials, in memory only. ``repr`` never shows the secrets."""

    account_key: str
    exchange_id: str
    api_key: str
    api_secret: str
    passphrase: str
    api_base_url: str
    rate_limit_per_sec: float

    def __repr__(self) -> str:
        return f"AccountCredentials(account_key={self.account_key!r}, exchange_id={self.exchange_id!r})"

    @property
    def fingerprint(self) -> str:
        """Changes when any credential changes, so cached clients are rebuilt after a rotation."""
        material = "\0".join([self.api_key, self.api_secret, self.passphrase, self.api_base_url])
        return hashlib.sha256(material.encode()).hexdigest()[:16]


class ExchangeAccount(TenantOwned):
    """A tenant's API key on one exchange (or on the local exchange emulator)."""

    label = models.CharField(max_length=80)
    exchange_id = models.CharField(
        max_length=40,
        default=DEFAULT_EXCHANGE_ID,
        choices=EXCHANGE_CHOICES,
        help_text="The venue (ccxt exchange id) from the venue registry.",
    )
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    api_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    passphrase_encrypted = models.TextField(blank=True, default="", editable=False)
    api_base_url = models.URLField(
        blank=True,
        default="",
        help_text="Override of the exchange's API base URL, e.g. http://127.0.0.1:8900 for the "
        "local exchange emulator. Empty means the exchange's real endpoint.",
    )
    rate_limit_per_sec = models.FloatField(
        default=20.0,
        validators=[MinValueValidator(0.1)],
        help_text="Request budget shared by every bot and worker using this key (requests/second).",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "label"], name="uniq_exchange_account_label"),
        ]
        ordering = ["tenant_id", "label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.exchange_id})"

    def clean(self) -> None:
        venue = VENUES.get(self.exchange_id)
        if venue is None:
            raise ValidationError(
                {"exchange_id": f"Unsupported exchange {self.exchange_id!r}; supported: "
                 f"{', '.join(SUPPORTED_EXCHANGE_IDS)}."}
            )
        # stored credentials must suit the venue (a key moved to a venue that signs with a passphrase)
        if self.has_credentials and venue.requires_passphrase and not self.passphrase_encrypted:
            raise ValidationError({"exchange_id": f"{venue.label} signs every request with the API key's "
                                   "passphrase: set one with the credentials."})

    def set_credentials(self, *, api_key: str, api_secret: str, passphrase: str = "") -> None:
        """Check against the venue's needs (``ValidationError`` with field errors, nothing changed),
        then encrypt and store credentials (the caller saves)."""
        errors = credential_errors(self.exchange_id, api_key=api_key, api_secret=api_secret, passphrase=passphrase)
        if errors:
            raise ValidationError(errors)
        self.api_key_encrypted = encrypt_secret(api_key)
        self.api_secret_encrypted = encrypt_secret(api_secret)
        self.passphrase_encrypted = encrypt_secret(passphrase)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key_encrypted and self.api_secret_encrypted)

    def credentials(self) -> AccountCredentials:
        """Decrypt in memory. Raises CredentialDecryptionError with a clear reason on a wrong key."""
        return AccountCredentials(
            account_key=f"account-{self.pk}",
            exchange_id=self.exchange_id,
            api_key=decrypt_secret(self.api_key_encrypted),
            api_secret=decrypt_secret(self.api_secret_encrypted),
            passphrase=decrypt_secret(self.passphrase_encrypted),
            api_base_url=self.api_base_url,
            rate_limit_per_sec=self.rate_limit_per_sec,
        )
