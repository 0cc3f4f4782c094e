"""SLA pages: the tenant's agreements (members of the current tenant, every role), and the same pages for
client logins (token issuers), who see only the bots shared with them (``ClientAccess``): aggregates,
no controls, no orders. Any other bot is a 404, whoever asks. Views stay thin: figures come from
``liquidity.services`` / ``liquidity.reports``, payloads from ``bots.wire``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from bots import wire
from bots.models import Bot
from exchanges.models import ExchangeAccount
from liquidity import reports, services
from liquidity.models import ClientAccess, Sla, SlaWindow
from mmplatform.tenancy.models import Tenant

SERIES_HOURS = (1, 6, 24, 24 * 7, 24 * 30)


def _tenant(request: HttpRequest) -> Tenant | None:
    tenant = getattr(request, "tenant", None)
    return tenant if tenant else None


def visible_bots(request: HttpRequest) -> tuple[list[Bot], bool]:
    """The bots whose SLA pages this user may see, and whether they see them as a client."""
    tenant = _tenant(request)
    if tenant is not None:
        return list(Bot.objects.filter(tenant=tenant).order_by("name", "pk")), False
    shared = ClientAccess.objects.filter(user=request.user, bot__tenant__is_active=True).values_list(
        "bot_id", flat=True)
    return list(Bot.objects.filter(pk__in=shared).order_by("name", "pk")), True


def bot_for(request: HttpRequest, bot_id: int) -> tuple[Bot, bool]:
    """The bot if this user may see its SLA pages (a member of its tenant, the current one, or a client
    it is shared with), and whether as a client; else 404."""
    tenant = _tenant(request)
    if tenant is not None:
        bot = Bot.objects.filter(pk=bot_id, tenant=tenant).first()
        if bot is not None:
            return bot, False
        raise Http404("no such bot")
    if ClientAccess.objects.filter(user=request.user, bot_id=bot_id, bot__tenant__is_active=True).exists():
        return Bot.objects.get(pk=bot_id), True
    raise Http404("no such bot")


def _venues(bot: Bot) -> dict[int, str]:
    return {a.pk: a.label for a in ExchangeAccount.objects.filter(tenant_id=bot.tenant_id)}


def bot_payload(bot: Bot, *, now: datetime) -> dict[str, object]:
    """Every agreement of the bot on each (venue, pair) now, and today's figures per (venue, pair)."""
    venues = _venues(bot)
    statuses = [wire.sla_status_json(status, venues.get(status.figures.exchange_account_id, "?"))
                for sla in Sla.objects.filter(bot=bot, is_active=True).select_related("bot", "exchange_account")
                for status in services.evaluate(sla, now=now)]
    start, end = services.window_bounds(SlaWindow.DAY, now)
    today = [wire.sla_figures_json(f, venues.get(f.exchange_account_id, "?"))
             for f in services.window_figures(bot, start, end, now=now)]
    return wire.sla_bot_json(bot=bot, at=now, statuses=statuses, today=today)


@login_required
@require_GET
def sla_overview(request: HttpRequest) -> HttpResponse:
    """Every visible bot's agreements: status per (venue, pair), the figure and what it needs."""
    bots, client = visible_bots(request)
    now = timezone.now()
    rows = [bot_payload(bot, now=now) for bot in bots]
    return render(request, "liquidity/overview.html", {"page": "sla", "rows": rows, "client": client})


@login_required
@require_GET
def bot_sla(request: HttpRequest, bot_id: int) -> HttpResponse:
    """One bot's SLA page: statuses, today's figures, charts, report downloads."""
    bot, client = bot_for(request, bot_id)
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return render(request, "liquidity/bot.html", {
        "page": "sla", "bot": bot, "client": client, "data": bot_payload(bot, now=now),
        "report_from": today.strftime("%Y-%m-%dT%H:%M"), "report_to": now.strftime("%Y-%m-%dT%H:%M"),
        "series_hours": SERIES_HOURS, "formats": reports.FORMATS,
    })


@login_required
@require_GET
def bot_sla_json(request: HttpRequest, bot_id: int) -> JsonResponse:
    bot, _ = bot_for(request, bot_id)
    return JsonResponse(bot_payload(bot, now=timezone.now()))


@login_required
@require_GET
def bot_sla_series(request: HttpRequest, bot_id: int) -> JsonResponse:
    """Chart points of the last ``hours`` (1, 6, 24, 168 or 720)."""
    bot, _ = bot_for(request, bot_id)
    try:
        hours = int(request.GET.get("hours", "24"))
    except ValueError:
        hours = -1
    if hours not in SERIES_HOURS:
        return JsonResponse({"error": f"hours must be one of {', '.join(map(str, SERIES_HOURS))}"}, status=400)
    end = timezone.now()
    series = reports.series(bot, end - timedelta(hours=hours), end)
    return JsonResponse(wire.sla_series_json(bot=bot, hours=hours, series=series, venues=_venues(bot)))


def _moment(value: str | None, name: str, default: datetime) -> datetime:
    if not value:
        return default
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date or time (YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@login_required
@require_GET
def bot_sla_report(request: HttpRequest, bot_id: int) -> HttpResponse:
    """The report file (``format`` json / csv / pdf, ``from`` / ``to`` ISO, UTC if naive; default today)."""
    bot, _ = bot_for(request, bot_id)
    now = timezone.now()
    try:
        start = _moment(request.GET.get("from"), "from", now.replace(hour=0, minute=0, second=0, microsecond=0))
        end = _moment(request.GET.get("to"), "to", now)
        report = reports.build(bot, start, end, request.GET.get("format", "pdf"), now=now)
    except ValueError as error:  # ReportError included
        return JsonResponse({"error": str(error)}, status=400)
    response = HttpResponse(report.body, content_type=report.content_type)
    response["Content-Disposition"] = f'attachment; filename="{report.filename}"'
    return response
