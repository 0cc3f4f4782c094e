"""The backtester's replay: a book model of the market, the strategy's own orders and a fill model.

The market is not simulated as resting orders: each quote (L1) or book (L2) event just sets the
market's best bid/ask (and sizes); trades are read as they come. Only the strategy's own orders
rest, in a few small lists, matched against that state by the fill model below. Every price is
compared in whole ticks and every size in whole lots, so the matching is exact.

Fill model (each fill at the order's own limit price, maker fee, ``docs/backtesting.md``):

* **Crossed quote**: a quote/book event whose best ask is at or below a resting bid (best bid at
  or above a resting ask) fills it, up to the displayed size of that best level, the highest bid
  (lowest ask) first; each further event that still crosses fills more.
* **Trade through the price**: a sell-aggressor trade below a resting bid (buy-aggressor above a
  resting ask) fills it up to the trade's size: the order was better priced than the trade, so
  the aggressor met it first.
* **Trade at the price**: a trade at exactly the order's price fills it up to the trade's size
  after the queue ahead of it. With ``queue_position`` the queue ahead is the market's displayed
  size at that price when the order was placed (0 when it improved the market; the level's size
  from the last L2 book, else 0, when behind the best); trades at that price use it up first.
  Without it the order is first in the queue.
* **Placement**: an order is checked as an exchange would: on the tick and lot grid, at least
  ``min_notional``, funded by the free balance (the rest is locked while it rests); a post-only
  order that would cross the market is rejected; another crossing order takes the best opposite
  level (up to its displayed size) at that level's price as a taker, the rest rests.

When the strategy is consulted (``consult``): on a fill, on the first quote event at or after a
timer (the oldest resting order reaching ``order_refresh_secs``, the analysis interval, and the
live bot's cycle ``cycle_secs``), and when the best bid or ask moved further than the decision's
smallest remaining refresh tolerance (``tolerance``: a move within it cannot move the strategy's
quotes far enough for the diff to replace one — every intent allowed and resting, and one tick
of rounding kept in hand), on every change of the best bid/ask (``change``), or on every quote
event (``every``). Between those events nothing but the market state changes, so a run of events
is skipped in one step with numpy (best prices, the accumulated uptime, inventory exposure,
drawdown and the report's samples computed over the run at once).

Each consultation is ``strategies.pipeline.decide`` — the live engine's decide -> check -> diff.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bots.config import MarketMakingConfig
from risk.limits import RiskLimits
from strategies.analysis import analyze_market
from strategies.base import MarketMakingStrategy
from strategies.config import OrderConfig
from strategies.marketdata import BOOK, TRADE, MarketData
from strategies.pipeline import Decision, DecisionInputs, QuotingRules, decide
from strategies.selection import create_strategy
from strategies.types import BUY, InventoryState, LiveOrder, MarketSnapshot, RiskContext

DecisionHook = Callable[[DecisionInputs, Decision], None]
CONSULT_MODES = ("tolerance", "change", "every")
BIG = 1 << 62
SCAN_AFTER = 4
"""Quiet events handled one by one before a run of them is looked for with numpy."""
MIN_WINDOW, MAX_WINDOW = 64, 1 << 16

# an order: [order id, price in ticks, lots left, lots queued ahead, LiveOrder]
ID, PRICE, LEFT, AHEAD, LIVE = range(5)


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """The market's filters, the bot's starting balances, the fill model and the replay cadence."""

    symbol: str = "SYN/USDT"
    tick_size: float = 0.01
    lot_size: float = 0.001
    min_notional: float = 0.0
    initial_base: float = 10.0
    initial_quote: float = 1000.0
    taker_fee_bps: float = 10.0
    """Fee of the bot's taker fills (a non-post-only order that crosses when placed)."""
    requote_interval_secs: float = 0.0
    """Least time between two consultations of the strategy (0: no limit)."""
    analysis_interval_secs: float = 60.0
    """How often the market is analysed and the strategy offered to adapt (0: never)."""
    cycle_secs: float = 5.0
    """The strategy is consulted at least this often (the live bot's monitoring interval; 0: only on
    fills, moves and order age)."""
    consult: str = "tolerance"
    """When the strategy is consulted besides fills and timers: ``tolerance`` (the market moved past the
    refresh tolerance left), ``change`` (any best bid/ask change) or ``every`` (every quote event)."""
    queue_position: bool = True
    """A trade at a resting order's price first uses up the displayed size that was ahead of it."""
    latency_secs: float = 0.0
    """A placement or cancel reaches the book this long after the decision (an order being cancelled
    can still fill until then; a placement cannot fill before)."""
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
                     "analysis_interval_secs", "cycle_secs", "latency_secs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                out.append(f"{name} must not be negative, got {value!r}")
        if not (math.isfinite(self.taker_fee_bps) and 0 <= self.taker_fee_bps <= 100):
            out.append(f"taker_fee_bps must be between 0 and 100, got {self.taker_fee_bps!r}")
        if self.consult not in CONSULT_MODES:
            out.append(f"consult must be one of {', '.join(CONSULT_MODES)}, got {self.consult!r}")
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
    orders_denied: int
    """Intents the pre-trade risk checks denied (``strategies.pipeline.decide``)."""
    final_base: float
    final_quote: float
    first_mid: float = 0.0
    """The mid the start inventory is valued at (the first quote/book event's)."""
    last_mid: float = 0.0
    """The mid the end inventory is valued at."""
    inventory_risk: float = 0.0
    """Time-averaged |base held - initial base| x mid (quote currency): the exposure the strategy took
    on, weighted by how long it held it."""
    decisions: int = 0
    """Times the strategy was consulted (``strategies.pipeline.decide`` called)."""
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
        *,
        limits: RiskLimits | None = None,
        rules: QuotingRules | None = None,
        target_ratio: float | None = None,
        on_decision: DecisionHook | None = None,
    ):
        """``risk`` (the strategy's pair limits), ``limits`` (the pre-trade checks) and ``rules`` (order
        sizes, refresh tolerance) are what the live engine passes ``strategies.pipeline.decide``;
        ``from_config`` builds all three from a bot's ``MarketMakingConfig`` as the engine does. Without
        ``limits``/``rules`` they are derived from ``risk`` and the strategy's ``OrderConfig``.
        ``on_decision(inputs, decision)`` is called after every decision (tests, debugging)."""
        self.settings = settings = settings or BacktestSettings()
        problems = settings.problems()
        order_config = strategy.order_config if strategy is not None else OrderConfig()
        if order_config.maker_fee_bps < 0:
            problems.append("the book model has no maker rebates: maker_fee_bps must be >= 0")
        if not len(data):
            problems.append("the market data has no events")
        if problems:
            raise ValueError("; ".join(problems))
        self.data = data
        self.strategy = strategy
        self.risk = risk = risk or RiskContext()
        self.limits = limits or RiskLimits(max_position_quote=risk.max_position_quote,
                                           volatility_pause_threshold=risk.volatility_pause_threshold)
        self.rules = rules or QuotingRules(
            min_order_size_quote=risk.min_order_size_quote, max_order_size_quote=risk.max_order_size_quote,
            order_refresh_tolerance_bps=order_config.order_refresh_tolerance_bps,
            order_refresh_secs=order_config.order_refresh_secs)
        self.on_decision = on_decision
        self.target_ratio = target_ratio if target_ratio is not None else (
            strategy.config.inventory_target_ratio if strategy is not None else 0.5)
        self.maker_rate = order_config.maker_fee_bps / 1e4
        self.taker_rate = settings.taker_fee_bps / 1e4
        self.post_only = order_config.post_only
        self.base, self.quote = settings.symbol.split("/")
        # balances (what an exchange would hold) and the average-cost bookkeeping, kept apart
        self.base_total = self.position = settings.initial_base
        self.quote_total = settings.initial_quote
        self.base_locked = self.quote_locked = 0.0
        self.average_cost = 0.0
        self.realised = 0.0
        self.fees = 0.0
        self.mid = 0.0
        self.fills = self.buy_fills = self.sell_fills = 0
        self.volume_base = self.volume_quote = self.spread_capture = 0.0
        self.bids: list[list] = []  # resting orders, best first
        self.asks: list[list] = []
        self.live: dict[int, LiveOrder] = {}
        self.next_id = 1
        self.tick, self.lot = settings.tick_size, settings.lot_size
        self.inv_tick, self.inv_lot = 1.0 / settings.tick_size, 1.0 / settings.lot_size
        self.latency = settings.latency_secs
        self.tolerance = self.rules.order_refresh_tolerance_bps / 1e4 if settings.consult == "tolerance" else 0.0
        self.flights: deque[tuple[float, Any, bool, bool]] = deque()  # (lands at, order or id, buys, placing)
        self.placed = self.cancelled = self.rejected = self.denied = self.decisions = 0

    @classmethod
    def from_config(
        cls, data: MarketData, config: MarketMakingConfig, settings: BacktestSettings | None = None,
        *, pair: str | None = None, strategy_type: str | None = None, on_decision: DecisionHook | None = None,
    ) -> Backtest:
        """A backtest of one pair of a bot's config, decided as the live engine decides it: the strategy
        built as ``StrategyEngine.create_strategy`` builds it (``strategy_type`` or the config's
        ``default_strategy``), the pair limits, risk limits and quoting rules from the same config
        methods the engine calls, the live cycle as ``cycle_secs``. ``settings.symbol`` defaults to
        ``pair`` (else the config's first)."""
        settings = settings or BacktestSettings()
        if pair is None:
            pair = settings.symbol if settings.symbol in config.trading_pairs else config.trading_pairs[0]
        settings = dataclasses.replace(settings, symbol=pair, cycle_secs=float(config.monitoring_interval_secs))
        strategy = create_strategy(strategy_type or config.strategy_settings.default_strategy, pair, None,
                                   config.strategy_settings, config.order_settings)
        target = config.inventory_settings.target_ratios.get(pair, config.strategy_settings.inventory_target_ratio)
        return cls(data, strategy, settings, config.pair_risk(), limits=config.risk_limits,
                   rules=config.quoting_rules(), target_ratio=float(target), on_decision=on_decision)

    # --- fills ----------------------------------------------------------------------------------

    def _fill(self, order: list, buys: bool, lots: int, price_ticks: int, taker: bool = False) -> None:
        """``lots`` of ``order`` filled at ``price_ticks`` (its own price unless a taker fill)."""
        settings = self.settings
        price = price_ticks * settings.tick_size
        size = lots * settings.lot_size
        rate = self.taker_rate if taker else self.maker_rate
        mid = self.mid
        order_price = order[PRICE] * settings.tick_size
        if buys:
            self.quote_locked -= size * order_price
            self.quote_total -= size * price
            fee_base = size * rate
            self.base_total += size - fee_base
            self._trade(size, price)
            if fee_base:
                self._trade(-fee_base, price)  # the fee is base given up at the fill price
                self.fees += fee_base * price
            self.buy_fills += 1
            self.spread_capture += (mid - price) * size
        else:
            self.base_locked -= size
            self.base_total -= size
            fee_quote = size * price * rate
            self.quote_total += size * price - fee_quote
            self._trade(-size, price)
            self.fees += fee_quote
            self.sell_fills += 1
            self.spread_capture += (price - mid) * size
        self.fills += 1
        self.volume_base += size
        self.volume_quote += size * price
        order[LEFT] -= lots
        if order[LEFT] <= 0:
            (self.bids if buys else self.asks).remove(order)
            self.live.pop(order[ID], None)
        elif order[ID] in self.live:  # the decision sees the size left (not of an order being cancelled)
            live = order[LIVE] = dataclasses.replace(order[LIVE], size=order[LEFT] * self.settings.lot_size)
            self.live[order[ID]] = live

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

    def _cross(self, buys: bool, level_ticks: int, level_lots: int) -> None:
        """A quote/book event whose best opposite level crosses resting orders: fill the best first."""
        book = self.bids if buys else self.asks
        for order in list(book):
            if level_lots <= 0 or (order[PRICE] < level_ticks if buys else order[PRICE] > level_ticks):
                break
            lots = min(order[LEFT], level_lots)
            level_lots -= lots
            self._fill(order, buys, lots, order[PRICE])

    def _hit(self, buys: bool, price_ticks: int, lots: int) -> None:
        """A trade (sell aggressor when ``buys``) at ``price_ticks`` for ``lots``: through or at the price."""
        queue = self.settings.queue_position
        for order in list(self.bids if buys else self.asks):
            if lots <= 0:
                break
            own = order[PRICE]
            if own == price_ticks:
                if queue and order[AHEAD]:
                    used = min(order[AHEAD], lots)
                    order[AHEAD] -= used
                    lots -= used
                    if lots <= 0:
                        break
            elif (own < price_ticks) if buys else (own > price_ticks):
                break
            take = min(order[LEFT], lots)
            lots -= take
            self._fill(order, buys, take, own)

    # --- orders ---------------------------------------------------------------------------------

    def _place(self, side: str, price_ticks: int, lots: int, level: int, ts: float, market: tuple,
               quoted: float | None = None) -> bool:
        """Send one order; False when refused at once (grid, notional, funds; see the module's docstring).
        ``quoted``: the intent's price as the decision saw it (the live engine records that one). The
        funds are locked when it is sent; it reaches the book ``latency_secs`` later (``_arrive``)."""
        buys = side == BUY
        price = price_ticks * self.tick
        size = lots * self.lot
        if lots <= 0 or price_ticks <= 0 or price * size < self.settings.min_notional * (1 - 1e-12):
            return False
        if buys:
            if self.quote_total - self.quote_locked < price * size * (1 - 1e-12):
                return False
        elif self.base_total - self.base_locked < size * (1 - 1e-12):
            return False
        order_id = self.next_id
        self.next_id += 1
        live = LiveOrder(order_id, side, price if quoted is None else quoted, size, level, ts)
        order = [order_id, price_ticks, lots, 0, live]
        if buys:
            self.quote_locked += price * size
        else:
            self.base_locked += size
        self.live[order_id] = live
        if self.latency:
            self.flights.append((ts + self.latency, order, buys, True))
            return True
        return self._arrive(order, buys, market)

    def _arrive(self, order: list, buys: bool, market: tuple) -> bool:
        """An order reaches the book: a post-only order that would cross is rejected (False), the queue
        ahead is taken, a crossing taker order fills against the best opposite level first."""
        bid_t, bid_lots, ask_t, ask_lots, book = market
        price_ticks = order[PRICE]
        crosses = price_ticks >= ask_t if buys else price_ticks <= bid_t
        if crosses and self.post_only:
            self.live.pop(order[ID], None)
            self._unlock(order, buys)
            return False
        if self.settings.queue_position:
            best = bid_t if buys else ask_t
            if price_ticks == best:
                order[AHEAD] = bid_lots if buys else ask_lots
            elif book is not None and ((price_ticks < best) if buys else (price_ticks > best)):
                order[AHEAD] = (book[0] if buys else book[1]).get(price_ticks, 0)
        resting = self.bids if buys else self.asks
        at = len(resting)  # best first; after the orders at the same price (time priority)
        while at and ((resting[at - 1][PRICE] < price_ticks) if buys else (resting[at - 1][PRICE] > price_ticks)):
            at -= 1
        resting.insert(at, order)
        if crosses:  # a taker order: the best opposite level at its own price, the rest rests
            self._fill(order, buys, min(order[LEFT], ask_lots if buys else bid_lots), ask_t if buys else bid_t,
                       taker=True)
        return True

    def _unlock(self, order: list, buys: bool) -> None:
        left = order[LEFT] * self.settings.lot_size
        if buys:
            self.quote_locked -= left * order[PRICE] * self.settings.tick_size
        else:
            self.base_locked -= left

    def _cancel(self, order_id: int, ts: float) -> None:
        """Cancel a resting order; with latency it leaves the decision's view now and the book (where it
        can still fill) ``latency_secs`` later."""
        live = self.live.pop(order_id, None)
        if live is None:
            return
        buys = live.side == BUY
        if self.latency:
            self.flights.append((ts + self.latency, order_id, buys, False))
            return
        self._remove(order_id, buys)

    def _remove(self, order_id: int, buys: bool) -> None:
        book = self.bids if buys else self.asks
        for order in book:
            if order[ID] == order_id:
                book.remove(order)
                left = order[LEFT] * self.lot
                if buys:
                    self.quote_locked -= left * order[PRICE] * self.tick
                else:
                    self.base_locked -= left
                self.cancelled += 1
                return

    def _land(self, ts: float, market: tuple) -> bool:
        """Every placement and cancel due by ``ts`` reaches the book; True when one was rejected."""
        rejected = False
        flights = self.flights
        while flights and flights[0][0] <= ts:
            _, what, buys, placing = flights.popleft()
            if not placing:
                self._remove(what, buys)
            elif not self._arrive(what, buys, market):
                self.placed -= 1
                self.rejected += 1
                rejected = True
        return rejected

    def _decide(self, ts: float, best_bid: float, best_ask: float, market: tuple) -> float:
        """Consult the strategy through the live pipeline and act on its diff; returns the slack: the
        fraction the market may move before the decision could change (0: any move)."""
        settings = self.settings
        strategy = self.strategy
        assert strategy is not None
        inventory = InventoryState.from_balances(self.base_total, self.quote_total, self.mid, self.target_ratio)
        snapshot = MarketSnapshot(settings.symbol, best_bid, best_ask, ts, (), (), (), settings.tick_size,
                                  settings.lot_size, settings.min_notional)
        inputs = DecisionInputs(snapshot, inventory, self.risk, self.limits, self.rules, tuple(self.live.values()),
                                0, ts)
        decision = decide(strategy, inputs)
        self.decisions += 1
        if self.on_decision is not None:
            self.on_decision(inputs, decision)
        diff = decision.diff
        denied = decision.checked.denied
        if denied:
            self.denied += len(denied)
        for order in diff.cancel:
            self._cancel(order.order_id, ts)  # type: ignore[arg-type]
        inv_tick, inv_lot = self.inv_tick, self.inv_lot
        all_rest = not denied and len(decision.intents) == len(decision.valid)
        for intent in diff.place:
            if self._place(intent.side, round(intent.price * inv_tick), round(intent.size * inv_lot), intent.level,
                           ts, market, intent.price):
                self.placed += 1
            else:
                self.rejected += 1
                all_rest = False
        tolerance = self.tolerance
        if not tolerance or not all_rest or not decision.allowed:
            return 0.0
        slack = tolerance
        wanted = {(i.side, i.level): i for i in decision.allowed}
        for order in diff.keep:
            intent = wanted[(order.side, order.level)]
            slack = min(slack, tolerance - abs(order.price - intent.price) / intent.price)
        return max(slack, 0.0)

    # --- the replay -----------------------------------------------------------------------------

    def run(self, progress: bool | None = None) -> BacktestResult:
        """Replay every event; ``progress`` None shows a tqdm bar only when stderr is a TTY."""
        started = time.perf_counter()
        settings = self.settings
        data = self.data
        strategy = self.strategy
        n = len(data)
        tick, lot = settings.tick_size, settings.lot_size
        inv_tick, inv_lot = 1.0 / tick, 1.0 / lot

        # --- columns (numpy) -------------------------------------------------------------------
        ts_a = np.asarray(data.ts, dtype=np.float64)
        kind = np.asarray(data.kind, dtype=np.int8)
        is_q = kind != TRADE
        q_idx = np.flatnonzero(is_q)
        if not len(q_idx):
            raise ValueError("the market data has no quote or book event: nothing to value the inventory at")
        # forward-filled market state: the last quote/book event at or before each row
        last_q = np.where(is_q, np.arange(n), -1)
        np.maximum.accumulate(last_q, out=last_q)
        bid_f = np.asarray(data.bid, dtype=np.float64)
        ask_f = np.asarray(data.ask, dtype=np.float64)
        bid_t_raw = np.rint(bid_f * inv_tick).astype(np.int64)
        ask_t_raw = np.rint(ask_f * inv_tick).astype(np.int64)
        valid = last_q >= 0
        safe = np.where(valid, last_q, 0)
        ff_bid = np.where(valid, bid_t_raw[safe], -BIG)  # before any quote: nothing crosses
        ff_ask = np.where(valid, ask_t_raw[safe], BIG)
        mid_q = (bid_f + ask_f) * 0.5
        ff_mid = np.where(valid, mid_q[safe], 0.0)
        bid_lots_a = np.maximum(1, np.rint(np.asarray(data.bid_size) * inv_lot)).astype(np.int64)
        ask_lots_a = np.maximum(1, np.rint(np.asarray(data.ask_size) * inv_lot)).astype(np.int64)
        is_t = ~is_q
        side_a = np.asarray(data.side, dtype=np.int8)
        price_t = np.rint(np.asarray(data.price, dtype=np.float64) * inv_tick).astype(np.int64)
        trade_lots = np.maximum(1, np.rint(np.asarray(data.size, dtype=np.float64) * inv_lot)).astype(np.int64)
        sell_t = np.where(is_t & (side_a < 0), price_t, BIG)  # hits bids at or below ... (p <= best bid)
        buy_t = np.where(is_t & (side_a > 0), price_t, -BIG)
        # exposure integral: sum of (mid before the event) * (time since the previous event)
        mid_before = np.concatenate(([0.0], ff_mid[:-1]))
        dts = np.diff(ts_a, prepend=ts_a[0])
        exposure_cum = np.cumsum(mid_before * dts)
        stride = max(1, n // settings.record_points)
        rec_idx = q_idx[q_idx % stride == 0]
        books = data.books
        book_ticks: dict[int, tuple[dict[int, int], dict[int, int]]] = {}

        def book_at(i: int) -> tuple[dict[int, int], dict[int, int]] | None:
            if kind[i] != BOOK:
                return None
            cached = book_ticks.get(i)
            if cached is None:
                bids, asks = books[i]
                cached = book_ticks[i] = (
                    {round(p * inv_tick): max(1, round(s * inv_lot)) for p, s in bids},
                    {round(p * inv_tick): max(1, round(s * inv_lot)) for p, s in asks})
            return cached

        # python lists for the per-event path (indexing a list is faster than a numpy array)
        ts_l = data.ts
        kind_l = data.kind
        bid_l, ask_l = data.bid, data.ask
        bid_tl, ask_tl = bid_t_raw.tolist(), ask_t_raw.tolist()
        bid_lots_l, ask_lots_l = bid_lots_a.tolist(), ask_lots_a.tolist()
        price_tl, trade_lots_l = price_t.tolist(), trade_lots.tolist()
        side_l = data.side
        price_l, size_l = data.price, data.size

        # --- state ----------------------------------------------------------------------------------
        analyse_every = settings.analysis_interval_secs if strategy is not None else 0.0
        cycle = settings.cycle_secs if strategy is not None else 0.0
        requote_every = settings.requote_interval_secs
        refresh_secs = self.rules.order_refresh_secs
        every = settings.consult == "every"
        mid_times: deque[float] = deque(maxlen=settings.history_size)
        mids: deque[float] = deque(maxlen=settings.history_size)
        trades: deque[tuple[float, float, float, str]] = deque(maxlen=settings.history_size)
        series: dict[str, list[float]] = {k: [] for k in ("ts", "mid", "bid", "ask", "base", "pnl")}
        bids, asks = self.bids, self.asks
        flights = self.flights
        best_bid = best_ask = 0.0
        market: tuple = (-BIG, 0, BIG, 0, None)  # (bid ticks, bid lots, ask ticks, ask lots, L2 book) now
        first_q = int(q_idx[0])
        equity_start: float | None = None
        first_mid = 0.0
        peak, max_drawdown = -math.inf, 0.0
        uptime = exposure = 0.0
        initial_base = settings.initial_base
        prev_ts = ts_l[0]
        pending = strategy is not None  # the strategy is consulted at the first quote
        last_consult = -math.inf
        next_analysis = ts_l[0] + analyse_every if analyse_every else math.inf
        next_timer = math.inf  # the earliest of order age, analysis and cycle timers
        ref_bid, ref_ask, band_bid, band_ask = 0, 0, -1.0, -1.0
        hb = max((o[PRICE] for o in bids), default=-BIG)
        la = min((o[PRICE] for o in asks), default=BIG)
        quiet = 0
        window = MIN_WINDOW
        show = progress if progress is not None else sys.stderr.isatty()
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=n, unit="ev", desc="backtest", file=sys.stderr)
        shown = 0

        def record(ts: float, mid: float, pnl: float) -> None:
            series["ts"].append(ts)
            series["mid"].append(mid)
            series["bid"].append(bids[0][PRICE] * tick if bids else math.nan)
            series["ask"].append(asks[0][PRICE] * tick if asks else math.nan)
            series["base"].append(self.base_total)
            series["pnl"].append(pnl)

        i = 0
        while i < n:
            # --- a run of quiet events, skipped at once ------------------------------------------
            if quiet >= SCAN_AFTER and not pending:  # (a pending consultation waits for the next quote)
                end = n
                due = min(next_timer, flights[0][0]) if flights else next_timer
                if due != math.inf:
                    end = min(end, int(np.searchsorted(ts_a, due, side="left")))
                j = i
                while j < end:
                    stop = min(end, j + window)
                    hit = None
                    if strategy is not None:
                        fb = ff_bid[j:stop]
                        fa = ff_ask[j:stop]
                        if every:
                            cond = is_q[j:stop].copy()
                        else:
                            cond = np.abs(fb - ref_bid) > band_bid
                            cond |= np.abs(fa - ref_ask) > band_ask
                        if hb > -BIG:
                            cond |= fa <= hb
                            cond |= sell_t[j:stop] <= hb
                        if la < BIG:
                            cond |= fb >= la
                            cond |= buy_t[j:stop] >= la
                        k = int(cond.argmax())
                        if cond[k]:
                            hit = j + k
                    if hit is not None:
                        window = max(MIN_WINDOW, window // 2)
                        j = hit
                        break
                    j = stop
                    window = min(MAX_WINDOW, window * 2)
                if j > i:
                    # advance the state over rows i..j-1 (no fill, no decision in between)
                    last = j - 1
                    if bids and asks:
                        uptime += ts_l[last] - prev_ts
                    position_gap = abs(self.base_total - initial_base)
                    if position_gap:
                        exposure += position_gap * float(exposure_cum[last] - exposure_cum[i - 1] if i else
                                                          exposure_cum[last])
                    prev_ts = ts_l[last]
                    lq = int(last_q[last])
                    if lq >= i:
                        if equity_start is None and first_q < j:
                            self.mid = first_mid = float(mid_q[first_q])
                            equity_start = self.quote_total + self.base_total * first_mid
                            if self.position:
                                self.average_cost = first_mid
                        lo, hi = np.searchsorted(q_idx, (i, j))
                        seg_mid = mid_q[q_idx[lo:hi]]
                        cash, base = self.quote_total, self.base_total
                        seg_equity = cash + base * seg_mid if base else np.full(hi - lo, cash)
                        running = np.maximum.accumulate(seg_equity)
                        np.maximum(running, peak, out=running)
                        drop = float((running - seg_equity).max())
                        if drop > max_drawdown:
                            max_drawdown = drop
                        peak = float(running[-1])
                        r_lo, r_hi = np.searchsorted(rec_idx, (i, j))
                        if r_hi > r_lo and equity_start is not None:
                            rows = rec_idx[r_lo:r_hi]
                            rmid = mid_q[rows]
                            series["ts"].extend(ts_a[rows].tolist())
                            series["mid"].extend(rmid.tolist())
                            series["bid"].extend([bids[0][PRICE] * tick if bids else math.nan] * len(rows))
                            series["ask"].extend([asks[0][PRICE] * tick if asks else math.nan] * len(rows))
                            series["base"].extend([base] * len(rows))
                            series["pnl"].extend((cash + base * rmid - equity_start).tolist())
                        if analyse_every:
                            seg_ts = ts_a[q_idx[lo:hi]]
                            keep = np.empty(len(seg_mid), dtype=bool)
                            keep[0] = not mids or mids[-1] != seg_mid[0]
                            np.not_equal(seg_mid[1:], seg_mid[:-1], out=keep[1:])
                            tail = slice(-settings.history_size, None)
                            mid_times.extend(seg_ts[keep][tail].tolist())
                            mids.extend(seg_mid[keep][tail].tolist())
                            t_rows = np.flatnonzero(is_t[i:j])[tail] + i
                            trades.extend((ts_l[r], price_l[r], size_l[r], "buy" if side_l[r] > 0 else "sell")
                                          for r in t_rows.tolist())
                        best_bid, best_ask = bid_l[lq], ask_l[lq]
                        market = (bid_tl[lq], bid_lots_l[lq], ask_tl[lq], ask_lots_l[lq], book_at(lq))
                        self.mid = float(mid_q[lq])
                    elif analyse_every:
                        for r in range(i, j):
                            trades.append((ts_l[r], price_l[r], size_l[r], "buy" if side_l[r] > 0 else "sell"))
                    i = j
                quiet = 0
                if bar is not None and i - shown >= 10_000:
                    bar.update(i - shown)
                    shown = i
                if i >= n:
                    break

            # --- one event --------------------------------------------------------------------
            ts = ts_l[i]
            if flights and flights[0][0] <= ts:  # placements and cancels sent earlier reach the book
                if self._land(ts, market):
                    pending = True
                hb = bids[0][PRICE] if bids else -BIG
                la = asks[0][PRICE] if asks else BIG
            if bids and asks:
                uptime += ts - prev_ts
            if self.base_total != initial_base:
                exposure += abs(self.base_total - initial_base) * self.mid * (ts - prev_ts)
            prev_ts = ts
            fills_before = self.fills
            if kind_l[i] == TRADE:
                p = price_tl[i]
                if side_l[i] < 0:
                    if p <= hb:
                        self._hit(True, p, trade_lots_l[i])
                elif p >= la:
                    self._hit(False, p, trade_lots_l[i])
                if analyse_every:
                    trades.append((ts, price_l[i], size_l[i], "buy" if side_l[i] > 0 else "sell"))
                if self.fills != fills_before:
                    pending = True
                    hb = bids[0][PRICE] if bids else -BIG
                    la = asks[0][PRICE] if asks else BIG
                    quiet = 0
                else:
                    quiet += 1
                i += 1
                continue

            best_bid, best_ask = bid_l[i], ask_l[i]
            b, a = bid_tl[i], ask_tl[i]
            bid_lots, ask_lots = bid_lots_l[i], ask_lots_l[i]
            book = book_at(i) if kind_l[i] == BOOK else None
            market = (b, bid_lots, a, ask_lots, book)
            mid = (best_bid + best_ask) * 0.5
            if a <= hb:  # fills are valued against the mid before this quote (spread capture)
                self._cross(True, a, ask_lots)
            if b >= la:
                self._cross(False, b, bid_lots)
            self.mid = mid
            if equity_start is None:
                first_mid = mid
                equity_start = self.quote_total + self.base_total * mid
                if self.position:
                    self.average_cost = mid
            consulted = False
            if strategy is not None:
                if self.fills != fills_before:
                    pending = True
                if analyse_every:
                    if not mids or mids[-1] != mid:
                        mid_times.append(ts)
                        mids.append(mid)
                    if ts >= next_analysis:
                        next_analysis = ts + analyse_every
                        snapshot = MarketSnapshot(settings.symbol, best_bid, best_ask, ts, (), (), tuple(trades),
                                                  tick, lot, settings.min_notional)
                        analysis = analyze_market(snapshot, strategy.config, mid_times, mids)
                        if strategy.should_adapt(analysis):
                            strategy.adapt_to_conditions(analysis)
                        pending = True
                if (pending or every or ts >= next_timer or abs(b - ref_bid) > band_bid
                        or abs(a - ref_ask) > band_ask):
                    if ts - last_consult >= requote_every:
                        slack = self._decide(ts, best_bid, best_ask, market)
                        consulted = True
                        pending = False
                        last_consult = ts
                        ref_bid, ref_ask = b, a
                        band_bid = slack * b - 1.0 if slack else 0.0  # one tick of rounding in hand
                        band_ask = slack * a - 1.0 if slack else 0.0
                        if band_bid < 0 or band_ask < 0:
                            band_bid = band_ask = 0.0
                        oldest = min((o.placed_at for o in self.live.values()), default=math.inf)
                        next_timer = min(oldest + refresh_secs, next_analysis,
                                         ts + cycle if cycle else math.inf)
                    else:
                        pending = True
                        next_timer = min(next_timer, last_consult + requote_every)
                hb = bids[0][PRICE] if bids else -BIG
                la = asks[0][PRICE] if asks else BIG

            equity = self.quote_total + self.base_total * mid
            if equity > peak:
                peak = equity
            elif peak - equity > max_drawdown:
                max_drawdown = peak - equity
            if i % stride == 0:
                record(ts, mid, equity - equity_start)
            quiet = 0 if (consulted or self.fills != fills_before) else quiet + 1
            i += 1

        if bar is not None:
            bar.update(n - shown)
            bar.close()
        assert equity_start is not None
        mid = self.mid
        equity_end = self.quote_total + self.base_total * mid
        record(ts_l[-1], mid, equity_end - equity_start)
        data_secs = ts_l[-1] - ts_l[0]
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
            orders_placed=self.placed,
            orders_cancelled=self.cancelled,
            orders_rejected=self.rejected,
            orders_denied=self.denied,
            final_base=self.base_total,
            final_quote=self.quote_total,
            first_mid=first_mid,
            last_mid=mid,
            inventory_risk=exposure / data_secs if data_secs > 0 else 0.0,
            decisions=self.decisions,
            series=series,
        )


def run_backtest(
    data: MarketData,
    strategy: MarketMakingStrategy | None,
    settings: BacktestSettings | None = None,
    risk: RiskContext | None = None,
    progress: bool | None = False,
) -> BacktestResult:
    """Replay ``data`` with ``strategy`` (None: data only) and return the measurements."""
    return Backtest(data, strategy, settings, risk).run(progress=progress)
