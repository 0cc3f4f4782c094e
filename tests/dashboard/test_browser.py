"""The dashboard in a real browser: Debian's headless Chromium (Playwright) against daphne serving
the test database, with live updates over the real Redis channel layer.

Scenarios: an operator signs in, sees the bots table and the bot page, and live events arrive
without a reload; a viewer sees no control buttons and its POST is refused; the page reconnects
after daphne restarts and catches up on what it missed; a burst of pushes is coalesced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bots.events import publish_event, push
from tests.conftest import PASSWORD, TenantWorld
from tests.dashboard.browser import Daphne, chromium_page, require_chromium, screenshot, sign_in
from tests.dashboard.conftest import BOT_NAMES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("playwright_beside_django")]  # daphne: tests/conftest.py


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
    from exchanges.registry import clear_gateway_cache
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


# --- issue 12: charts with history, a correct ladder, "not quoting", one event rendering, live counters


def bad_responses(page: Any) -> list[str]:
    """Every 4xx/5xx the page met (the favicon included), collected from now on."""
    seen: list[str] = []
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return seen


CHART_GEOMETRY = """() => {
  const c = MM.botPage.charts, out = {};
  for (const [name, chart, series] of [["pnl", c.pnlChart, c.pnl], ["inventory", c.invChart, c.ratio]]) {
    const d = series.data(), ts = chart.timeScale();
    out[name] = {n: d.length, first: ts.timeToCoordinate(d[0].time), last: ts.timeToCoordinate(d[d.length - 1].time),
                 width: ts.width(), lastTime: d[d.length - 1].time};
  }
  return out;
}"""


def test_charts_draw_the_stored_history_across_the_chart_and_live_points(
        daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from bots.models import InventorySnapshot, PerformanceSnapshot

    world_a, _ = populated
    bot, now = world_a.bot, timezone.now()
    for i in range(40):  # 40 minutes of stored history (the fixture adds two more)
        taken = now - timedelta(minutes=45 - i)
        PerformanceSnapshot.objects.create(tenant=world_a.tenant, bot=bot, taken_at=taken,
                                           realised_pnl_quote=Decimal(i) / 4, fees_paid_quote=Decimal("0.5"))
        InventorySnapshot.objects.create(tenant=world_a.tenant, bot=bot, trading_pair="BTC/USDT", taken_at=taken,
                                         mid_price=Decimal("100"), ratio=0.4 + i / 400, target_ratio=0.5)
    with chromium_page(daphne.url) as page:
        errors = bad_responses(page)
        sign_in(page, "a-operator", PASSWORD)
        page.goto(f"/bots/{bot.pk}/")
        wait_live(page)
        page.wait_for_function("MM.botPage.charts && MM.botPage.charts.pnl.data().length >= 42")
        geometry = page.evaluate(CHART_GEOMETRY)
        for name, g in geometry.items():
            assert g["n"] == 42, (name, g)
            # the history spans the chart: first point near the left edge, last near the right, both inside
            assert 0 <= g["first"] < 0.1 * g["width"], (name, g)
            assert 0.85 * g["width"] < g["last"] <= g["width"], (name, g)

        # a live snapshot: stored, pushed, and drawn as one more point inside the chart
        taken = timezone.now() + timedelta(seconds=5)
        PerformanceSnapshot.objects.create(tenant=world_a.tenant, bot=bot, taken_at=taken,
                                           realised_pnl_quote=Decimal("30"), fees_paid_quote=Decimal("1"))
        push(tenant_id=world_a.tenant.pk, bot_id=bot.pk, kind="snapshot", data={
            "taken_at": taken, "realised_pnl_quote": Decimal("30"), "unrealised_pnl_quote": Decimal("0"),
            "fees_paid_quote": Decimal("1")})
        page.wait_for_function("MM.botPage.charts.pnl.data().length === 43")
        g = page.evaluate(CHART_GEOMETRY)["pnl"]
        assert g["lastTime"] == int(taken.timestamp())
        assert 0 <= g["first"] < 0.1 * g["width"] and 0.85 * g["width"] < g["last"] <= g["width"], g
        screenshot(page, "bot-page-charts")
        assert page.js_errors == []
        assert errors == []


def test_ladder_marks_exactly_the_open_orders(daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    from decimal import Decimal

    from bots.engine.core import exchange_key
    from bots.engine.market_data import BookData, store_books
    from bots.models import LiquidityPosition, Order

    world_a, _ = populated
    bot, account = world_a.bot, world_a.account
    base = {"tenant": world_a.tenant, "bot": bot, "exchange_account": account, "trading_pair": "BTC/USDT",
            "level": 1, "position": LiquidityPosition.objects.get(bot=bot)}
    Order.objects.create(client_order_id="mm-ladder-part", side="sell", price=Decimal("101"), amount=Decimal("0.5"),
                         filled=Decimal("0.2"), status="partially_filled", **base)
    late = Order.objects.create(client_order_id="mm-ladder-late", side="sell", price=Decimal("100.7"),
                                amount=Decimal("0.4"), status="open", **base)
    Order.objects.create(client_order_id="mm-ladder-gone", side="sell", price=Decimal("102"), amount=Decimal("1"),
                         status="canceled", **base)
    store_books([(exchange_key(account), "BTC/USDT", BookData(
        bids=[(99.5, 0.3), (99.0, 1.0)], asks=[(100.5, 0.1), (101.0, 2.0), (102.0, 1.0)],
        fetched_at=time.time()))], max_age_secs=120)
    own_rows = """() => Array.from(document.querySelectorAll('#ladder tr.own')).map((tr) => [
        tr.dataset.side, tr.dataset.price, tr.querySelector('.own-mark').textContent.replace('◆', '').trim(),
        tr.querySelector('.size').textContent.trim()])"""
    with chromium_page(daphne.url) as page:
        sign_in(page, "a-operator", PASSWORD)
        page.goto(f"/bots/{bot.pk}/")
        page.wait_for_selector('#ladder tr.own[data-price="100.7"]')
        page.wait_for_function("document.querySelectorAll('#open-orders tr[data-order]').length === 4")
        marked = sorted(map(tuple, page.evaluate(own_rows)))
        assert marked == [("buy", "99.5", "0.1", "0.3"), ("sell", "100.5", "0.1", "0.1"),
                          ("sell", "100.7", "0.4", "0.4"), ("sell", "101", "0.3", "2")]
        # the same set as the open orders table beside it
        open_rows = page.evaluate("""() => Array.from(document.querySelectorAll('#open-orders tr[data-order]'))
            .map((tr) => [tr.children[2].textContent, tr.children[4].textContent])""")
        assert sorted({(side, price) for side, price in open_rows}) == [(m[0], m[1]) for m in marked]
        assert page.locator('#ladder tr[data-price="102"]').count() == 1
        assert page.locator('#ladder tr.own[data-price="102"]').count() == 0, "a cancelled order is not ours"

        # the order leaves the book without any push: the next poll drops its mark
        Order.objects.filter(pk=late.pk).update(status="canceled")
        page.wait_for_function("!document.querySelector('#ladder tr.own[data-price=\"100.7\"]')", timeout=10_000)
        assert len(page.evaluate(own_rows)) == 3
        # and the open orders table beside it follows the database too (no push told it)
        page.wait_for_selector('#open-orders tr[data-order="mm-ladder-late"]', state="detached", timeout=10_000)
        assert page.locator("#open-orders-count").inner_text() == "3"
        assert page.js_errors == []


def test_not_quoting_banner_appears_and_clears(daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    from bots import quoting

    world_a, _ = populated
    bot = world_a.bot
    reason = "BTC/USDT: daily volatility 12.8% is above the pause threshold 10.0%"
    quoting.forget(bot)
    banner = "#not-quoting-banner"
    row = f'#bots-table tr[data-bot-id="{bot.pk}"] .not-quoting'
    try:
        with chromium_page(daphne.url) as page:
            sign_in(page, "a-operator", PASSWORD)
            page.goto(f"/bots/{bot.pk}/")
            wait_live(page)
            assert page.locator(banner).count() == 0

            quoting.note(bot, "BTC/USDT", reason)  # what the engine does when its strategy pauses
            page.wait_for_selector(banner)
            assert page.locator(banner).inner_text() == f"Running — not quoting: {reason}"
            page.reload()  # server-rendered the same way
            assert page.locator(banner).inner_text() == f"Running — not quoting: {reason}"
            wait_live(page)
            screenshot(page, "bot-page-not-quoting")
            quoting.note(bot, "BTC/USDT", None)  # quoting again
            page.wait_for_selector(banner, state="detached", timeout=10_000)

            # the bots table: rendered, cleared and shown again without a reload
            quoting.note(bot, "BTC/USDT", reason)
            page.goto("/bots/")
            assert reason in page.locator(row).inner_text()
            wait_live(page)
            quoting.note(bot, "BTC/USDT", None)
            page.wait_for_selector(row, state="detached", timeout=10_000)
            quoting.note(bot, "BTC/USDT", reason)
            page.wait_for_selector(row, timeout=10_000)
            assert page.js_errors == []
    finally:
        quoting.forget(bot)


def test_an_event_renders_the_same_pushed_and_reloaded(daphne: Daphne,
                                                       populated: tuple[TenantWorld, TenantWorld]) -> None:
    from decimal import Decimal

    world_a, _ = populated
    bot = world_a.bot
    row_text = "(id) => document.querySelector(`tr[data-event-id=\"${id}\"]`).innerText"
    with chromium_page(daphne.url) as page:
        sign_in(page, "a-operator", PASSWORD)
        wait_live(page)
        fill = publish_event(bot=bot, event_type="OrderFilled", payload={
            "trading_pair": "BTC/USDT", "side": "buy", "price": Decimal("59914.790000000000"),
            "amount": Decimal("0.016690000000"), "fee": Decimal("0E-12"), "trade_id": "T-1"})
        page.wait_for_selector(f'#tenant-events tr[data-event-id="{fill.pk}"]')
        pushed = page.evaluate(row_text, fill.pk)
        assert BOT_NAMES["a"] in pushed and "BTC/USDT: buy 0.01669 @ 59914.79" in pushed
        assert "bot " + str(bot.pk) not in pushed and "{" not in pushed and "E-12" not in pushed
        page.reload()
        page.wait_for_selector(f'#tenant-events tr[data-event-id="{fill.pk}"]')
        assert page.evaluate(row_text, fill.pk) == pushed, "rendered differently after a reload"
        wait_live(page)

        # routine events: one aggregated row, pushed and rendered alike
        adjusted = [publish_event(bot=bot, event_type="OrdersAdjusted", payload={
            "trading_pair": "BTC/USDT", "new_order_count": 2, "cancelled": 2, "kept": 4}) for _ in range(5)]
        newest = f'#tenant-events tr[data-event-id="{adjusted[-1].pk}"]'
        page.wait_for_selector(newest + ".aggregate")
        assert "×5" in page.locator(newest).inner_text()
        assert page.locator('#tenant-events tr[data-event-type="OrdersAdjusted"]').count() == 1
        live_text = page.locator(newest).inner_text()
        page.reload()
        page.wait_for_selector(newest + ".aggregate")
        assert page.locator(newest).inner_text() == live_text
        assert page.locator('#tenant-events tr[data-event-type="OrdersAdjusted"]').count() == 1

        # the raw payload on demand; a filter by type
        page.locator(f'#tenant-events tr[data-event-id="{fill.pk}"] details.raw > summary').click()
        raw = page.locator(f'#tenant-events tr[data-event-id="{fill.pk}"] details.raw pre').inner_text()
        assert '"trade_id": "T-1"' in raw and '"fee": "0"' in raw
        page.select_option("#tenant-event-filter", "OrderFilled")
        types = page.evaluate("""() => Array.from(document.querySelectorAll('#tenant-events tbody tr[data-event-type]'))
                                 .map((tr) => tr.dataset.eventType)""")
        assert types == ["OrderFilled"]
        page.select_option("#tenant-event-filter", "")

        # a long detail wraps inside its panel
        wait_live(page)
        long_error = publish_event(bot=bot, event_type="BotError", payload={"error": "x" * 600})
        page.wait_for_selector(f'#tenant-events tr[data-event-id="{long_error.pk}"]')
        widths = page.evaluate("""() => { const t = document.getElementById('tenant-events');
            return [t.scrollWidth, t.closest('.panel').clientWidth]; }""")
        assert widths[0] <= widths[1], widths

        # the bot page draws the same event the same way (without the bot column)
        page.goto(f"/bots/{bot.pk}/")
        page.wait_for_selector(f'#events tr[data-event-id="{fill.pk}"]')
        assert "BTC/USDT: buy 0.01669 @ 59914.79" in page.evaluate(row_text, fill.pk)
        wait_live(page)
        again = publish_event(bot=bot, event_type="OrderFilled", payload={
            "trading_pair": "BTC/USDT", "side": "sell", "price": Decimal("100.5"), "amount": Decimal("0.1")})
        page.wait_for_selector(f'#events tr[data-event-id="{again.pk}"]')
        pushed = page.evaluate(row_text, again.pk)
        page.reload()
        page.wait_for_selector(f'#events tr[data-event-id="{again.pk}"]')
        assert page.evaluate(row_text, again.pk) == pushed
        assert page.js_errors == []


def test_counters_move_live_and_no_request_fails(daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    from django.db.models import F

    from bots.models import Bot

    world_a, _ = populated
    bot = world_a.bot
    with chromium_page(daphne.url) as page:
        errors = bad_responses(page)
        sign_in(page, "a-operator", PASSWORD)
        page.goto(f"/bots/{bot.pk}/")
        wait_live(page)
        assert page.locator('#bot-cards [data-field="cycle_count"]').inner_text() == "12"
        Bot.objects.filter(pk=bot.pk).update(cycle_count=F("cycle_count") + 100)
        # the state is re-read every 15 s; the counters come over the socket within a few seconds
        page.wait_for_function(
            "document.querySelector('#bot-cards [data-field=\"cycle_count\"]').textContent === '112'", timeout=8_000)
        page.goto("/")
        page.wait_for_load_state("networkidle")
        assert errors == [], errors  # the favicon too

        # live.js formats numbers exactly as bots.wire does (rendered and live-updated numbers look alike)
        from bots import wire

        cases = [["0E-12", None], ["-0E-12", None], ["59859.650000000000", None], ["0.000000012345", None],
                 ["1E+3", None], ["3", None], ["-0.004", 2], ["12.5", 2], ["-1234.505", 2], ["9.995", 2],
                 ["0.00000000500000001", None], ["1.5e-7", None], ["", None], ["n/a", None]]
        shown = page.evaluate("(cases) => cases.map(([v, p]) => MM.dec(v, p))", cases)
        assert shown == [wire.format_decimal(v, p) for v, p in cases]
        assert page.evaluate("MM.money('-1234.5')") == wire.format_money("-1234.5") == "-1,234.50"
        assert page.js_errors == []


def test_a_bot_on_two_venues_has_a_ladder_tab_per_venue_and_the_venue_on_every_row(
        daphne: Daphne, populated: tuple[TenantWorld, TenantWorld]) -> None:
    from decimal import Decimal

    from bots.engine.core import exchange_key
    from bots.engine.market_data import BookData, store_books
    from bots.models import Fill, LiquidityPosition, Order
    from exchanges.models import ExchangeAccount

    world_a, _ = populated
    bot, binance = world_a.bot, world_a.account
    okx = ExchangeAccount(tenant=world_a.tenant, label="okx-desk", exchange_id="okx",
                          api_base_url="http://127.0.0.1:9")
    okx.set_credentials(api_key="okx-k", api_secret="okx-s", passphrase="okx-P")
    okx.save()
    bot.exchange_accounts.add(okx)
    LiquidityPosition.objects.filter(bot=bot).update(base_position=Decimal("0.25"))
    on_okx = LiquidityPosition.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=okx,
                                              trading_pair="BTC/USDT", base_position=Decimal("0.5"))
    Order.objects.filter(bot=bot).update(status="canceled")
    Order.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=okx, position=on_okx,
                         trading_pair="BTC/USDT", client_order_id="mm-okx-ask", side="sell", price=Decimal("200.5"),
                         amount=Decimal("0.2"), status="open")
    Fill.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=okx, position=on_okx,
                        exchange_trade_id="okx-t1", trading_pair="BTC/USDT", side="buy", price=Decimal("199"),
                        amount=Decimal("0.1"), executed_at=timezone_now())
    store_books([(exchange_key(binance), "BTC/USDT", BookData(bids=[(99.5, 1.0)], asks=[(100.5, 1.0)],
                                                              fetched_at=time.time())),
                 (exchange_key(okx), "BTC/USDT", BookData(bids=[(199.5, 1.0)], asks=[(200.5, 1.0)],
                                                          fetched_at=time.time()))], max_age_secs=120)
    with chromium_page(daphne.url) as page:
        sign_in(page, "a-operator", PASSWORD)
        page.goto(f"/bots/{bot.pk}/")
        page.wait_for_selector('#venue-tabs .tab[data-venue="okx-desk"]')
        assert page.locator("#venue-tabs .tab").all_inner_texts() == [
            f"{binance.label} (binance)", "okx-desk (okx)"]
        page.wait_for_selector('#ladder tr[data-price="100.5"]')  # the first venue's book
        assert page.locator("#ladder tr.own").count() == 0, "the okx order is not on binance's ladder"
        page.click('#venue-tabs .tab[data-venue="okx-desk"]')
        page.wait_for_selector('#ladder tr.own[data-price="200.5"]')
        assert page.locator('#ladder tr[data-price="100.5"]').count() == 0
        row = page.locator('#open-orders tr[data-order="mm-okx-ask"] td.venue')
        assert row.inner_text() == "okx-desk (okx)"
        page.wait_for_selector('#fills tr[data-trade="okx-t1"]')
        assert page.locator('#fills tr[data-trade="okx-t1"] td.venue').inner_text() == "okx-desk (okx)"
        split = page.locator('[data-field="inventory"] .venue-split').first.inner_text()
        assert split == f"{binance.label} 0.25 · okx-desk 0.5", split
        assert page.js_errors == []


def timezone_now() -> Any:
    from django.utils import timezone

    return timezone.now()
