"""Webhook signatures: HMAC-SHA256 over ``<unix seconds>.<body>`` with the channel's secret, sent as
``X-MM-Signature: t=<unix seconds>,v1=<hex>`` (the timestamp inside the signed text, so a captured
request cannot be replayed later with a new timestamp). Pure: receivers may copy ``verify``."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-MM-Signature"
DEFAULT_TOLERANCE_SECS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, *, now: float,
           tolerance_secs: float = DEFAULT_TOLERANCE_SECS) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance_secs``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_secs:
        return False
    return hmac.compare_digest(parts.get("v1", ""), signature(secret, timestamp, body))
