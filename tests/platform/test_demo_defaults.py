"""Defaults and the demo market make sense together: a bot with the default settings quotes on the
demo market, whatever its strategy, and the demo bot's spread covers the demo venue's fees and sits
where the market's takers reach it.

Pure: the emulator's own market model (matching engine + synthetic market, stepped by its clock)
produces the book, the mids and the trades; the engine's analysis, strategies and risk checks read
them as they do in a running bot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from exchanges.emulator.engine import EngineError, MatchingEngine
from exchanges.emulator.market import (
    DEMO_MAKER_FEE_RATE,
    DEMO_TAKER_FEE_RATE,
    NOISE_ACCOUNT,
    SymbolDynamics,
    SyntheticMarket,
    demo_dynamics,
)
from exchanges.emulator.server import initial_mid_for, market_spec_for
from risk.checks import MARKET_VOLATILITY, BotRiskState, PairRiskState, PreTradeContext, assess_risk, check_intents
from risk.limits import RiskLimits
from strategies.analysis import VOLATILITY_SAMPLE_SECS, MarketAnalysis, analyze_market, realised_volatility_per_sec
from strategies.config import STRATEGY_TYPES, OrderConfig, StrategyConfig
from strategies.selection import create_strategy, select_strategy_type
from strategies.types import InventoryState, MarketSnapshot, RiskContext

MINUTES = 10
STEP_MS = 100
SAMPLE_MS = 500  # the engine reads a shared book every MARKET_DATA_CACHE_SECS (0.5 s) and keeps its mid
HISTORY = 600  # bots.engine.market_data.HISTORY_LENGTH


@dataclass
class DemoMarket:
    snapshot: MarketSnapshot
    mid_times: list[float]
    mids: list[float]


def run_market(symbol: str, seed: int, **dynamics: Any) -> DemoMarket:
    """``MINUTES`` of the emulator's market for ``symbol``: the snapshot a bot would read at the end
    (book depth 20, the recent public trades) and the mid history the engine would have kept."""
    spec = market_spec_for(symbol)
    engine = MatchingEngine([spec], DEMO_MAKER_FEE_RATE, DEMO_TAKER_FEE_RATE)
    dyn = SymbolDynamics(symbol, initial_mid_for(symbol), **dynamics)
    market = SyntheticMarket(engine, [dyn], seed=seed)
    times: list[float] = []
    mids: list[float] = []
    for now in range(STEP_MS, MINUTES * 60_000 + 1, STEP_MS):
        market.step(now)
        if now % SAMPLE_MS == 0:
            bid, ask = engine.best_bid_ask_ticks(symbol)
            assert bid is not None and ask is not None, "the market's book emptied"
            times.append(now / 1000)
            mids.append(float((bid + ask) * spec.tick_size) / 2)
    book = engine.book(symbol, 20)
    trades = tuple(
        (t.time_ms / 1000, float(t.price), float(t.quantity), "buy" if t.is_buyer else "sell")
        for t in engine.account_trades(NOISE_ACCOUNT, symbol, limit=1000)
    )
    snapshot = MarketSnapshot(
        symbol, float(book.bids[0].price), float(book.asks[0].price), times[-1],
        tuple((float(level.price), float(level.quantity)) for level in book.bids),
        tuple((float(level.price), float(level.quantity)) for level in book.asks),
        trades, float(spec.tick_size), float(spec.lot_size), float(spec.min_notional),
    )
    return DemoMarket(snapshot, times[-HISTORY:], mids[-HISTORY:])


@pytest.fixture(scope="module", params=[("ETH/USDT", 1), ("ETH/USDT", 2), ("BTC/USDT", 3)],
                ids=lambda p: f"{p[0]}-seed{p[1]}")
def demo_market(request: Any) -> DemoMarket:
    symbol, seed = request.param
    return run_market(symbol, seed, **demo_dynamics(symbol))


def quotes_of_a_default_bot(market: DemoMarket, config: StrategyConfig, order: OrderConfig | None = None
                            ) -> tuple[str, MarketAnalysis, list[Any], list[str]]:
    """What a bot with ``config`` does on the market: its strategy, the analysis, the orders the
    risk gate lets through, and the risk statuses that would pause it (default limits)."""
    order = order or OrderConfig()
    limits = RiskLimits()
    analysis = analyze_market(market.snapshot, config, market.mid_times, market.mids)
    kind = select_strategy_type(analysis, config)
    strategy = create_strategy(kind, market.snapshot.symbol, analysis, config, order)
    mid = market.snapshot.mid
    inventory = InventoryState.from_balances(30_000 / mid, 30_000.0, mid, config.inventory_target_ratio)
    risk = RiskContext(volatility_pause_threshold=limits.volatility_pause_threshold)
    intents = strategy.calculate_orders(market.snapshot, inventory, risk)
    checked = check_intents(intents, limits, PreTradeContext(mid, inventory.base_value_quote, 0, 10.0, 10000.0))
    state = BotRiskState(0.0, 60_000.0, 60_000.0, (PairRiskState(
        market.snapshot.symbol, inventory.base_value_quote, inventory.ratio, inventory.target_ratio,
        analysis.volatility_daily),))
    statuses = [s.event_type for s in assess_risk(state, limits)]
    return kind, analysis, checked.allowed, statuses


@pytest.mark.parametrize("strategy", STRATEGY_TYPES)
def test_a_default_bot_of_each_strategy_quotes_both_sides_on_the_demo_market(
    demo_market: DemoMarket, strategy: str
) -> None:
    config = StrategyConfig(default_strategy=strategy, adaptation_enabled=False)
    kind, analysis, allowed, statuses = quotes_of_a_default_bot(demo_market, config)
    assert kind == strategy
    assert analysis.volatility_measured and analysis.volatility_daily < RiskLimits().volatility_pause_threshold
    assert statuses == [], statuses
    assert {intent.side for intent in allowed} == {"buy", "sell"}, allowed


def test_a_default_bot_with_adaptation_quotes_and_is_not_switched_to_the_high_volatility_strategy(
    demo_market: DemoMarket,
) -> None:
    kind, analysis, allowed, statuses = quotes_of_a_default_bot(demo_market, StrategyConfig())
    assert analysis.volatility_daily < StrategyConfig().high_volatility_threshold, analysis
    assert kind != "VOLATILITY_ADAPTIVE" and statuses == []
    assert {intent.side for intent in allowed} == {"buy", "sell"}


def test_the_demo_market_moves_like_a_liquid_major(demo_market: DemoMarket) -> None:
    """2-5 %/day measured, as the engine measures it, not only as configured."""
    analysis = analyze_market(demo_market.snapshot, StrategyConfig(), demo_market.mid_times, demo_market.mids)
    assert 0.02 <= analysis.volatility_daily <= 0.05, analysis.volatility_daily


def test_the_old_lively_market_paused_a_default_bot() -> None:
    """The check above can fail: at the emulator's test-market volatility (5 bps/sqrt(s), ~15 %/day)
    the default limits pause a default bot, as the issue saw (0.128 above 0.100)."""
    market = run_market("ETH/USDT", 1, volatility_bps_per_sqrt_sec=5.0)
    config = StrategyConfig(default_strategy="INVENTORY_BASED", adaptation_enabled=False)
    _, analysis, _, statuses = quotes_of_a_default_bot(market, config)
    assert analysis.volatility_daily > RiskLimits().volatility_pause_threshold
    assert MARKET_VOLATILITY in statuses


def demo_bot_configs() -> tuple[StrategyConfig, OrderConfig]:
    from mmplatform.demo import DEMO_BOT_SETTINGS

    strategy = {k: v for k, v in DEMO_BOT_SETTINGS.items() if k in StrategyConfig.__dataclass_fields__}
    order = {k: v for k, v in DEMO_BOT_SETTINGS.items() if k in OrderConfig.__dataclass_fields__}
    return StrategyConfig(**strategy), OrderConfig(**order)  # type: ignore[arg-type]


def test_the_demo_bots_spread_covers_the_demo_venues_fees_and_is_inside_the_resting_liquidity(
    demo_market: DemoMarket,
) -> None:
    """Level 0 of the demo bot: a round trip keeps more than twice the venue's maker fee, and each
    side sits in front of the market's resting liquidity, where the takers reach it."""
    strategy, order = demo_bot_configs()
    assert order.maker_fee_bps == pytest.approx(float(DEMO_MAKER_FEE_RATE) * 1e4)
    _, _, allowed, statuses = quotes_of_a_default_bot(demo_market, strategy, order)
    assert statuses == []
    mid = demo_market.snapshot.mid
    bid = max(i.price for i in allowed if i.side == "buy")
    ask = min(i.price for i in allowed if i.side == "sell")
    round_trip_bps = (ask - bid) / mid * 1e4
    assert round_trip_bps > 2 * float(DEMO_MAKER_FEE_RATE) * 1e4 * 3, round_trip_bps  # fees well covered
    # the market's resting liquidity (the ladder) starts ladder_inner_bps from the mid: quote in front of it
    inner = SymbolDynamics("X/Y", Decimal(1)).ladder_inner_bps
    assert (mid - bid) / mid * 1e4 < inner and (ask - mid) / mid * 1e4 < inner
    # and the takers reach it: a noise order goes d bps deep with probability exp(-k d)
    k = SymbolDynamics("X/Y", Decimal(1)).noise_depth_decay_per_bps
    assert math.exp(-k * (ask - mid) / mid * 1e4) > 0.3


