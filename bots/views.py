"""The operator dashboard: tenant overview, bots table, bot page, JSON state for the live pages,
and the POST endpoints that start, stop, pause, resume and kill bots and resolve unresolved hedges.

Views stay thin: reads come from ``bots.selectors`` (always inside ``request.tenant``), writes from
``bots.services``. Another tenant's bot answers 404, a viewer's POST 403, bad input a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from bots import selectors, services
from bots.models import Bot, BotStatus
from bots.services import BotStateError
from mmplatform.errors import ConfigValidationError, RiskLimitViolationError
from mmplatform.tenancy.middleware import SESSION_KEY
from mmplatform.tenancy.models import Tenant
from mmplatform.tenancy.scoping import can_control, role_in_tenant, tenants_for_user

logger = logging.getLogger(__name__)

REASON_MAX_CHARS = 200
SERVICE_ERRORS = (ConfigValidationError, RiskLimitViolationError, BotStateError)


# --- helpers ------------------------------------------------------------------------------------


def _tenant(request: HttpRequest) -> Tenant | None:
    tenant = getattr(request, "tenant", None)
    return tenant if tenant else None


def _tenant_or_404(request: HttpRequest) -> Tenant:
    tenant = _tenant(request)
    if tenant is None:
        raise Http404("no tenant")
    return tenant


def _require_control(request: HttpRequest, tenant: Tenant) -> None:
    """Owners and operators change trading state; viewers (and anyone else) get 403."""
    if not can_control(request.user, tenant):
        raise PermissionDenied("your role in this firm is read-only")


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _back(request: HttpRequest, default: str) -> str:
    """The posted ``next`` URL when it is local, else ``default``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


def _reply(request: HttpRequest, *, ok: bool, message: str, redirect_to: str, status: int = 200) -> HttpResponse:
    """A JSON answer for scripts, else a message and a redirect (post/redirect/get)."""
    if _wants_json(request):
        return JsonResponse({"ok": ok, "message": message}, status=status if not ok else 200)
    (messages.success if ok else messages.error)(request, message)
    return HttpResponseRedirect(redirect_to)


