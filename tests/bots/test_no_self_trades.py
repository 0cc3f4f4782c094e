"""No self-trades: ten bots of one tenant on one API key and one pair, run by a real Celery worker against
an emulator that offers NO self-trade prevention (``self_trade_prevention=False``: the venue would let
the account trade with itself), so the platform's own pre-trade check is the only guard. Half the bots
want more base and half less (inventory targets 0.9 / 0.1, a skew just larger than the half-spread),
so their quotes keep wanting to cross each other inside the market's spread: with the check off the
account traded with itself within the first second (5 self-trades, checked while building this). With
it: zero trades on the venue whose buyer and seller are the account, while the bots keep quoting and
trading with the rest of the market, and the denials say why."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from bots import services
from bots.models import Bot, BotStatus, Order
from exchanges.registry import clear_gateway_cache
from risk.models import RiskEvent
from tests.bots.conftest import EMULATOR_KEY, EMULATOR_SECRET, start_emulator
from tests.bots.test_engine_worker import start_pool_worker
from tests.conftest import make_bot
from tests.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BOTS = 10
RUN_SECS = 45.0
"""How long the ten bots quote against each other (the issue's ten minutes, shortened: the crossing
pressure is constant, so a leak shows within seconds)."""


def self_trades(server: Any) -> tuple[int, int]:
    """(trades whose buyer and seller were the test account, all trades of the account) on BTC/USDT."""
    account_id = server._keys[EMULATOR_KEY][0]

    def count() -> tuple[int, int]:
        ids = [t.trade_id for t in server.engine.account_trades(account_id, "BTC/USDT", from_id=0, limit=10**7)]
        return len(ids) - len(set(ids)), len(set(ids))

    return server.call(count)


def test_ten_bots_on_one_key_and_pair_never_trade_with_each_other(world_a: Any, celery_queue: str) -> None:
    server = start_emulator(self_trade_prevention=False)
    worker = None
    try:
        account = world_a.account
        account.api_base_url = server.base_url
        account.rate_limit_per_sec = 500.0
        account.set_credentials(api_key=EMULATOR_KEY, api_secret=EMULATOR_SECRET)
        account.save()
        common: dict[str, Any] = {
            "grid_levels": 1, "order_size_quote": Decimal("20"), "min_order_size_quote": Decimal("10"),
            "monitoring_interval_secs": 0.5, "error_recovery_delay_secs": 0.5, "adaptation_enabled": False,
            "metrics_interval_secs": 5.0, "post_only": False, "spread_bps": 5.0, "min_spread_bps": 2.0,
            "inventory_skew_bps": 15.0, "maker_fee_bps": 0.0, "order_refresh_tolerance_bps": 2.0,
            "order_refresh_secs": 5.0,
            "inventory_deviation_limit": 1.0, "default_rebalance_threshold": 1.0,
            "max_daily_loss_quote": Decimal("100000"), "max_drawdown_ratio": 0.99,
        }
        Bot.objects.filter(pk=world_a.bot.pk).delete()
        bots = [make_bot(world_a.tenant, account, name=f"crosser-{i}", pairs="BTC/USDT",
                         inventory_target_ratio=0.9 if i % 2 else 0.1, **common) for i in range(BOTS)]
        worker, _ = start_pool_worker("threads", concurrency=4)
        for bot in bots:
            services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: Bot.objects.filter(pk__in=[b.pk for b in bots], status=BotStatus.RUNNING).count() == BOTS,
                   90, message="the ten bots never all reached RUNNING")
        deadline = time.monotonic() + RUN_SECS
        while time.monotonic() < deadline:
            assert self_trades(server)[0] == 0, "the account traded with itself"
            time.sleep(1.0)
        own, total = self_trades(server)
        assert own == 0
        # the bots did quote and trade all along (the check did not just stop them)...
        assert total > 0
        quoting = Order.objects.filter(bot__in=bots).values("bot").distinct().count()
        assert quoting == BOTS
        # ...and crossing was wanted: quotes were held back from the account's own orders, with the reason
        reasons = [reason for details in RiskEvent.objects.filter(bot__in=bots, event_type="ORDER_DENIED")
                   .values_list("details", flat=True) for reason in details.get("reasons", [])]
        assert any("would trade with the account's own resting" in reason for reason in reasons), \
            "no quote ever wanted to cross another bot's: the test proves nothing"
    finally:
        if worker is not None:
            worker.stop()
        server.stop_thread()
        clear_gateway_cache()


def test_a_rebalancing_trade_cancels_the_bots_own_quotes_it_would_take_instead_of_trading_with_them(
        world_a: Any, settings: Any) -> None:
    """The IOC of a rebalance crosses the bot's own bids on its way to the market's: they are cancelled
    first (and quoted again next cycle), so the account never trades with itself, even on a venue
    without self-trade prevention."""
    from bots.engine.core import MarketMakingBot, begin_cycle
    from bots.models import OrderPurpose, OrderStatus
    from tests.bots.conftest import started_bot
    from tests.bots.test_rebalancing import deposit, venue_ratio

    settings.MARKET_DATA_CACHE_SECS = 0.0
    server = start_emulator(self_trade_prevention=False, market_step_ms=0,
                            dynamics={s: {"noise_arrival_rate_per_sec": 0.0} for s in ("BTC/USDT", "ETH/USDT")})
    try:
        bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=2, inventory_deviation_limit=0.08,
                          default_rebalance_threshold=0.05, max_order_size_quote=Decimal("50000"),
                          volatility_pause_threshold=1000.0, max_position_quote=Decimal("1000000"),
                          max_rebalance_slippage_bps=50.0, spread_bps=4.0, min_spread_bps=2.0, maker_fee_bps=0.0)
        bids = list(Order.objects.filter(bot=bot, side="buy", status=OrderStatus.OPEN))
        best_bid = server.call(lambda: server.engine.book("BTC/USDT", 1).bids[0].price)
        assert bids and max(o.price for o in bids) == best_bid, "the bot's bid is not the first a sell reaches"
        deposit(server, "BTC", "0.5")
        assert venue_ratio(server) > 0.58
        engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
        engine.initialize_exchanges(emit_events=False, validate=False)
        engine.monitoring_iteration(begin_cycle(bot.pk))
        sold = Order.objects.filter(bot=bot, purpose=OrderPurpose.REBALANCE, side="sell")
        assert sold.exists() and all(o.filled > 0 for o in sold), list(sold.values("price", "filled", "status"))
        assert self_trades(server)[0] == 0
        # the bids it would have reached were cancelled before it was sent
        assert all(Order.objects.get(pk=o.pk).status == OrderStatus.CANCELED for o in bids
                   if o.price >= min(r.price for r in sold))
    finally:
        server.stop_thread()
        clear_gateway_cache()


def test_a_full_cycle_hands_the_check_the_accounts_hand_placed_orders(world_a: Any, settings: Any) -> None:
    """An order placed on the account by hand (no platform client id) is one of the account's resting
    orders for the check: a full cycle takes it from its own sync of the pair, the driver from its view."""
    import ccxt

    from bots.engine.core import MarketMakingBot, begin_cycle
    from exchanges.ccxt_config import config_for
    from risk.checks import RestingOrder
    from tests.bots.conftest import started_bot

    settings.MARKET_DATA_CACHE_SECS = 0.0
    server = start_emulator(market_step_ms=0,
                            dynamics={s: {"noise_arrival_rate_per_sec": 0.0} for s in ("BTC/USDT", "ETH/USDT")})
    try:
        bot = started_bot(world_a, server, trading_pairs="BTC/USDT", grid_levels=1)
        trader = ccxt.binance(config_for("binance", server.base_url, EMULATOR_KEY, EMULATOR_SECRET))
        ask = trader.fetch_order_book("BTC/USDT")["asks"][0][0] + 100
        trader.create_order("BTC/USDT", "limit", "sell", 0.001, ask)
        engine = MarketMakingBot(Bot.objects.get(pk=bot.pk))
        engine.initialize_exchanges(emit_events=False, validate=False)
        engine.monitoring_iteration(begin_cycle(bot.pk))
        slot = next(s for s in engine.active_positions if s[1] == "BTC/USDT")  # (account, pair)
        assert engine.listed_resting(slot) == (RestingOrder("sell", ask, "an order not placed by a bot"),)
    finally:
        server.stop_thread()
        clear_gateway_cache()


def test_the_rows_handed_to_the_check_are_the_open_ones_of_the_accounts_other_bots_on_the_pair(world_a: Any) -> None:
    from bots.engine.self_trades import from_rows
    from bots.models import OrderStatus
    from risk.checks import RestingOrder
    from tests.conftest import make_account

    account, other_account = world_a.account, make_account(world_a.tenant, "other")
    me, peer = world_a.bot, make_bot(world_a.tenant, account, name="peer")
    elsewhere = make_bot(world_a.tenant, other_account, name="elsewhere")
    n = 0

    def row(bot: Any, side: str, price: str, status: str = OrderStatus.OPEN, pair: str = "BTC/USDT",
            on: Any = account) -> None:
        nonlocal n
        n += 1
        Order.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=on, trading_pair=pair,
                             client_order_id=f"mm-{bot.pk}-1-1-{n}b0", side=side, price=Decimal(price),
                             amount=Decimal("0.01"), status=status)

    row(me, "sell", "100")  # this bot's own: its kept quotes are the pipeline's business
    row(peer, "sell", "101")
    row(peer, "buy", "99", status=OrderStatus.PENDING)  # stored, not yet sent: counts
    row(peer, "buy", "98", status=OrderStatus.CANCEL_PENDING)  # still on the book until the venue says so
    row(peer, "buy", "97", status=OrderStatus.FILLED)
    row(peer, "buy", "96", pair="ETH/USDT")
    row(elsewhere, "buy", "95", on=other_account)
    assert sorted(from_rows(me.pk, account.pk, "BTC/USDT"), key=lambda o: o.price) == [
        RestingOrder("buy", 98.0, f"bot {peer.pk}"), RestingOrder("buy", 99.0, f"bot {peer.pk}"),
        RestingOrder("sell", 101.0, f"bot {peer.pk}")]
    assert from_rows(peer.pk, account.pk, "BTC/USDT") == [RestingOrder("sell", 100.0, f"bot {me.pk}")]

    # a re-quote's first statement under the guard: the same rows, with its cycle numbered and fenced
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bots.engine.cycle import begin_fenced_requote
    from bots.engine.self_trades import resting_from
    from mmplatform.tenancy.models import Tenant

    Bot.objects.filter(pk=me.pk).update(status=BotStatus.RUNNING)
    count = Bot.objects.get(pk=me.pk).cycle_count
    with CaptureQueriesContext(connection) as queries:
        cycle, others = begin_fenced_requote(me.pk, me.epoch, account.pk, "BTC/USDT")
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert cycle == count + 1 == Bot.objects.get(pk=me.pk).cycle_count
    assert sorted(resting_from(others), key=lambda o: o.price) == sorted(
        from_rows(me.pk, account.pk, "BTC/USDT"), key=lambda o: o.price)
    assert begin_fenced_requote(me.pk, me.epoch, account.pk, "XRP/USDT") == (count + 2, [])  # none: the fence alone
    assert begin_fenced_requote(me.pk, me.epoch + 1, account.pk, "BTC/USDT")[0] is None  # restarted since
    Tenant.objects.filter(pk=world_a.tenant.pk).update(kill_switch_engaged=True)
    assert begin_fenced_requote(me.pk, me.epoch, account.pk, "BTC/USDT")[0] is None  # the tenant's kill switch
    assert begin_fenced_requote(10**9, 1, account.pk, "BTC/USDT") == (None, [])  # a bot that is gone


def test_the_send_gate_releases_the_quote_guard_in_its_own_step_even_when_it_refuses(world_a: Any) -> None:
    """A re-quote's stored rows hand the (account, pair) guard to the send gate (``gate._release_at_send``):
    ``check_send`` deletes it in the same Redis step as the fence and lease check, only while it still
    holds this guard's token, and also when it refuses to send (fenced), so a refused cycle never leaves
    the account's other bots waiting for the guard's TTL; the process's lock goes with it."""
    from bots.engine.lease import BotLease, FencedError, check_send, fence_sends
    from bots.engine.self_trades import QuoteGuard
    from mmplatform.redis_client import get_redis

    bot, r = world_a.bot, get_redis()
    lease = BotLease(bot.pk, 10.0)
    assert lease.acquire()
    guard = QuoteGuard(world_a.account.pk, "BTC/USDT")
    assert guard.acquire()
    check_send(bot, bot.epoch, lease, release=guard.handed_over())
    guard.released_elsewhere()
    assert not r.exists(guard.key) and not guard.held
    assert r.get(lease.key) == lease.token.encode()  # the lease stays (extended), only the guard went

    follower = QuoteGuard(world_a.account.pk, "BTC/USDT")
    assert follower.acquire(wait_secs=0.05)  # neither the key nor the process's lock is left held
    stranger = ("mm:quoteguard:unrelated", "not-its-token")
    r.set(stranger[0], "someone-else", px=5000)
    check_send(bot, bot.epoch, lease, release=stranger)
    assert r.get(stranger[0]) == b"someone-else"  # another holder's guard is never deleted

    fence_sends([(bot, bot.epoch + 1)])  # as a kill does: this epoch's sends are over
    with pytest.raises(FencedError):
        check_send(bot, bot.epoch, lease, release=follower.handed_over())
    follower.released_elsewhere()
    assert not r.exists(follower.key)
    assert QuoteGuard(world_a.account.pk, "BTC/USDT").acquire(wait_secs=0.05)
    r.delete(stranger[0])


