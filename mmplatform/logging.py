"""Log redaction: secrets decrypted in this process never appear in a log record."""

from __future__ import annotations

import logging
import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words


def register_secret(value: str) -> None:
    """Remember a secret so every later log line has it replaced by [REDACTED]."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Replace every registered secret in ``text``."""
    for secret in tuple(_SECRETS):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites the formatted message of each record with secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
