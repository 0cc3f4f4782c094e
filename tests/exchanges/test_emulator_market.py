"""Synthetic market: deterministic under a seed, ladder follows the mid, fills decay with distance."""

from __future__ import annotations

from decimal import Decimal as D

from exchanges.emulator.engine import BUY, GTC, SELL, MarketSpec, MatchingEngine
from exchanges.emulator.market import SymbolDynamics, SyntheticMarket

BTC = MarketSpec("BTC/USDT", "BTC", "USDT", D("0.01"), D("0.00001"), D("0.00001"), D("5"))


def run(seed: int, steps: int = 600, **dyn) -> tuple[MatchingEngine, SyntheticMarket]:
    engine = MatchingEngine([BTC], D("0.001"), D("0.001"))
    market = SyntheticMarket(engine, [SymbolDynamics("BTC/USDT", D("30000"), **dyn)], seed=seed)
    for i in range(1, steps + 1):
        market.step(i * 100)
    return engine, market


def test_same_seed_same_path_different_seed_different_path():
    engine_a, market_a = run(7)
    engine_b, market_b = run(7)
    _, market_c = run(8)
    assert market_a.mid("BTC/USDT") == market_b.mid("BTC/USDT")
    assert engine_a.book("BTC/USDT", 5) == engine_b.book("BTC/USDT", 5)
    assert engine_a.account_trades("__noise__", "BTC/USDT", limit=10**6) == engine_b.account_trades(
        "__noise__", "BTC/USDT", limit=10**6
    )
    assert market_a.mid("BTC/USDT") != market_c.mid("BTC/USDT")


def test_ladder_brackets_mid_and_follows_set_mid():
    engine, market = run(1, steps=50)
    book = engine.book("BTC/USDT", 1)
    assert book.bids[0].price < market.mid("BTC/USDT") < book.asks[0].price
    market.set_mid("BTC/USDT", D("35000"))
    book = engine.book("BTC/USDT", 1)
    assert book.bids[0].price < D("35000") < book.asks[0].price
    assert market.mid("BTC/USDT") == D("35000")


def test_set_mid_trades_through_stale_resting_quotes():
    engine, market = run(1, steps=1, noise_arrival_rate_per_sec=0.0, volatility_bps_per_sqrt_sec=0.0)
    engine.create_account("bot", {"USDT": D("100000")})
    engine.place_order("bot", "BTC/USDT", "BUY", "LIMIT", D("0.01"), D("29990"))
    market.set_mid("BTC/USDT", D("29000"))  # the market falls through the bot's bid
    assert engine.balances("bot")["BTC"].free > 0


def test_noise_fill_probability_decays_with_distance_from_mid():
    engine = MatchingEngine([BTC], D("0"), D("0"))
    dyn = SymbolDynamics(
        "BTC/USDT", D("30000"), volatility_bps_per_sqrt_sec=0.0, ladder_inner_bps=40.0,
        noise_arrival_rate_per_sec=5.0, noise_depth_decay_per_bps=0.2,
    )
    market = SyntheticMarket(engine, [dyn], seed=3)
    engine.create_account("bot", {"USDT": D("1e9"), "BTC": D("1e4")})
    fills = {}
    for distance_bps in (2, 10):
        ticks_away = int(30000 * distance_bps / 1e4 / 0.01)
        hits = 0
        for _ in range(300):
            ask = engine.place_limit_fast("bot", "BTC/USDT", SELL, 3_000_000 + ticks_away, 20, GTC)
            bid = engine.place_limit_fast("bot", "BTC/USDT", BUY, 3_000_000 - ticks_away, 20, GTC)
            market.step(market.now_ms + 100)
            for order_id in (ask, bid):
                _, filled, _ = engine.order_state_fast(order_id)
                hits += filled // 20
                engine.cancel_fast("bot", order_id)
        fills[distance_bps] = hits
    # A*exp(-k*d)*dt per side: about 0.5*0.67=0.34 per 100 ms at 2 bps, 0.5*0.135=0.07 at 10 bps
    assert fills[2] > 2 * fills[10] > 0


def test_a_shared_walk_is_one_market_on_several_emulators():
    """Emulators with the same walk seed and epoch have the same mid at the same time, however their
    timers tick and whenever they started (the demo's three venues); each keeps its own noise flow, and
    ``set_mid`` moves one of them by an offset that stays."""
    def market(seed: int, start_ms: int) -> tuple[MatchingEngine, SyntheticMarket]:
        engine = MatchingEngine([BTC], D("0.001"), D("0.001"))
        dynamics = [SymbolDynamics("BTC/USDT", D("30000"), volatility_bps_per_sqrt_sec=20.0)]
        return engine, SyntheticMarket(engine, dynamics, seed=seed, start_ms=start_ms, walk_seed=5,
                                       walk_epoch_ms=1_000)

    (engine_a, a), (engine_b, b), (_, late) = market(1, 1_000), market(2, 1_037), market(3, 30_000)
    for t in range(1_100, 60_000, 97):  # a's timer: 97 ms
        a.step(t)
    for t in range(1_100, 60_000, 251):  # b's: 251 ms, ending a little earlier
        b.step(t)
    b.step(59_998)
    late.step(59_990)
    assert a.mid("BTC/USDT") == b.mid("BTC/USDT") == late.mid("BTC/USDT") != D("30000")
    assert engine_a.account_trades("__noise__", "BTC/USDT", limit=10**6) != engine_b.account_trades(
        "__noise__", "BTC/USDT", limit=10**6)

    jumped = (a.mid("BTC/USDT") * D("1.01")).quantize(D("0.01"))
    a.set_mid("BTC/USDT", jumped)
    a.step(59_999)
    assert a.mid("BTC/USDT") == jumped  # within the same grid step: the walk did not move
    for t in range(60_100, 70_000, 100):
        a.step(t)
        b.step(t)
    ratio = a.mid("BTC/USDT") / b.mid("BTC/USDT")
    assert abs(ratio - D("1.01")) < D("0.0001")
