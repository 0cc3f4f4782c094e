"""Beat's liquidity tasks: the minute's figures and agreement statuses, and the scheduled reports."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.core.mail import EmailMessage
from django.utils import timezone

from liquidity import reports, services
from liquidity.models import ReportSchedule, Sla

logger = logging.getLogger(__name__)


@shared_task
def collect_sla_figures() -> dict[str, object]:
    """Every minute: store the closed minutes of every quoting bot, their hours and days, the venue
    outages seen, and each agreement's status (a ``SlaBreached`` / ``SlaAtRisk`` event on a change)."""
    result = services.collect()
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