@pytest.mark.django_db
def test_the_demo_world_creates_the_demo_bot_with_a_valid_configuration() -> None:
    from bots.models import Bot
    from mmplatform.demo import DEMO_BOT_SETTINGS, ensure_demo_world

    world = ensure_demo_world("http://127.0.0.1:8900")
    bot = Bot.objects.get(pk=world.bot.pk)
    bot.full_clean()
    for name, value in DEMO_BOT_SETTINGS.items():
        assert getattr(bot, name) == value, name
    assert bot.volatility_pause_threshold == RiskLimits().volatility_pause_threshold  # no override needed
    assert bot.high_volatility_threshold == StrategyConfig().high_volatility_threshold


@dataclass
class QuotingRun:
    fills: int
    volume_quote: float
    fees_quote: float
    pnl_quote: float
    """Change of the bot's equity (cash + base at the market's mid), fees included."""
    mid_times: list[float]
    book_mids: list[float]
    """The raw book's mid every 0.5 s, the bot's own quotes included (what the engine records)."""
    true_mids: list[float]


def run_demo_bot(symbol: str, seed: int, minutes: float = 6) -> QuotingRun:
    """The demo bot's strategy quoting in the demo market: every second it cancels and re-places its
    post-only orders off the book (its own orders are not in the book at that moment)."""
    strategy_config, order_config = demo_bot_configs()
    strategy_config = StrategyConfig(**{**{f: getattr(strategy_config, f) for f in StrategyConfig.__dataclass_fields__},
                                        "default_strategy": "GRID_TRADING", "adaptation_enabled": False})
    spec = market_spec_for(symbol)
    engine = MatchingEngine([spec], DEMO_MAKER_FEE_RATE, DEMO_TAKER_FEE_RATE)
    market = SyntheticMarket(engine, [SymbolDynamics(symbol, initial_mid_for(symbol), **demo_dynamics(symbol))],
                             seed=seed)
    start_mid = initial_mid_for(symbol)
    engine.create_account("bot", {spec.base: (Decimal(30000) / start_mid).quantize(spec.lot_size),
                                  spec.quote: Decimal(30000)})
    strategy = create_strategy("GRID_TRADING", symbol, None, strategy_config, order_config)

    def equity(mid: float) -> float:
        held = engine.balances("bot")
        return (float(held[spec.base].free + held[spec.base].locked) * mid
                + float(held[spec.quote].free + held[spec.quote].locked))

    before = equity(float(start_mid))
    times: list[float] = []
    book_mids: list[float] = []
    true_mids: list[float] = []
    for now in range(STEP_MS, int(minutes * 60_000) + 1, STEP_MS):
        market.step(now)
        if now % SAMPLE_MS == 0:
            bid, ask = engine.best_bid_ask_ticks(symbol)
            times.append(now / 1000)
            book_mids.append(float((bid + ask) * spec.tick_size) / 2)
            true_mids.append(float(market.mid(symbol)))
        if now % 1000:
            continue
        engine.cancel_all("bot", symbol)
        book = engine.book(symbol, 20)
        snapshot = MarketSnapshot(
            symbol, float(book.bids[0].price), float(book.asks[0].price), now / 1000,
            tuple((float(level.price), float(level.quantity)) for level in book.bids),
            tuple((float(level.price), float(level.quantity)) for level in book.asks),
            (), float(spec.tick_size), float(spec.lot_size), float(spec.min_notional),
        )
        held = engine.balances("bot")
        inventory = InventoryState.from_balances(float(held[spec.base].free), float(held[spec.quote].free),
                                                 snapshot.mid, strategy_config.inventory_target_ratio)
        for intent in strategy.calculate_orders(snapshot, inventory, RiskContext()):
            amount = (Decimal(str(intent.size)) / spec.lot_size).to_integral_value("ROUND_DOWN") * spec.lot_size
            price = (Decimal(str(intent.price)) / spec.tick_size).to_integral_value() * spec.tick_size
            try:
                engine.place_order("bot", symbol, intent.side.upper(), "LIMIT_MAKER", amount, price, now_ms=now)
            except EngineError:
                continue  # e.g. no balance left on that side
    trades = engine.account_trades("bot", symbol, limit=10**6)
    fees = sum(float(t.fee) * (float(t.price) if t.fee_asset == spec.base else 1.0) for t in trades)
    return QuotingRun(len(trades), sum(float(t.quote_quantity) for t in trades), fees,
                      equity(true_mids[-1]) - before, times, book_mids, true_mids)


