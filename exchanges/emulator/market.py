"""A synthetic market that keeps the emulator's books alive, deterministic under a seed.

Per symbol: a mid-price random walk (volatility, optional drift and Poisson jumps); a background
liquidity account keeping a ladder of resting orders around the mid (re-laddered when the mid moves);
and noise traders whose marketable orders arrive as a Poisson flow. A noise buy reaches a price
``delta_bps`` above the mid with ``delta_bps ~ Exp(k)``, so resting asks at distance delta are lifted
with intensity ``A * exp(-k * delta)`` (Avellaneda-Stoikov), where ``A`` is the arrival rate per side.

Stepped by an explicit clock (``step(now_ms)``) so tests are deterministic; the HTTP server calls it
on a timer. ``set_mid`` is the test/admin hook that jumps the mid and re-ladders at once.

A *shared walk* (``walk_seed`` + ``walk_epoch_ms``) makes several emulators one market: the mid then
follows a walk of its own seed on a fixed ``WALK_STEP_MS`` grid counted from the epoch, so every
emulator given the same two values has the same mid at the same wall-clock time, however its timer
ticks (a venue listing the same asset, kept in line by arbitrage); the liquidity ladder, the noise flow
and so the fills stay each emulator's own (``seed``). ``set_mid`` then moves that emulator's mid by an
offset it keeps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal

from exchanges.emulator.engine import BUY, GTC, IOC, SELL, EngineError, MarketSpec, MatchingEngine

SECONDS_PER_DAY = 86400.0
WALK_STEP_MS = 100
"""The grid of a shared walk: one draw per 100 ms of wall-clock time since its epoch."""
MAX_WALK_CATCH_UP_MS = 7 * 86_400_000
"""A shared walk's epoch at most this far back (catching up is one draw per grid step)."""

# The demo market (what ``python -m exchanges.emulator`` / ``run_platform`` run unless told otherwise):
# the daily volatility of a liquid major pair and a high-volume VIP fee tier, so that a bot with the
# default settings quotes (below the 5 %/day strategy switch and the 10 %/day pause of the defaults)
# and a spread of a few bps each side earns more than its fees.
DEMO_DAILY_VOLATILITY: dict[str, float] = {"BTC/USDT": 0.025, "ETH/USDT": 0.03}
"""Std of the daily log return per symbol (0.03 = 3 %/day); other symbols use DEMO_DEFAULT_DAILY_VOLATILITY."""
DEMO_DEFAULT_DAILY_VOLATILITY = 0.03
DEMO_MAKER_FEE_RATE = Decimal("0.00012")
"""0.012 %: a top-volume VIP maker tier (the regular retail tier is 0.1 %, which a 0.2 % spread only breaks even on)."""
DEMO_TAKER_FEE_RATE = Decimal("0.00024")


def bps_per_sqrt_sec(daily_volatility: float) -> float:
    """A daily volatility (fraction) as the random walk's bps per sqrt(second)."""
    return daily_volatility * 1e4 / math.sqrt(SECONDS_PER_DAY)


def demo_dynamics(symbol: str) -> dict[str, float]:
    """The demo market's ``SymbolDynamics`` overrides for ``symbol``."""
    daily = DEMO_DAILY_VOLATILITY.get(symbol, DEMO_DEFAULT_DAILY_VOLATILITY)
    return {"volatility_bps_per_sqrt_sec": round(bps_per_sqrt_sec(daily), 4)}


LIQUIDITY_ACCOUNT = "__liquidity__"
NOISE_ACCOUNT = "__noise__"
_BIG_QUOTE = Decimal("1000000000000")
_BIG_BASE_NOTIONAL = Decimal("1000000000000")


@dataclass(frozen=True, slots=True)
class SymbolDynamics:
    """How one symbol's synthetic market behaves. Rates are per second, distances in bps of mid."""

    symbol: str
    initial_mid: Decimal
    volatility_bps_per_sqrt_sec: float = 5.0
    """5 bps/sqrt(s) is ~15 %/day: a lively test market; the demo market is demo_dynamics()."""
    drift_bps_per_sec: float = 0.0
    jump_rate_per_sec: float = 0.0
    jump_size_bps: float = 50.0
    ladder_levels: int = 10
    ladder_inner_bps: float = 8.0
    ladder_spacing_bps: float = 4.0
    ladder_level_notional: Decimal = Decimal("20000")
    reladder_threshold_bps: float = 2.0
    noise_arrival_rate_per_sec: float = 2.0
    noise_depth_decay_per_bps: float = 0.12
    noise_order_notional: Decimal = Decimal("2000")


