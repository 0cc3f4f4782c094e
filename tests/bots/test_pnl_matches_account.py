"""The P&L the platform reports equals the exchange account's real change, against the real emulator:
its maker buyers pay their fee in the base asset (Binance's rule: the fee is taken from what you
receive), its maker sellers in the quote asset. A taker on a second account fills the bot's quotes so
the bot goes short, buys back through flat and long again, several times, while the mid moves. The
dashboard's figure (``bot_summaries``: realised + unrealised − fees) must equal the change of the
account's BTC and USDT balances valued at the same mid, exactly (the issue asked for the cent)."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bots.engine.core import MarketMakingBot, begin_cycle
from bots.models import Bot, Fill, LiquidityPosition, Order
from bots.selectors import bot_summaries
from tests.bots.conftest import EMULATOR_KEY, TAKER_KEY, emulator_trades, start_with_taker, started_bot

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture
def two_account_emulator() -> Any:
    from exchanges.registry import clear_gateway_cache

    server = start_with_taker(maker_fee_rate=Decimal("0.01"))  # large fees: a fee booked wrong shows above a cent
    yield server
    server.stop_thread()
    clear_gateway_cache()


def balances(server: Any, api_key: str) -> dict[str, Decimal]:
    account = server._keys[api_key][0]
    return {asset: b.total for asset, b in server.call(lambda: server.engine.balances(account)).items()}


def take(server: Any, bot: Bot, bot_side: str, *, deepest_level: int) -> None:
    """The taker fills the bot's resting orders on ``bot_side`` down to ``deepest_level`` (and whatever
    rests in front of them)."""
    order = Order.objects.filter(bot=bot, side=bot_side, status="open", level__lte=deepest_level).order_by(
        "-level").first()
    assert order is not None, f"the bot has no resting {bot_side}"
    taker = server._keys[TAKER_KEY][0]
    side = "BUY" if bot_side == "sell" else "SELL"
    server.call(lambda: server.engine.place_order(taker, "BTC/USDT", side, "LIMIT", Decimal("5"), order.price,
                                                  time_in_force="IOC", now_ms=int(time.time() * 1000)))


def cycle(bot: Bot, booked: Counter[str] | None = None) -> None:
    """One full cycle of a new engine; ``booked``: gains how its fill syncs booked (``fills_booked_*``)."""
    engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
    engine.initialize_exchanges(emit_events=False, validate=False)
    engine.monitoring_iteration(begin_cycle(bot.pk))
    if booked is not None:
        booked.update({k: n for k, n in engine.order_manager.counts.items() if k.startswith("fills_booked")})


def move_mid(server: Any, mid: Decimal) -> None:
    """The market's clock advanced to now, then its mid jumped (the frozen market's clock otherwise stays at
    its start, and the trades the jump causes would be stamped minutes in the past)."""
    def jump() -> None:
        server.market.step(int(time.time() * 1000))
        server.market.set_mid("BTC/USDT", mid)

    server.call(jump)


def test_reported_pnl_equals_the_account_change_with_fees_in_base(world_a: Any, two_account_emulator: Any,
                                                                    settings: Any) -> None:
    settings.MARKET_DATA_CACHE_SECS = 0.0  # every cycle quotes on the book as the test left it
    server = two_account_emulator
    before = balances(server, EMULATOR_KEY)
    bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=2, order_size_quote=Decimal("2000"),
                      max_position_quote=Decimal("1000000"), inventory_deviation_limit=1.0,
                      default_rebalance_threshold=1.0, max_daily_loss_quote=Decimal("1000000"),
                      max_drawdown_ratio=1.0)
    start_mid = server.call(lambda: server.market.mid("BTC/USDT"))
    # (bot side, deepest level taken): short two levels, buy back one while still short (its fee in BTC
    # grows the short), then the rest and through flat; long, sell part, sell through flat; and again
    script = [("sell", 1), ("buy", 0), ("buy", 1), ("sell", 0), ("sell", 1), ("buy", 1), ("buy", 0), ("sell", 1)]
    booked: Counter[str] = Counter()
    for step, (side, level) in enumerate(script):
        take(server, bot, side, deepest_level=level)
        cycle(bot, booked)
        move_mid(server, start_mid * (Decimal(1) + Decimal(step % 3 - 1) / 400))
        cycle(bot, booked)
    if connection.vendor == "postgresql":  # the bookings were the one-statement compare-and-set, not the locked path
        assert booked["fills_booked_at_once"] >= len(script) and not booked["fills_booked_locked"], booked
    assert MarketMakingBot(Bot.objects.get(pk=bot.pk)).initialize_exchanges(emit_events=False, validate=False)
    stopper = MarketMakingBot(Bot.objects.get(pk=bot.pk))
    stopper.initialize_exchanges(emit_events=False, validate=False)
    assert stopper.stop_market_making()  # every order cancelled, fills up to the stop recorded

    fills = list(Fill.objects.filter(bot=bot))
    base_fee_buys = [f for f in fills if f.side == "buy" and f.fee_currency == "BTC" and f.fee > 0]
    assert len(base_fee_buys) >= 3, "the emulator should charge maker buyers their fee in BTC"
    assert any(f.side == "sell" for f in fills)
    after = balances(server, EMULATOR_KEY)
    delta_btc = after["BTC"] - before["BTC"]
    delta_usdt = after["USDT"] - before["USDT"]

    position = LiquidityPosition.objects.get(bot=bot, trading_pair="BTC/USDT")
    venue_trades = emulator_trades(server, "BTC/USDT")
    assert len(fills) == len(venue_trades), (
        f"fills missed: venue {sorted((t.trade_id, t.order_id, t.client_order_id) for t in venue_trades)}, "
        f"recorded {sorted((f.exchange_trade_id, f.order.client_order_id if f.order else None) for f in fills)}")
    assert position.base_position == delta_btc  # fees in base included
    summary = bot_summaries(tenant=world_a.tenant, bot_id=bot.pk)[0]
    mid = summary.inventory[0].mid
    assert mid is not None
    account_change = delta_btc * mid + delta_usdt
    rows = position.realised_pnl_quote + position.unrealised_pnl_quote(mid) - position.fees_paid_quote
    # exact on Postgres; SQLite (the fresh-machine demo) keeps decimals as 64-bit floats: ~1e-12 there
    tolerance = Decimal("1e-9") if connection.vendor == "sqlite" else Decimal(0)
    assert abs(rows - account_change) <= tolerance, f"position rows {rows} vs account {account_change}"
    assert abs(summary.pnl_total_quote - account_change) <= tolerance, (
        f"dashboard P&L {summary.pnl_total_quote} vs the account's change {account_change} at mid {mid}")
    print(f"\n{len(fills)} fills ({len(base_fee_buys)} buys paying BTC fees): reported {summary.pnl_total_quote:.6f}"
          f", account change {account_change:.6f} at mid {mid}")
