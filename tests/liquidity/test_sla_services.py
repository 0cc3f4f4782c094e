"""The SLA services against the real database (and Redis for the mid history): stored minutes add up to
the figures computed at once, hours and days are their sums, agreements turn amber / red with exactly
one ``SlaAtRisk`` / ``SlaBreached`` bot event per change, exclusions leave their minutes out, reports
(JSON, CSV, PDF) show the figures, bad input in the admin and the command changes nothing."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse

from alerts import matching
from bots.models import BotEvent, BotStatus, Fill, LiquidityPosition, Order, OrderStatus
from liquidity import services
from liquidity.models import LiquidityStats, Resolution, Sla, SlaExclusion, SlaState
from liquidity.tasks import send_report
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def quote(bot: Any, cid: str, side: str, price: str, start: datetime, end: datetime | None, *,
          amount: str = "0.01", status: str | None = None) -> Order:
    return Order.objects.create(
        tenant_id=bot.tenant_id, bot=bot, exchange_account=bot.exchange_accounts.get(), trading_pair="BTC/USDT",
        client_order_id=cid, side=side, price=Decimal(price), amount=Decimal(amount),
        status=status or (OrderStatus.CANCELED if end else OrderStatus.OPEN), acknowledged_at=start, closed_at=end)


def quoted_world(world: Any, *, hours: float) -> Any:
    """The world's bot quoting 59990 / 60010 (about 3.3 bps) from DAY 00:00 for ``hours``, one order pair
    per 10 minutes; a 0.004 fill of the first bid at 00:05."""
    bot = world.bot
    LiquidityPosition.objects.create(tenant=world.tenant, bot=bot, exchange_account=world.account,
                                     trading_pair="BTC/USDT")
    t, n = DAY, 0
    while t < DAY + timedelta(hours=hours):
        end = min(t + timedelta(minutes=10), DAY + timedelta(hours=hours))
        quote(bot, f"mm-{bot.pk}-1-{n}-b0", "buy", "59990", t, end)
        quote(bot, f"mm-{bot.pk}-1-{n}-s0", "sell", "60010", t, end)
        t, n = end, n + 1
    first = Order.objects.get(client_order_id=f"mm-{bot.pk}-1-0-b0")
    Fill.objects.create(tenant_id=bot.tenant_id, bot=bot, order=first, exchange_account=world.account,
                        exchange_trade_id="t1", trading_pair="BTC/USDT", side="buy", price=Decimal("59990"),
                        amount=Decimal("0.004"), is_maker=True, executed_at=DAY + timedelta(minutes=5))
    return bot


def test_stored_minutes_add_up_and_hours_days_are_their_sums(world_a: Any) -> None:
    bot = quoted_world(world_a, hours=0.5)
    start, end = DAY, DAY + timedelta(minutes=45)
    assert services.store_minutes([bot], start, end) == 45
    assert not LiquidityStats.objects.filter(bot=bot).exclude(resolution=Resolution.MINUTE).exists()  # hour open
    assert services.store_minutes([bot], end, DAY + timedelta(minutes=60)) == 15  # the hour's last minute: rolled
    direct = services.compute([bot], start, DAY + timedelta(hours=1))[(bot.pk, world_a.account.pk, "BTC/USDT")][0]
    hour = LiquidityStats.objects.get(bot=bot, resolution=Resolution.HOUR, bucket_start=DAY)
    services.roll_up({(bot.pk, world_a.account.pk, "BTC/USDT", DAY)}, Resolution.DAY, {bot.pk: bot.tenant_id})
    day = LiquidityStats.objects.get(bot=bot, resolution=Resolution.DAY, bucket_start=DAY)
    for row in (hour, day):
        assert (row.bid_ms, row.ask_ms, row.two_sided_ms) == (direct.bid_ms, direct.ask_ms, direct.two_sided_ms)
        assert row.bid_ms == 30 * 60_000 and row.fills == 1 and row.maker_volume_quote == Decimal("239.96")
        assert row.depth_quote_ms["bid_2"] == pytest.approx(direct.depth_quote_ms["bid_2"])
        assert row.duration_ms == 3_600_000
    assert hour.spread_bps_ms / hour.two_sided_ms == pytest.approx(20 / 60000 * 10_000, rel=1e-6)
    # the bid rested 0.01 then 0.006 after the fill at 00:05
    minute4 = LiquidityStats.objects.get(bot=bot, resolution=Resolution.MINUTE, bucket_start=DAY + timedelta(minutes=4))
    minute6 = LiquidityStats.objects.get(bot=bot, resolution=Resolution.MINUTE, bucket_start=DAY + timedelta(minutes=6))
    assert minute4.depth_quote_ms["bid_1"] / 60_000 == pytest.approx(599.9)
    assert minute6.depth_quote_ms["bid_1"] / 60_000 == pytest.approx(599.9 * 0.6)
    # a window read from the rows (the day row, the hour row, minutes) equals one computed at once
    figures = services.window_figures(bot, start, end, now=end)[0]
    assert figures.summary.uptime_bid == pytest.approx(30 / 45) and figures.extras.fills == 1
    # the minutes after the last stored one are computed on demand
    later = services.window_figures(bot, start, DAY + timedelta(minutes=90), now=DAY + timedelta(minutes=90))[0]
    assert later.summary.uptime_bid == pytest.approx(30 / 90)
    # a complete hour whose row is missing (never rolled up) is read from its minutes
    LiquidityStats.objects.filter(bot=bot).exclude(resolution=Resolution.MINUTE).delete()
    again = services.window_figures(bot, start, DAY + timedelta(minutes=90), now=DAY + timedelta(minutes=90))[0]
    assert again.summary.uptime_bid == pytest.approx(30 / 90) and again.extras.fills == 1


def test_an_agreement_turns_amber_then_red_with_one_event_each(world_a: Any) -> None:
    bot = quoted_world(world_a, hours=1)
    sla = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                             name="issuer", bot=bot, min_uptime_pct=Decimal("90"),
                             max_spread_bps=Decimal("10"), min_depth_quote=Decimal("500"))
    services.store_minutes([bot], DAY, DAY + timedelta(hours=2))
    two_hours = DAY + timedelta(hours=2)
    status = services.evaluate(sla, now=two_hours)[0]
    checks = {c.name: c for c in status.checks}
    assert status.status == "red" and checks["uptime_bid"].figure == pytest.approx(0.5)
    assert checks["uptime_bid"].status == "amber" and checks["avg_spread_bps"].status == "green"
    assert checks["depth_bid_2pct_quote"].status == "red" and checks["depth_bid_2pct_quote"].figure < 500
    sla.min_depth_quote = Decimal("200")  # 1 h at ~600 of 2 h: ~290 on average
    sla.save()
    status = services.evaluate(sla, now=two_hours)[0]
    assert status.status == "amber", [(c.name, c.status) for c in status.checks]
    assert "min more without quotes" in {c.name: c for c in status.checks}["uptime_bid"].needs
    for _ in range(2):
        services.evaluate_all(now=two_hours)
    assert list(BotEvent.objects.filter(bot=bot, event_type__startswith="Sla").values_list("event_type", flat=True)) \
        == ["SlaAtRisk"]
    late = DAY + timedelta(hours=23)  # 1 h quoted of 23: 90 % of the day cannot be reached any more
    for _ in range(2):
        services.evaluate_all(now=late)
    events = list(BotEvent.objects.filter(bot=bot, event_type__startswith="Sla").order_by("id"))
    assert [e.event_type for e in events] == ["SlaAtRisk", "SlaBreached"]
    assert events[1].payload["checks"]["uptime_bid"]["needs"].startswith("window lost")
    assert SlaState.objects.get(sla=sla).status == "red"

    # the terms relaxed: green again, one SlaRecovered event, which names the alerts the other two raised
    Sla.objects.filter(pk=sla.pk).update(min_uptime_pct=None, max_spread_bps=None, min_depth_quote=None)
    for _ in range(2):
        services.evaluate_all(now=late)
    events = list(BotEvent.objects.filter(bot=bot, event_type__startswith="Sla").order_by("id"))
    assert [e.event_type for e in events] == ["SlaAtRisk", "SlaBreached", "SlaRecovered"]
    assert (events[2].payload["status"], events[2].payload["previous"]) == ("green", "red")
    assert SlaState.objects.get(sla=sla).status == "green"
    raised = {(s.kind, s.subject) for e in events[:2] for s in [matching.classify(e.event_type, e.payload)] if s}
    assert {(s.kind, s.subject) for s in matching.resolutions("SlaRecovered", events[2].payload)} == raised


def test_a_breach_of_the_last_window_is_recovered_by_a_green_new_window(world_a: Any) -> None:
    """A day window that ended red, then a new day that starts green: one SlaRecovered (the breach alert of
    the day before is resolved), and none again on the next evaluation."""
    bot = quoted_world(world_a, hours=1)
    sla = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY, name="issuer", bot=bot,
                             min_uptime_pct=Decimal("90"))
    services.evaluate_all(now=DAY + timedelta(hours=23))
    assert SlaState.objects.get(sla=sla).status == "red"
    Sla.objects.filter(pk=sla.pk).update(min_uptime_pct=None)
    next_day = DAY + timedelta(days=1, minutes=5)
    for _ in range(2):
        services.evaluate_all(now=next_day)
    kinds = list(BotEvent.objects.filter(bot=bot, event_type__startswith="Sla").order_by("id")
                 .values_list("event_type", flat=True))
    assert kinds == ["SlaBreached", "SlaRecovered"]


def test_planned_exclusions_leave_their_minutes_out(world_a: Any) -> None:
    bot = quoted_world(world_a, hours=1)
    sla = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                             name="issuer", bot=bot, min_uptime_pct=Decimal("90"))
    services.store_minutes([bot], DAY, DAY + timedelta(hours=2))
    SlaExclusion.objects.create(tenant=world_a.tenant, sla=sla, starts_at=DAY + timedelta(hours=1),
                                ends_at=DAY + timedelta(hours=1, minutes=30), reason="venue maintenance")
    status = services.evaluate(sla, now=DAY + timedelta(hours=2))[0]
    assert status.figures.excluded_ms == 30 * 60_000
    assert status.figures.summary.uptime_bid == pytest.approx(60 / 90)


def test_reports_show_the_figures(world_a: Any, tmp_path: Path) -> None:
    import pypdf

    bot = quoted_world(world_a, hours=1)
    Sla.objects.create(tenant=world_a.tenant, effective_from=DAY, name="issuer", bot=bot, min_uptime_pct=Decimal("90"))
    services.store_minutes([bot], DAY, DAY + timedelta(hours=2))
    out = io.StringIO()
    call_command("sla_report", "--bot", str(bot.pk), "--from", "2026-12-01T00:00", "--to", "2026-12-01T02:00",
                 "--format", "json", stdout=out)
    document = json.loads(out.getvalue())
    (row,) = document["rows"]
    assert (row["pair"], row["uptime_bid"], row["uptime_ask"], row["uptime_two_sided"]) == ("BTC/USDT", 0.5, 0.5, 0.5)
    assert row["avg_spread_bps"] == pytest.approx(3.333, abs=0.001)
    # 0.01 at 59990 for an hour but 5 minutes at 0.006 (the fill), over two hours
    assert Decimal(row["depth_bid_2pct_quote"]) == Decimal("289.95")
    assert row["fills"] == 1 and row["maker_share"] == 1.0 and document["slas"][0]["min_uptime_pct"] == "90.00"
    (result,) = document["sla_results"]  # 1 h quoted of 2: 90 % per side missed
    assert (result["uptime_bid"], result["uptime_met"], result["met"]) == (0.5, False, False)
    csv_path = tmp_path / "r.csv"
    call_command("sla_report", "--bot", str(bot.pk), "--from", "2026-12-01", "--to", "2026-12-01T02:00",
                 "--format", "csv", "--output", str(csv_path))
    header, line = csv_path.read_text().splitlines()
    assert header.startswith("venue,pair,from,to,counted_minutes,uptime_bid") and ",BTC/USDT," in line
    pdf_path = tmp_path / "r.pdf"
    call_command("sla_report", "--bot", str(bot.pk), "--from", "2026-12-01", "--to", "2026-12-01T02:00",
                 "--format", "pdf", "--output", str(pdf_path))
    reader = pypdf.PdfReader(pdf_path)
    assert len(reader.pages) == 2  # the table, then the charts of BTC/USDT
    text = reader.pages[0].extract_text()
    assert bot.name in text and "50.00 %" in text and "3.33" in text and "BTC/USDT" in text and "MISSED" in text
    assert "BTC/USDT" in reader.pages[1].extract_text()
    # bad input: a clear error, no file
    for args, message in ((["--from", "2026-12-02", "--to", "2026-12-01"], "the period is empty"),
                          (["--from", "yesterday"], "not an ISO 8601"), (["--format", "pdf"], "needs --output")):
        with pytest.raises(CommandError, match=message):
            call_command("sla_report", "--bot", str(bot.pk), *args)
    with pytest.raises(CommandError, match="no bot with id"):
        call_command("sla_report", "--bot", "999999")


def test_scheduled_report_is_mailed_with_pdf_and_json(world_a: Any) -> None:
    bot = quoted_world(world_a, hours=1)
    sla = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                             name="issuer", bot=bot, min_uptime_pct=Decimal("90"),
                             report_schedule="daily", report_recipients="issuer@example.com")
    assert send_report(sla, DAY, DAY + timedelta(days=1), now=DAY + timedelta(days=1)) == 1
    (message,) = mail.outbox
    assert message.to == ["issuer@example.com"] and bot.name in message.subject
    assert sorted(a[2] for a in message.attachments) == ["application/json", "application/pdf"]
    assert json.loads(message.attachments[1][1])["rows"][0]["uptime_bid"] == pytest.approx(1 / 24, abs=1e-6)


def test_bad_input_in_the_admin_is_a_field_error_and_nothing_is_saved(client: Any, world_a: Any) -> None:
    client.login(username="a-owner", password=PASSWORD)
    url = reverse("admin:liquidity_sla_add")
    base = {"tenant": world_a.tenant.pk, "name": "x", "bot": world_a.bot.pk, "trading_pair": "", "window": "day",
            "depth_band_pct": "2", "exclude_venue_outages": "on", "is_active": "on", "report_schedule": "",
            "report_recipients": "", "effective_from_0": "2026-12-01", "effective_from_1": "00:00",
            "exclusions-TOTAL_FORMS": "0", "exclusions-INITIAL_FORMS": "0",
            "exclusions-MIN_NUM_FORMS": "0", "exclusions-MAX_NUM_FORMS": "1000"}
    cases = [
        ({"max_spread_bps": "-5"}, "max_spread_bps"),
        ({"max_spread_bps": "50", "window": ""}, "window"),
        ({"min_uptime_pct": "120"}, "min_uptime_pct"),
        ({"min_depth_quote": "100", "trading_pair": "DOGE/USDT"}, "trading_pair"),
        ({"max_spread_bps": "50", "report_schedule": "daily"}, "report_recipients"),
        ({"max_spread_bps": "50", "exclusions-TOTAL_FORMS": "1", "exclusions-0-starts_at_0": "2026-12-02",
          "exclusions-0-starts_at_1": "10:00", "exclusions-0-ends_at_0": "2026-12-02",
          "exclusions-0-ends_at_1": "09:00"}, "ends_at"),
    ]
    for extra, field in cases:
        response = client.post(url, {**base, **extra})
        assert response.status_code == 200, (extra, response.status_code)
        html = response.content.decode()
        assert "errornote" in html and f"field-{field}" in html, (field, extra)
        errors = response.context["adminform"].form.errors
        inline_errors = [f.errors for fs in response.context["inline_admin_formsets"] for f in fs.formset.forms]
        assert field in errors or any(field in e for e in inline_errors), (field, errors, inline_errors)
    assert not Sla.objects.exists() and not SlaExclusion.objects.exists()
    response = client.post(url, {**base, "max_spread_bps": "50", "min_uptime_pct": "90"})
    assert response.status_code == 302
    assert Sla.objects.get().tenant_id == world_a.tenant.pk


def test_bots_to_measure_and_collect(world_a: Any) -> None:
    bot = quoted_world(world_a, hours=1)
    from bots.models import Bot

    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING, started_at=DAY)
    result = services.collect(DAY + timedelta(minutes=30, seconds=5))
    assert result["minutes"] == 30 and result["bots"] == 1
    again = services.collect(DAY + timedelta(minutes=31, seconds=5))
    assert again["minutes"] == 1  # only the newly closed minute


def test_reports_due_daily_and_on_the_first_monthly(world_a: Any) -> None:
    from liquidity.tasks import reports_due

    daily = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                               name="d", bot=world_a.bot, max_spread_bps=Decimal("50"),
                               report_schedule="daily", report_recipients="a@example.com")
    monthly = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                                 name="m", bot=world_a.bot, max_spread_bps=Decimal("50"),
                                 report_schedule="monthly", report_recipients="b@example.com")
    Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                       name="none", bot=world_a.bot, max_spread_bps=Decimal("50"))
    first = datetime(2026, 12, 1, 0, 10, tzinfo=UTC)
    assert {(s.pk, a, b) for s, a, b in reports_due(first)} == {
        (daily.pk, datetime(2026, 11, 30, tzinfo=UTC), DAY), (monthly.pk, datetime(2026, 11, 1, tzinfo=UTC), DAY)}
    assert [s.pk for s, _, _ in reports_due(first + timedelta(days=1))] == [daily.pk]


def test_a_gap_in_the_venue_reads_is_an_outage_and_excluded(world_a: Any) -> None:
    """The shared mid history (one point per book read) stops for 40 s while the bot runs: the platform
    could not read the venue; an agreement that excludes outages leaves that minute out."""
    from bots.engine import keys
    from bots.engine.venues import exchange_key
    from bots.models import Bot
    from liquidity.models import VenueOutage
    from mmplatform.redis_client import get_redis

    bot = quoted_world(world_a, hours=1)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING, started_at=DAY)
    bot.refresh_from_db()
    venue = exchange_key(world_a.account)
    now = DAY + timedelta(minutes=30)
    reads = [now.timestamp() - 110 + i for i in range(0, 50, 2)] + [now.timestamp() - 20 + i for i in range(0, 20, 2)]
    get_redis().rpush(keys.market_data("mids", venue, "BTC/USDT"), *[f"{t}:60000" for t in reads])
    assert services.record_outages([bot], now) == 1
    assert services.record_outages([bot], now + timedelta(seconds=1)) == 0  # the same gap: merged
    outage = VenueOutage.objects.get()
    assert (outage.ended_at - outage.started_at).total_seconds() == pytest.approx(42, abs=0.1)
    sla = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY,
                             name="issuer", bot=bot, min_uptime_pct=Decimal("90"))
    services.store_minutes([bot], DAY, now)
    figures = services.evaluate(sla, now=now)[0].figures
    assert figures.excluded_ms == 120_000  # 00:28:58 - 00:29:40 touches two minutes
    assert figures.counted_ms == 28 * 60_000 and figures.summary.uptime_bid == pytest.approx(1.0)


def test_the_minute_task_runs_one_at_a_time(world_a: Any) -> None:
    from bots.engine import keys
    from liquidity.tasks import collect_sla_figures
    from mmplatform.redis_client import get_redis

    get_redis().set(keys.SLA_COLLECT_LOCK, "someone-else", ex=60)
    assert collect_sla_figures() == {"skipped": 1}
    get_redis().delete(keys.SLA_COLLECT_LOCK)
    assert collect_sla_figures()["bots"] == 0 and not get_redis().exists(keys.SLA_COLLECT_LOCK)


def test_an_agreement_counts_from_when_it_takes_effect(world_a: Any) -> None:
    bot = quoted_world(world_a, hours=1)
    sla = Sla.objects.create(tenant=world_a.tenant, effective_from=DAY + timedelta(minutes=30), name="late",
                             bot=bot, min_uptime_pct=Decimal("90"))
    assert services.evaluate(sla, now=DAY + timedelta(minutes=20)) == []  # not in force yet
    (status,) = services.evaluate(sla, now=DAY + timedelta(hours=1))
    assert status.figures.counted_ms == 30 * 60_000 and status.figures.summary.uptime_bid == 1.0
    assert status.status == "green"
