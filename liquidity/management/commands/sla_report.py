"""``manage.py sla_report``: one bot's SLA report (figures per venue and pair) as JSON, CSV or PDF."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from bots.models import Bot
from liquidity import reports


def parse_moment(value: str, option: str) -> datetime:
    """An ISO 8601 date or time; naive means UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} {value!r} is not an ISO 8601 date or time (e.g. 2026-12-01 or "
                           "2026-12-01T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = ("An SLA report of one bot: per venue and pair, uptime per side and two-sided (fractions of the "
            "period), average / p50 / p95 spread (bps), depth within ±1/2/5 %% per side (quote), fills, volume, "
            "maker share. JSON and CSV go to stdout unless --output is given; a PDF needs --output.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bot", type=int, required=True, help="The bot's id (required; no default).")
        parser.add_argument("--from", dest="start", default=None,
                            help="Start of the period, ISO 8601, UTC if no offset (default: today 00:00 UTC).")
        parser.add_argument("--to", dest="end", default=None,
                            help="End of the period, ISO 8601, UTC if no offset (default: now).")
        parser.add_argument("--format", choices=reports.FORMATS, default="json",
                            help="json, csv or pdf (default: %(default)s).")
        parser.add_argument("--output", default=None,
                            help="File to write (default: stdout for json and csv; required for pdf).")

    def handle(self, *args: Any, **options: Any) -> None:
        bot = Bot.objects.filter(pk=options["bot"]).first()
        if bot is None:
            raise CommandError(f"no bot with id {options['bot']}")
        now = timezone.now()
        start = parse_moment(options["start"], "--from") if options["start"] else now.replace(
            hour=0, minute=0, second=0, microsecond=0)
        end = parse_moment(options["end"], "--to") if options["end"] else now
        fmt = options["format"]
        if fmt == "pdf" and not options["output"]:
            raise CommandError("a PDF needs --output FILE")
        try:
            report = reports.build(bot, start, end, fmt, now=now)
        except reports.ReportError as error:
            raise CommandError(str(error)) from None
        if options["output"]:
            Path(options["output"]).write_bytes(report.body)
            self.stderr.write(f"wrote {options['output']} ({len(report.body)} bytes)")
        else:
            sys.stdout.flush()
            self.stdout.write(report.body.decode(), ending="")
