"""Credential encryption at rest: Fernet tokens, MultiFernet for key rotation.

Keys come from ``settings.CREDENTIAL_KEYS`` (the first encrypts, every key decrypts). Every
decrypted secret is registered with the log redaction filter so it can never reach a log line.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from mmplatform.logging import register_secret


class CredentialDecryptionError(Exception):
    """A stored credential cannot be decrypted with any configured key."""


def _multi_fernet() -> MultiFernet:
    keys = settings.CREDENTIAL_KEYS
    if not keys:
        raise ImproperlyConfigured("CREDENTIAL_KEYS is empty")
    try:
        return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"CREDENTIAL_KEYS holds a malformed Fernet key: {exc}") from None


def encrypt_secret(plaintext: str) -> str:
    """Encrypt with the primary key; empty stays empty (no secret configured)."""
    if not plaintext:
        return ""
    return _multi_fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    """Decrypt with any configured key; raises CredentialDecryptionError with a clear reason."""
    if not token:
        return ""
    try:
        plaintext = _multi_fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptionError(
            "stored exchange credentials cannot be decrypted with the configured CREDENTIAL_KEYS "
            "(was a key removed before rotation?)"
        ) from None
    register_secret(plaintext)
    return plaintext


def rotate_secret(token: str) -> str:
    """Re-encrypt a token under the primary key (MultiFernet.rotate)."""
    if not token:
        return ""
    try:
        return _multi_fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptionError("a stored credential cannot be decrypted for rotation") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()
