"""The engine worker's garbage collection (``bots/engine/gc_timer.py``): a dropped engine is freed by reference
counting alone (with the cyclic collector off), the thresholds and the timing callback, and the full pass on a
clock. Against the real emulator, database and Redis for the engine."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from bots.engine import gc_timer
from bots.engine.core import MarketMakingBot
from exchanges.emulator.server import EmulatorServer
from tests.bots.conftest import started_bot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_dropped_engine_is_freed_without_the_cyclic_collector(world_a: Any, frozen_emulator: EmulatorServer) -> None:
    """Every periodic full cycle builds a new engine and drops the old one; an engine that is a reference cycle
    (its order manager held its bound send gate) waits for a full collection, ~100 objects each."""
    bot = started_bot(world_a, frozen_emulator, trading_pairs="BTC/USDT", grid_levels=1)
    engine = MarketMakingBot(bot)
    assert engine.initialize_exchanges(emit_events=False, validate=False)
    engine.order_manager.gate()  # the gate works while the engine lives (a running bot: nothing raised)
    gate_of = engine.order_manager
    gone = weakref.ref(engine)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del engine
        assert gone() is None, "the engine outlived its last reference: a reference cycle holds it"
    finally:
        if was_enabled:
            gc.enable()
    from bots.engine.lease import FencedError

    with pytest.raises(FencedError):  # a manager that outlived its engine sends nothing
        gate_of.gate()


def test_thresholds_timing_and_the_full_pass_on_a_clock() -> None:
    before = gc.get_threshold()
    try:
        gc_timer.install((50_000, 20, 100))
        assert gc.get_threshold() == (50_000, 20, 100)
        runs = gc_timer.totals().get("gc_runs_2", 0)
        gc.collect()
        assert gc_timer.totals()["gc_runs_2"] == runs + 1 and gc_timer.totals()["gc_us_2"] > 0

        gc_timer._next_full[0] = 0.0
        assert not gc_timer.collect_if_due(900.0, now=1_000.0)  # the first call schedules
        assert not gc_timer.collect_if_due(900.0, now=1_899.0)
        assert gc_timer.collect_if_due(900.0, now=1_900.0)
        assert gc_timer.totals()["gc_runs_2"] == runs + 2
        assert not gc_timer.collect_if_due(900.0, now=1_901.0)
    finally:
        gc.set_threshold(*before)
        gc_timer._next_full[0] = 0.0


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_the_periodic_pass_freezes_its_survivors_and_every_nth_walks_everything() -> None:
    """A pass walks only the objects made since the last one (its survivors frozen); a reference cycle among the
    frozen waits for the n-th pass, which unfreezes everything first."""
    before = gc.get_threshold()
    try:
        gc_timer.install(before, thaw_every=3)
        gc_timer._next_full[0], gc_timer._passes[0] = 0.0, 0
        assert not gc_timer.collect_if_due(900.0, now=0.0)  # (schedules)
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        assert gc_timer.collect_if_due(900.0, now=900.0)  # pass 1: the cycle is alive and survives it: frozen
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert gone() is not None, "a frozen cycle is walked by no collection"
        assert gc_timer.collect_if_due(900.0, now=1_800.0)  # pass 2: walks only what is new
        assert gone() is not None
        assert gc_timer.collect_if_due(900.0, now=2_700.0)  # pass 3: everything unfrozen and walked
        assert gone() is None, "the n-th pass frees a cycle among the frozen"
        assert gc.get_freeze_count() > 0  # (and freezes the survivors again)
    finally:
        gc.unfreeze()
        gc_timer.install(before, thaw_every=0)
        gc_timer._next_full[0], gc_timer._passes[0] = 0.0, 0
