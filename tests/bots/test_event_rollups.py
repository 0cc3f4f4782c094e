"""Routine events are stored as one summary row per bot, pair and minute (bots/events.py), and every
one of them is still pushed live with an id of its own. Runs on Postgres and on SQLite (fresh machine)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bots import events
from bots.events import publish_event, record_routine
from bots.models import BotEvent
from bots.selectors import event_json, events_after
from tests.conftest import TenantWorld


def capture_pushes(monkeypatch: Any) -> list[dict[str, Any]]:
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr("bots.events._send", lambda tenant_id, bot_id, message: pushed.append(message))
    return pushed


def adjusted(placed: int, cancelled: int, kept: int, pair: str = "BTC/USDT") -> dict[str, Any]:
    return {"position_id": 1, "trading_pair": pair, "new_order_count": placed, "cancelled": cancelled, "kept": kept}


def test_requotes_of_a_minute_are_one_summary_row_and_every_one_is_pushed(
        world_a: TenantWorld, monkeypatch: Any, django_capture_on_commit_callbacks: Any) -> None:
    pushed = capture_pushes(monkeypatch)
    bot = world_a.bot
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        fill = publish_event(bot=bot, event_type="OrderFilled", payload={"trading_pair": "BTC/USDT", "side": "buy"})
        returned = [publish_event(bot=bot, event_type="OrdersAdjusted", payload=adjusted(2, i, 6)) for i in range(7)]
        other_pair = publish_event(bot=bot, event_type="OrdersAdjusted", payload=adjusted(1, 1, 3, "ETH/USDT"))
    # all in one minute unless the clock crossed one between them (then two rows for BTC/USDT)
    minutes = {events.minute_of(e.created_at) for e in returned}

    rows = BotEvent.objects.filter(bot=bot, event_type="OrdersAdjusted", trading_pair="BTC/USDT").order_by("id")
    assert rows.count() == len(minutes)
    summary = rows.last()
    assert summary is not None
    assert sum(r.occurrences for r in rows) == 7
    assert sum(r.payload["totals"]["new_order_count"] for r in rows) == 14
    assert sum(r.payload["totals"]["cancelled"] for r in rows) == sum(range(7))
    assert sum(r.payload["totals"]["kept"] for r in rows) == 42
    assert summary.payload["cancelled"] == 6, "the payload is the latest event's"
    assert summary.pk == returned[-1].pk, "the summary row carries its latest event's id"
    assert summary.last_at == returned[-1].created_at and summary.created_at >= before
    assert BotEvent.objects.filter(bot=bot, event_type="OrdersAdjusted", trading_pair="ETH/USDT").count() == 1
    assert BotEvent.objects.filter(bot=bot, event_type="OrderFilled").count() == 1, "fills stay one row each"

    # every event pushed live, each with its own increasing id and its own payload
    kinds = [(m["data"]["event_type"], m["data"]["payload"].get("cancelled")) for m in pushed]
    assert kinds == [("OrderFilled", None)] + [("OrdersAdjusted", i) for i in range(7)] + [("OrdersAdjusted", 1)]
    ids = [m["event_id"] for m in pushed]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] == fill.pk and ids[-1] == other_pair.pk
    assert all(m["data"]["count"] == 1 for m in pushed)

    # a page (or a catch-up) renders the summary as the run of events it stands for
    shown = event_json(BotEvent.objects.select_related("bot").get(pk=summary.pk))
    assert shown["event_id"] == returned[-1].pk and shown["count"] == summary.occurrences
    assert shown["summary"] == "BTC/USDT: 2 placed, 6 cancelled, 6 kept"
    assert shown["first_at"] == summary.created_at.isoformat()
    assert shown["created_at"] == returned[-1].created_at.isoformat()
    caught, more = events_after(tenant_id=bot.tenant_id, after_id=fill.pk)
    assert not more and summary.pk in {e.pk for e in caught}, "a summary that grew is caught up"


def test_a_new_minute_starts_a_new_summary_row(world_a: TenantWorld) -> None:
    bot = world_a.bot
    start = timezone.now().replace(second=10, microsecond=0)
    for offset in (0, 20, 40, 70, 80):  # 3 in the first minute, 2 in the next
        record_routine(bot=bot, event_type="OrdersAdjusted", payload=adjusted(2, 2, 1),
                       at=start + timedelta(seconds=offset))
    rows = list(BotEvent.objects.filter(bot=bot).order_by("created_at"))
    assert [(r.occurrences, r.payload["totals"]["new_order_count"]) for r in rows] == [(3, 6), (2, 4)]
    assert [r.bucket_start for r in rows] == [events.minute_of(start), events.minute_of(start) + timedelta(minutes=1)]
    assert rows[0].last_at == start + timedelta(seconds=40)


def test_an_aggregated_event_costs_one_statement(world_a: TenantWorld) -> None:
    """The re-quote path writes its OrdersAdjusted in one statement; the roll-up keeps it so (Postgres;
    SQLite draws the event's id in a second statement)."""
    bot = world_a.bot
    publish_event(bot=bot, event_type="OrdersAdjusted", payload=adjusted(2, 2, 1))
    with CaptureQueriesContext(connection) as queries:
        publish_event(bot=bot, event_type="OrdersAdjusted", payload=adjusted(2, 2, 1))
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2), [q["sql"] for q in queries]
    assert BotEvent.objects.get(bot=bot).occurrences == 2


def test_the_engines_requotes_of_a_minute_are_one_summary_row(
        world_a: TenantWorld, frozen_emulator: Any, settings: Any, monkeypatch: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    """The real engine against the emulator: three re-quotes at three mids, one OrdersAdjusted row whose
    totals are the three re-quotes' counts; three live pushes."""
    from decimal import Decimal

    from bots.engine.core import MarketMakingBot, begin_cycle
    from bots.models import Bot, BotStatus
    from tests.bots.conftest import emulator_bot

    settings.MARKET_DATA_CACHE_SECS = 0
    bot = emulator_bot(world_a, frozen_emulator, status=BotStatus.STARTING, trading_pairs="BTC/USDT",
                       order_refresh_tolerance_bps=5.0, order_refresh_secs=3600.0)
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges()
    engine.start_market_making(bot.pairs)
    Bot.objects.filter(pk=bot.pk).update(status=BotStatus.RUNNING)
    pushed = capture_pushes(monkeypatch)
    for mid in ("61200", "62400", "63600"):  # +2 % each: every order re-quoted
        frozen_emulator.call(lambda mid=mid: frozen_emulator.market.set_mid("BTC/USDT", Decimal(mid)))
        bot.refresh_from_db()
        engine = MarketMakingBot(bot)
        engine.initialize_exchanges(emit_events=False, validate=False)
        with django_capture_on_commit_callbacks(execute=True):
            engine.monitoring_iteration(begin_cycle(bot.pk))
    live = [m["data"]["payload"] for m in pushed
            if m["kind"] == "event" and m["data"]["event_type"] == "OrdersAdjusted"]
    assert len(live) == 3
    rows = list(BotEvent.objects.filter(bot=bot, event_type="OrdersAdjusted"))
    assert sum(r.occurrences for r in rows) == 3 and len(rows) <= 2  # 2 only if a minute ended between them
    totals = {key: sum(r.payload["totals"][key] for r in rows) for key in ("new_order_count", "cancelled", "kept")}
    assert totals == {key: sum(p[key] for p in live) for key in totals}
    assert totals["new_order_count"] > 0 and totals["cancelled"] > 0
