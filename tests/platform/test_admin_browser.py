"""The bot form in a real browser (Debian's Chromium via Playwright, daphne on the test database):
the essentials on one screen, the rest closed until asked for, and an error opens its group."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PASSWORD, TenantWorld
from tests.dashboard.browser import Daphne, chromium_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("playwright_beside_django")]  # daphne: tests/conftest.py

VIEWPORT_HEIGHT = 1000  # chromium_page's viewport


def admin_sign_in(page: Any, username: str) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def test_bot_form_essentials_fit_and_an_error_opens_its_group(daphne: Daphne, world_a: TenantWorld) -> None:
    with chromium_page(daphne.url) as page:
        admin_sign_in(page, "a-operator")
        page.goto(f"/admin/bots/bot/{world_a.bot.pk}/change/")
        for name in ("name", "trading_pairs", "spread_bps", "order_size_quote", "grid_levels"):
            assert page.locator(f"#id_{name}").is_visible(), name
        assert not page.locator("#id_max_drawdown_ratio").is_visible()  # in a closed group
        height = page.evaluate("document.documentElement.scrollHeight")
        screenshot(page, "admin-bot-form")
        assert height < 2 * VIEWPORT_HEIGHT, f"the bot form is {height} px tall"  # was ~4,600 px (issue 12)

        page.click("summary:has-text('Risk limits')")
        assert page.locator("#id_max_drawdown_ratio").is_visible()
        assert page.locator("text=Checked before every order").is_visible()

        page.reload()
        page.click("summary:has-text('Order sizes and timing')")
        page.fill("#id_min_order_size_quote", "20000")
        page.click("input[name=_save]")
        error = page.wait_for_selector(".field-min_order_size_quote .errorlist", state="visible")
        assert "“Maximum order size (quote)”" in error.inner_text()
        page.click("#bot-form-error-fields a")
        assert "#id_min_order_size_quote" in page.url
        assert page.locator("#id_min_order_size_quote").is_visible()


def test_an_operator_is_told_who_may_add_an_exchange_account(daphne: Daphne, world_a: TenantWorld) -> None:
    with chromium_page(daphne.url) as page:
        admin_sign_in(page, "a-operator")
        response = page.goto("/admin/exchanges/exchangeaccount/add/")
        assert response is not None and response.status == 403
        text = page.locator("#content-main").inner_text()
        assert "you need the Owner role" in text and "Owner in Firm A: a-owner" in text
