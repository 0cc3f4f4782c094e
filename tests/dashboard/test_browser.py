"""The dashboard in a real browser: Debian's headless Chromium (Playwright) against daphne serving
the test database, with live updates over the real Redis channel layer.

Scenarios: an operator signs in, sees the bots table and the bot page, and live events arrive
without a reload; a viewer sees no control buttons and its POST is refused; the page reconnects
after daphne restarts and catches up on what it missed; a burst of pushes is coalesced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bots.events import publish_event, push
from tests.conftest import PASSWORD, TenantWorld
from tests.dashboard.browser import Daphne, chromium_page, require_chromium, screenshot, sign_in
from tests.dashboard.conftest import BOT_NAMES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def daphne(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Daphne]:
    require_chromium()
    with django_db_blocker.unblock():
        server = Daphne().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def playwright_beside_django(monkeypatch: Any) -> None:
    """Playwright's sync API keeps an event loop in this thread; the ORM calls in the test are
    still plain synchronous calls between browser steps."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def wait_live(page: Any) -> None:
    page.wait_for_selector('#live-status[data-state="live"]')


def test_operator_signs_in_and_watches_a_bot_live(daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    world_a, _ = populated
    with chromium_page(daphne.url) as page:
        sign_in(page, "a-operator", PASSWORD)
        assert page.locator("h1").inner_text() == "Firm A"
        page.click("nav >> text=Bots")
        row = page.locator(f'#bots-table tr[data-bot-id="{world_a.bot.pk}"]')
        assert BOT_NAMES["a"] in row.inner_text()
        assert "Running" in row.inner_text() and "0.45 / 0.50" in row.inner_text()
        assert BOT_NAMES["b"] not in page.content()
        wait_live(page)
        screenshot(page, "bots-page", publish=True)

        page.click(f"text={BOT_NAMES['a']}")
        page.wait_for_url(f"**/bots/{world_a.bot.pk}/")
        page.wait_for_selector("#open-orders tbody tr[data-order]")
        assert page.locator("#open-orders tbody tr[data-order]").count() == 2
        assert page.locator("#fills tbody tr[data-trade]").count() == 1
        assert "MARKET_VOLATILITY" in page.locator("#risk-events tbody tr").first.inner_text()
        for action in ("pause", "stop", "kill"):
            assert page.locator(f'#bot-controls [data-action="{action}"]').is_visible()
        assert page.locator("canvas").count() >= 3, "the vendored chart library drew nothing"
        wait_live(page)

        event = publish_event(bot=world_a.bot, event_type="StrategyAdapted", payload={"strategy": "TREND_FOLLOWING"})
        page.wait_for_selector(f'#events tr[data-event-id="{event.pk}"]')
        push(tenant_id=world_a.tenant.pk, bot_id=world_a.bot.pk, kind="orders", data={"placed": [{
            "client_order_id": "mm-live-1", "pair": "BTC/USDT", "side": "buy", "price": "98.5", "amount": "0.2",
            "filled": "0", "status": "open", "level": 1}]})
        page.wait_for_selector('#open-orders tr[data-order="mm-live-1"]')
        assert page.locator("#open-orders-count").inner_text() == "3"
        screenshot(page, "bot-page", publish=True)
        assert page.js_errors == []


def test_viewer_sees_no_controls_and_cannot_post(daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    world_a, _ = populated
    with chromium_page(daphne.url) as page:
        sign_in(page, "a-viewer", PASSWORD)
        page.goto(f"/bots/{world_a.bot.pk}/")
        page.wait_for_selector("#open-orders tbody tr[data-order]")
        assert page.locator("[data-action]").count() == 0
        assert page.locator("#bot-controls").count() == 0
        assert "Read-only" in page.locator("#read-only-note").inner_text()
        assert page.locator("#current-role").text_content() == "viewer"
        status = page.evaluate("""async (url) => {
            const token = document.querySelector('input[name=csrfmiddlewaretoken]').value;
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}, credentials: 'same-origin'});
            return r.status; }""", f"/bots/{world_a.bot.pk}/kill/")
        assert status == 403
        world_a.bot.refresh_from_db()
        assert not world_a.bot.kill_switch_engaged
        screenshot(page, "bot-page-viewer")
        assert page.js_errors == []


def test_page_reconnects_after_a_restart_and_catches_up(populated: tuple[TenantWorld, TenantWorld]) -> None:
    require_chromium()
    world_a, _ = populated
    server = Daphne().start()
    try:
        with chromium_page(server.url) as page:
            sign_in(page, "a-operator", PASSWORD)
            page.goto(f"/bots/{world_a.bot.pk}/")
            page.wait_for_selector("#open-orders tbody tr[data-order]")
            wait_live(page)

            server.stop()
            page.wait_for_selector('#live-status[data-state="reconnecting"]')
            missed = publish_event(bot=world_a.bot, event_type="BotError", payload={"error": "while you were away"})
            server.start()

            page.wait_for_selector(f'#events tr[data-event-id="{missed.pk}"]', timeout=30_000)
            wait_live(page)
            assert page.evaluate("MM.socket.stats.reconnects") >= 1
            assert page.js_errors == []
    finally:
        server.stop()


def test_a_burst_of_pushes_is_coalesced_into_few_renders(daphne: Daphne,
                                                          populated: tuple[TenantWorld, TenantWorld]) -> None:
    from bots.events import _send

    world_a, _ = populated
    with chromium_page(daphne.url) as page:
        sign_in(page, "a-operator", PASSWORD)
        page.goto(f"/bots/{world_a.bot.pk}/")
        page.wait_for_selector("#open-orders tbody tr[data-order]")
        wait_live(page)
        burst = 400
        for i in range(burst):  # straight to the layer: a burst as fast as the engine could push
            _send(world_a.tenant.pk, world_a.bot.pk, {
                "type": "bot.update", "kind": "orders", "tenant_id": world_a.tenant.pk, "bot_id": world_a.bot.pk,
                "event_id": None, "data": {"placed": [{
                    "client_order_id": f"mm-burst-{i}", "pair": "BTC/USDT", "side": "sell", "price": str(200 + i),
                    "amount": "0.01", "filled": "0", "status": "open", "level": 2}]}})
        page.wait_for_function(f"MM.socket.stats.received >= {burst}", timeout=30_000)
        page.wait_for_selector(f'#open-orders tr[data-order="mm-burst-{burst - 1}"]')
        stats = page.evaluate("MM.socket.stats")
        assert stats["batches"] < stats["received"], stats
        assert page.locator("#open-orders tbody tr[data-order]").count() == 2 + burst
        assert page.evaluate("1 + 1") == 2  # the page still answers
        assert page.js_errors == []



@pytest.fixture
def live_emulator() -> Iterator[Any]:
    from exchanges.gateway import clear_gateway_cache
    from tests.bots.conftest import start_emulator

    server = start_emulator()
    yield server
    server.stop_thread()
    clear_gateway_cache()


@pytest.mark.integration
def test_end_to_end_start_quote_fill_kill(world_a: TenantWorld, celery_queue: str, live_emulator: Any) -> None:
    """The demo path: a real Celery worker runs the bot against the emulator; the page shows its
    quotes on the ladder and a fill without a reload; Kill empties the book of the bot's orders."""
    from tests.bots.conftest import emulator_bot, emulator_open_orders
    from tests.processes import start_worker, wait_until

    require_chromium()
    bot = emulator_bot(world_a, live_emulator)
    worker = start_worker()
    server = Daphne().start()  # after celery_queue: daphne enqueues to this test's own queue
    try:
        with chromium_page(server.url) as page:
            page.on("dialog", lambda dialog: dialog.accept())
            sign_in(page, "a-operator", PASSWORD)
            page.goto(f"/bots/{bot.pk}/")
            wait_live(page)
            page.click('#bot-controls [data-action="start"]')
            page.wait_for_selector("text=Start requested")
            wait_live(page)
            page.evaluate("window.__sameDocument = true")

            page.wait_for_selector('#bot-status[data-status="running"]', timeout=60_000)
            page.wait_for_selector("#ladder tr.own", timeout=30_000)
            page.wait_for_selector("#open-orders tbody tr[data-order]", timeout=30_000)
            page.wait_for_selector("#fills tbody tr[data-trade]", timeout=90_000)
            assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
            page.wait_for_timeout(1500)  # let the post-fill state refresh land before the picture (not asserted)
            screenshot(page, "bot-page-running", publish=True)

            page.click('#bot-controls [data-action="kill"]')
            page.wait_for_selector("text=Kill switch engaged")
            page.wait_for_selector("#open-orders .empty-row", timeout=30_000)
            assert page.locator('#bot-controls [data-action="release"]').is_visible()
            wait_until(lambda: emulator_open_orders(live_emulator) == [], 15, message="orders left on the exchange")
            assert page.locator("#ladder tr.own").count() == 0 or page.wait_for_function(
                "document.querySelectorAll('#ladder tr.own').length === 0", timeout=10_000)
            assert page.js_errors == []
    finally:
        server.stop()
        worker.stop()
