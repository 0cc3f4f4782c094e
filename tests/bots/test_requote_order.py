"""Re-quotes that do not blink (issue 16 item 8): the engine driver places a re-quote's new orders before
it cancels the old ones when the free balances allow, so each side keeps a resting order; otherwise (or
with ENGINE_PLACE_FIRST off) it cancels first. In process against the real emulator, database and Redis;
the emulator's ``cancel_order`` is wrapped (read-only) to note what rested on the cancelled order's side
at the moment the venue cancelled it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bots.engine.driver import Driver
from bots.models import Bot, BotEvent, BotEventType, Order
from exchanges.emulator.server import EmulatorServer
from mmplatform.redis_client import get_redis
from strategies.requote_order import place_first
from strategies.types import OrderIntent
from tests.bots.conftest import emulator_open_orders
from tests.bots.test_driver import driver, no_streams, running_bot, settle  # noqa: F401  (fixtures)

BUY, SELL = OrderIntent("buy", 99.0, 1.0, 0), OrderIntent("sell", 101.0, 1.0, 0)


def test_place_first_needs_free_balance_for_both_quotes_with_the_margin() -> None:
    old = [("buy", 98.0, 1.0), ("sell", 102.0, 1.0)]
    assert place_first([BUY, SELL], old, free_base=3.0, free_quote=297.0, margin=3.0)
    assert not place_first([BUY, SELL], old, free_base=2.9, free_quote=297.0, margin=3.0)
    assert not place_first([BUY, SELL], old, free_base=3.0, free_quote=296.9, margin=3.0)
    assert not place_first([BUY, SELL], old, free_base=None, free_quote=1e9, margin=3.0)  # never read
    assert not place_first([], old, free_base=1e9, free_quote=1e9, margin=3.0)  # nothing to place
    assert not place_first([BUY], [], free_base=1e9, free_quote=1e9, margin=3.0)  # nothing to cancel


def test_place_first_never_crosses_an_old_quote_it_is_about_to_cancel() -> None:
    # the mid jumped: the new bid (101.5) is above the old ask (101): it would trade with it
    jumped = [OrderIntent("buy", 101.5, 1.0, 0), OrderIntent("sell", 103.0, 1.0, 0)]
    assert not place_first(jumped, [("buy", 99.0, 1.0), ("sell", 101.0, 1.0)], free_base=1e9, free_quote=1e9,
                           margin=1.0)
    fell = [OrderIntent("buy", 97.0, 1.0, 0), OrderIntent("sell", 98.5, 1.0, 0)]
    assert not place_first(fell, [("buy", 99.0, 1.0), ("sell", 101.0, 1.0)], free_base=1e9, free_quote=1e9,
                           margin=1.0)
    near = [OrderIntent("buy", 99.5, 1.0, 0), OrderIntent("sell", 101.5, 1.0, 0)]
    assert place_first(near, [("buy", 99.0, 1.0), ("sell", 101.0, 1.0)], free_base=1e9, free_quote=1e9, margin=1.0)


pytestmark_db = pytest.mark.django_db(transaction=True)


def assert_moved(bot: Bot, old: set[str], new: set[str]) -> None:
    """The ``old`` rows are cancelled and the ``new`` ones open with the venue's answers on them (saved in one
    statement at the act's end), and the minute's OrdersAdjusted summary counts two placed and two cancelled."""
    rows = {o.client_order_id: o for o in Order.objects.filter(client_order_id__in=old | new)}
    assert all(rows[c].status == "canceled" and rows[c].closed_at is not None for c in old), rows
    assert all(rows[c].status == "open" and rows[c].exchange_order_id and rows[c].acknowledged_at for c in new), rows
    adjusted = BotEvent.objects.filter(bot=bot, event_type=BotEventType.ORDERS_ADJUSTED).latest("last_at")
    assert adjusted.payload["new_order_count"] == 2 and adjusted.payload["cancelled"] == 2, adjusted.payload


def requote_on_a_move(driver: Driver, bot: Bot, runner: Any, server: EmulatorServer,  # noqa: F811
                      old: set[str]) -> tuple[Any, int]:
    """Move the mid ~8 bps (past the 5 bps refresh tolerance, well inside the 20 bps spread: nothing crosses) and
    tick the driver until none of the ``old`` orders rests; returns the runner and the re-quote's statements."""
    target = (server.market.mid("BTC/USDT") * Decimal("1.0008")).quantize(Decimal("0.01"))
    server.call(lambda: server.market.set_mid("BTC/USDT", target))
    get_redis().delete(*get_redis().keys("mm:md:book:*"))
    driver.bring_forward(runner)
    statements = driver.stats["requote_statements"]
    runner = settle(driver, bot, lambda r: not (old & {o.client_order_id for o in emulator_open_orders(server)}))
    return runner, driver.stats["requote_statements"] - statements


@pytestmark_db
@pytest.mark.parametrize(("enabled", "margin", "covered"), [
    (True, 3.0, True),  # the default: new quotes first, each side covered throughout
    (True, 1e12, False),  # the free balances do not hold both quotes: cancel first
    (False, 3.0, False),  # ENGINE_PLACE_FIRST off
])
def test_a_requote_keeps_each_side_covered_when_the_balances_allow(
        running_bot: Bot, driver: Driver, frozen_emulator: EmulatorServer,  # noqa: F811
        settings: Any, enabled: bool, margin: float, covered: bool) -> None:
    settings.ENGINE_CANCEL_REPLACE = False  # (test_cancel_replace.py: the venue's one-request move)
    settings.ENGINE_PLACE_FIRST = enabled
    settings.ENGINE_PLACE_FIRST_MARGIN = margin
    runner = settle(driver, running_bot, lambda r: r.engine is not None)
    old = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    assert len(old) == 2
    engine = frozen_emulator.engine
    at_cancel: list[tuple[str, int]] = []  # (side of the cancelled order, orders left resting on that side)
    original = engine.cancel_order

    def watched_cancel(account_id: str, symbol: str, *args: Any, **kwargs: Any) -> Any:
        cancelled = original(account_id, symbol, *args, **kwargs)
        left = [o for o in engine.open_orders(account_id, symbol) if o.side == cancelled.side]
        at_cancel.append((cancelled.side, len(left)))
        return cancelled

    engine.cancel_order = watched_cancel  # read-only watch: the venue still cancels as before
    try:
        runner, statements = requote_on_a_move(driver, running_bot, runner, frozen_emulator, old)
    finally:
        engine.cancel_order = original
    assert runner.last_verdict.startswith("requote"), runner.last_verdict
    now_open = emulator_open_orders(frozen_emulator)
    assert sorted(o.side for o in now_open) == ["BUY", "SELL"]
    assert {o.client_order_id for o in now_open} == runner.known
    assert sorted(side for side, _ in at_cancel) == ["BUY", "SELL"], at_cancel  # each old quote cancelled once
    # the venue's answers are on the rows (placing first, both sets saved in one statement at the end)
    # its OrdersAdjusted is in the minute's summary row, stored in the statement that saved the venue's answers
    # (on Postgres 4 statements in all either way, the fence in the quote guard's read of the other bots' rows; 5
    # before that; before that 6 placing first, 7 cancelling first)
    assert_moved(running_bot, old, runner.known)
    if connection.vendor == "postgresql":  # (SQLite: the ORM's way, more statements)
        assert statements == 4, statements
    if covered:
        assert all(left == 1 for _, left in at_cancel), at_cancel  # its replacement was already resting
    else:
        assert all(left == 0 for _, left in at_cancel), at_cancel  # the side stood empty until the placement
