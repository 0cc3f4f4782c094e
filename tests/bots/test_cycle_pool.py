"""The driver's cycle pool (bots/engine/pool.py): the queued cycle with the earliest deadline (its bot's due
time plus the patience of its kind) runs first, a long-waiting one is not starved, and a shutdown cancels
what is queued (its lease released) while the running cycles finish. Real threads; no timing asserted."""

from __future__ import annotations

import threading

import pytest

from bots.engine.pool import CyclePool, patience


def blocked_pool() -> tuple[CyclePool, threading.Event, threading.Event]:
    """A one-thread pool whose thread is held by a first job until ``release`` is set."""
    pool = CyclePool(1, "test-cycle")
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold, deadline=0.0)
    assert started.wait(10)
    return pool, started, release


def test_the_earliest_deadline_runs_first_and_equal_ones_in_arrival_order() -> None:
    pool, _, release = blocked_pool()
    ran: list[str] = []
    due = 1000.0
    for name, kind, reason, urgent in [("snapshot", "snapshot", "performance snapshot due", False),
                                       ("periodic", "full", "periodic full cycle", False),
                                       ("stray", "full", "stray order", False),
                                       ("requote", "requote", "quotes moved", False),
                                       ("fills", "fills", "orders filled or left the book", False),
                                       ("risk", "full", "risk status", False)]:
        pool.submit(ran.append, name, deadline=due + patience(kind, reason, urgent))
    # a snapshot due 6 s earlier has waited past its patience: it goes before the newer urgent work
    pool.submit(ran.append, "old snapshot", deadline=due - 6.0 + patience("snapshot", "", False))
    assert pool.qsize() == 7
    release.set()
    pool.shutdown(wait=True, cancel_futures=False)
    assert ran == ["old snapshot", "requote", "fills", "risk", "stray", "periodic", "snapshot"]


def test_a_shutdown_cancels_the_queued_cycles_and_lets_the_running_one_finish() -> None:
    pool, _, release = blocked_pool()
    ran: list[str] = []
    cancelled: list[str] = []
    for name in ("a", "b"):
        pool.submit(ran.append, name, deadline=1.0, on_cancel=lambda name=name: cancelled.append(name))
    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    stopper.join(0.2)  # shutdown waits for the held job
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert ran == [] and cancelled == ["a", "b"]
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(ran.append, "late", deadline=0.0)


def test_a_raising_cycle_does_not_cost_the_pool_its_thread() -> None:
    pool = CyclePool(1)
    done = threading.Event()

    def boom() -> None:
        raise ValueError("a cycle failed")

    pool.submit(boom, deadline=0.0)
    pool.submit(done.set, deadline=1.0)
    assert done.wait(10)
    pool.shutdown()


def test_the_pool_starts_no_more_threads_than_it_may() -> None:
    pool = CyclePool(3)
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def job() -> None:
        entered.release()
        gate.wait(10)

    for _ in range(6):
        pool.submit(job, deadline=0.0)
    for _ in range(3):
        assert entered.acquire(timeout=10)
    assert len(pool._threads) == 3 and pool.qsize() == 3
    gate.set()
    pool.shutdown(cancel_futures=False)
