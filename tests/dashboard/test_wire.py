"""The dashboard's one payload module (bots/wire.py), its formatters and template filters, the ladder
merge, and the store of "not quoting" reasons (bots/quoting.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.template import Context, Template

from bots import quoting, wire
from bots.events import publish_event
from bots.models import BotEvent
from bots.selectors import event_json, ladder, tenant_overview
from tests.conftest import TenantWorld


@pytest.mark.parametrize(("value", "places", "expected"), [
    (Decimal("0E-12"), None, "0"),
    (Decimal("-0E-12"), None, "0"),
    ("0E-12", None, "0"),
    (Decimal("59859.650000000000"), None, "59859.65"),
    (Decimal("0.016670000000"), None, "0.01667"),
    (Decimal("0.000000012345"), None, "0.00000001"),
    (Decimal("1E+3"), None, "1000"),
    (1e-07, None, "0.0000001"),
    (3, None, "3"),
    (Decimal("-0.004"), 2, "0.00"),
    (Decimal("-1234.505"), 2, "-1234.50"),
    ("12.5", 2, "12.50"),
    (None, None, "—"),
    ("", None, "—"),
    ("n/a", None, "n/a"),
])
def test_format_decimal(value: Any, places: int | None, expected: str) -> None:
    assert wire.format_decimal(value, places) == expected


def test_money_and_percent() -> None:
    assert wire.format_money(Decimal("-1234.5")) == "-1,234.50"
    assert wire.format_money(Decimal("0E-12")) == "0.00"
    assert wire.format_percent(0.128) == "12.8 %"
    assert wire.format_percent(None) == "—"


def test_jsonable_never_writes_exponents() -> None:
    data = wire.jsonable({"fee": Decimal("0E-12"), "price": Decimal("1.500000000000"), "big": Decimal("1E+3"),
                          "nested": [Decimal("-0E-8")], "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})
    assert data == {"fee": "0", "price": "1.500000000000", "big": "1000", "nested": ["0"],
                    "when": "2026-01-02T03:04:05+00:00"}


def test_template_filters_format_like_wire() -> None:
    html = Template("{% load dashboard %}{{ a|dec }} {{ b|money }} {{ c|percent }} {{ d|raw_json }}").render(Context({
        "a": Decimal("0E-12"), "b": Decimal("1234.5"), "c": 0.1, "d": {"x": "1"}}))
    assert html == '0 1,234.50 10.0 % {\n &quot;x&quot;: &quot;1&quot;\n}'


@pytest.mark.parametrize(("event_type", "payload", "expected"), [
    ("OrderFilled", {"trading_pair": "BTC/USDT", "side": "buy", "price": "59914.790000000000",
                     "amount": "0.016690000000", "trade_id": "7"}, "BTC/USDT: buy 0.01669 @ 59914.79"),
    ("OrderFilled", {"trading_pair": "BTC/USDT", "side": "sell", "price": "60010", "amount": "0.5", "trade_id": "8",
                     "venue": "okx", "is_hedge": True}, "BTC/USDT: hedge sell 0.5 @ 60010 on okx"),
    ("OrdersAdjusted", {"trading_pair": "ETH/USDT", "new_order_count": 2, "cancelled": 2, "kept": 6},
     "ETH/USDT: 2 placed, 2 cancelled, 6 kept"),
    ("OrdersPlaced", {"trading_pair": "BTC/USDT", "order_count": 1}, "BTC/USDT: 1 order placed"),
    ("ExchangeConnected", {"exchange_id": "binance", "account": "main"}, "connected to binance (account main)"),
    ("MarketMakingStarted", {"trading_pairs": ["BTC/USDT", "ETH/USDT"]}, "started quoting BTC/USDT, ETH/USDT"),
    ("MarketMakingStopped", {"performance": {"realised_pnl_quote": "0E-12", "fees_paid_quote": "5",
                                             "fill_count": 3}}, "stopped quoting (realised 0.00, fees 5.00, fills 3)"),
    ("RiskEventHandled", {"event_type": "MARKET_VOLATILITY", "message": "BTC/USDT: daily volatility high",
                          "action_taken": "widen_spreads"},
     "MARKET_VOLATILITY: BTC/USDT: daily volatility high → widen spreads"),
    ("StrategyAdapted", {"trading_pair": "BTC/USDT", "from": "GRID_TRADING", "to": "VOLATILITY_ADAPTIVE",
                         "spread_bps": 12.345, "volatility_daily": 0.128},
     "BTC/USDT: GRID_TRADING → VOLATILITY_ADAPTIVE, spread 12.3 bps, daily volatility 12.8 %"),
    ("StrategyAdapted", {"strategy": "TREND_FOLLOWING"}, "strategy TREND_FOLLOWING"),
    ("InventoryRebalanced", {"trades_executed": 2}, "2 rebalancing trades executed"),
    ("BotError", {"error": "boom"}, "boom"),
    ("KillSwitchEngaged", {"reason": "test"}, "kill switch engaged: test"),
    ("Reconciled", {"fills_recovered": 1}, "reconciled with the exchange: 1 missed fill recovered"),
    ("SlaBreached", {"pair": "BTC/USDT", "sla": "issuer", "checks": {"uptime_bid": {"figure": 0.81234, "target": 0.9}}},
     "BTC/USDT: SLA issuer breached: uptime_bid 0.8123 (target 0.9)"),
    ("SlaAtRisk", {"sla": "issuer", "checks": {}}, "SLA issuer at risk"),
    ("SomethingNew", {"fee": "0E-12", "note": "x", "deep": {"a": 1}}, "fee 0, note x"),
])
def test_every_event_type_has_a_human_summary(event_type: str, payload: dict[str, Any], expected: str) -> None:
    assert wire.event_summary(event_type, payload) == expected


def test_pushed_event_is_the_rendered_event(world_a: TenantWorld, monkeypatch: Any,
                                            django_capture_on_commit_callbacks: Any) -> None:
    """publish_event pushes exactly the dict the pages render and the catch-up sends."""
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr("bots.events._send", lambda tenant_id, bot_id, message: pushed.append(message))
    bot = world_a.bot
    with django_capture_on_commit_callbacks(execute=True):
        event = publish_event(bot=bot, event_type="OrderFilled", payload={
            "trading_pair": "BTC/USDT", "side": "sell", "price": Decimal("100.5"), "amount": Decimal("0.1"),
            "fee": Decimal("0E-12")})
    assert len(pushed) == 1 and pushed[0]["kind"] == "event" and pushed[0]["event_id"] == event.pk
    row = BotEvent.objects.select_related("bot").get(pk=event.pk)
    assert pushed[0]["data"] == event_json(row)
    assert pushed[0]["data"]["bot_name"] == bot.name
    assert pushed[0]["data"]["summary"] == "BTC/USDT: sell 0.1 @ 100.5"
    assert pushed[0]["data"]["payload"]["fee"] == "0"
    assert tenant_overview(tenant=world_a.tenant).recent_events[0] == event_json(row)


def _order(side: str, price: str, amount: str, filled: str = "0", status: str = "open") -> Any:
    return SimpleNamespace(side=side, price=Decimal(price), amount=Decimal(amount), filled=Decimal(filled),
                           status=status)


def test_ladder_marks_each_open_order_once_at_its_exact_price() -> None:
    bids = [(99.5, 0.3), (99.0, 1.0)]
    asks = [(100.5, 0.1), (101.0, 2.0), (101.5, 1.0)]
    own = [_order("sell", "100.500000000000", "0.1"), _order("sell", "101.000000000000", "0.5", filled="0.2"),
           _order("sell", "101.000000000000", "0.25"),
           _order("sell", "100.700000000000", "0.4"),  # placed after the book was read: not in it yet
           _order("buy", "99.500000000000", "0.1"),
           _order("sell", "101.500000000000", "1", status="pending"),  # stored, not sent yet
           _order("buy", "99.000000000000", "1", status="cancel_pending")]  # its cancel is under way
    result = ladder(bids, asks, own, depth=15)
    marked = {(side, row["price"]): (row["own"], row["own_orders"], row["size"])
              for side in ("bids", "asks") for row in result[side] if row["own"] is not None}
    assert marked == {
        ("asks", "100.5"): ("0.1", 1, "0.1"),
        ("asks", "101"): ("0.55", 2, "2"),
        ("asks", "100.7"): ("0.4", 1, "0.4"),
        ("bids", "99.5"): ("0.1", 1, "0.3"),
    }
    assert [r["price"] for r in result["asks"]] == ["100.5", "100.7", "101", "101.5"]  # best first
    assert [r["price"] for r in result["bids"]] == ["99.5", "99"]
    assert all(r["size"] not in (None, "", "0") for side in ("bids", "asks") for r in result[side])
    assert result["mid"] == "100" and result["spread_bps"] == pytest.approx(100.0)


def test_ladder_without_a_book_still_shows_the_open_orders() -> None:
    result = ladder([], [], [_order("buy", "10", "1")], depth=15)
    assert result["bids"] == [{"price": "10", "size": "1", "own": "1", "own_orders": 1, "in_book": False}]
    assert result["asks"] == [] and result["mid"] is None


def test_reason_for_names_why_nothing_is_quoted() -> None:
    assert quoting.reason_for(pause_reason=None, intents=[1], valid=[1], allowed=[1], denied=[]) is None
    assert quoting.reason_for(pause_reason="X: too volatile", intents=[], valid=[], allowed=[], denied=[]) == \
        "X: too volatile"
    assert quoting.reason_for(pause_reason=None, intents=[], valid=[], allowed=[], denied=[]) == quoting.NO_ORDER
    assert "min/max order size" in quoting.reason_for(pause_reason=None, intents=[1], valid=[], allowed=[],
                                                     denied=[])
    denied = [SimpleNamespace(reason="notional 5 below min 10")]
    assert quoting.reason_for(pause_reason=None, intents=[1], valid=[1], allowed=[], denied=denied) == \
        "every order was denied by the risk checks (notional 5 below min 10)"


def test_note_records_pushes_on_change_and_clears(world_a: TenantWorld, monkeypatch: Any) -> None:
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr("bots.events._send", lambda tenant_id, bot_id, message: pushed.append(message))
    monkeypatch.setattr("bots.events.transaction.on_commit", lambda callback: callback())
    bot = world_a.bot
    quoting.forget(bot)
    pushed.clear()
    quoting.note(bot, "BTC/USDT", "BTC/USDT: daily volatility 12.8% is above the pause threshold 10.0%")
    quoting.note(bot, "BTC/USDT", "BTC/USDT: daily volatility 12.8% is above the pause threshold 10.0%")
    assert quoting.current([bot.pk]) == {bot.pk: {
        "BTC/USDT": "BTC/USDT: daily volatility 12.8% is above the pause threshold 10.0%"}}
    assert [m["data"] for m in pushed] == [{"reasons": {
        "BTC/USDT": "BTC/USDT: daily volatility 12.8% is above the pause threshold 10.0%"}}], "one push per change"
    quoting.note(bot, "BTC/USDT", None)
    assert quoting.current([bot.pk]) == {}
    assert pushed[-1]["data"] == {"reasons": {}}
    quoting.note(bot, "ETH/USDT", "ETH/USDT: stale book")
    quoting.forget(bot)
    assert quoting.current([bot.pk]) == {}


def test_counters_show_reasons_only_for_a_running_bot_and_its_pairs() -> None:
    bot = SimpleNamespace(pk=1, tenant_id=2, status="running", cycle_count=7, last_cycle_finished_at=None,
                          last_cycle_started_at=datetime(2026, 1, 1, tzinfo=UTC), monitoring_interval_secs=1.0,
                          pairs=["BTC/USDT"])
    data = wire.counters_json(bot, open_orders=3, reasons={"BTC/USDT": "why", "OLD/PAIR": "gone"})
    assert data["not_quoting"] == {"BTC/USDT": "why"}
    assert data["not_quoting_text"] == "Running — not quoting: why"
    assert data["last_cycle_at"] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    bot.status = "paused"
    assert wire.counters_json(bot, open_orders=0, reasons={"BTC/USDT": "why"})["not_quoting"] == {}
