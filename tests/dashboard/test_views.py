"""Dashboard views: the owner / operator / viewer / outsider / anonymous matrix over EVERY pattern of
``bots.urls`` (walked from the URL conf, so a new view cannot escape it), then the behaviour of the
pages and of the control endpoints (messages, nothing changed on bad input, CSRF, states)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from bots import urls as dashboard_urls
from bots.models import Bot, BotStatus
from mmplatform.tenancy.models import Membership, Role, Tenant
from tests.conftest import PASSWORD, TenantWorld, make_account, make_bot, make_user

pytestmark = pytest.mark.django_db

# Every dashboard route and its method. The first test fails when bots.urls gains a pattern that
# is not listed here, so each new view is forced through the matrix below.
METHODS = {
    "overview": "GET",
    "bot_list": "GET",
    "bot_list_json": "GET",
    "bot_detail": "GET",
    "bot_state_json": "GET",
    "bot_book_json": "GET",
    "bot_engine_json": "GET",
    "engine_health": "GET",
    "bot_start": "POST",
    "bot_stop": "POST",
    "bot_pause": "POST",
    "bot_resume": "POST",
    "bot_kill": "POST",
    "bot_release": "POST",
    "bot_reconcile": "POST",
    "bot_hedge_retry": "POST",
    "bot_hedge_accept": "POST",
    "tenant_switch": "POST",
    "tenant_kill": "POST",
    "tenant_release": "POST",
}
# POSTs any member may make (they change no trading state).
MEMBER_POSTS = {"tenant_switch"}

PATTERNS: list[URLPattern] = [p for p in dashboard_urls.urlpatterns if isinstance(p, URLPattern)]


def takes_bot(pattern: URLPattern) -> bool:
    return "bot_id" in pattern.pattern.converters


def url_for(pattern: URLPattern, world: TenantWorld) -> str:
    kwargs = {"bot_id": world.bot.pk} if takes_bot(pattern) else {}
    return reverse(f"dashboard:{pattern.name}", kwargs=kwargs)


def post_data(pattern: URLPattern, world: TenantWorld) -> dict[str, Any]:
    return {"tenant_id": world.tenant.pk} if pattern.name == "tenant_switch" else {}


def call(client: Client, pattern: URLPattern, world: TenantWorld) -> Any:
    url = url_for(pattern, world)
    if METHODS[pattern.name] == "POST":
        return client.post(url, post_data(pattern, world))
    return client.get(url)


def login(client: Client, username: str) -> Client:
    assert client.login(username=username, password=PASSWORD)
    return client


def bot_state(bot: Bot) -> tuple:
    return Bot.objects.values_list("status", "epoch", "kill_switch_engaged", "status_reason").get(pk=bot.pk)


IDS = [p.name for p in PATTERNS]


def test_every_dashboard_pattern_is_in_the_matrix() -> None:
    assert {p.name for p in PATTERNS} == set(METHODS), "add the new route to METHODS (and so to the matrix)"


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_anonymous_is_sent_to_login(client: Client, populated: Any, pattern: URLPattern) -> None:
    world_a, _ = populated
    before = bot_state(world_a.bot)
    response = call(client, pattern, world_a)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert bot_state(world_a.bot) == before


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
@pytest.mark.parametrize("role", ["owner", "operator", "viewer"])
def test_member_of_own_tenant(client: Client, populated: Any, celery_queue: str, pattern: URLPattern,
                              role: str) -> None:
    world_a, _ = populated
    login(client, f"a-{role}")
    before = bot_state(world_a.bot)
    response = call(client, pattern, world_a)
    if METHODS[pattern.name] == "GET":
        assert response.status_code == 200
        assert b"Bravo Quoter" not in response.content and b"Firm B" not in response.content
    elif role == "viewer" and pattern.name not in MEMBER_POSTS:
        assert response.status_code == 403
        assert bot_state(world_a.bot) == before, "a viewer's POST changed the bot"
        assert not Tenant.objects.get(pk=world_a.tenant.pk).kill_switch_engaged
    else:
        assert response.status_code == 302, response.content[:500]


BOT_PATTERNS = [p for p in PATTERNS if takes_bot(p)]
TENANT_PATTERNS = [p for p in PATTERNS if not takes_bot(p)]


@pytest.mark.parametrize("pattern", BOT_PATTERNS, ids=[p.name for p in BOT_PATTERNS])
@pytest.mark.parametrize("outsider", ["b-owner", "b-operator", "b-viewer"])
def test_outsider_gets_404_for_another_tenants_bot(client: Client, populated: Any, celery_queue: str,
                                                   pattern: URLPattern, outsider: str) -> None:
    world_a, _ = populated
    login(client, outsider)
    before = bot_state(world_a.bot)
    response = call(client, pattern, world_a)
    assert response.status_code == 404
    assert b"Alpha Quoter" not in response.content
    assert bot_state(world_a.bot) == before


@pytest.mark.parametrize("pattern", TENANT_PATTERNS, ids=[p.name for p in TENANT_PATTERNS])
def test_outsider_tenant_level_routes_never_touch_another_tenant(client: Client, populated: Any, celery_queue: str,
                                                                 pattern: URLPattern) -> None:
    world_a, world_b = populated
    login(client, "b-owner")
    before = bot_state(world_a.bot)
    if pattern.name == "tenant_switch":
        response = client.post(url_for(pattern, world_a), {"tenant_id": world_a.tenant.pk})
        assert response.status_code == 404
        assert client.session.get("current_tenant_id") != world_a.tenant.pk
    else:
        response = call(client, pattern, world_b)
        assert response.status_code in (200, 302)
        assert b"Alpha Quoter" not in response.content and b"Firm A" not in response.content
    assert bot_state(world_a.bot) == before
    assert not Tenant.objects.get(pk=world_a.tenant.pk).kill_switch_engaged


def test_user_without_tenant_sees_what_to_do(client: Client, populated: Any) -> None:
    make_user("loner")
    login(client, "loner")
    page = client.get(reverse("dashboard:bot_list"))
    assert page.status_code == 200
    assert b"not a member of any firm" in page.content
    assert client.get(reverse("dashboard:bot_detail", args=[populated[0].bot.pk])).status_code == 404
    assert client.post(reverse("dashboard:bot_kill", args=[populated[0].bot.pk])).status_code == 404


# --- pages ----------------------------------------------------------------------------------------


def test_bots_page_shows_every_column(client: Client, populated: Any) -> None:
    login(client, "a-viewer")
    page = client.get(reverse("dashboard:bot_list"))
    html = page.content.decode()
    summary = page.context["summaries"][0]
    # unrealised 0.5 × (102 − 100) = 1; total = 20 + 1 − 1 = 20; today = total − baseline 5 = 15
    assert summary.pnl_total_quote == Decimal("20")
    assert summary.pnl_today_quote == Decimal("15")
    assert summary.open_orders == 2
    assert summary.inventory[0].ratio == 0.45 and summary.inventory[0].target_ratio == 0.5
    assert summary.risk_level == "warn" and "MARKET_VOLATILITY" in summary.risk_state
    for text in ("Alpha Quoter", "Running", "BTC/USDT", "main (binance)", "20.00", "15.00", "0.45 / 0.50", "s ago",
                 "MARKET_VOLATILITY"):
        assert text in html, text


def test_bot_page_controls_by_role(client: Client, populated: Any) -> None:
    world_a, _ = populated
    url = reverse("dashboard:bot_detail", args=[world_a.bot.pk])
    operator_page = login(Client(), "a-operator").get(url).content.decode()
    assert 'data-action="pause"' in operator_page and 'data-action="kill"' in operator_page
    viewer_page = login(client, "a-viewer").get(url).content.decode()
    assert "data-action=" not in viewer_page
    assert "Read-only" in viewer_page
    assert "/pause/" not in viewer_page and "/kill/" not in viewer_page


def test_state_json_has_everything_the_bot_page_draws(client: Client, populated: Any) -> None:
    world_a, _ = populated
    login(client, "a-operator")
    state = client.get(reverse("dashboard:bot_state_json", args=[world_a.bot.pk])).json()
    assert state["bot"]["name"] == "Alpha Quoter"
    assert {o["side"] for o in state["open_orders"]} == {"buy", "sell"}
    assert state["fills"][0]["price"] == "99.500000000000"
    assert state["events"][0]["event_type"] == "OrdersPlaced"
    assert state["risk_events"][0]["event_type"] == "MARKET_VOLATILITY"
    assert len(state["charts"]["pnl"]) == 2
    assert state["charts"]["inventory"]["BTC/USDT"][0][1:] == [0.45, 0.5]
    assert {p[0] > 0 for p in state["charts"]["price"]["BTC/USDT"]["bid"]} == {True}
    assert state["last_event_id"] == state["events"][0]["event_id"]
    assert {a["name"] for a in state["actions"]} == {"pause", "stop", "kill"}
    viewer_state = login(Client(), "a-viewer").get(reverse("dashboard:bot_state_json", args=[world_a.bot.pk])).json()
    assert viewer_state["actions"] == [] and viewer_state["can_control"] is False


def test_book_json_marks_own_quotes_on_the_cached_book(client: Client, populated: Any) -> None:
    from bots.engine.core import exchange_key
    from bots.engine.market_data import _key
    from mmplatform.redis_client import get_redis

    world_a, _ = populated
    login(client, "a-viewer")
    key = _key(exchange_key(world_a.account), "BTC/USDT", "book")
    get_redis().set(key, json.dumps({"bids": [[99.5, 1.0], [99.0, 2.0]], "asks": [[100.5, 1.0]],
                                     "fetched_at": __import__("time").time()}), px=10_000)
    try:
        data = client.get(reverse("dashboard:bot_book_json", args=[world_a.bot.pk])).json()
    finally:
        get_redis().delete(key)
    book = data["books"]["BTC/USDT"]
    assert book["bids"][0] == [99.5, 1.0] and book["asks"] == [[100.5, 1.0]]
    assert {(o["side"], o["price"]) for o in book["own"]} == {("buy", "99.500000000000"), ("sell", "100.500000000000")}
    assert "problem" not in book


def test_book_json_says_why_there_is_no_book(client: Client, populated: Any) -> None:
    world_a, _ = populated
    login(client, "a-viewer")
    book = client.get(reverse("dashboard:bot_book_json", args=[world_a.bot.pk])).json()["books"]["BTC/USDT"]
    assert book["bids"] == [] and "exchange is unreachable" in book["problem"]


def test_empty_tenant_links_to_the_admin(client: Client, db: Any) -> None:
    tenant = Tenant.objects.create(name="Empty Co", slug="empty")
    owner = make_user("empty-owner")
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    login(client, "empty-owner")
    for name in ("overview", "bot_list"):
        html = client.get(reverse(f"dashboard:{name}")).content.decode()
        assert "No bots yet" in html
        assert reverse("admin:bots_bot_add") in html


def test_bot_in_error_shows_its_last_error(client: Client, populated: Any) -> None:
    world_a, _ = populated
    Bot.objects.filter(pk=world_a.bot.pk).update(status=BotStatus.ERROR,
                                                 last_error="ExchangeUnavailableError: connection refused")
    login(client, "a-operator")
    html = client.get(reverse("dashboard:bot_detail", args=[world_a.bot.pk])).content.decode()
    assert "The bot stopped on an error" in html and "connection refused" in html
    assert 'data-action="start"' in html
    overview = client.get(reverse("dashboard:overview")).content.decode()
    assert "connection refused" in overview


def test_stale_cycle_is_flagged(client: Client, populated: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    world_a, _ = populated
    old = timezone.now() - timedelta(minutes=5)
    Bot.objects.filter(pk=world_a.bot.pk).update(last_cycle_started_at=old, last_cycle_finished_at=old)
    login(client, "a-viewer")
    html = client.get(reverse("dashboard:bot_detail", args=[world_a.bot.pk])).content.decode()
    assert "Is a Celery worker running?" in html


def test_summaries_use_a_fixed_number_of_queries(populated: Any, django_assert_max_num_queries: Any) -> None:
    from bots.selectors import bot_summaries

    world_a, _ = populated
    with django_assert_max_num_queries(50) as one:
        bot_summaries(tenant=world_a.tenant)
    for i in range(6):
        make_bot(world_a.tenant, world_a.account, name=f"extra-{i}", pairs="BTC/USDT,ETH/USDT")
    with django_assert_max_num_queries(len(one.captured_queries)) as many:
        assert len(bot_summaries(tenant=world_a.tenant)) == 7
    assert len(many.captured_queries) == len(one.captured_queries)


# --- controls ------------------------------------------------------------------------------------


def follow_message(response: Any) -> str:
    return " | ".join(str(m) for m in response.context["messages"])


def test_operator_start_pause_resume_stop_kill_release(client: Client, populated: Any, celery_queue: str) -> None:
    world_a, _ = populated
    bot = world_a.bot
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.STOPPED)
    login(client, "a-operator")

    response = client.post(reverse("dashboard:bot_start", args=[bot.pk]), follow=True)
    assert "Start requested" in follow_message(response)
    assert bot_state(bot)[0] == BotStatus.STARTING

    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    response = client.post(reverse("dashboard:bot_pause", args=[bot.pk]), {"reason": "news at 14:00"}, follow=True)
    assert "paused" in follow_message(response)
    assert bot_state(bot)[0] == BotStatus.PAUSED and bot_state(bot)[3] == "news at 14:00"

    client.post(reverse("dashboard:bot_resume", args=[bot.pk]))
    assert bot_state(bot)[0] == BotStatus.RUNNING

    client.post(reverse("dashboard:bot_stop", args=[bot.pk]))
    assert bot_state(bot)[0] == BotStatus.STOPPING

    response = client.post(reverse("dashboard:bot_kill", args=[bot.pk]), follow=True)
    assert "Kill switch engaged" in follow_message(response)
    status, _, killed, _ = bot_state(bot)
    assert status == BotStatus.STOPPED and killed

    response = client.post(reverse("dashboard:bot_start", args=[bot.pk]), follow=True)
    assert "Start refused" in follow_message(response) and "kill switch" in follow_message(response)
    assert bot_state(bot)[0] == BotStatus.STOPPED

    client.post(reverse("dashboard:bot_release", args=[bot.pk]))
    assert not bot_state(bot)[2]


@pytest.mark.parametrize(("action", "setup", "expected"), [
    ("pause", BotStatus.STOPPED, "only a running bot can be paused"),
    ("resume", BotStatus.RUNNING, "only a paused bot can be resumed"),
])
def test_service_state_errors_become_messages(client: Client, populated: Any, celery_queue: str, action: str,
                                              setup: str, expected: str) -> None:
    world_a, _ = populated
    Bot.objects.filter(pk=world_a.bot.pk).update(status=setup)
    before = bot_state(world_a.bot)
    login(client, "a-operator")
    response = client.post(reverse(f"dashboard:bot_{action}", args=[world_a.bot.pk]), follow=True)
    assert response.status_code == 200
    assert expected in follow_message(response)
    assert bot_state(world_a.bot) == before


def test_start_without_an_active_account_says_so(client: Client, populated: Any, celery_queue: str) -> None:
    world_a, _ = populated
    Bot.objects.filter(pk=world_a.bot.pk).update(status=BotStatus.STOPPED)
    world_a.account.is_active = False
    world_a.account.save(update_fields=["is_active"])
    before = bot_state(world_a.bot)
    login(client, "a-owner")
    response = client.post(reverse("dashboard:bot_start", args=[world_a.bot.pk]), HTTP_ACCEPT="application/json")
    assert response.status_code == 409
    assert response.json() == {"ok": False, "message": "Start refused: the bot has no active exchange account"}
    assert bot_state(world_a.bot) == before


def test_invalid_config_is_refused_with_the_field(client: Client, populated: Any, celery_queue: str) -> None:
    world_a, _ = populated
    Bot.objects.filter(pk=world_a.bot.pk).update(status=BotStatus.STOPPED, spread_bps=-5)
    before = bot_state(world_a.bot)
    login(client, "a-owner")
    response = client.post(reverse("dashboard:bot_start", args=[world_a.bot.pk]), follow=True)
    assert "Start refused" in follow_message(response) and "spread_bps" in follow_message(response)
    assert bot_state(world_a.bot) == before


def test_too_long_reason_changes_nothing(client: Client, populated: Any, celery_queue: str) -> None:
    world_a, _ = populated
    before = bot_state(world_a.bot)
    login(client, "a-operator")
    response = client.post(reverse("dashboard:bot_pause", args=[world_a.bot.pk]), {"reason": "x" * 500}, follow=True)
    assert "at most 200 characters" in follow_message(response)
    assert bot_state(world_a.bot) == before


def test_posts_need_the_csrf_token(populated: Any, celery_queue: str) -> None:
    world_a, _ = populated
    client = Client(enforce_csrf_checks=True)
    login(client, "a-operator")
    before = bot_state(world_a.bot)
    assert client.post(reverse("dashboard:bot_kill", args=[world_a.bot.pk])).status_code == 403
    assert client.post(reverse("dashboard:tenant_kill")).status_code == 403
    assert bot_state(world_a.bot) == before
    assert not Tenant.objects.get(pk=world_a.tenant.pk).kill_switch_engaged


def test_get_on_a_control_endpoint_is_refused(client: Client, populated: Any) -> None:
    world_a, _ = populated
    login(client, "a-operator")
    before = bot_state(world_a.bot)
    assert client.get(reverse("dashboard:bot_kill", args=[world_a.bot.pk])).status_code == 405
    assert bot_state(world_a.bot) == before


def test_unknown_bot_id_is_404_not_500(client: Client, populated: Any) -> None:
    login(client, "a-operator")
    assert client.get("/bots/999999/").status_code == 404
    assert client.post("/bots/999999/kill/").status_code == 404
    assert client.get("/bots/abc/").status_code == 404


def test_tenant_kill_stops_every_bot_of_the_firm_only(client: Client, populated: Any, celery_queue: str) -> None:
    world_a, world_b = populated
    second = make_bot(world_a.tenant, world_a.account, name="a-second")
    login(client, "a-owner")
    response = client.post(reverse("dashboard:tenant_kill"), follow=True)
    assert "Firm kill switch engaged" in follow_message(response)
    assert Tenant.objects.get(pk=world_a.tenant.pk).kill_switch_engaged
    assert set(Bot.objects.filter(tenant=world_a.tenant).values_list("kill_switch_engaged", flat=True)) == {True}
    assert second.pk in Bot.objects.filter(kill_switch_engaged=True).values_list("pk", flat=True)
    assert not Bot.objects.get(pk=world_b.bot.pk).kill_switch_engaged
    assert not Tenant.objects.get(pk=world_b.tenant.pk).kill_switch_engaged
    client.post(reverse("dashboard:tenant_release"))
    assert not Tenant.objects.get(pk=world_a.tenant.pk).kill_switch_engaged


# --- tenant switcher --------------------------------------------------------------------------------


def test_switcher_changes_tenant_only_among_own(client: Client, populated: Any) -> None:
    world_a, world_b = populated
    other = Tenant.objects.create(name="Firm C", slug="c")
    Membership.objects.create(user=world_a.operator, tenant=other, role=Role.VIEWER)
    c_bot = make_bot(other, make_account(other), name="c-bot")
    login(client, "a-operator")

    response = client.post(reverse("dashboard:tenant_switch"), {"tenant_id": other.pk}, follow=True)
    assert "Now viewing Firm C (Viewer)" in follow_message(response)
    html = client.get(reverse("dashboard:bot_list")).content.decode()
    assert "c-bot" in html and "Alpha Quoter" not in html
    assert client.get(reverse("dashboard:bot_detail", args=[world_a.bot.pk])).status_code == 404
    assert client.post(reverse("dashboard:bot_kill", args=[c_bot.pk])).status_code == 403  # viewer in C

    assert client.post(reverse("dashboard:tenant_switch"), {"tenant_id": world_b.tenant.pk}).status_code == 404
    response = client.post(reverse("dashboard:tenant_switch"), {"tenant_id": "not-a-number"}, follow=True)
    assert "Choose a firm" in follow_message(response)
    assert client.session["current_tenant_id"] == other.pk


def test_next_redirect_stays_on_site(client: Client, populated: Any, celery_queue: str) -> None:
    world_a, _ = populated
    login(client, "a-operator")
    response = client.post(reverse("dashboard:bot_reconcile", args=[world_a.bot.pk]),
                           {"next": "https://evil.example/"})
    assert response["Location"] == reverse("dashboard:bot_detail", args=[world_a.bot.pk])
    response = client.post(reverse("dashboard:bot_reconcile", args=[world_a.bot.pk]), {"next": "/bots/"})
    assert response["Location"] == "/bots/"


def test_login_page_renders_and_signs_in(client: Client, populated: Any) -> None:
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b"Sign in" in page.content
    bad = client.post(reverse("login"), {"username": "a-owner", "password": "wrong"})
    assert b"did not match" in bad.content
    good = client.post(reverse("login"), {"username": "a-owner", "password": PASSWORD})
    assert good.status_code == 302
    assert client.get(reverse("dashboard:overview")).status_code == 200


def test_risk_state_shows_a_breach_only_while_the_engine_holds_it(client: Client, populated: Any) -> None:
    from bots.selectors import bot_summaries
    from mmplatform.redis_client import get_redis

    world_a, _ = populated
    summary = bot_summaries(tenant=world_a.tenant, bot_id=world_a.bot.pk)[0]
    assert summary.risk_level == "warn" and summary.risk_state.startswith("MARKET_VOLATILITY: volatility high")
    get_redis().delete(f"mm:risk:active:{world_a.bot.pk}")  # e.g. the threshold was raised: the next cycle ends it
    summary = bot_summaries(tenant=world_a.tenant, bot_id=world_a.bot.pk)[0]
    assert summary.risk_level == "ok"
    assert summary.risk_state.startswith("within limits (last: MARKET_VOLATILITY at ")


def test_favicon_is_served_and_linked(client: Client, populated: Any) -> None:
    response = client.get("/favicon.ico")  # anonymous: browsers ask before anyone signs in
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    html = login(client, "a-viewer").get(reverse("dashboard:overview")).content.decode()
    assert '<link rel="icon" href="/static/favicon.ico"' in html


def test_overview_renders_events_with_the_bot_name_and_a_summary(client: Client, populated: Any) -> None:
    from bots.events import publish_event

    world_a, _ = populated
    publish_event(bot=world_a.bot, event_type="MarketMakingStopped",
                  payload={"performance": {"realised_pnl_quote": Decimal("0E-12"), "fees_paid_quote": Decimal("5")}})
    html = login(client, "a-viewer").get(reverse("dashboard:overview")).content.decode()
    assert '<td class="bot">Alpha Quoter</td>' in html
    assert "stopped quoting (realised 0.00, fees 5.00)" in html
    assert "E-12" not in html and "{&#x27;" not in html  # no exponent, no Python dict
