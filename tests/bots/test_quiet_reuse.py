"""A quiet check on unchanged inputs reuses the bot's last quiet decision (``QuietInputs``), in process
against the real emulator, database and Redis (the driver ticked by the test, as in test_driver.py).

What is checked from the outside: how often the engine decides (its ``decide_quotes`` wrapped to count the
calls; the real decision runs), the verdicts, and what the venue shows. The reuse must end the moment a
book moves, at the live orders' refresh age and at ``ENGINE_QUIET_REUSE_SECS``, and a reused check must
still stop the bot on a volatility breach."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from bots.engine.driver import Driver
from bots.models import Bot
from exchanges.emulator.server import EmulatorServer
from mmplatform.redis_client import get_redis
from tests.bots.conftest import emulator_open_orders, started_bot
from tests.bots.test_driver import driver, no_streams, settle  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def quiet_bot(world_a: Any, server: EmulatorServer, **fields: Any) -> Bot:
    config = {"trading_pairs": "BTC/USDT", "grid_levels": 1, "monitoring_interval_secs": 0.2,
              "metrics_interval_secs": 3600.0, "volatility_pause_threshold": 1000.0,
              "inventory_deviation_limit": 1.0, **fields}
    return started_bot(world_a, server, **config)


def count_decisions(runner: Any, monkeypatch: Any) -> list[float]:
    """The times the kept engine decided its quotes (the real ``decide_quotes`` runs)."""
    calls: list[float] = []
    engine = runner.engine
    original = engine.decide_quotes

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.time())
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "decide_quotes", counted)
    return calls


def check_now(driver: Driver, runner: Any) -> str:  # noqa: F811
    driver._feed_once(time.time())
    driver.bring_forward(runner)
    driver.tick()
    return runner.last_verdict


def test_unchanged_inputs_reuse_the_decision_and_a_moved_book_decides_again(
        world_a: Any, frozen_emulator: EmulatorServer, driver: Driver, no_streams: None,  # noqa: F811
        monkeypatch: Any) -> None:
    bot = quiet_bot(world_a, frozen_emulator)
    runner = settle(driver, bot, lambda r: r.engine is not None)
    decided = count_decisions(runner, monkeypatch)
    verdicts = [check_now(driver, runner) for _ in range(4)]
    assert all(v.startswith("quiet") for v in verdicts), verdicts
    assert len(decided) == 1, "the first quiet check decides; the next ones on the same inputs reuse it"
    assert driver.stats["quiet_reused"] == 3
    old = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}

    target = (frozen_emulator.market.mid("BTC/USDT") * Decimal("1.0015")).quantize(Decimal("0.01"))
    frozen_emulator.call(lambda: frozen_emulator.market.set_mid("BTC/USDT", target))
    get_redis().delete(*get_redis().keys("mm:md:book:*"))
    time.sleep(0.6)  # past the feeder's book cache: its next read is the moved book
    assert check_now(driver, runner).startswith("requote"), runner.last_verdict
    assert len(decided) >= 2  # the check decided again (and the re-quote on its pool thread after it)
    settle(driver, bot, lambda r: not (old & {o.client_order_id for o in emulator_open_orders(frozen_emulator)}))
    assert len(emulator_open_orders(frozen_emulator)) == 2


def test_an_unchanged_account_read_keeps_its_objects_and_the_reuse_compares_identities(
        world_a: Any, frozen_emulator: EmulatorServer, driver: Driver, no_streams: None,  # noqa: F811
        monkeypatch: Any) -> None:
    """The feeder's REST re-read of an account that did not change hands the checks the same orders, balances
    and free objects; a view that is new but equal (a re-read before this) is taken into the held decision, so
    the next checks compare identities, not every order of the account (at calm N=1,000 that comparison,
    repeated by every bot of an account at every check, was ~a quarter of a reused check)."""
    bot = quiet_bot(world_a, frozen_emulator)
    runner = settle(driver, bot, lambda r: r.engine is not None)
    account_id = next(iter(runner.engine.exchanges))
    assert check_now(driver, runner).startswith("quiet")
    check_now(driver, runner)
    before = driver.accounts[account_id]
    driver._read_accounts({account_id: runner.engine.exchanges[account_id]})  # read again: nothing changed
    driver.accounts[account_id] = replace(driver.accounts[account_id], balances_at=0.0)  # (and balances read)
    driver._read_accounts({account_id: runner.engine.exchanges[account_id]})
    after = driver.accounts[account_id]
    assert after is not before and after.taken_at > before.taken_at
    assert after.orders is before.orders and after.balances is before.balances and after.free is before.free

    # a view equal to the held one but new objects (as a read before the identity was kept made it)
    copied = replace(after, orders=dict(after.orders), balances=dict(after.balances), free=dict(after.free))
    driver.accounts[account_id] = copied
    monkeypatch.setattr(driver, "_feed_once", lambda now: None)  # (no read between: the copy stays)
    decided = count_decisions(runner, monkeypatch)
    assert check_now(driver, runner).startswith("quiet")
    assert decided == [], "equal inputs: the decision is reused"
    held = runner.quiet.views[account_id]
    assert held[0] is copied.orders and held[1] is copied.balances and held[2] is copied.free


def test_the_reuse_ends_at_the_live_orders_refresh_age(world_a: Any, frozen_emulator: EmulatorServer,
                                                       driver: Driver, no_streams: None,  # noqa: F811
                                                       monkeypatch: Any) -> None:
    """Orders past ``order_refresh_secs`` are replaced even though nothing moved: the reuse holds only until
    the first live order's refresh age (without that bound it would hold for ENGINE_QUIET_REUSE_SECS, 10 s)."""
    bot = quiet_bot(world_a, frozen_emulator, order_refresh_secs=1.5)
    runner = settle(driver, bot, lambda r: r.engine is not None)
    placed = {o.client_order_id for o in emulator_open_orders(frozen_emulator)}
    first = min(row.created_at.timestamp() for rows in runner.live.values() for row in rows)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not runner.last_verdict.startswith("requote"):
        check_now(driver, runner)
        time.sleep(0.05)
    assert runner.last_verdict.startswith("requote"), runner.last_verdict
    assert time.time() >= first + 1.5
    assert driver.stats["quiet_reused"] > 0, "nothing was reused before the refresh age"
    settle(driver, bot, lambda r: not (placed & {o.client_order_id for o in emulator_open_orders(frozen_emulator)}))