class SyntheticMarket:
    """Drives the mid, the liquidity ladder and noise flow of every configured symbol."""

    def __init__(
        self,
        engine: MatchingEngine,
        dynamics: list[SymbolDynamics],
        seed: int,
        start_ms: int = 0,
        liquidity_account: str = LIQUIDITY_ACCOUNT,
        noise_account: str = NOISE_ACCOUNT,
        walk_seed: int | None = None,
        walk_epoch_ms: int | None = None,
    ):
        """``walk_seed`` (with ``walk_epoch_ms``, default ``start_ms``): the mid follows the shared walk of
        that seed instead of this market's own (see the module's docstring)."""
        if walk_seed is not None and start_ms - (start_ms if walk_epoch_ms is None else walk_epoch_ms) > \
                MAX_WALK_CATCH_UP_MS:
            raise ValueError("walk_epoch_ms: at most 7 days before start_ms")
        self.engine = engine
        self._walk_seed = walk_seed
        self._walk_epoch_ms = start_ms if walk_epoch_ms is None else walk_epoch_ms
        self.liquidity_account = liquidity_account
        self.noise_account = noise_account
        self._now_ms = start_ms
        self._symbols: dict[str, _SymbolState] = {}
        for account in (liquidity_account, noise_account):
            if not engine.has_account(account):
                engine.create_account(account, {})
        for dyn in dynamics:
            spec = engine.markets.get(dyn.symbol)
            if spec is None:
                raise ValueError(f"{dyn.symbol} is not listed on the engine")
            if dyn.initial_mid <= 0:
                raise ValueError(f"{dyn.symbol}: initial_mid must be > 0")
            state = _SymbolState(dyn, spec, random.Random(f"{seed}:{dyn.symbol}"))
            if walk_seed is not None:
                state.walk_rng = random.Random(f"walk:{walk_seed}:{dyn.symbol}")
                self._advance_walk(state)
            self._symbols[dyn.symbol] = state
            self._fund(state)
            self._reladder(state)

    @property
    def now_ms(self) -> int:
        """The market clock."""
        return self._now_ms

    def symbols(self) -> list[str]:
        """Symbols driven by this market."""
        return list(self._symbols)

    def mid(self, symbol: str) -> Decimal:
        """The current mid as a Decimal on the symbol's tick grid."""
        state = self._symbols[symbol]
        return state.tick_size * round(state.mid / float(state.tick_size))

    def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Jump the mid (test/admin hook) and re-ladder immediately; stale resting quotes may trade."""
        if mid <= 0:
            raise ValueError("mid must be > 0")
        state = self._symbols[symbol]
        if state.walk_rng is not None:
            state.walk_offset += math.log(float(mid) / state.mid)
        state.mid = float(mid)
        self._reladder(state)

    def step(self, now_ms: int) -> None:
        """Advance every symbol from the last step to ``now_ms`` (a no-op if time did not move)."""
        dt_ms = now_ms - self._now_ms
        if dt_ms <= 0:
            return
        self._now_ms = now_ms
        dt = dt_ms / 1000.0
        for state in self._symbols.values():
            self._advance_mid(state, dt)
            if abs(state.mid - state.laddered_mid) / state.laddered_mid * 1e4 >= state.dyn.reladder_threshold_bps:
                self._reladder(state)
            self._noise(state, dt)
            if state.ladder_depleted(self.engine):
                self._reladder(state)

    # --- internals --------------------------------------------------------------------------------

    def _advance_mid(self, state: _SymbolState, dt: float) -> None:
        if state.walk_rng is not None:
            self._advance_walk(state)
            return
        state.mid *= math.exp(_log_move(state.dyn, state.rng, dt))
        state.mid = max(state.mid, float(state.tick_size))

    def _advance_walk(self, state: _SymbolState) -> None:
        """The shared walk up to the market clock: one draw per grid step since the epoch."""
        rng = state.walk_rng
        assert rng is not None
        target = (self._now_ms - self._walk_epoch_ms) // WALK_STEP_MS
        while state.walk_steps < target:
            state.walk_steps += 1
            state.walk_log += _log_move(state.dyn, rng, WALK_STEP_MS / 1000.0)
        state.mid = max(float(state.dyn.initial_mid) * math.exp(state.walk_log + state.walk_offset),
                        float(state.tick_size))

    def _reladder(self, state: _SymbolState) -> None:
        engine = self.engine
        account = self.liquidity_account
        symbol = state.dyn.symbol
        for order_id in state.ladder_ids:
            engine.cancel_fast(account, order_id, self._now_ms)
        state.ladder_ids = []
        dyn = state.dyn
        tick = float(state.tick_size)
        lot = float(state.lot_size)
        self._top_up(account, state)
        for level in range(dyn.ladder_levels):
            distance = (dyn.ladder_inner_bps + level * dyn.ladder_spacing_bps) / 1e4
            bid_ticks = math.floor(state.mid * (1 - distance) / tick)
            ask_ticks = math.ceil(state.mid * (1 + distance) / tick)
            lots = max(1, round(float(dyn.ladder_level_notional) / state.mid / lot))
            for side, ticks in ((BUY, bid_ticks), (SELL, ask_ticks)):
                if ticks <= 0:
                    continue
                try:
                    order_id = engine.place_limit_fast(account, symbol, side, ticks, lots, GTC, now_ms=self._now_ms)
                except EngineError:
                    continue
                state_after = engine.order_state_fast(order_id)
                if state_after is not None and state_after[2]:
                    state.ladder_ids.append(order_id)
        state.laddered_mid = state.mid

    def _noise(self, state: _SymbolState, dt: float) -> None:
        dyn = state.dyn
        if not dyn.noise_arrival_rate_per_sec:
            return
        rng = state.rng
        engine = self.engine
        tick = float(state.tick_size)
        lot = float(state.lot_size)
        lots = max(1, round(float(dyn.noise_order_notional) / state.mid / lot))
        for side in (BUY, SELL):
            for _ in range(_poisson(rng, dyn.noise_arrival_rate_per_sec * dt)):
                depth_bps = rng.expovariate(dyn.noise_depth_decay_per_bps)
                if side == BUY:
                    ticks = math.floor(state.mid * (1 + depth_bps / 1e4) / tick)
                else:
                    ticks = math.ceil(state.mid * (1 - depth_bps / 1e4) / tick)
                if ticks <= 0:
                    continue
                self._top_up(self.noise_account, state)
                try:
                    engine.place_limit_fast(self.noise_account, dyn.symbol, side, ticks, lots, IOC, now_ms=self._now_ms)
                except EngineError:
                    continue

    def _fund(self, state: _SymbolState) -> None:
        for account in (self.liquidity_account, self.noise_account):
            self._top_up(account, state)

    def _top_up(self, account: str, state: _SymbolState) -> None:
        """Keep the synthetic accounts effectively unlimited (deposits are their only inflow)."""
        engine = self.engine
        base_target = int(float(_BIG_BASE_NOTIONAL) / state.mid * 10 ** engine.asset_decimals(state.base))
        quote_target = int(_BIG_QUOTE) * 10 ** engine.asset_decimals(state.quote)
        for asset, target_units in ((state.quote, quote_target), (state.base, base_target)):
            free, _ = engine.balance_units(account, asset)
            if free < target_units // 2:
                engine.deposit_units_fast(account, asset, target_units - free)


class _SymbolState:
    __slots__ = ("base", "dyn", "ladder_ids", "laddered_mid", "lot_size", "mid", "quote", "rng", "tick_size",
                 "walk_log", "walk_offset", "walk_rng", "walk_steps")

    def __init__(self, dyn: SymbolDynamics, spec: MarketSpec, rng: random.Random):
        self.dyn = dyn
        self.base = spec.base
        self.quote = spec.quote
        self.tick_size = spec.tick_size
        self.lot_size = spec.lot_size
        self.rng = rng
        self.mid = float(dyn.initial_mid)
        self.laddered_mid = self.mid
        self.ladder_ids: list[int] = []
        self.walk_rng: random.Random | None = None  # a shared walk's own draws (None: the mid walks on ``rng``)
        self.walk_steps = 0
        self.walk_log = 0.0  # log(mid / initial mid) along the shared walk
        self.walk_offset = 0.0  # ``set_mid``'s moves on top of it

    def ladder_depleted(self, engine: MatchingEngine) -> bool:
        """True when the innermost ladder level on either side has been fully taken."""
        if len(self.ladder_ids) < 2:
            return True
        for order_id in self.ladder_ids[:2]:
            state = engine.order_state_fast(order_id)
            if state is None or not state[2]:
                return True
        return False


def _log_move(dyn: SymbolDynamics, rng: random.Random, dt: float) -> float:
    """One step of the mid's log random walk over ``dt`` seconds: drift, diffusion, Poisson jumps."""
    log_move = dyn.drift_bps_per_sec * dt / 1e4
    if dyn.volatility_bps_per_sqrt_sec:
        log_move += rng.gauss(0.0, dyn.volatility_bps_per_sqrt_sec * math.sqrt(dt) / 1e4)
    if dyn.jump_rate_per_sec:
        for _ in range(_poisson(rng, dyn.jump_rate_per_sec * dt)):
            log_move += rng.gauss(0.0, dyn.jump_size_bps / 1e4)
    return log_move


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson(lam) draw (Knuth for small lam, normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold = math.exp(-lam)
    count = 0
    product = rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count
