"""The book model's fill model, event by event (strategies/replay.py, docs/backtesting.md), and that
skipping quiet events does not change what a mid-following strategy does."""

from __future__ import annotations

import dataclasses

import pytest

from strategies.base import MarketMakingStrategy
from strategies.config import OrderConfig, StrategyConfig
from strategies.marketdata import MarketData, generate_market_data
from strategies.replay import Backtest, BacktestSettings, run_backtest
from strategies.selection import create_strategy
from strategies.types import BUY, SELL, OrderIntent, RiskContext

RISK = RiskContext(min_order_size_quote=1.0)


class JoinAndHold(MarketMakingStrategy):
    """1.0 at the best bid and the best ask; with an unlimited refresh tolerance it is never moved."""

    strategy_type = "JOIN_AND_HOLD"

    def calculate_orders(self, snapshot, inventory, risk):  # type: ignore[no-untyped-def]
        return [OrderIntent(BUY, snapshot.best_bid, 1.0, 0), OrderIntent(SELL, snapshot.best_ask, 1.0, 0)]


def hold() -> JoinAndHold:
    return JoinAndHold("T/USD", StrategyConfig(), OrderConfig(maker_fee_bps=0.0, min_spread_bps=0.0,
                                                              order_refresh_tolerance_bps=1e9,
                                                              order_refresh_secs=1e12))


def settings(**changes: object) -> BacktestSettings:
    values: dict[str, object] = {"symbol": "T/USD", "tick_size": 0.01, "lot_size": 0.1, "initial_base": 10.0,
                                 "initial_quote": 10_000.0, "analysis_interval_secs": 0.0, "cycle_secs": 0.0}
    values.update(changes)
    return BacktestSettings(**values)  # type: ignore[arg-type]


def book_then(*events: tuple) -> MarketData:
    """A quote 99.99 x 2.0 / 100.01 x 2.0 at t=0 (the bot joins both sides), then ``events``."""
    data = MarketData()
    data.add_quote(0.0, 99.99, 2.0, 100.01, 2.0)
    for t, event in enumerate(events, start=1):
        if event[0] == "trade":
            data.add_trade(float(t), event[1], event[2], event[3])
        else:
            data.add_quote(float(t), *event[1:])
    return data


def test_a_trade_at_the_price_fills_only_after_the_queue_ahead() -> None:
    data = book_then(("trade", 99.99, 1.5, "sell"), ("trade", 99.99, 1.0, "sell"))
    queued = run_backtest(data, hold(), settings(), RISK)
    assert (queued.fills, queued.buy_fills, queued.volume_base) == (1, 1, pytest.approx(0.5))  # 2.0 ahead
    first = run_backtest(data, hold(), settings(queue_position=False), RISK)
    assert (first.fills, first.volume_base) == (1, pytest.approx(1.0))  # first in the queue: the 1.5 fills 1.0


def test_a_trade_through_the_price_fills_up_to_its_size_at_the_orders_price() -> None:
    result = run_backtest(book_then(("trade", 99.98, 0.3, "sell"), ("trade", 100.05, 5.0, "buy")), hold(),
                          settings(), RISK)
    assert (result.buy_fills, result.sell_fills) == (1, 1)
    assert result.volume_base == pytest.approx(0.3 + 1.0)
    assert result.volume_quote == pytest.approx(0.3 * 99.99 + 1.0 * 100.01)  # own prices, not the trades'


def test_a_crossed_quote_fills_up_to_the_displayed_size_and_keeps_filling_while_crossed() -> None:
    data = book_then(("quote", 99.95, 5.0, 99.99, 0.4), ("quote", 99.95, 5.0, 99.98, 0.4),
                     ("quote", 99.96, 5.0, 99.97, 9.0))
    recorded = []
    result = Backtest(data, hold(), settings(), RISK, on_decision=lambda i, d: recorded.append(i)).run()
    assert result.buy_fills == 3 and result.volume_base == pytest.approx(1.0)  # 0.4 + 0.4 + the last 0.2
    assert result.volume_quote == pytest.approx(99.99)
    # after the first partial fill the strategy saw the order's size left (0.6), and kept it
    assert [o.size for o in recorded[1].live if o.side == BUY] == [pytest.approx(0.6)]
    assert result.orders_placed == 3  # two at t=0, the bid again once it filled completely


def test_a_post_only_order_that_would_cross_is_rejected() -> None:
    class Crossing(JoinAndHold):
        def calculate_orders(self, snapshot, inventory, risk):  # type: ignore[no-untyped-def]
            return [OrderIntent(BUY, snapshot.best_ask, 1.0, 0)]

    strategy = Crossing("T/USD", StrategyConfig(), hold().order_config)
    result = run_backtest(book_then(), strategy, settings(), RISK)
    assert (result.orders_rejected, result.orders_placed, result.fills) == (1, 0, 0)