def test_the_reuse_ends_after_the_cap(world_a: Any, frozen_emulator: EmulatorServer, driver: Driver,  # noqa: F811
                                      no_streams: None, monkeypatch: Any, settings: Any) -> None:  # noqa: F811
    settings.ENGINE_QUIET_REUSE_SECS = 0.5
    bot = quiet_bot(world_a, frozen_emulator)
    runner = settle(driver, bot, lambda r: r.engine is not None)
    decided = count_decisions(runner, monkeypatch)
    started = time.monotonic()
    while time.monotonic() - started < 1.3:
        assert check_now(driver, runner).startswith("quiet"), runner.last_verdict
        time.sleep(0.05)
    assert driver.stats["quiet_reused"] > 0
    assert 2 <= len(decided) <= 4, decided  # once at the start and again each time the cap ran out


def test_a_reused_check_still_stops_on_a_volatility_breach(world_a: Any, frozen_emulator: EmulatorServer,
                                                           driver: Driver, no_streams: None,  # noqa: F811
                                                           monkeypatch: Any) -> None:
    """The market analysis is new at every check (its volatility is the one input of the risk limits a reused
    check does not take as it was): a volatility above the pause threshold still makes the check a full
    one, on the same books. The analysis the driver computes is replaced by one with that volatility (the
    emulator's frozen market cannot produce it)."""
    bot = quiet_bot(world_a, frozen_emulator, volatility_pause_threshold=0.5)
    runner = settle(driver, bot, lambda r: r.engine is not None)
    for _ in range(3):
        assert check_now(driver, runner).startswith("quiet"), runner.last_verdict
    assert driver.stats["quiet_reused"] >= 1
    analysis = driver._analysis

    def volatile(*args: Any, **kwargs: Any) -> Any:
        return replace(analysis(*args, **kwargs), volatility_daily=0.9, volatility_measured=True)

    monkeypatch.setattr(driver, "_analysis", volatile)
    assert check_now(driver, runner).startswith("full: risk status"), runner.last_verdict
    assert "MarketVolatility" in runner.last_verdict or "VOLATILITY" in runner.last_verdict.upper()


def test_a_new_depth_read_behind_the_same_top_keeps_the_decision(
        world_a: Any, frozen_emulator: EmulatorServer, driver: Driver, no_streams: None,  # noqa: F811
        monkeypatch: Any) -> None:
    """A decision reads the best bid and ask less the bot's own orders (and the market's rules), not the levels
    behind them: a depth read that changed only those is still the same decision (before, every new depth read,
    every 2 s per book, made every bot of the pair decide again); a best price that moved is not."""
    from bots.engine.market_data import BookData
    from bots.engine.venues import exchange_key

    bot = quiet_bot(world_a, frozen_emulator)
    runner = settle(driver, bot, lambda r: r.engine is not None)
    assert check_now(driver, runner).startswith("quiet")
    monkeypatch.setattr(driver, "_feed_once", lambda now: None)  # the books are the test's from here
    decided = count_decisions(runner, monkeypatch)
    engine = runner.engine
    position = next(iter(engine.active_positions.values()))
    key = (exchange_key(engine.accounts[position.exchange_account_id]), position.trading_pair)
    held = driver._books[key][1]
    reused = driver.stats["quiet_reused"]

    deeper = BookData([*held.bids, (held.bids[-1][0] * 0.9, 7.0)], [*held.asks, (held.asks[-1][0] * 1.1, 7.0)],
                      time.time())
    driver._books[key] = (deeper.fetched_at, deeper)
    assert check_now(driver, runner).startswith("quiet")
    assert decided == [] and driver.stats["quiet_reused"] == reused + 1
    assert engine.snapshots[(position.exchange_account_id, position.trading_pair)].bids[-1][1] == 7.0  # (taken)

    top_moved = BookData([(deeper.bids[0][0] * (1 - 1e-6), deeper.bids[0][1]), *deeper.bids[1:]], deeper.asks,
                         time.time())
    driver._books[key] = (top_moved.fetched_at, top_moved)
    assert check_now(driver, runner).startswith("quiet")  # (a hundredth of a bps: within the tolerance)
    assert len(decided) == 1, "a moved best price is decided on again"
