"""Exchange accounts of a tenant, with API credentials encrypted at rest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from exchanges.crypto import decrypt_secret, encrypt_secret
from mmplatform.tenancy.models import TenantOwned

SUPPORTED_EXCHANGE_IDS = ("binance",)


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
        default="binance",
        help_text="ccxt exchange id (e.g. binance).",
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
        if self.exchange_id not in SUPPORTED_EXCHANGE_IDS:
            raise ValidationError(
                {"exchange_id": f"Unsupported exchange {self.exchange_id!r}; supported: "
                 f"{', '.join(SUPPORTED_EXCHANGE_IDS)}."}
            )

    def set_credentials(self, *, api_key: str, api_secret: str, passphrase: str = "") -> None:
        """Encrypt and store credentials (the caller saves)."""
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
