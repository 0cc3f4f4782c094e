"""Orders the engine's pre-trade checks deny (``ORDER_DENIED``) take the path every other risk event takes:
a RiskEvent row and a ``RiskEventHandled`` bot event, which the alert matcher hands on to the rules, where
each rule's dedup window and throttle apply. The engine runs in this process against the real emulator;
the broker hand-off is replaced by a list (``hooks._put``) and the worker's half (``alerts_raise``) is
called with exactly what was enqueued."""

from __future__ import annotations

from typing import Any

import pytest

from alerts import hooks, services
from alerts.models import Alert, AlertChannel, AlertRule
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot, BotEvent
from risk.models import RiskEvent
from tests.bots.conftest import started_bot

pytestmark = pytest.mark.django_db(transaction=True)


def raise_enqueued(sent: list[tuple[str, tuple]]) -> list[services.Raised]:
    """What the worker's ``raise_alerts`` task does with each enqueued event."""
    raised = []
    for task, (tenant_id, bot_id, event_type, payload, event_id, _occurred) in sent:
        assert task == "raise_alerts"
        raised.append(services.alerts_raise(tenant_id=tenant_id, bot_id=bot_id, event_type=event_type,
                                            payload=payload, event_id=event_id))
    return raised


def test_orders_denied_by_the_pre_trade_checks_raise_a_risk_alert_once_per_dedup_window(
        world_a: Any, frozen_emulator: Any, monkeypatch: Any) -> None:
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(hooks, "_put", lambda task, args: sent.append((task, args)))  # no broker here
    channel = AlertChannel.objects.create(tenant=world_a.tenant, name="mail", kind="email", emails="d@a.example")
    rule = AlertRule.objects.create(tenant=world_a.tenant, name="risk desk", kinds=["risk_event"])
    rule.channels.add(channel)

    # two levels a side, at most two open orders: the start's other two are denied
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=2, max_open_orders=2)
    denied = RiskEvent.objects.get(bot=bot, event_type="ORDER_DENIED")
    assert "max_open_orders 2 reached" in denied.message
    handled = [e for e in BotEvent.objects.filter(bot=bot, event_type="RiskEventHandled")
               if e.payload["event_type"] == "ORDER_DENIED"]
    assert len(handled) == 1 and handled[0].payload["trading_pair"] == "BTC/USDT"
    assert [(task, args[2], args[3]["event_type"]) for task, args in sent] == [
        ("raise_alerts", "RiskEventHandled", "ORDER_DENIED")]

    first = raise_enqueued(sent)
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.title) == ("risk_event", "warning", "Risk: ORDER_DENIED on BTC/USDT")
    assert "max_open_orders 2 reached" in alert.message and first[0].delivery_ids

    # another reason on the next cycle (a collar every quote is beyond): a new RiskEvent row, and within
    # the rule's dedup window the same alert, counted and not sent again
    sent.clear()
    Bot.objects.filter(pk=bot.pk).update(price_collar_bps=0.01)
    bot.refresh_from_db()
    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    assert RiskEvent.objects.filter(bot=bot, event_type="ORDER_DENIED").count() == 2
    again = raise_enqueued([item for item in sent if item[1][3].get("event_type") == "ORDER_DENIED"])
    assert [(r.alert_ids, r.deduplicated, r.delivery_ids) for r in again] == [([], 1, [])]
    assert Alert.objects.get().occurrences == 2