def _no_tenant(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/no_tenant.html", status=200)


# --- favicon ------------------------------------------------------------------------------------

FAVICON = settings.BASE_DIR / "static" / "favicon.ico"


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico`` (browsers ask for it on every page, signed in or not): the static icon, cached."""
    response = HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


# --- pages --------------------------------------------------------------------------------------


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """Totals across the current tenant's bots, its kill switch and its latest events."""
    tenant = _tenant(request)
    if tenant is None:
        return _no_tenant(request)
    data = selectors.tenant_overview(tenant=tenant)
    return render(request, "dashboard/overview.html", {"overview": data, "page": "overview"})


@login_required
@require_GET
def bot_list(request: HttpRequest) -> HttpResponse:
    """The bots table: status, pairs, P&L, inventory, open orders, last cycle, risk, last error."""
    tenant = _tenant(request)
    if tenant is None:
        return _no_tenant(request)
    summaries = selectors.bot_summaries(tenant=tenant)
    return render(request, "dashboard/bot_list.html", {
        "summaries": summaries,
        "page": "bots",
        "last_event_id": selectors.last_event_id(tenant_id=tenant.pk),
    })


@login_required
@require_GET
def bot_list_json(request: HttpRequest) -> JsonResponse:
    """The bots table as JSON, re-fetched by the page when a live update arrives."""
    tenant = _tenant_or_404(request)
    summaries = selectors.bot_summaries(tenant=tenant)
    return JsonResponse({
        "bots": [s.as_json() for s in summaries],
        "last_event_id": selectors.last_event_id(tenant_id=tenant.pk),
    })


@login_required
@require_GET
def bot_detail(request: HttpRequest, bot_id: int) -> HttpResponse:
    """One bot: ladder, charts, orders, fills, event and risk log, and its controls by role."""
    tenant = _tenant_or_404(request)
    bot = selectors.bot_for_tenant(tenant=tenant, bot_id=bot_id)
    summaries = selectors.bot_summaries(tenant=tenant, bot_id=bot.pk)
    return render(request, "dashboard/bot_detail.html", {
        "bot": bot,
        "summary": summaries[0],
        "page": "bots",
        "actions": _actions_for(request, tenant, bot),
    })


@login_required
@require_GET
def bot_state_json(request: HttpRequest, bot_id: int) -> JsonResponse:
    """Everything the bot page shows; fetched on load and after every reconnect (catch-up)."""
    tenant = _tenant_or_404(request)
    bot = selectors.bot_for_tenant(tenant=tenant, bot_id=bot_id)
    state = selectors.bot_state(bot=bot)
    state["can_control"] = can_control(request.user, tenant)
    state["actions"] = _actions_for(request, tenant, bot)
    return JsonResponse(state)


@login_required
@require_GET
def bot_book_json(request: HttpRequest, bot_id: int) -> JsonResponse:
    """The latest cached order book of each pair with the bot's own quotes."""
    tenant = _tenant_or_404(request)
    bot = selectors.bot_for_tenant(tenant=tenant, bot_id=bot_id)
    return JsonResponse(selectors.bot_order_book(bot=bot))


# --- engine health ------------------------------------------------------------------------------


def _engine_rows(tenant: Tenant) -> list[dict[str, object]]:
    """One row per bot of ``tenant`` (never another's): whether a driver holds it, which, its lag."""
    from bots.engine.health import bots_health

    bots = list(Bot.objects.filter(tenant=tenant).order_by("name", "pk"))
    driven = bots_health([bot.pk for bot in bots])
    return [{"bot": bot, "health": driven.get(bot.pk)} for bot in bots]


@login_required
@require_GET
def engine_health(request: HttpRequest) -> HttpResponse:
    """The engine as ``celery inspect engine`` sees it: the fleet's drivers (shards, bot counts, cycles by
    verdict, p50/p99 cycle lag) and, for the current tenant's bots only, which driver runs each and its lag."""
    from redis import RedisError

    from bots.engine.health import LAG_WINDOW_SECS, drivers_health, fleet_totals

    tenant = _tenant(request)
    if tenant is None:
        return _no_tenant(request)
    context: dict[str, object] = {"page": "engine", "lag_window_secs": int(LAG_WINDOW_SECS)}
    try:
        drivers = drivers_health()
        context.update(drivers=drivers, fleet=fleet_totals(drivers), rows=_engine_rows(tenant))
    except RedisError as exc:
        logger.warning("engine health: Redis unavailable: %s", exc)
        context["unavailable"] = f"the engine's state in Redis could not be read ({exc.__class__.__name__})"
    return render(request, "dashboard/engine_health.html", context)


@login_required
@require_GET
def bot_engine_json(request: HttpRequest, bot_id: int) -> JsonResponse:
    """One bot's place in the engine: its shard, the driver (worker process) cycling it, its cycle lag."""
    from bots.engine.health import bots_health

    tenant = _tenant_or_404(request)
    bot = selectors.bot_for_tenant(tenant=tenant, bot_id=bot_id)
    health = bots_health([bot.pk]).get(bot.pk)
    if health is None:
        return JsonResponse({"bot_id": bot.pk, "status": bot.status, "driven": False})
    return JsonResponse({
        "bot_id": bot.pk, "status": bot.status, "driven": bool(health.driver), "shard": health.shard,
        "worker": health.worker or None,
        "cycles_last_minute": health.lag.cycles, "lag_p50_ms": health.lag.p50_ms, "lag_p99_ms": health.lag.p99_ms,
        "last_cycle_at": health.lag.last_cycle_at, "last_cycle_worker": health.lag.last_worker or None,
    })


# --- bot controls -------------------------------------------------------------------------------


def _clean_reason(request: HttpRequest) -> str:
    reason = request.POST.get("reason", "")
    if not isinstance(reason, str) or len(reason) > REASON_MAX_CHARS:
        raise ValueError(f"the reason must be at most {REASON_MAX_CHARS} characters")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in reason):
        raise ValueError("the reason may not contain control characters")
    return reason.strip()