@pytest.fixture(scope="module")
def demo_bot_run() -> QuotingRun:
    return run_demo_bot("ETH/USDT", seed=1)


def test_the_demo_bot_earns_more_than_its_fees_on_the_demo_market(demo_bot_run: QuotingRun) -> None:
    run = demo_bot_run
    assert run.fills > 100 and run.volume_quote > 10 * 500
    assert run.pnl_quote > run.fees_quote > 0, run


def test_the_bots_own_quotes_do_not_read_as_volatility(demo_bot_run: QuotingRun) -> None:
    """A market maker inside the spread moves the book's mid at every fill and re-quote. Sampled every
    0.5 s that noise reads as extra volatility; returns over VOLATILITY_SAMPLE_SECS measure the market's."""
    run = demo_bot_run
    window = slice(-HISTORY, None)
    true_vol = realised_volatility_per_sec(run.mid_times[window], run.true_mids[window], 300.0)
    dense = realised_volatility_per_sec(run.mid_times[window], run.book_mids[window], 300.0)
    sparse = realised_volatility_per_sec(run.mid_times[window], run.book_mids[window], 300.0, VOLATILITY_SAMPLE_SECS)
    assert true_vol is not None and dense is not None and sparse is not None
    assert dense > 1.25 * true_vol, (dense, true_vol)  # the noise is there at 0.5 s
    assert abs(sparse - true_vol) < 0.2 * true_vol, (sparse, true_vol)
    daily = sparse * math.sqrt(86400)
    assert daily < StrategyConfig().high_volatility_threshold


