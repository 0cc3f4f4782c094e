"""Cross-venue hedging on the bot page: hedge fills flagged in the fills table, the hedging panel's status
and unhedged exposure (unresolved hedges and carried remainders), and the "Retry hedges" / "Accept unhedged
exposure" controls: shown only while a hedge is unresolved, by role, each changing the rows as it says."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bots.models import Bot, Fill, Hedge, HedgeStatus, LiquidityPosition
from exchanges.models import ExchangeAccount
from risk.models import RiskEvent
from tests.conftest import PASSWORD, TenantWorld, make_account

pytestmark = pytest.mark.django_db(transaction=True)


def hedged(world: TenantWorld) -> tuple[Bot, ExchangeAccount, Fill]:
    """The world's populated bot hedging on a second account, with a hedge fill there and a maker fill whose
    hedge breached its slippage, and a carried remainder of an earlier fill."""
    bot, maker = world.bot, world.account
    hedge_account = make_account(world.tenant, "hedge-desk", api_base_url="http://127.0.0.1:9")
    bot.exchange_accounts.add(hedge_account)
    Bot.objects.filter(pk=bot.pk).update(hedge_enabled=True, hedge_account=hedge_account, hedge_max_slippage_bps=20)
    bot.refresh_from_db()
    now = timezone.now()
    position = LiquidityPosition.objects.create(tenant=world.tenant, bot=bot, exchange_account=hedge_account,
                                                trading_pair="BTC/USDT")
    hedge_fill = Fill.objects.create(tenant=world.tenant, bot=bot, position=position, exchange_account=hedge_account,
                                     exchange_trade_id="H-1", trading_pair="BTC/USDT", side="sell",
                                     price=Decimal("99.4"), amount=Decimal("0.05"), executed_at=now, is_hedge=True)
    earlier = Fill.objects.create(tenant=world.tenant, bot=bot, exchange_account=maker, exchange_trade_id="M-0",
                                  trading_pair="BTC/USDT", side="buy", price=Decimal("99.5"), amount=Decimal("0.001"),
                                  executed_at=now, is_maker=True)
    Hedge.objects.create(tenant=world.tenant, bot=bot, fill=earlier, maker_account=maker, hedge_account=hedge_account,
                         trading_pair="BTC/USDT", need_base=Decimal("-0.001"), carry_base=Decimal("-0.001"),
                         reference_price=Decimal("99.5"), status=HedgeStatus.CARRIED)
    maker_fill = Fill.objects.get(bot=bot, exchange_trade_id=f"T-{world.tenant.slug}-1")
    Hedge.objects.create(tenant=world.tenant, bot=bot, fill=maker_fill, maker_account=maker,
                         hedge_account=hedge_account, trading_pair="BTC/USDT", need_base=Decimal("-0.05"),
                         side="sell", amount=Decimal("0.05"), hedged=Decimal("0.02"), limit_price=Decimal("99.30"),
                         reference_price=Decimal("99.5"), status=HedgeStatus.SLIPPAGE, attempts=1,
                         reason="the IOC sell limited to 99.3 filled 0.02 of 0.05", next_attempt_at=now)
    return bot, hedge_account, hedge_fill


def login(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_the_bot_page_shows_hedge_fills_the_status_and_the_unhedged_exposure(populated: Any) -> None:
    world_a, _ = populated
    bot, _, _ = hedged(world_a)
    state = login("a-viewer").get(reverse("dashboard:bot_state_json", args=[bot.pk])).json()
    kinds = {f["trade_id"]: (f["kind"], f["is_hedge"]) for f in state["fills"]}
    assert kinds["H-1"] == ("hedge", True) and kinds[f"T-{world_a.tenant.slug}-1"] == ("maker", False)
    hedging = state["hedging"]
    assert hedging["enabled"] and hedging["status"] == "halted"
    assert hedging["hedge_account"] == "hedge-desk (binance)"
    # 0.03 still to sell for the breach, plus the 0.001 carried below the lot
    (owed,) = hedging["unhedged"]
    assert (owed["pair"], Decimal(owed["base"]), owed["asset"]) == ("BTC/USDT", Decimal("-0.031"), "BTC")
    assert owed["text"] == "0.031 BTC to sell"
    (row,) = hedging["open"]
    assert (row["status"], row["unhedged_text"], row["maker"]) == ("slippage", "0.03 BTC to sell", "main (binance)")
    page = login("a-viewer").get(reverse("dashboard:bot_detail", args=[bot.pk])).content.decode()
    assert 'id="hedging-panel"' in page and "<th>Kind</th>" in page


def test_the_controls_show_while_a_hedge_is_unresolved_and_do_what_they_say(populated: Any) -> None:
    world_a, _ = populated
    bot, _, _ = hedged(world_a)
    operator = login("a-operator")
    state = operator.get(reverse("dashboard:bot_state_json", args=[bot.pk])).json()
    assert {"hedge_retry", "hedge_accept"} <= {a["name"] for a in state["actions"]}
    assert login("a-viewer").post(reverse("dashboard:bot_hedge_accept", args=[bot.pk])).status_code == 403
    assert Hedge.objects.get(bot=bot, status=HedgeStatus.SLIPPAGE)

    before = Bot.objects.get(pk=bot.pk).updated_at
    response = operator.post(reverse("dashboard:bot_hedge_retry", args=[bot.pk]), follow=True)
    assert "tried again at its next cycle" in " ".join(str(m) for m in response.context["messages"])
    breach = Hedge.objects.get(bot=bot, status=HedgeStatus.SLIPPAGE)
    assert breach.next_attempt_at <= timezone.now()
    assert Bot.objects.get(pk=bot.pk).updated_at > before, "the engine driver starts over from the rows"

    response = operator.post(reverse("dashboard:bot_hedge_accept", args=[bot.pk]), follow=True)
    assert "accepted" in " ".join(str(m) for m in response.context["messages"])
    breach.refresh_from_db()
    assert (breach.status, breach.resolved_by) == (HedgeStatus.ACCEPTED, "a-operator")
    event = RiskEvent.objects.get(bot=bot, event_type="HEDGE_RESOLVED")
    assert "a-operator accepted the unhedged exposure of 0.03 BTC" in event.message
    state = operator.get(reverse("dashboard:bot_state_json", args=[bot.pk])).json()
    assert not {"hedge_retry", "hedge_accept"} & {a["name"] for a in state["actions"]}
    assert state["hedging"]["status"] == "ok" and state["hedging"]["open"] == []
    # a second accept has nothing to resolve: a message, nothing changed
    response = operator.post(reverse("dashboard:bot_hedge_accept", args=[bot.pk]), follow=True)
    assert "no unresolved hedge" in " ".join(str(m) for m in response.context["messages"])


def test_another_firms_hedges_are_not_found(populated: Any) -> None:
    world_a, _ = populated
    bot, _, _ = hedged(world_a)
    response = login("b-operator").post(reverse("dashboard:bot_hedge_accept", args=[bot.pk]))
    assert response.status_code == 404
    assert Hedge.objects.get(bot=bot, status=HedgeStatus.SLIPPAGE)
