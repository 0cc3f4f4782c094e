"""Celery tasks of the alerts app: thin, primitive arguments, one service each."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import close_old_connections

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def raise_alerts(tenant_id: int, bot_id: int | None, event_type: str, payload: dict[str, Any],
                 event_id: int | None = None, occurred_at: str | None = None) -> dict[str, int]:
    """Match one event against its tenant's rules, then send each new delivery on its own task (a slow
    channel never holds up another). A re-run after a lost worker is a repeat: counted, not re-sent."""
    from alerts.services import alerts_raise

    close_old_connections()
    raised = alerts_raise(tenant_id=tenant_id, bot_id=bot_id, event_type=event_type, payload=payload,
                          event_id=event_id, occurred_at=datetime.fromisoformat(occurred_at) if occurred_at else None)
    for delivery_id in raised.delivery_ids:
        deliver_alert.delay(delivery_id)
    return {"alerts": len(raised.alert_ids), "deduplicated": raised.deduplicated, "throttled": raised.throttled,
            "deliveries": len(raised.delivery_ids)}


@shared_task(acks_late=True)
def resolve_alerts(tenant_id: int, bot_id: int | None, event_type: str, payload: dict[str, Any],
                   event_id: int | None = None, occurred_at: str | None = None) -> dict[str, int]:
    """A condition cleared: resolve the open alerts it raised and send each rule's "resolved" notice on its
    own task. A re-run finds them resolved: nothing is sent twice."""
    from alerts.services import alerts_resolve

    close_old_connections()
    resolved = alerts_resolve(tenant_id=tenant_id, bot_id=bot_id, event_type=event_type, payload=payload)
    for delivery_id in resolved.delivery_ids:
        deliver_alert.delay(delivery_id)
    return {"resolved": len(resolved.alert_ids), "deliveries": len(resolved.delivery_ids)}


@shared_task(acks_late=True)
def alert_events(events: list[list[Any]]) -> dict[str, int]:
    """Several events noticed together (``alerts.hooks``: ``[task name, its arguments]`` each, in the order they
    happened), each handled as its own task would handle it, in one task: one broker message and one database
    session for all of them. One that fails is logged and does not stop the others (each is idempotent, as its own
    task is: a re-run after a lost worker counts repeats, sends nothing twice)."""
    handlers = {"raise_alerts": raise_alerts, "resolve_alerts": resolve_alerts,
                "venue_disconnected": venue_disconnected, "venue_reconnected": venue_reconnected}
    handled = failed = 0
    for name, args in events:
        handler = handlers.get(name)
        if handler is None:
            logger.error("alert_events: unknown event task %r; skipped", name)
            failed += 1
            continue
        try:
            handler(*args)  # (the task's body, here and now)
            handled += 1
        except Exception:
            logger.exception("alert_events: %s%s failed", name, tuple(args)[:3])
            failed += 1
    return {"handled": handled, "failed": failed}


@shared_task(acks_late=True)
def deliver_alert(delivery_id: int) -> str:
    """One attempt; after a failure the next is scheduled with the backoff the service returned."""
    from alerts.services import delivery_attempt

    close_old_connections()
    delay = delivery_attempt(delivery_id=delivery_id)
    if delay is None:
        return "done"
    deliver_alert.apply_async((delivery_id,), countdown=delay)
    return f"retry in {delay:g} s"


@shared_task
def sweep_deliveries() -> int:
    """Beat's safety net: re-enqueue deliveries whose retry task was lost or whose sender died."""
    from alerts.services import deliveries_due

    close_old_connections()
    due = deliveries_due()
    for delivery_id in due:
        deliver_alert.delay(delivery_id)
    return len(due)


@shared_task
def venue_disconnected(account_id: int, down_secs: float, error: str) -> int:
    """An account the engine could not read for ``down_secs``: one event per running bot that trades on it."""
    from alerts.services import venue_disconnected_raise

    close_old_connections()
    raised = venue_disconnected_raise(account_id=account_id, down_secs=down_secs, error=error)
    for delivery_id in raised.delivery_ids:
        deliver_alert.delay(delivery_id)
    return len(raised.alert_ids)


@shared_task
def venue_reconnected(account_id: int, down_secs: float) -> int:
    """An account the engine had reported disconnected reads again: resolve its bots' venue alerts."""
    from alerts.services import venue_reconnected_resolve

    close_old_connections()
    resolved = venue_reconnected_resolve(account_id=account_id)
    for delivery_id in resolved.delivery_ids:
        deliver_alert.delay(delivery_id)
    return len(resolved.alert_ids)
