"""Backtester: replay a market-data file through the exchange emulator's matching engine.

The market is the emulator's own ``MatchingEngine`` (``exchanges/emulator/engine.py``, int fast
path), not a copy. Two accounts trade on it:

* ``market`` replays the file: each L1 quote (or L2 snapshot) becomes its resting bid/ask
  orders, re-placed when a price changes; each trade becomes an IOC order of the aggressor's side
  at the trade price. Price-time priority does the rest: the market's displayed size at a price is
  ahead of a bot order that joined later, so a trade fills the bot only after it (queue model);
  a quote that moves through a bot order fills it at the bot's price. A size change at an
  unchanged price is not replayed (the queue ahead of the bot only shrinks through trades) unless
  the market's order there was used up, when it is re-placed behind the bot.
* ``bot`` runs a strategy exactly as the live bot does: on each quote/book event (at most every
  ``requote_interval_secs``) it builds a ``MarketSnapshot`` from the file's best bid/ask and an
  ``InventoryState`` from its balances, calls ``calculate_orders``, diffs the intents against its
  live orders with ``strategies.base.diff_orders`` (order-refresh tolerance) and cancels/places
  on the engine (post-only orders, maker fee = ``maker_fee_bps``). Every
  ``analysis_interval_secs`` it runs ``analyze_market`` on the mid history and trades seen and
  adapts when ``should_adapt`` says so.

Accounting (quote currency, average-cost method, start inventory valued at the first mid):
realised + unrealised - fees = equity change, with equity = quote + base * mid. A base-currency
fee (paid on buys) is valued at the fill price and treated as base sold at that price.

Cost per event is constant: order lookups are dicts keyed by id, the engine keeps a bounded
closed-order history, and the report series are decimated to ``record_points``.

CLI: ``python -m strategies.backtest --data FILE [--data-format FMT] --strategy GRID_TRADING
--report out.png`` (``--help`` lists the options; ``--set field=value`` overrides any
StrategyConfig/OrderConfig field). Two subcommands: ``convert`` (exchange/vendor dumps to the native
format, ``strategies.readers``) and ``sweep`` (a parameter grid on every core, ``strategies.sweep``).
See docs/backtesting.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from exchanges.emulator.engine import BUY as ENGINE_BUY
from exchanges.emulator.engine import GTC, IOC, POST_ONLY, EngineError, MarketSpec, MatchingEngine
from mmplatform.errors import InvalidStrategyError
from strategies.analysis import analyze_market
from strategies.base import MarketMakingStrategy, diff_orders
from strategies.config import OrderConfig, StrategyConfig
from strategies.marketdata import QUOTE, TRADE, MarketData, MarketDataError, load_market_data
from strategies.readers import (
    FORMATS,
    INFER_EVENTS,
    Event,
    convert,
    export,
    infer_increments,
    load_events,
    merge_by_time,
    native_events,
    split_symbol,
    symbol_from_filename,
    to_market_data,
)
from strategies.selection import STRATEGY_CLASSES, create_strategy
from strategies.types import BUY, SELL, InventoryState, LiveOrder, MarketSnapshot, RiskContext

MARKET = "market"
BOT = "bot"
PROGRESS_CHUNK = 10_000
DEFAULT_RISK = RiskContext()
CLOSED_ORDER_CAPACITY = 1024


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """The market's filters, the bot's starting balances and the replay cadence."""

    symbol: str = "SYN/USDT"
    tick_size: float = 0.01
    lot_size: float = 0.001
    min_notional: float = 0.0
    initial_base: float = 10.0
    initial_quote: float = 1000.0
    taker_fee_bps: float = 10.0
    """Fee of taker fills (the bot's non-post-only orders that cross; the market's own trades)."""
    requote_interval_secs: float = 0.0
    """0: the strategy runs on every quote/book event."""
    analysis_interval_secs: float = 60.0
    """How often the market is analysed and the strategy offered to adapt (0: never)."""
    history_size: int = 2000
    """Mids (and trades) kept for the analysis."""
    record_points: int = 4000
    """At most this many samples of the price/quote/inventory/P&L series."""

    def problems(self) -> list[str]:
        """Human-readable reasons these settings cannot run."""
        out = []
        if "/" not in self.symbol:
            out.append(f"symbol must look like BASE/QUOTE, got {self.symbol!r}")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                out.append(f"{name} must be greater than 0, got {value!r}")
        for name in ("min_notional", "initial_base", "initial_quote", "requote_interval_secs",
                     "analysis_interval_secs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                out.append(f"{name} must not be negative, got {value!r}")
        if not (math.isfinite(self.taker_fee_bps) and 0 <= self.taker_fee_bps <= 100):
            out.append(f"taker_fee_bps must be between 0 and 100, got {self.taker_fee_bps!r}")
        if self.history_size < 10 or self.record_points < 10:
            out.append("history_size and record_points must be at least 10")
        return out


@dataclass
class BacktestResult:
    """What a backtest measured (quote currency unless named otherwise)."""

    strategy: str
    events: int
    data_secs: float
    wall_secs: float
    fills: int
    buy_fills: int
    sell_fills: int
    volume_base: float
    volume_quote: float
    realised_pnl: float
    unrealised_pnl: float
    fees: float
    equity_start: float
    equity_end: float
    max_drawdown: float
    """Largest fall of equity from a previous peak."""
    spread_capture: float
    """Sum over fills of the edge against the mid at the fill: (mid - price) * size for buys,
    (price - mid) * size for sells."""
    spread_capture_bps: float
    """spread_capture / volume_quote, in bps."""
    quote_uptime: float
    """Fraction of the data's time with at least one bot bid and one bot ask resting."""
    orders_placed: int
    orders_cancelled: int
    orders_rejected: int
    final_base: float
    final_quote: float
    first_mid: float = 0.0
    """The mid the start inventory is valued at (the first quote/book event's)."""
    last_mid: float = 0.0
    """The mid the end inventory is valued at."""
    inventory_risk: float = 0.0
    """Time-averaged |base held - initial base| x mid (quote currency): the exposure the strategy took
    on, weighted by how long it held it."""
    series: dict[str, list[float]] = field(default_factory=dict, repr=False)
    """Decimated samples: ts, mid, bid, ask (bot's best, NaN when none), base, pnl."""

    @property
    def total_pnl(self) -> float:
        """realised + unrealised - fees."""
        return self.realised_pnl + self.unrealised_pnl - self.fees

    @property
    def equity_change(self) -> float:
        """equity_end - equity_start (equals ``total_pnl`` up to float rounding)."""
        return self.equity_end - self.equity_start

    def summary(self) -> dict[str, float | int | str]:
        """Every figure except the series, plus total P&L and events per wall second."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "series"}
        data["total_pnl"] = self.total_pnl
        data["equity_change"] = self.equity_change
        data["events_per_sec"] = self.events / self.wall_secs if self.wall_secs > 0 else 0.0
        return data


class Backtest:
    """One replay of ``data`` with one strategy (or none: ``strategy=None`` replays data only)."""

    def __init__(
        self,
        data: MarketData,
        strategy: MarketMakingStrategy | None,
        settings: BacktestSettings | None = None,
        risk: RiskContext | None = None,
    ):
        self.settings = settings = settings or BacktestSettings()
        problems = settings.problems()
        maker_fee_bps = strategy.order_config.maker_fee_bps if strategy is not None else 0.0
        if maker_fee_bps < 0:
            problems.append("the emulator's engine has no maker rebates: maker_fee_bps must be >= 0")
        if not len(data):
            problems.append("the market data has no events")
        if problems:
            raise ValueError("; ".join(problems))
        self.data = data
        self.strategy = strategy
        self.risk = risk or RiskContext()
        base, quote = settings.symbol.split("/")
        self.base, self.quote = base, quote
        spec = MarketSpec(
            settings.symbol, base, quote, _dec(settings.tick_size), _dec(settings.lot_size),
            _dec(settings.lot_size), _dec(settings.min_notional),
        )
        maker_rate = _dec(maker_fee_bps) / 10000
        taker_rate = _dec(settings.taker_fee_bps) / 10000
        # A small closed-order history: the replay only asks order_state_fast about fresh orders.
        self.engine = engine = MatchingEngine(
            [spec], maker_rate, taker_rate, record_trades=False, closed_order_capacity=CLOSED_ORDER_CAPACITY
        )
        engine.create_account(MARKET)
        engine.create_account(BOT)
        self.base_exp = engine.asset_decimals(base)
        self.quote_exp = engine.asset_decimals(quote)
        engine.deposit_units_fast(MARKET, base, 10 ** (self.base_exp + 15))
        engine.deposit_units_fast(MARKET, quote, 10 ** (self.quote_exp + 18))
        engine.deposit(BOT, base, _dec(settings.initial_base))
        engine.deposit(BOT, quote, _dec(settings.initial_quote))
        self.base_per_lot = round(settings.lot_size * 10**self.base_exp)
        self.quote_per_tick_lot = round(settings.tick_size * settings.lot_size * 10**self.quote_exp)
        self.maker_fee = maker_rate.as_integer_ratio()
        self.taker_fee = taker_rate.as_integer_ratio()
        # bot state, updated by the engine's trade listener
        self.position = settings.initial_base
        self.cash = settings.initial_quote
        self.average_cost = 0.0
        self.realised = 0.0
        self.fees = 0.0
        self.mid = 0.0
        self.fills = self.buy_fills = self.sell_fills = 0
        self.volume_base = self.volume_quote = self.spread_capture = 0.0
        self.live: dict[int, LiveOrder] = {}
        self.remaining: dict[int, int] = {}
        self.side_counts = {BUY: 0, SELL: 0}
        self.market_hit: set[int] = set()
        engine.trade_listener = self._on_trade

    # --- fills --------------------------------------------------------------------------------

    def _on_trade(
        self, trade_id: int, maker_order_id: int, taker_order_id: int, maker_account: str,
        taker_account: str, symbol: str, taker_side: int, price_ticks: int, lots: int,
    ) -> None:
        if maker_account == BOT:
            buys = taker_side != ENGINE_BUY
            num, den = self.maker_fee
            order_id = maker_order_id
        elif taker_account == BOT:
            buys = taker_side == ENGINE_BUY
            num, den = self.taker_fee
            order_id = taker_order_id
        else:
            self.market_hit.add(maker_order_id)
            return
        settings = self.settings
        price = price_ticks * settings.tick_size
        size = lots * settings.lot_size
        mid = self.mid
        if buys:
            fee_base = (lots * self.base_per_lot * num // den) / 10**self.base_exp
            self._trade(size, price)
            self.cash -= size * price
            if fee_base:
                self._trade(-fee_base, price)  # the fee is base given up at the fill price
                self.fees += fee_base * price
            self.buy_fills += 1
            self.spread_capture += (mid - price) * size
        else:
            fee_quote = (price_ticks * lots * self.quote_per_tick_lot * num // den) / 10**self.quote_exp
            self._trade(-size, price)
            self.cash += size * price
            self.cash -= fee_quote
            self.fees += fee_quote
            self.sell_fills += 1
            self.spread_capture += (price - mid) * size
        self.fills += 1
        self.volume_base += size
        self.volume_quote += size * price
        left = self.remaining.get(order_id)
        if left is not None:
            left -= lots
            if left > 0:
                self.remaining[order_id] = left
            else:
                del self.remaining[order_id]
                order = self.live.pop(order_id)
                self.side_counts[order.side] -= 1

    def _trade(self, quantity: float, price: float) -> None:
        """Average-cost bookkeeping of a signed base quantity at ``price`` (no cash, no fees)."""
        position = self.position
        if position == 0 or (position > 0) == (quantity > 0):
            total = position + quantity
            self.average_cost = (self.average_cost * position + price * quantity) / total if total else 0.0
            self.position = total
            return
        closing = quantity if abs(quantity) <= abs(position) else -position
        self.realised += (price - self.average_cost) * (-closing)
        self.position = position + quantity
        rest = quantity - closing
        if rest:
            self.average_cost = price  # flipped: the remainder opens a new position at this price
        elif self.position == 0:
            self.average_cost = 0.0

    # --- the replay ---------------------------------------------------------------------------

    def run(self, progress: bool | None = None) -> BacktestResult:
        """Replay every event; ``progress`` None shows a tqdm bar only when stderr is a TTY."""
        started = time.perf_counter()
        data = self.data
        settings = self.settings
        engine = self.engine
        symbol = settings.symbol
        tick = settings.tick_size
        lot = settings.lot_size
        inv_tick = 1.0 / tick
        inv_lot = 1.0 / lot
        min_notional = settings.min_notional
        place = engine.place_limit_fast
        cancel = engine.cancel_fast
        state = engine.order_state_fast
        strategy = self.strategy
        risk = self.risk
        calculate = strategy.calculate_orders if strategy is not None else None
        order_config = strategy.order_config if strategy is not None else OrderConfig()
        tolerance_bps = order_config.order_refresh_tolerance_bps
        refresh_secs = order_config.order_refresh_secs
        bot_tif = POST_ONLY if order_config.post_only else GTC
        target = strategy.config.inventory_target_ratio if strategy is not None else 0.5
        requote_every = settings.requote_interval_secs
        analyse_every = settings.analysis_interval_secs if strategy is not None else 0.0
        live = self.live
        remaining = self.remaining
        side_counts = self.side_counts
        market_hit = self.market_hit

        ts_col, kind_col = data.ts, data.kind
        bid_col, ask_col = data.bid, data.ask
        bid_lots_col = [max(1, round(s * inv_lot)) for s in data.bid_size]
        ask_lots_col = [max(1, round(s * inv_lot)) for s in data.ask_size]
        price_col, size_col, side_col = data.price, data.size, data.side
        books = data.books

        market_bids: list[int] = []  # the market account's resting order ids per side
        market_asks: list[int] = []
        market_bid_ticks: tuple[int, ...] = ()
        market_ask_ticks: tuple[int, ...] = ()
        best_bid = best_ask = 0.0
        mid_times: deque[float] = deque(maxlen=settings.history_size)
        mids: deque[float] = deque(maxlen=settings.history_size)
        trades: deque[tuple[float, float, float, str]] = deque(maxlen=settings.history_size)
        last_quote_ts = -math.inf
        next_analysis = ts_col[0] + analyse_every if analyse_every else math.inf
        placed = cancelled = rejected = 0
        uptime = 0.0
        exposure = 0.0
        initial_base = settings.initial_base
        prev_ts = ts_col[0]
        equity_start = None
        first_mid = 0.0
        peak = -math.inf
        max_drawdown = 0.0
        n = len(ts_col)
        stride = max(1, n // settings.record_points)
        series: dict[str, list[float]] = {k: [] for k in ("ts", "mid", "bid", "ask", "base", "pnl")}
        show = progress if progress is not None else sys.stderr.isatty()
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=n, unit="ev", desc="backtest", file=sys.stderr)

        for chunk_start in range(0, n, PROGRESS_CHUNK):
            for i in range(chunk_start, min(n, chunk_start + PROGRESS_CHUNK)):
                ts = ts_col[i]
                if side_counts[BUY] and side_counts[SELL]:
                    uptime += ts - prev_ts
                if self.position != initial_base:
                    exposure += abs(self.position - initial_base) * self.mid * (ts - prev_ts)
                prev_ts = ts
                now_ms = int(ts * 1000.0)
                kind = kind_col[i]
                if kind == TRADE:
                    side = ENGINE_BUY if side_col[i] > 0 else 1
                    price = price_col[i]
                    try:
                        place(MARKET, symbol, side, round(price * inv_tick), max(1, round(size_col[i] * inv_lot)),
                              IOC, "", now_ms)
                    except EngineError:
                        pass
                    if analyse_every:
                        trades.append((ts, price, size_col[i], "buy" if side == ENGINE_BUY else "sell"))
                    continue

                # --- a quote or book event: move the market's resting orders ---
                if kind == QUOTE:
                    new_bid_ticks: tuple[int, ...] = (round(bid_col[i] * inv_tick),)
                    new_ask_ticks: tuple[int, ...] = (round(ask_col[i] * inv_tick),)
                    bid_lots: tuple[int, ...] = (bid_lots_col[i],)
                    ask_lots: tuple[int, ...] = (ask_lots_col[i],)
                else:
                    level_bids, level_asks = books[i]
                    new_bid_ticks = tuple(round(p * inv_tick) for p, _ in level_bids)
                    new_ask_ticks = tuple(round(p * inv_tick) for p, _ in level_asks)
                    bid_lots = tuple(max(1, round(s * inv_lot)) for _, s in level_bids)
                    ask_lots = tuple(max(1, round(s * inv_lot)) for _, s in level_asks)
                bids_stale = new_bid_ticks != market_bid_ticks
                asks_stale = new_ask_ticks != market_ask_ticks
                if market_hit:
                    if not bids_stale and any(not (state(o) or (0, 0, False))[2] for o in market_bids):
                        bids_stale = True
                    if not asks_stale and any(not (state(o) or (0, 0, False))[2] for o in market_asks):
                        asks_stale = True
                    market_hit.clear()
                if bids_stale:
                    for order_id in market_bids:
                        cancel(MARKET, order_id, now_ms)
                if asks_stale:
                    for order_id in market_asks:
                        cancel(MARKET, order_id, now_ms)
                if bids_stale:
                    market_bids = [
                        place(MARKET, symbol, ENGINE_BUY, p, q, GTC, "", now_ms)
                        for p, q in zip(new_bid_ticks, bid_lots, strict=True)
                    ]
                    market_bid_ticks = new_bid_ticks
                if asks_stale:
                    market_asks = [
                        place(MARKET, symbol, 1, p, q, GTC, "", now_ms)
                        for p, q in zip(new_ask_ticks, ask_lots, strict=True)
                    ]
                    market_ask_ticks = new_ask_ticks
                best_bid = bid_col[i]
                best_ask = ask_col[i]
                mid = (best_bid + best_ask) * 0.5
                self.mid = mid
                if equity_start is None:
                    first_mid = mid
                    equity_start = self.cash + self.position * mid
                    if self.position:
                        self.average_cost = mid

                if calculate is not None:
                    if analyse_every:
                        if not mids or mids[-1] != mid:
                            mid_times.append(ts)
                            mids.append(mid)
                        if ts >= next_analysis:
                            next_analysis = ts + analyse_every
                            snapshot = MarketSnapshot(symbol, best_bid, best_ask, ts, (), (), tuple(trades),
                                                      tick, lot, min_notional)
                            assert strategy is not None  # calculate is its method
                            analysis = analyze_market(snapshot, strategy.config, mid_times, mids)
                            if strategy.should_adapt(analysis):
                                strategy.adapt_to_conditions(analysis)
                    if ts - last_quote_ts >= requote_every:
                        last_quote_ts = ts
                        position = self.position
                        cash = self.cash
                        base_value = position * mid
                        total = base_value + cash
                        inventory = InventoryState(position, cash, base_value,
                                                   base_value / total if total > 0 else 0.5, target)
                        snapshot = MarketSnapshot(symbol, best_bid, best_ask, ts, (), (), (), tick, lot,
                                                  min_notional)
                        intents = calculate(snapshot, inventory, risk)
                        if intents or live:
                            diff = diff_orders(list(live.values()), intents, tolerance_bps=tolerance_bps,
                                               refresh_secs=refresh_secs, now=ts)
                            for order in diff.cancel:
                                order_id = cast(int, order.order_id)  # the engine's id here
                                cancel(BOT, order_id, now_ms)
                                if live.pop(order_id, None) is not None:
                                    del remaining[order_id]
                                    side_counts[order.side] -= 1
                                cancelled += 1
                            for intent in diff.place:
                                lots = round(intent.size * inv_lot)
                                engine_side = ENGINE_BUY if intent.side == BUY else 1
                                try:
                                    order_id = place(BOT, symbol, engine_side, round(intent.price * inv_tick),
                                                     lots, bot_tif, "", now_ms)
                                except EngineError:
                                    rejected += 1
                                    continue
                                placed += 1
                                if bot_tif != POST_ONLY:
                                    quantity, filled, is_open = state(order_id) or (0, 0, False)
                                    if not is_open:
                                        continue
                                    lots = quantity - filled
                                live[order_id] = LiveOrder(order_id, intent.side, intent.price, intent.size,
                                                           intent.level, ts)
                                remaining[order_id] = lots
                                side_counts[intent.side] += 1

                equity = self.cash + self.position * mid
                if equity > peak:
                    peak = equity
                elif peak - equity > max_drawdown:
                    max_drawdown = peak - equity
                if i % stride == 0:
                    self._record(series, ts, mid, equity - equity_start)
            if bar is not None:
                bar.update(min(n, chunk_start + PROGRESS_CHUNK) - chunk_start)
        if bar is not None:
            bar.close()

        if equity_start is None:
            raise ValueError("the market data has no quote or book event: nothing to value the inventory at")
        mid = self.mid
        equity_end = self.cash + self.position * mid
        self._record(series, ts_col[-1], mid, equity_end - equity_start)
        base_free, base_locked = engine.balance_units(BOT, self.base)
        quote_free, quote_locked = engine.balance_units(BOT, self.quote)
        data_secs = ts_col[-1] - ts_col[0]
        return BacktestResult(
            strategy=strategy.strategy_type if strategy is not None else "DATA_ONLY",
            events=n,
            data_secs=data_secs,
            wall_secs=time.perf_counter() - started,
            fills=self.fills,
            buy_fills=self.buy_fills,
            sell_fills=self.sell_fills,
            volume_base=self.volume_base,
            volume_quote=self.volume_quote,
            realised_pnl=self.realised,
            unrealised_pnl=self.position * (mid - self.average_cost),
            fees=self.fees,
            equity_start=equity_start,
            equity_end=equity_end,
            max_drawdown=max_drawdown,
            spread_capture=self.spread_capture,
            spread_capture_bps=self.spread_capture / self.volume_quote * 1e4 if self.volume_quote else 0.0,
            quote_uptime=uptime / data_secs if data_secs > 0 else 0.0,
            orders_placed=placed,
            orders_cancelled=cancelled,
            orders_rejected=rejected,
            final_base=(base_free + base_locked) / 10**self.base_exp,
            final_quote=(quote_free + quote_locked) / 10**self.quote_exp,
            first_mid=first_mid,
            last_mid=mid,
            inventory_risk=exposure / data_secs if data_secs > 0 else 0.0,
            series=series,
        )

    def _record(self, series: dict[str, list[float]], ts: float, mid: float, pnl: float) -> None:
        bids = [o.price for o in self.live.values() if o.side == BUY]
        asks = [o.price for o in self.live.values() if o.side == SELL]
        series["ts"].append(ts)
        series["mid"].append(mid)
        series["bid"].append(max(bids) if bids else math.nan)
        series["ask"].append(min(asks) if asks else math.nan)
        series["base"].append(self.position)
        series["pnl"].append(pnl)


def _dec(value: float) -> Decimal:
    """The shortest Decimal that round-trips the float (0.01 -> Decimal('0.01'))."""
    return Decimal(repr(float(value)))


def run_backtest(
    data: MarketData,
    strategy: MarketMakingStrategy | None,
    settings: BacktestSettings | None = None,
    risk: RiskContext | None = None,
    progress: bool | None = False,
) -> BacktestResult:
    """Replay ``data`` with ``strategy`` (None: data only) and return the measurements."""
    return Backtest(data, strategy, settings, risk).run(progress=progress)


def settings_from_metadata(data: MarketData, **overrides: object) -> BacktestSettings:
    """Settings with the file's symbol/tick/lot/min_notional, then ``overrides`` (None values skipped)."""
    values: dict[str, object] = {}
    meta = data.metadata
    try:
        if "symbol" in meta:
            values["symbol"] = meta["symbol"]
        for name in ("tick_size", "lot_size", "min_notional"):
            if name in meta:
                values[name] = float(meta[name])
    except ValueError as exc:
        raise MarketDataError(f"bad metadata in the market-data file: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BacktestSettings(**values)  # type: ignore[arg-type]


def write_report(result: BacktestResult, path: str) -> None:
    """A PNG with price and the bot's best quotes, inventory, and P&L over time (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    s = result.series
    t0 = s["ts"][0] if s["ts"] else 0.0
    minutes = [(t - t0) / 60.0 for t in s["ts"]]
    fig, (ax_price, ax_inv, ax_pnl) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    ax_price.plot(minutes, s["mid"], color="black", linewidth=0.8, label="mid")
    ax_price.plot(minutes, s["bid"], color="tab:green", linewidth=0.6, label="bot best bid")
    ax_price.plot(minutes, s["ask"], color="tab:red", linewidth=0.6, label="bot best ask")
    ax_price.set_ylabel("price")
    ax_price.legend(loc="upper left")
    ax_price.set_title(
        f"{result.strategy}: P&L {result.total_pnl:.2f} (realised {result.realised_pnl:.2f}, unrealised "
        f"{result.unrealised_pnl:.2f}, fees {result.fees:.2f}), {result.fills} fills, "
        f"uptime {result.quote_uptime:.0%}"
    )
    ax_inv.plot(minutes, s["base"], color="tab:blue")
    ax_inv.set_ylabel("inventory (base)")
    ax_pnl.plot(minutes, s["pnl"], color="tab:purple")
    ax_pnl.set_ylabel("P&L (quote)")
    ax_pnl.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- CLI ---------------------------------------------------------------------------------------


def _parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``field=value`` pairs split into StrategyConfig and OrderConfig keyword arguments."""
    strategy_fields = {f.name: f for f in dataclasses.fields(StrategyConfig)}
    order_fields = {f.name: f for f in dataclasses.fields(OrderConfig)}
    strategy_kwargs: dict[str, Any] = {}
    order_kwargs: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects field=value, got {pair!r}")
        name, raw = (part.strip() for part in pair.split("=", 1))
        if name in strategy_fields:
            target, kind = strategy_kwargs, strategy_fields[name].type
        elif name in order_fields:
            target, kind = order_kwargs, order_fields[name].type
        else:
            raise ValueError(f"--set: unknown field {name!r} (not in StrategyConfig or OrderConfig)")
        target[name] = _convert(raw, str(kind), name)
    return strategy_kwargs, order_kwargs


def _convert(raw: str, kind: str, name: str) -> object:
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind.startswith("float"):
            return None if raw.lower() == "none" and "None" in kind else float(raw)
        return raw
    except ValueError:
        raise ValueError(f"--set {name}: {raw!r} is not a valid {kind}") from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI's options."""
    parser = argparse.ArgumentParser(
        prog="python -m strategies.backtest",
        description="Replay a market-data file through the emulator's matching engine with a strategy.",
    )
    parser.add_argument("--data", required=True, action="append",
                        help="market-data file (native CSV, plain or gzip, or .parquet with pyarrow; or a "
                             "--data-format dump); repeat to merge files by time")
    parser.add_argument("--data-format", action="append", default=[], metavar="FMT",
                        help=f"format of each --data (native, {', '.join(FORMATS)}); default native; one "
                             "value applies to every --data")
    parser.add_argument("--depth", type=int, default=10, help="levels kept from an L2 dump (tardis-l2)")
    parser.add_argument("--strategy", default="GRID_TRADING", choices=[*STRATEGY_CLASSES, "NONE"],
                        help="strategy to run; NONE replays the data only")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a StrategyConfig or OrderConfig field (repeatable)")
    parser.add_argument("--symbol", help="overrides the file's metadata")
    parser.add_argument("--tick-size", type=float, help="overrides the file's metadata")
    parser.add_argument("--lot-size", type=float, help="overrides the file's metadata")
    parser.add_argument("--min-notional", type=float, help="overrides the file's metadata")
    parser.add_argument("--initial-base", type=float, default=10.0)
    parser.add_argument("--initial-quote", type=float, default=1000.0)
    parser.add_argument("--taker-fee-bps", type=float, default=10.0)
    parser.add_argument("--requote-secs", type=float, default=0.0, help="min seconds between strategy runs")
    parser.add_argument("--analysis-secs", type=float, default=60.0, help="seconds between market analyses")
    parser.add_argument("--min-order-size-quote", type=float, default=DEFAULT_RISK.min_order_size_quote)
    parser.add_argument("--max-order-size-quote", type=float, default=DEFAULT_RISK.max_order_size_quote)
    parser.add_argument("--max-position-quote", type=float, default=DEFAULT_RISK.max_position_quote)
    parser.add_argument("--report", metavar="FILE.png", help="write the price/quotes/inventory/P&L chart")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when not on a TTY")
    return parser


def load_data(paths: list[str], formats: list[str], depth: int = 10) -> MarketData:
    """Load ``paths`` (their formats: one per path, one for all, or none = native), merged by time."""
    if not formats:
        formats = ["native"] * len(paths)
    elif len(formats) == 1:
        formats = formats * len(paths)
    elif len(formats) != len(paths):
        raise ValueError(f"give one --data-format for all --data or one per --data ({len(paths)} files, "
                         f"{len(formats)} formats)")
    for fmt in formats:
        if fmt != "native" and fmt not in FORMATS:
            raise ValueError(f"unknown --data-format {fmt!r} (one of native, {', '.join(FORMATS)})")
    if formats == ["native"]:
        return load_market_data(paths[0])
    streams = []
    metadata: dict[str, str] = {}
    readers = []
    for fmt, path in zip(formats, paths, strict=True):
        events, meta, reader = load_events(fmt, path, depth=depth)
        streams.append(events)
        metadata = {**meta, **metadata}
        if reader is not None:
            readers.append((reader, path))
    data = to_market_data(merge_by_time(streams), metadata)
    if "symbol" not in metadata:
        names = [r.symbol or symbol_from_filename(p) for r, p in readers]
        found = next((n for n in names if n), None)
        if found:
            data.metadata["symbol"] = split_symbol(found)
    if "tick_size" not in metadata and len(data):
        tick, lot = infer_increments(list(native_events_head(data, INFER_EVENTS)))
        data.metadata["tick_size"] = repr(tick)
        data.metadata["lot_size"] = repr(lot)
    return data


def native_events_head(data: MarketData, n: int) -> Iterator[Event]:
    """The first ``n`` events of ``data``."""
    for i, event in enumerate(native_events(data)):
        if i >= n:
            return
        yield event


def build_convert_parser() -> argparse.ArgumentParser:
    """``convert``'s options."""
    parser = argparse.ArgumentParser(
        prog="python -m strategies.backtest convert",
        description="Convert an exchange or vendor dump (plain, gzip or zip) to the native market-data CSV, "
                    "streaming (bounded memory); --merge adds more files merged by time.",
    )
    parser.add_argument("--from", dest="source", required=True, choices=[*FORMATS, "native"])
    parser.add_argument("--to", dest="target", default="native", choices=["native", *FORMATS],
                        help="output format (default native; a vendor format writes what it can hold)")
    parser.add_argument("--exchange", default="native", help="exchange column of Tardis output")
    parser.add_argument("input", help="input file")
    parser.add_argument("output", help="output native CSV (.gz: gzip-compressed)")
    parser.add_argument("--merge", action="append", default=[], metavar="FMT:FILE",
                        help="another input (e.g. binance-trades:trades.csv), merged by time; repeatable")
    parser.add_argument("--symbol", help="BASE/QUOTE for the metadata (default: from the file)")
    parser.add_argument("--tick-size", type=float, help="default: inferred from the prices' decimals")
    parser.add_argument("--lot-size", type=float, help="default: inferred from the sizes' decimals")
    parser.add_argument("--time", choices=["local", "exchange", "event", "transaction"],
                        help="which timestamp column to use (Tardis: local|exchange, Binance bookTicker: "
                             "event|transaction)")
    parser.add_argument("--depth", type=int, default=10, help="levels kept from an L2 dump (1: quotes)")
    parser.add_argument("--only-symbol", help="keep only this symbol's rows of a multi-symbol Tardis file")
    return parser


def convert_main(argv: list[str]) -> int:
    """``convert``: bad input prints one line to stderr and returns 2."""
    args = build_convert_parser().parse_args(argv)
    inputs: list[tuple[str, str | Path]] = [(args.source, args.input)]
    try:
        for item in args.merge:
            fmt, sep, path = item.partition(":")
            if not sep or (fmt not in FORMATS and fmt != "native"):
                raise ValueError(f"--merge expects FMT:FILE with FMT one of native, {', '.join(FORMATS)}; "
                                 f"got {item!r}")
            inputs.append((fmt, path))
        if args.depth < 1:
            raise ValueError(f"--depth must be at least 1, got {args.depth}")
        for name in ("tick_size", "lot_size"):
            value = getattr(args, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be greater than 0, got {value!r}")
        time_option = args.time
        if time_option in ("event", "transaction") and any(f.startswith("tardis") for f, _ in inputs):
            raise ValueError(f"--time {time_option} is for binance-bookticker; Tardis files take local|exchange")
        if time_option in ("local", "exchange") and any(f == "binance-bookticker" for f, _ in inputs):
            raise ValueError(f"--time {time_option} is for Tardis files; binance-bookticker takes event|transaction")
        if args.target != "native":
            rows, dropped = export(inputs, args.output, args.target, exchange=args.exchange, symbol=args.symbol,
                                   time=time_option, depth=args.depth)
            print(f"wrote {rows} rows to {args.output} ({dropped} events {args.target} cannot hold dropped)",
                  file=sys.stderr)
            return 0
        rows, readers = convert(inputs, args.output, symbol=args.symbol, tick_size=args.tick_size,
                                lot_size=args.lot_size, time=time_option, depth=args.depth,
                                only_symbol=args.only_symbol)
    except (ValueError, OSError) as exc:  # DataFormatError is a MarketDataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for reader in readers:
        st = reader.stats
        print(f"{reader.path}: {st.rows} rows, {st.events} events, {st.skipped} skipped (empty side), "
              f"{st.crossed} crossed/locked dropped, {st.clamped} times held back", file=sys.stderr)
    print(f"wrote {rows} events to {args.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input prints one line to stderr and returns 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "convert":
        return convert_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.report and not args.report.lower().endswith(".png"):
            raise ValueError(f"--report must name a .png file, got {args.report!r}")
        data = load_data(args.data, args.data_format, depth=args.depth)
        settings = settings_from_metadata(
            data, symbol=args.symbol, tick_size=args.tick_size, lot_size=args.lot_size,
            min_notional=args.min_notional, initial_base=args.initial_base, initial_quote=args.initial_quote,
            taker_fee_bps=args.taker_fee_bps, requote_interval_secs=args.requote_secs,
            analysis_interval_secs=args.analysis_secs,
        )
        strategy_kwargs, order_kwargs = _parse_overrides(args.overrides)
        risk = RiskContext(
            min_order_size_quote=args.min_order_size_quote, max_order_size_quote=args.max_order_size_quote,
            max_position_quote=args.max_position_quote,
        )
        strategy = None
        if args.strategy != "NONE":
            strategy = create_strategy(args.strategy, settings.symbol, None, StrategyConfig(**strategy_kwargs),
                                       OrderConfig(**order_kwargs))
        result = run_backtest(data, strategy, settings, risk, progress=True if args.progress else None)
        if args.report:
            write_report(result, args.report)
    except (ValueError, OSError, InvalidStrategyError) as exc:  # MarketDataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value:.6g}" if isinstance(value, float) else f"{key:>22}: {value}")
        if args.report:
            print(f"{'report':>22}: {args.report}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"]:
        # the sweep is built on this module, so only the script (``__main__``, not ``strategies.backtest``)
        # hands over to it: no import cycle (``strategies.sweep.main`` is the sweep's own entry)
        from strategies.sweep import main as sweep_main

        raise SystemExit(sweep_main(sys.argv[2:]))
    raise SystemExit(main())