@pytest.mark.django_db
def test_a_demo_bot_left_as_an_earlier_version_made_it_is_brought_up_to_date_once() -> None:
    from bots.models import Bot
    from mmplatform.demo import DEMO_BOT_SETTINGS, PREVIOUS_DEMO_BOT_SETTINGS, ensure_demo_world

    world = ensure_demo_world("http://127.0.0.1:8900")
    Bot.objects.filter(pk=world.bot.pk).update(**PREVIOUS_DEMO_BOT_SETTINGS)
    bot = ensure_demo_world("http://127.0.0.1:8900").bot
    assert bot.spread_bps == DEMO_BOT_SETTINGS["spread_bps"] and bot.volatility_pause_threshold == 0.1
    Bot.objects.filter(pk=bot.pk).update(spread_bps=30.0)  # the user's own change stays
    assert ensure_demo_world("http://127.0.0.1:8900").bot.spread_bps == 30.0


@pytest.mark.django_db
def test_the_demo_tenant_has_an_account_on_every_venue_and_the_bot_quotes_on_each() -> None:
    from exchanges.models import ExchangeAccount
    from exchanges.venues import DEFAULT_EXCHANGE_ID, VENUES
    from mmplatform.demo import DEMO_API_KEY, DEMO_VENUES, ensure_demo_world

    urls = {venue: f"http://127.0.0.1:{8900 + index}" for index, venue in enumerate(DEMO_VENUES)}
    assert set(DEMO_VENUES) == set(VENUES) and DEMO_VENUES[0] == DEFAULT_EXCHANGE_ID
    world = ensure_demo_world(urls[DEFAULT_EXCHANGE_ID], urls)
    assert {venue: account.api_base_url for venue, account in world.accounts.items()} == urls
    for venue, account in world.accounts.items():
        account = ExchangeAccount.objects.get(pk=account.pk)
        account.full_clean()
        assert account.exchange_id == venue and account.tenant_id == world.tenant.pk
        credentials = account.credentials()
        assert credentials.api_key == DEMO_API_KEY
        assert bool(credentials.passphrase) == VENUES[venue].requires_passphrase
    assert set(world.bot.exchange_accounts.all()) == set(world.accounts.values())
    assert world.bot.reference_price == "median"
    world.bot.full_clean()
    # again, on other ports: the same accounts, pointed at the new URLs
    moved = {venue: url.replace(":89", ":79") for venue, url in urls.items()}
    again = ensure_demo_world(moved[DEFAULT_EXCHANGE_ID], moved)
    assert {v: a.pk for v, a in again.accounts.items()} == {v: a.pk for v, a in world.accounts.items()}
    assert ExchangeAccount.objects.filter(tenant=world.tenant).count() == len(VENUES)
    assert ExchangeAccount.objects.get(pk=again.accounts["okx"].pk).api_base_url == moved["okx"]


