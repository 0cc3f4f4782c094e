"""After a full run (start, cycles, fills, kill) the API secret appears in plain text nowhere: not in
the log files processes wrote, not in any admin or dashboard page, BotEvent payload, RiskEvent,
error message or database column."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from bots import services
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot, BotEvent, Fill, Order
from exchanges.emulator.server import AccountConfig
from risk.models import RiskEvent
from tests.conftest import PASSWORD
from tests.processes import ARTIFACTS
from tests.reliability.conftest import emulator_bot, started_engine

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "rk-PLAINKEY-5d1f0c7a"
API_SECRET = "rs-PLAINSECRET-9e2b44c1d7"


def every_text_column() -> str:
    """Every text-like column of every table, as one string."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


def test_the_api_secret_is_nowhere_after_a_full_run(client: Any, world_a: Any, emulator: Any,
                                                     caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.add_account(AccountConfig(API_KEY, API_SECRET, {"BTC": Decimal("1"), "ETH": Decimal("20"),
                                                             "USDT": Decimal("60000")}))
    bot = emulator_bot(world_a, emulator)
    world_a.account.set_credentials(api_key=API_KEY, api_secret=API_SECRET)
    world_a.account.save()
    started_engine(bot)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not Fill.objects.filter(bot=bot).exists():
        engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
        engine.initialize_exchanges(emit_events=False, validate=False)
        engine.monitoring_iteration(begin_cycle(bot.pk))
        time.sleep(0.3)
    assert Fill.objects.filter(bot=bot).exists(), "the run should include fills"
    services.bot_kill(bot=Bot.objects.get(pk=bot.pk), user=world_a.owner)

    places: dict[str, str] = {"this run's log records": caplog.text}
    for path in sorted(Path(ARTIFACTS).glob("*.log")):
        places[f"log file {path.name}"] = path.read_text(errors="replace")
    client.login(username="a-owner", password=PASSWORD)
    pages = [reverse("dashboard:overview"), reverse("dashboard:bot_list"), reverse("dashboard:bot_list_json"),
             reverse("dashboard:bot_detail", args=[bot.pk]), reverse("dashboard:bot_state_json", args=[bot.pk])]
    for model in ("bot", "order", "fill", "botevent", "liquidityposition"):
        pages.append(reverse(f"admin:bots_{model}_changelist"))
    pages += [reverse("admin:bots_bot_change", args=[bot.pk]),
              reverse("admin:exchanges_exchangeaccount_change", args=[world_a.account.pk]),
              reverse("admin:exchanges_exchangeaccount_changelist"), reverse("admin:risk_riskevent_changelist")]
    pages += [reverse("admin:bots_order_change", args=[o.pk]) for o in Order.objects.filter(bot=bot)[:3]]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        places[f"page {url}"] = response.content.decode(errors="replace")
    places["BotEvent payloads"] = repr(list(BotEvent.objects.filter(bot=bot).values_list("payload", flat=True)))
    places["RiskEvents"] = repr(list(RiskEvent.objects.filter(bot=bot).values()))
    places["order errors and bot errors"] = repr(list(Order.objects.values_list("error", flat=True))) + repr(
        list(Bot.objects.values_list("last_error", "status_reason")))
    places["every database column"] = every_text_column()
    leaks = [where for where, text in places.items() if API_SECRET in text]
    assert not leaks, f"the API secret appears in: {leaks}"
    assert API_KEY not in places["every database column"], "the API key is stored in plain text"
    print(f"\nsecret grep: {len(places)} places checked ({len(pages)} pages, "
          f"{len([p for p in places if p.startswith('log file')])} log files), no plain-text secret")
