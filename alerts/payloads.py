"""What a webhook receives and what an email says: built from an alert's fields (pure, no Django)."""

from __future__ import annotations

import json
from typing import Any

SEVERITY_EMOJI = {"info": ":information_source:", "warning": ":warning:", "error": ":red_circle:",
                  "critical": ":rotating_light:"}


RESOLVED = "resolved"


def alert_fields(alert: Any, *, delivery_id: int, attempt: int, resolution: bool = False) -> dict[str, Any]:
    """The platform's JSON payload of an alert (``alert`` has the ``alerts.models.Alert`` attributes); with
    ``resolution``, of its "resolved" notice (``type`` ``alert_resolved``, the title prefixed, ``resolved_at``)."""
    bot = alert.bot
    resolved_at = getattr(alert, "resolved_at", None)
    return {
        "type": "alert_resolved" if resolution else "alert",
        "alert_id": alert.pk,
        "delivery_id": delivery_id,
        "attempt": attempt,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": RESOLVED if resolution else "firing",
        "title": f"Resolved: {alert.title}" if resolution else alert.title,
        "message": alert.message,
        "tenant": alert.tenant.slug if alert.tenant_id else None,
        "bot": {"id": bot.pk, "name": bot.name} if bot is not None else None,
        "event_type": alert.event_type,
        "event_id": alert.event_id,
        "occurrences": alert.occurrences,
        "occurred_at": alert.occurred_at.isoformat(),
        "raised_at": alert.created_at.isoformat(),
        "resolved_at": resolved_at.isoformat() if resolution and resolved_at else None,
        "details": alert.details,
    }


def slack_payload(fields: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` for notifications, ``blocks`` for the channel)."""
    bot = fields["bot"]["name"] if fields.get("bot") else "firm-wide"
    resolved = fields.get("status") == RESOLVED
    head = f"[{_label(fields)}] {fields['title']}"
    when = fields["resolved_at"] if resolved and fields.get("resolved_at") else fields["occurred_at"]
    context = f"{bot} · {fields['kind']} · {when} · alert {fields['alert_id']}"
    emoji = ":white_check_mark:" if resolved else SEVERITY_EMOJI.get(fields["severity"], "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} *{head}*".strip()}},
    ]
    if fields.get("message"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fields["message"][:2900]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": f"{head}: {fields['message']}" if fields.get("message") else head, "blocks": blocks}


def webhook_body(fields: dict[str, Any], payload_format: str) -> bytes:
    data = slack_payload(fields) if payload_format == "slack" else fields
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def _label(fields: dict[str, Any]) -> str:
    """What a subject line starts with: the severity, or RESOLVED for a resolved notice."""
    return "RESOLVED" if fields.get("status") == RESOLVED else fields["severity"].upper()


def email_subject(fields: dict[str, Any]) -> str:
    bot = f" — {fields['bot']['name']}" if fields.get("bot") else ""
    return f"[{_label(fields)}] {fields['title']}{bot}"[:200]


def email_body(fields: dict[str, Any]) -> str:
    lines = [fields["title"], "", fields.get("message") or "", "",
             f"Severity: {fields['severity']}", f"Kind: {fields['kind']}",
             f"Bot: {fields['bot']['name'] if fields.get('bot') else 'firm-wide'}",
             f"Occurred at: {fields['occurred_at']} (UTC)", f"Occurrences: {fields['occurrences']}",
             f"Alert: {fields['alert_id']}"]
    if fields.get("status") == RESOLVED:
        lines[0:2] = [fields["title"], f"The condition cleared at {fields.get('resolved_at')} (UTC).", ""]
    if fields.get("details"):
        lines += ["", "Details:", json.dumps(fields["details"], indent=2, sort_keys=True, default=str)]
    return "\n".join(lines)
