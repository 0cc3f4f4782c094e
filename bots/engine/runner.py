"""The engine driver's memory of one bot between cycles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bots.engine.bot import MarketMakingBot
from bots.engine.lease import BotLease
from bots.models import Order


class BotSignature(NamedTuple):
    """What the driver read of a bot's row (``ShardsMixin._refresh_bots``): a change drops the kept engine, except a
    ``baseline`` the engine already holds (its own daily reset's write)."""

    epoch: int
    status: str
    interval: float
    error_delay: float
    updated: Any
    kill: bool
    tenant_kill: bool
    baseline: Any


@dataclass
class QuietInputs:
    """What a check that decided in full and found the bot quiet saw (``VerdictMixin._check``): while
    none of it changes, the next checks reuse that verdict instead of deciding again. Held by the driver
    thread; dropped at every check that is not quiet (so before any cycle of the bot) and at ``until``."""

    engine: MarketMakingBot  # the kept engine it was decided on
    until: float  # reused no later than this: the reuse cap, and the live orders' first refresh age
    books: dict[Any, tuple]  # slot -> the book its snapshot was last taken from (bids, asks, a merged pushed top)
    decided: dict[Any, tuple]  # slot -> what of that snapshot the decision read (``verdict._decided_on``)
    views: dict[int, tuple[Any, Any, Any]]  # account -> its view's orders, balances, free (the objects)
    equity: float  # ``risk_in_memory``'s equity (it found no breach)
    no_rebalance: bool  # ``rebalancing_needs``: no pair wanted a trade, none held back by the retry window
    uptime: list[tuple[str, bool]]  # each quoted pair's quoting-both-sides, as decided


@dataclass
class Runner:
    """The driver's memory of one bot between cycles.

    Writers (docs/architecture.md, "Who owns what"): the driver thread alone writes ``busy`` (set before a
    cycle is submitted, cleared when the cycle is handed back), ``dropped``, ``stale``, ``signature``,
    ``interval``, ``error_delay``, ``woken``, ``wake_after``, ``wait_until``,
    ``last_verdict``, ``quiet_cycles``, ``touched``, ``indexed``, ``lease`` (the lease its check took, kept
    alive while the cycle is queued or running: ``Driver._keep_leases``), ``lease_until`` and ``quiet`` (what
    its last full quiet check saw). The cycle fields (``engine``, ``rows``, ``live``, ``open_count``, ``known``,
    ``gone``, ``quoted_mid``, ``last_full_at``, ``perf_due_at``, ``high_water*``, ``next_due``) belong to whoever
    holds the runner: the pool thread running its cycle while ``busy``, else the driver thread.
    """

    bot_id: int
    epoch: int
    chain: str
    interval: float
    error_delay: float
    signature: BotSignature
    next_due: float
    engine: MarketMakingBot | None = None
    live: dict[int | None, list[Order]] = field(default_factory=dict)  # position id -> open quote rows
    rows: list[Order] = field(default_factory=list)  # every open row (quotes and rebalancing orders)
    open_count: dict[int | None, int] = field(default_factory=dict)  # position id -> open rows of any purpose
    known: set[str] = field(default_factory=set)  # client ids of every open row
    gone: dict[str, float] = field(default_factory=dict)  # client id -> when it left our open set
    quoted_mid: dict[tuple[str, str], float] = field(default_factory=dict)
    last_full_at: float = 0.0
    perf_due_at: float = 0.0
    high_water: float = 0.0
    high_water_dirty: bool = False
    busy: bool = False
    dropped: bool = False
    stale: bool = False  # changed while a cycle ran: do not keep that cycle's engine
    quiet_cycles: int = 0
    woken: bool = False  # this cycle was brought forward by a pushed mid move
    wake_after: bool = False  # a pushed move arrived during a cycle: run again when it ends
    wait_until: float = 0.0  # its check waits (a depth read, its account view behind): looked at again then, or
    # when the depth read lands (0: not waiting)
    last_verdict: str = ""
    touched: bool = False  # cycled since the last flush
    indexed: tuple[tuple[str, str], ...] = ()  # the (venue, pair) keys it is under in ``Driver.by_pair``
    lease: BotLease | None = None  # while ``busy``: the lease its check took (the driver extends it)
    lease_until: float = 0.0  # when that lease expires unless extended (the driver's reckoning)
    quiet: QuietInputs | None = None  # the last quiet check's inputs, while a check may reuse its verdict

def next_due(scheduled: float, interval: float, now: float) -> float:
    """Fixed rate (the lag of a late cycle does not shift the ones after it), but a bot more than an
    interval behind skips the cycles it missed instead of running them back to back."""
    due = scheduled + interval
    return due if due > now - interval else now