def test_skipping_quiet_events_decides_as_consulting_on_every_quote() -> None:
    """``consult=tolerance`` (skip what cannot change a decision) against ``every`` (the strategy on each
    quote): for a strategy that follows the mid the orders, fills and P&L agree; the skipping makes far
    fewer decisions."""
    data = generate_market_data(6000, seed=13, volatility_bps_per_sqrt_sec=3.0)
    base = BacktestSettings(tick_size=0.01, lot_size=0.001, initial_base=10.0, initial_quote=1000.0,
                            analysis_interval_secs=0.0, cycle_secs=0.0)
    config = StrategyConfig(grid_levels=2, spread_bps=6.0, level_spacing_bps=4.0, inventory_skew_bps=0.0)
    order = OrderConfig(maker_fee_bps=1.0, min_spread_bps=1.0, order_size_quote=50.0,
                        order_refresh_tolerance_bps=5.0, order_refresh_secs=30.0)

    def run(mode: str):  # type: ignore[no-untyped-def]
        strategy = create_strategy("GRID_TRADING", "SYN/USDT", None, config, order)
        return run_backtest(data, strategy, dataclasses.replace(base, consult=mode), RISK)

    every, skipping = run("every"), run("tolerance")
    assert skipping.fills == every.fills > 20
    assert (skipping.orders_placed, skipping.orders_cancelled) == (every.orders_placed, every.orders_cancelled)
    assert skipping.total_pnl == pytest.approx(every.total_pnl, abs=1e-9)
    assert skipping.decisions < every.decisions / 2


def test_latency_delays_placements_and_cancels() -> None:
    """With 1.5 s latency the orders sent at t=0 reach the book at 1.5: a trade through the bid at t=1
    finds nothing; with no latency it fills the bid."""
    data = book_then(("trade", 99.98, 5.0, "sell"), ("quote", 99.99, 2.0, 100.01, 2.0))
    assert run_backtest(data, hold(), settings(), RISK).buy_fills == 1
    late = run_backtest(data, hold(), settings(latency_secs=1.5), RISK)
    assert (late.fills, late.orders_placed) == (0, 2)

    class Leaving(JoinAndHold):
        """Quotes at t=0, then wants nothing: its orders are cancelled at the next decision (t=1)."""

        def calculate_orders(self, snapshot, inventory, risk):  # type: ignore[no-untyped-def]
            return [] if snapshot.now > 0 else super().calculate_orders(snapshot, inventory, risk)

    # the cancels sent at t=1 land at t=2.5: the trade through the bid at t=2 still fills it
    data = book_then(("quote", 99.99, 2.0, 100.01, 2.0), ("trade", 99.98, 5.0, "sell"),
                     ("quote", 99.99, 2.0, 100.01, 2.0))

    def leaving(latency: float):  # type: ignore[no-untyped-def]
        strategy = Leaving("T/USD", StrategyConfig(), hold().order_config)
        return run_backtest(data, strategy, settings(latency_secs=latency, cycle_secs=0.5), RISK)

    instant, late = leaving(0.0), leaving(1.5)
    assert (instant.fills, instant.orders_cancelled) == (0, 2)
    assert (late.buy_fills, late.orders_cancelled) == (1, 1)  # the ask's cancel landed; the bid had filled


def test_a_post_only_order_arriving_late_on_a_market_that_moved_through_it_is_rejected() -> None:
    data = book_then(("quote", 99.95, 5.0, 99.99, 5.0), ("quote", 99.95, 5.0, 99.99, 5.0))
    late = run_backtest(data, hold(), settings(latency_secs=1.5), RISK)
    assert late.fills == 0 and late.orders_rejected == 1  # the bid at 99.99 met an ask at 99.99


def test_a_fill_on_a_trade_consults_the_strategy_at_the_next_quote_even_after_quiet_trades() -> None:
    """The bid fills on a trade; five more trades change nothing; the unchanged quote that follows must
    still bring the decision that places the bid again (the skip-ahead must not pass it)."""
    quiet_trades = [("trade", 100.00, 0.1, "buy")] * 5  # between the bot's bid and ask: nothing fills
    data = book_then(("trade", 99.98, 5.0, "sell"), *quiet_trades, ("quote", 99.99, 2.0, 100.01, 2.0))
    recorded = []
    result = Backtest(data, hold(), settings(), RISK, on_decision=lambda i, d: recorded.append(i.now)).run()
    assert result.buy_fills == 1
    assert recorded == [0.0, 7.0] and result.orders_placed == 3