def _start(request: HttpRequest, bot: Bot) -> str:
    services.bot_request_start(bot=bot, user=request.user)
    return f"Start requested for {bot.name}."


def _stop(request: HttpRequest, bot: Bot) -> str:
    services.bot_request_stop(bot=bot, user=request.user)
    return f"Stop requested for {bot.name}: its orders are being cancelled."


def _pause(request: HttpRequest, bot: Bot) -> str:
    services.bot_request_pause(bot=bot, user=request.user, reason=_clean_reason(request))
    return f"{bot.name} paused: its orders are being cancelled; it keeps monitoring."


def _resume(request: HttpRequest, bot: Bot) -> str:
    services.bot_request_resume(bot=bot, user=request.user)
    return f"{bot.name} resumed."


def _kill(request: HttpRequest, bot: Bot) -> str:
    cancelled = services.bot_kill(bot=bot, user=request.user, reason=_clean_reason(request))
    return (f"Kill switch engaged for {bot.name}: {cancelled} order(s) cancelled now; a backstop task "
            "cancels anything left. Release the kill switch before starting it again.")


def _release(request: HttpRequest, bot: Bot) -> str:
    services.bot_release_kill_switch(bot=bot, user=request.user)
    return f"Kill switch released for {bot.name}. It stays stopped until you start it."


def _reconcile(request: HttpRequest, bot: Bot) -> str:
    services.bot_request_reconcile(bot=bot, user=request.user)
    return f"Reconciliation with the exchange requested for {bot.name}."


def _hedge_retry(request: HttpRequest, bot: Bot) -> str:
    count = services.bot_resolve_hedges(bot=bot, user=request.user, action="retry")
    return (f"{count} unresolved hedge(s) of {bot.name} are tried again at its next cycle, within their limit; "
            "its maker accounts quote again once they are filled.")


def _hedge_accept(request: HttpRequest, bot: Bot) -> str:
    count = services.bot_resolve_hedges(bot=bot, user=request.user, action="accept")
    return (f"The unhedged exposure of {count} hedge(s) of {bot.name} is accepted: it stays in the bot's positions "
            "and its maker accounts quote again.")


BOT_ACTIONS: dict[str, tuple[str, Callable[[HttpRequest, Bot], str]]] = {
    "start": ("Start", _start),
    "stop": ("Stop", _stop),
    "pause": ("Pause", _pause),
    "resume": ("Resume", _resume),
    "kill": ("Kill", _kill),
    "release": ("Release kill switch", _release),
    "reconcile": ("Reconcile", _reconcile),
    "hedge_retry": ("Retry hedges", _hedge_retry),
    "hedge_accept": ("Accept unhedged exposure", _hedge_accept),
}


def _available_actions(bot: Bot) -> list[dict[str, str]]:
    """The buttons that make sense in the bot's current state (the services still check)."""
    names: list[str]
    if bot.kill_switch_engaged:
        names = ["release"]
    elif bot.status in (BotStatus.STOPPED, BotStatus.ERROR):
        names = ["start", "reconcile", "kill"]
    elif bot.status == BotStatus.PAUSED:
        names = ["resume", "stop", "kill"]
    elif bot.status == BotStatus.RUNNING:
        names = ["pause", "stop", "kill"]
    else:  # starting / stopping
        names = ["stop", "kill"]
    if selectors.bot_has_unresolved_hedges(bot=bot):  # its maker accounts quote nothing until resolved
        names += ["hedge_retry", "hedge_accept"]
    return [{"name": name, "label": BOT_ACTIONS[name][0]} for name in names]