@pytest.mark.django_db
def test_a_one_venue_demo_bot_moves_to_every_venue_once() -> None:
    """A demo bot as the one-venue demo left it (the default venue's account, each venue its own mid)
    quotes on every venue, on their median, from the next run on; a user's own choice stays."""
    from bots.models import Bot
    from exchanges.venues import DEFAULT_EXCHANGE_ID
    from mmplatform.demo import DEMO_BOT_SETTINGS, DEMO_VENUES, ensure_demo_world

    urls = {venue: f"http://127.0.0.1:{8900 + index}" for index, venue in enumerate(DEMO_VENUES)}
    world = ensure_demo_world(urls[DEFAULT_EXCHANGE_ID], urls)
    world.bot.exchange_accounts.set([world.accounts[DEFAULT_EXCHANGE_ID]])
    Bot.objects.filter(pk=world.bot.pk).update(reference_price="own", max_position_quote=Decimal("100000"))
    bot = ensure_demo_world(urls[DEFAULT_EXCHANGE_ID], urls).bot
    assert set(bot.exchange_accounts.all()) == set(world.accounts.values()) and bot.reference_price == "median"
    # the position limit holds the three venues' inventory of the pair (else every bid is held back)
    assert bot.max_position_quote == DEMO_BOT_SETTINGS["max_position_quote"] > 3 * 60000
    bot.exchange_accounts.set([world.accounts["okx"]])  # the user's own choice
    bot = ensure_demo_world(urls[DEFAULT_EXCHANGE_ID], urls).bot
    assert list(bot.exchange_accounts.all()) == [world.accounts["okx"]]
