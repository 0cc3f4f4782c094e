"""Nautilus Trader side of ``bench/bench_peers.py``: one workload over the shared quotes, timed.

Runs in the peer bench's own virtualenv (``var/bench-peers/venv``, never the project's), written
against Nautilus' public API only. Reads the ``.npz`` quotes ``bench_peers`` generated, builds the
QuoteTicks (not timed), times ``BacktestEngine.run()`` and prints one JSON line: events, wall seconds,
orders submitted, cancels, fills.

    var/bench-peers/venv/bin/python bench/peers/nautilus_driver.py DATA.npz WORKLOAD

WORKLOAD: ``data`` (no strategy), ``join`` (join the best bid/ask, re-place an order only once it
filled: SimpleQuoter-like) or ``requote`` (cancel everything and place a bid and an ask at the best
prices on every quote). Orders are post-only GTC limits of ``ORDER_SIZE``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, StrategyConfig
from nautilus_trader.model.currencies import BTC, USDT
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, BookType, OmsType, OrderSide, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

ORDER_SIZE = "0.200000"


class QuoterConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    requote: bool = False


class Quoter(Strategy):
    """join: keep one bid at the best bid and one ask at the best ask, placed again only after it
    filled; requote: cancel both and place both at the best prices on every quote."""

    def __init__(self, config: QuoterConfig) -> None:
        super().__init__(config)
        self.instrument_id = config.instrument_id
        self.requote = config.requote
        self.size = Quantity.from_str(ORDER_SIZE)
        self.buy = None
        self.sell = None
        self.submitted = 0
        self.cancels = 0
        self.fills = 0

    def on_start(self) -> None:
        self.subscribe_quote_ticks(self.instrument_id)

    def _limit(self, side: OrderSide, price: Price):
        order = self.order_factory.limit(self.instrument_id, side, self.size, price, time_in_force=TimeInForce.GTC,
                                         post_only=True)
        self.submit_order(order)
        self.submitted += 1
        return order

    def on_quote_tick(self, tick: QuoteTick) -> None:
        if self.requote:
            for order in (self.buy, self.sell):
                if order is not None and order.is_open:
                    self.cancel_order(order)
            self.buy = self._limit(OrderSide.BUY, tick.bid_price)
            self.sell = self._limit(OrderSide.SELL, tick.ask_price)
            return
        if self.buy is None or self.buy.is_closed:
            self.buy = self._limit(OrderSide.BUY, tick.bid_price)
        if self.sell is None or self.sell.is_closed:
            self.sell = self._limit(OrderSide.SELL, tick.ask_price)

    def on_order_canceled(self, event) -> None:
        self.cancels += 1

    def on_order_filled(self, event) -> None:
        self.fills += 1


def main() -> int:
    path, workload = sys.argv[1], sys.argv[2]
    data = np.load(path)
    instrument = TestInstrumentProvider.btcusdt_binance()
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR", bypass_logging=True)))
    engine.add_venue(Venue("BINANCE"), oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                     starting_balances=[Money(10_000_000, USDT), Money(100_000, BTC)],
                     book_type=BookType.L1_MBP)
    engine.add_instrument(instrument)
    iid = instrument.id
    ticks = [
        QuoteTick(iid, Price(b, 2), Price(a, 2), Quantity(bs, 6), Quantity(az, 6), int(t), int(t))
        for t, b, a, bs, az in zip(data["ts_ns"].tolist(), data["bid"].tolist(), data["ask"].tolist(),
                                   data["bid_size"].tolist(), data["ask_size"].tolist(), strict=True)
    ]
    engine.add_data(ticks)
    strategy = None
    if workload != "data":
        strategy = Quoter(QuoterConfig(instrument_id=iid, requote=workload == "requote"))
        engine.add_strategy(strategy)
    started = time.perf_counter()
    engine.run()
    wall = time.perf_counter() - started
    result = {"events": len(ticks), "wall_secs": wall, "orders": 0, "cancels": 0, "fills": 0,
              "version": __import__("nautilus_trader").__version__}
    if strategy is not None:
        result.update(orders=strategy.submitted, cancels=strategy.cancels, fills=strategy.fills,
                      rejected=len([o for o in engine.cache.orders() if o.status_string() == "REJECTED"]))
    engine.dispose()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
