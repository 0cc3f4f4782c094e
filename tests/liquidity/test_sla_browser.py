"""The SLA page in a real browser (Debian's Chromium, Playwright) against daphne: a client login signs
in, follows the link to its liquidity reports, sees the shared bot's agreement status and the charts
drawn from the stored minutes (the vendored chart library, no CDN), and downloads the PDF report."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bots.models import LiquidityPosition
from liquidity import services
from liquidity.models import ClientAccess, Sla
from tests.conftest import PASSWORD, TenantWorld, make_user
from tests.dashboard.browser import Daphne, chromium_page, screenshot, sign_in
from tests.liquidity.test_sla_services import quote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("playwright_beside_django")]  # daphne: tests/conftest.py


def test_client_sees_status_charts_and_downloads_the_pdf(daphne: Daphne, world_a: TenantWorld) -> None:
    bot = world_a.bot
    LiquidityPosition.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=world_a.account,
                                     trading_pair="BTC/USDT")
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=20)
    quote(bot, f"mm-{bot.pk}-1-1-b0", "buy", "59990", start, start + timedelta(minutes=15))
    quote(bot, f"mm-{bot.pk}-1-1-s0", "sell", "60010", start + timedelta(minutes=5), None)
    services.store_minutes([bot], start, start + timedelta(minutes=20))
    Sla.objects.create(tenant=world_a.tenant, bot=bot, effective_from=start,
                       name="issuer-agreement", max_spread_bps=Decimal("2"))
    ClientAccess.objects.create(tenant=world_a.tenant, bot=bot, user=make_user("issuer", staff=False))
    with chromium_page(daphne.url) as page:
        errors: list[str] = []
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        sign_in(page, "issuer", PASSWORD)
        page.click("#client-sla-link")
        page.click(f"#sla-bot-{bot.pk} h2 a")
        page.wait_for_selector(".sla-status [data-role=sla-status]")
        assert page.inner_text("#sla-overall") == "red"  # 3.3 bps against a 2 bps maximum
        page.wait_for_function("document.querySelectorAll('#sla-charts canvas').length >= 3")
        assert "BTC/USDT" in page.inner_text("#sla-charts")
        assert page.locator("text=Overview").count() == 0 and page.locator("form[action*='/kill']").count() == 0
        screenshot(page, "sla-client-page")
        with page.expect_download() as download:
            page.click("button[value=pdf]")
        path = download.value.path()
        with open(path, "rb") as pdf:
            assert pdf.read(5) == b"%PDF-"
        assert page.js_errors == []
        assert errors == []