def test_a_process_hands_the_quote_guard_from_bot_to_bot_without_a_redis_round_trip(world_a: Any) -> None:
    """Once a bot's rows are stored, the next bot of the same process waiting for the (account, pair) guard
    takes the process's hold of the key: nothing is deleted or set again (the key keeps its token), so the
    account's other processes still wait; with nobody waiting, or after ``HANDOFFS_MAX`` bots in a row, the
    key is deleted as before and taken again by SET NX."""
    import threading

    from bots.engine.self_trades import HANDOFFS_MAX, QuoteGuard, _process_hold
    from mmplatform.redis_client import get_redis

    r = get_redis()
    pair = "ETH/USDT"

    def waiting_bot(taken: list[QuoteGuard]) -> threading.Thread:
        def run() -> None:
            guard = QuoteGuard(world_a.account.pk, pair)
            if guard.acquire(wait_secs=5):
                taken.append(guard)

        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: _process_hold(guard_key).waiting == 1, 5, 0.01, "the second bot waits for the guard")
        return thread

    first = QuoteGuard(world_a.account.pk, pair)
    guard_key = first.key
    assert first.acquire()
    token = r.get(guard_key)
    assert not first.hand_over_locally()  # nobody waits: it stays held
    taken: list[QuoteGuard] = []
    thread = waiting_bot(taken)
    assert first.hand_over_locally() and not first.held
    thread.join(5)
    second = taken[0]
    assert second.held and r.get(guard_key) == token  # the same key, never deleted or set again

    _process_hold(guard_key).takes = HANDOFFS_MAX  # as after HANDOFFS_MAX bots in a row
    taken.clear()
    thread = waiting_bot(taken)
    assert not second.hand_over_locally()  # the cap: another process may want it
    second.release()  # deleted; the waiting bot takes it again with a token of its own
    thread.join(5)
    third = taken[0]
    assert third.held and r.get(guard_key) == third.token.encode() != token
    third.release()
    assert not r.exists(guard_key) and _process_hold(guard_key).token is None