def _actions_for(request: HttpRequest, tenant: Tenant, bot: Bot) -> list[dict[str, str]]:
    """The control buttons this user sees for this bot: none for a viewer."""
    if not can_control(request.user, tenant):
        return []
    return [{**a, "url": reverse(f"dashboard:bot_{a['name']}", args=[bot.pk])} for a in _available_actions(bot)]


@login_required
@require_POST
def bot_action(request: HttpRequest, bot_id: int, action: str) -> HttpResponse:
    """Run one control action on a bot of the current tenant (owner/operator only)."""
    tenant = _tenant_or_404(request)
    bot = selectors.bot_for_tenant(tenant=tenant, bot_id=bot_id)
    _require_control(request, tenant)
    back = _back(request, reverse("dashboard:bot_detail", args=[bot.pk]))
    if action not in BOT_ACTIONS:
        raise Http404("unknown action")
    label, run = BOT_ACTIONS[action]
    try:
        message = run(request, bot)
    except ValueError as exc:  # bad form input (ConfigValidationError is a ValueError too)
        return _reply(request, ok=False, message=f"{label} refused: {exc}", redirect_to=back, status=400)
    except SERVICE_ERRORS as exc:
        return _reply(request, ok=False, message=f"{label} refused: {exc}", redirect_to=back, status=409)
    except Exception:
        logger.exception("dashboard action %s on bot %s failed", action, bot.pk)
        return _reply(request, ok=False, redirect_to=back, status=503,
                      message=f"{label} could not be completed (the task queue or the exchange did not answer). "
                              "Nothing was changed if the status below did not change; try again.")
    return _reply(request, ok=True, message=message, redirect_to=back)


# --- tenant -------------------------------------------------------------------------------------


@login_required
@require_POST
def tenant_switch(request: HttpRequest) -> HttpResponse:
    """Make one of the user's own tenants the current one; any other id answers 404."""
    raw = request.POST.get("tenant_id", "")
    back = _back(request, reverse("dashboard:overview"))
    try:
        tenant_id = int(raw)
    except (TypeError, ValueError):
        return _reply(request, ok=False, message="Choose a firm from the list.", redirect_to=back, status=400)
    tenant = tenants_for_user(request.user).filter(pk=tenant_id).first()
    if tenant is None:
        raise Http404("no such tenant")
    request.session[SESSION_KEY] = tenant.pk
    role = role_in_tenant(request.user, tenant)
    return _reply(request, ok=True, message=f"Now viewing {tenant.name} ({role.label if role else 'member'}).",
                  redirect_to=reverse("dashboard:overview"))


@login_required
@require_POST
def tenant_kill(request: HttpRequest) -> HttpResponse:
    """The firm-wide kill switch: every bot of the current tenant cancels its orders and stops."""
    tenant = _tenant_or_404(request)
    _require_control(request, tenant)
    back = _back(request, reverse("dashboard:overview"))
    try:
        cancelled = services.tenant_kill(tenant=tenant, user=request.user)
    except Exception:
        logger.exception("tenant kill for %s failed", tenant.pk)
        return _reply(request, ok=False, redirect_to=back, status=503,
                      message="The firm kill switch could not be completed; press it again.")
    return _reply(request, ok=True, redirect_to=back,
                  message=f"Firm kill switch engaged for {tenant.name}: {cancelled} order(s) cancelled now.")


@login_required
@require_POST
def tenant_release(request: HttpRequest) -> HttpResponse:
    """Release the firm-wide kill switch (bots stay stopped until started one by one)."""
    tenant = _tenant_or_404(request)
    _require_control(request, tenant)
    services.tenant_release_kill_switch(tenant=tenant, user=request.user)
    return _reply(request, ok=True, redirect_to=_back(request, reverse("dashboard:overview")),
                  message=f"Firm kill switch released for {tenant.name}. Bots stay stopped until started.")

