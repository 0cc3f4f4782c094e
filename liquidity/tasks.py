"""Beat's liquidity tasks: the minute's figures and agreement statuses, and the scheduled reports."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from celery import shared_task
from django.core.mail import EmailMessage
from django.utils import timezone

from bots.engine import keys
from liquidity import reports, services
from liquidity.models import ReportSchedule, Sla
from mmplatform.redis_client import get_redis

logger = logging.getLogger(__name__)


LOCK_SECS = 300
"""A minute task holds the lock at most this long (one that died frees it then)."""


@shared_task
def collect_sla_figures() -> dict[str, object]:
    """Every minute: store the closed minutes of every quoting bot, their hours and days, the venue
    outages seen, and each agreement's status (a ``SlaBreached`` / ``SlaAtRisk`` event on a change).
    One at a time (a Redis lock): a slow run makes the next one skip, which catches up after it."""
    token = uuid.uuid4().hex
    client = get_redis()
    if not client.set(keys.SLA_COLLECT_LOCK, token, nx=True, ex=LOCK_SECS):
        logger.info("sla figures: the previous run is still going; skipped")
        return {"skipped": 1}
    try:
        result = services.collect()
    finally:
        if client.get(keys.SLA_COLLECT_LOCK) in (token, token.encode()):
            client.delete(keys.SLA_COLLECT_LOCK)
    logger.info("sla figures: %s", result)
    return result


@shared_task
def send_sla_reports() -> dict[str, int]:
    """Daily at 00:10 UTC: yesterday's report to each daily agreement's recipients and, on the 1st, last
    month's to each monthly one's (PDF attached, JSON too). Also drops expired minute rows."""
    now = timezone.now()
    sent = sum(send_report(sla, start, end, now=now) for sla, start, end in reports_due(now))
    return {"sent": sent, "pruned_minutes": services.prune_minutes(now)}


def reports_due(now: datetime) -> list[tuple[Sla, datetime, datetime]]:
    """(agreement, start, end) of the reports due on ``now``'s day: yesterday for daily ones, last month
    for monthly ones on the 1st."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    due = []
    for sla in Sla.objects.filter(is_active=True).exclude(report_schedule="").select_related("bot"):
        if sla.report_schedule == ReportSchedule.DAILY:
            due.append((sla, today - timedelta(days=1), today))
        elif sla.report_schedule == ReportSchedule.MONTHLY and today.day == 1:
            due.append((sla, (today - timedelta(days=1)).replace(day=1), today))
    return due


def send_report(sla: Sla, start: datetime, end: datetime, *, now: datetime | None = None) -> int:
    """E-mail one agreement's report of ``[start, end)`` to its recipients; returns messages sent."""
    if not sla.recipients:
        return 0
    pdf = reports.build(sla.bot, start, end, "pdf", now=now)
    data = reports.build(sla.bot, start, end, "json", now=now)
    message = EmailMessage(
        subject=f"Liquidity report {sla.bot.name}: {start:%Y-%m-%d} - {end:%Y-%m-%d} ({sla.name})",
        body=(f"The liquidity report of {sla.bot.name} from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
              f"is attached (PDF with tables and charts, JSON with the figures per venue and pair)."),
        to=sla.recipients,
    )
    message.attach(pdf.filename, pdf.body, pdf.content_type)
    message.attach(data.filename, data.body, data.content_type)
    return message.send()
