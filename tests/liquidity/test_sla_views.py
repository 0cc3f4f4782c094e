"""The SLA pages of a member: the tenant page and the bot page show each agreement's status, figure and
what it needs; status.json and series.json carry the same (built by bots/wire.py); the report
download gives the file; bad parameters are a 400 with the reason. (Isolation, the client role
included, is judged by tests/reliability/test_tenant_matrix.py.)"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from liquidity import services
from liquidity.models import ClientAccess, Sla
from tests.conftest import PASSWORD, make_user
from tests.liquidity.test_sla_services import quote

pytestmark = pytest.mark.django_db


@pytest.fixture
def quoting(world_a: Any) -> Any:
    from bots.models import LiquidityPosition

    bot = world_a.bot
    LiquidityPosition.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=world_a.account,
                                     trading_pair="BTC/USDT")
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    quote(bot, f"mm-{bot.pk}-1-1-b0", "buy", "59990", start, None)
    quote(bot, f"mm-{bot.pk}-1-1-s0", "sell", "60010", start, None)
    services.store_minutes([bot], start, start + timedelta(minutes=10))
    Sla.objects.create(tenant=world_a.tenant, bot=bot, effective_from=start,
                       name="issuer-agreement", max_spread_bps=Decimal("2"),
                       min_depth_quote=Decimal("1"))  # the day so far: at least 10 min of 600 a side
    return bot


def test_member_pages_show_status_figure_and_needs(client: Any, world_a: Any, quoting: Any) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    page = client.get("/sla/").content.decode()
    assert "issuer-agreement" in page and "sla-red" in page  # 3.3 bps against a 2 bps maximum
    page = client.get(f"/sla/bots/{quoting.pk}/").content.decode()
    assert "Average spread" in page and "average &lt;= 2 bps" in page and "Download PDF" in page
    data = client.get(f"/sla/bots/{quoting.pk}/status.json").json()
    (status,) = data["statuses"]
    checks = {c["name"]: c for c in status["checks"]}
    assert status["status"] == "red" and checks["avg_spread_bps"]["figure_text"] == "3.33 bps"
    assert checks["depth_bid_2pct_quote"]["status"] == "green"
    assert data["today"][0]["pair"] == "BTC/USDT" and data["today"][0]["uptime_bid"] > 0
    series = client.get(f"/sla/bots/{quoting.pk}/series.json?hours=1").json()["series"]
    assert series[0]["pair"] == "BTC/USDT" and len(series[0]["points"]) == 10
    assert client.get(f"/sla/bots/{quoting.pk}/series.json?hours=5").status_code == 400


def test_report_download_and_bad_parameters(client: Any, world_a: Any, quoting: Any) -> None:
    client.login(username="a-viewer", password=PASSWORD)
    response = client.get(f"/sla/bots/{quoting.pk}/report/?format=csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"] and "BTC/USDT" in response.content.decode()
    pdf = client.get(f"/sla/bots/{quoting.pk}/report/?format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    bad = client.get(f"/sla/bots/{quoting.pk}/report/?format=pdf&from=2026-12-05&to=2026-12-01")
    assert bad.status_code == 400 and "empty" in bad.json()["error"]
    assert client.get(f"/sla/bots/{quoting.pk}/report/?format=xls").status_code == 400
    assert client.get(f"/sla/bots/{quoting.pk}/report/?from=soon").status_code == 400


def test_client_sees_the_shared_bots_figures_without_controls(client: Any, world_a: Any, quoting: Any) -> None:
    ClientAccess.objects.create(tenant=world_a.tenant, bot=quoting, user=make_user("issuer", staff=False))
    client.login(username="issuer", password=PASSWORD)
    assert "client-sla-link" in client.get("/").content.decode()
    page = client.get(f"/sla/bots/{quoting.pk}/").content.decode()
    assert "issuer-agreement" in page and "3.33 bps" in page
    assert "bot page" not in page and "<form method=\"post\" action=\"/bots" not in page and "mm-" not in page
    assert client.get(f"/sla/bots/{quoting.pk}/status.json").json()["statuses"][0]["status"] == "red"


def test_owner_shares_a_bot_with_a_new_client_login_in_the_admin(client: Any, world_a: Any, world_b: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    url = reverse("admin:liquidity_clientaccess_add")
    form = {"tenant": world_a.tenant.pk, "bot": world_a.bot.pk, "username": "token-issuer",
            "password": "a long client password"}
    client.login(username="a-operator", password=PASSWORD)
    assert client.post(url, form).status_code == 403  # owners only
    client.login(username="a-owner", password=PASSWORD)
    for bad, field in (({"username": "a-viewer"}, "username"), ({"password": "short"}, "username"),
                       ({"bot": world_b.bot.pk}, "bot")):
        response = client.post(url, {**form, **bad})
        assert response.status_code == 200 and field in response.context["adminform"].form.errors, bad
    assert not ClientAccess.objects.exists() and not get_user_model().objects.filter(username="token-issuer").exists()
    assert client.post(url, form).status_code == 302
    access = ClientAccess.objects.get()
    assert access.user.username == "token-issuer" and not access.user.is_staff and access.tenant_id == world_a.tenant.pk
    client.logout()
    assert client.login(username="token-issuer", password="a long client password")
    assert client.get(f"/sla/bots/{world_a.bot.pk}/").status_code == 200
