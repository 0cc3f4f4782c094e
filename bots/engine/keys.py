"""Every Redis key of the engine (``mm:*``), defined once: its meaning, who writes it, who reads it, TTL.

No other module spells an ``mm:`` key (tests/bots/test_keys.py fails if one does); each imports the
function here, and each key function is called only from its owner module (the one that writes the key)
and the modules named as its readers (``KEY_MODULES`` in tests/bots/test_keys.py). The Redis database is
the one of ``REDIS_URL`` (``mmplatform.redis_client``).
"Driver" is the engine driver of a worker process (``bots.engine.driver``); "engine" is a bot's
``MarketMakingBot`` running a cycle on one of the driver's pool threads or in a Celery task.

Fleet (one per process / shard)
-------------------------------
``mm:engine:drivers``            sorted set token -> last heartbeat (unix s). Writer: every driver's
                                 housekeeping (1 s); members older than ``SHARD_TTL_SECS`` are
                                 removed by the next heartbeat of any driver. No key TTL.
                                 Readers: drivers (fair share = shards / live drivers).
``mm:engine:shard:<n>``          string, the token of the driver that owns shard n. Writer: the owner
                                 (SET NX, renewed every 1 s, released by token). TTL ``SHARD_TTL_SECS``.
``mm:engine:stats:<token>``      hash of one driver's counters (bots, shards, busy, verdicts...).
                                 Writer: that driver (1 s). TTL 3 x ``SHARD_TTL_SECS``. Readers: bench,
                                 operators.

``mm:retention:running``         string lock: one storage retention pass at a time (``bots.retention``).
                                 Writer: the pass holding it (SET NX). TTL ``retention.LOCK_SECS``.
``mm:sla:collecting``            string lock: one SLA minute task at a time (``liquidity.tasks``).
                                 Writer: the task holding it (SET NX). TTL ``liquidity.tasks.LOCK_SECS``.

Per bot
-------
``mm:lease:bot:<bot>``           string, the token of the one cycle acting for the bot. Writer: the
                                 cycle holding it (SET NX, extended by the send gate, released by
                                 token; the driver's tick takes every due bot's in one script,
                                 ``lease.take_for_checks``, and releases its quiet cycles' in one
                                 ``WriteBatch``; while a cycle it handed to its pool is queued or
                                 running, it extends that lease every second, ``lease.extend_leases``).
                                 TTL the cycle's lease (>= 1 s). A driver check's token starts with
                                 ``q:`` (``lease.check_token``), a halt's with ``h:``.
``mm:lease-started:bot:<bot>``   string, the token of the bot's lease whose cycle a pool thread has
                                 started. Writer: ``BotLease.start`` (atomically with the lease's
                                 check); extended with the lease by the driver's heartbeat. TTL the
                                 lease's. Reader: a halt (``lease.hold_leases``) takes a ``q:`` lease
                                 whose token is not here (a check, or a cycle still queued) at once,
                                 and waits for one that is. The halt writes ``halted:<token>`` here
                                 when it takes a queued cycle's lease (TTL ``lease.HALTED_MARK_SECS``),
                                 which that cycle reads at its start.
``mm:fence:bot:<bot>:<created>`` string, the highest fenced epoch of the bot's sends (it only rises);
                                 ``<created>`` is the bot row's creation in microseconds, so a reused
                                 id never inherits a fence. Writer: kill / stop / pause / restart
                                 (``lease.fence_sends``). Read atomically with the lease by the send
                                 gate (``lease.check_send``). No TTL.
``mm:chain:bot:<bot>``           string, the current cycle chain id (Celery-task cycles). Writer:
                                 ``lease.new_chain`` (start). No TTL.
``mm:cycles:bot:<bot>``          list of "scheduled started finished worker" (newest first, capped at
                                 1,000). Writer: ``lease.add_cycle_record`` (the one function), called by
                                 the driver for quiet cycles and by every other cycle (``record_cycle``).
                                 No TTL. Readers: overlap checks, engine health, bench.
``mm:uptime:<bot>``              hash "<pair>:cycles" / "<pair>:quoted" counters (quote uptime).
                                 Writer: ``performance.count_quoting`` (the one function), called by the
                                 engine (``record_quoting``: full cycles, re-quotes) and the driver (quiet
                                 cycles). No TTL.
``mm:quoting:<bot>``             hash pair -> why the bot does not quote it (``bots.quoting``). Writer:
                                 the engine's decisions (``quoting.note``). TTL ``quoting.TTL_SECS``
                                 (120 s), renewed by every decision at most every 20 s (a process's
                                 due renewals together, at most every 5 s). Reader: the dashboard.
``mm:risk:active:<bot>``         set of "<event type>|<pair>" breaches active in the last assessment.
                                 Writer: the engine (``MarketMakingRiskManager.newly_active``). No TTL.
                                 Reader: the dashboard (``bots.selectors``).
``mm:risk:denied:<bot>:<pair>``  string, the signature of the last pre-trade denials recorded (one
                                 RiskEvent per change). Writer: the engine. TTL 1 h.
``mm:risk:rejected:<bot>:<pair>`` string, the signature of the last venue rejections recorded. Writer:
                                 the engine. TTL 1 h.
``mm:bot:start-queued:<bot>``    the epoch whose start task (``start_bot``) is queued and has not begun. Writer:
                                 ``bots.tasks.queue_start`` (a start request; the watchdog's re-send, only when
                                 none is marked); deleted by the start task as it begins. TTL
                                 ``START_QUEUED_SECS`` (300 s: a start message lost is sent again after it).
``mm:risk:daily-reset:<bot>``    flag: reset the daily P&L baseline at the next cycle. Writers: the start
                                 (engine) and the daily-reset beat task (``bots.tasks``); deleted by the
                                 engine that applies it. No TTL.
``mm:perf:due:<bot>``            flag, NX: a performance snapshot was written this metrics interval.
                                 Writer: ``performance.claim_performance_due`` (a full cycle, or the
                                 pool thread storing a snapshot a check took). TTL ``metrics_interval_secs``.

Per position
------------
``mm:trades:pending:<position>`` flag: an order of the position gained fills, read the trades at the
                                 next sync. Writer: the order sync (``trade_marks.mark_trades_pending``);
                                 deleted by ``trades_synced``. No TTL.
``mm:trades:recent:<position>``  flag: the trades were read in the last ``FULL_TRADE_SYNC_SECS``.
                                 Writer: the fill sync. TTL ``FULL_TRADE_SYNC_SECS``.
``mm:trades:owed:<position>``    flag: another bot's check of the account's pair found a trade of this
                                 position without a Fill row; its next sync reads the trades by REST from
                                 its own last read. Writer: ``trade_marks.pair_checked``; deleted by
                                 ``trades_synced`` after that read. No TTL.

Per exchange account and pair (shared by every bot quoting the pair on the account)
-------------------------------------------------------------------------------
``mm:quoteguard:<account>:<pair>`` string lock, a token: one bot at a time reads the account's resting
                                 orders on the pair, decides and stores its new orders, so two bots of
                                 one account never place orders that cross each other (no
                                 self-trades, ``self_trades.QuoteGuard``). Writer: the engine's quote
                                 path (SET NX, released by token; once the new rows are stored, the
                                 send gate's step ``lease.check_send`` releases it, or the process hands
                                 it to the next of its bots waiting for it, ``HANDOFFS_MAX`` in a row at
                                 most, TTL renewed by token). TTL ``GUARD_TTL_MS``.

``mm:trades:checked:<account>:<pair>`` flag: a position's REST read checked every trade of the pair on
                                 the account (its own booked, the other bots' looked up) within the last
                                 ``PUSHED_TRADE_SAFETY_SECS`` ("1"), or a sync claimed that check
                                 ("claimed", NX); while it lives, no position under a live order stream
                                 makes the safety read. Writers: ``trade_marks.trade_sync_state`` (the
                                 claim, TTL ``CLAIM_MS``) and ``pair_checked`` (TTL
                                 ``PUSHED_TRADE_SAFETY_SECS``).
``mm:trades:through:<account>:<pair>`` int ms: every trade of the pair on the account before it is booked or
                                 owed (``mm:trades:owed``); the next check reads from there. Writer:
                                 ``trade_marks.pair_checked``. TTL ``PAIR_THROUGH_TTL_SECS``.

Dashboards
----------
``mm:listening:<group>``         flag: a dashboard websocket (of any process) is subscribed to the channel group
                                 (``tenant.<id>``, ``bot.<id>``). Writer: ``bots.consumers`` (a socket's, before it
                                 joins the group, then every ``RECHECK_SECS`` for every open socket of a process, in
                                 one pipeline). TTL ``LISTENING_SECS``. Reader: the dashboard sender
                                 (``bots.events._drain``), which publishes a batch's pushes only to listened groups.

Per venue and pair (shared by every bot on it)
----------------------------------------------
``mm:md:book:<venue>:<pair>``    JSON book {bids, asks, fetched_at}. Writers: the driver's feeder and
                                 ``market_data.shared_book`` (whoever holds the read lock). TTL 4 x the
                                 cache age (>= 1 s).
``mm:md:lock:<venue>:<pair>``    the single-flight lock of one book read. TTL ``LOCK_TTL_MS`` (3 s).
``mm:md:mids:<venue>:<pair>``    list "fetched_at:mid", oldest first, capped at ``HISTORY_LENGTH``
                                 (volatility, trend). Writer: whoever stores the book. No TTL.
"""

from __future__ import annotations

PREFIX = "mm:"

DRIVERS = "mm:engine:drivers"
"""Sorted set of live driver tokens -> last heartbeat (see the module's docstring)."""


RETENTION_LOCK = "mm:retention:running"
SLA_COLLECT_LOCK = "mm:sla:collecting"


def shard(n: int) -> str:
    """The owner token of shard ``n`` (TTL SHARD_TTL_SECS, renewed by its owner every second)."""
    return f"mm:engine:shard:{n}"


def driver_stats(token: str) -> str:
    """One driver's counters (TTL 3 x SHARD_TTL_SECS)."""
    return f"mm:engine:stats:{token}"


DRIVER_STATS_PATTERN = "mm:engine:stats:*"
"""SCAN pattern of every driver's counters."""


def lease(bot_id: int) -> str:
    """The token of the one cycle acting for the bot (TTL the lease)."""
    return f"mm:lease:bot:{bot_id}"


def lease_started(bot_id: int) -> str:
    """The token of the bot's lease once a pool thread has started its cycle (TTL the lease's)."""
    return f"mm:lease-started:bot:{bot_id}"


def fence(bot_id: int, created_us: int) -> str:
    """The bot's send fence; ``created_us`` the bot row's creation in microseconds."""
    return f"mm:fence:bot:{bot_id}:{created_us}"


def chain(bot_id: int) -> str:
    """The bot's current cycle chain id (no TTL)."""
    return f"mm:chain:bot:{bot_id}"


def cycles(bot_id: int) -> str:
    """The bot's cycle records, newest first, capped at CYCLE_RECORDS (no TTL)."""
    return f"mm:cycles:bot:{bot_id}"


CYCLE_RECORDS = 1000


def uptime(bot_id: int) -> str:
    """The bot's quote-uptime counters per pair (no TTL)."""
    return f"mm:uptime:{bot_id}"


def quoting(bot_id: int) -> str:
    """pair -> why the bot does not quote it (TTL bots.quoting.TTL_SECS)."""
    return f"mm:quoting:{bot_id}"


def risk_active(bot_id: int) -> str:
    """The breaches active in the bot's last risk assessment (no TTL)."""
    return f"mm:risk:active:{bot_id}"


def risk_denied(bot_id: int, pair: str) -> str:
    """The signature of the last pre-trade denials recorded for the pair (TTL RECORDED_SIGNATURE_SECS)."""
    return f"mm:risk:denied:{bot_id}:{pair}"


def risk_rejected(bot_id: int, pair: str) -> str:
    """The signature of the last venue rejections recorded for the pair (TTL RECORDED_SIGNATURE_SECS)."""
    return f"mm:risk:rejected:{bot_id}:{pair}"


RECORDED_SIGNATURE_SECS = 3600


def start_queued(bot_id: int) -> str:
    """The epoch whose start task is queued and has not begun (TTL START_QUEUED_SECS)."""
    return f"mm:bot:start-queued:{bot_id}"


START_QUEUED_SECS = 300


def listening(group: str) -> str:
    """A dashboard socket listens to the channel group ``group`` (TTL LISTENING_SECS)."""
    return f"mm:listening:{group}"


LISTENING_SECS = 30
"""How long a dashboard socket's mark on its group lives: renewed every ``bots.consumers.RECHECK_SECS`` while it is
open; a closed socket's mark lapses within this (its group's pushes go out to nobody until then)."""


def daily_reset(bot_id: int) -> str:
    """Flag: reset the daily P&L baseline at the bot's next cycle (no TTL)."""
    return f"mm:risk:daily-reset:{bot_id}"


def performance_due(bot_id: int) -> str:
    """NX flag: a performance snapshot was written this metrics interval (TTL the interval)."""
    return f"mm:perf:due:{bot_id}"


def trades_pending(position_id: int) -> str:
    """Flag: read the position's trades at the next sync (no TTL)."""
    return f"mm:trades:pending:{position_id}"


def trades_recent(position_id: int) -> str:
    """Flag: the position's trades were read recently (TTL FULL_TRADE_SYNC_SECS)."""
    return f"mm:trades:recent:{position_id}"


def trades_owed(position_id: int) -> str:
    """Flag: another bot's check found a trade of the position unbooked: read them by REST (no TTL)."""
    return f"mm:trades:owed:{position_id}"


def trades_checked(account_id: int, pair: str) -> str:
    """Flag: the account's pair's trades were checked by REST recently (TTL PUSHED_TRADE_SAFETY_SECS)."""
    return f"mm:trades:checked:{account_id}:{pair}"


def trades_through(account_id: int, pair: str) -> str:
    """Int ms: every trade of the account's pair before it is booked or owed (TTL PAIR_THROUGH_TTL_SECS)."""
    return f"mm:trades:through:{account_id}:{pair}"


def quote_guard(account_id: int, pair: str) -> str:
    """One bot at a time decides and stores new orders on the account's pair (TTL GUARD_TTL_MS)."""
    return f"mm:quoteguard:{account_id}:{pair}"


GUARD_TTL_MS = 5000


def market_data(kind: str, venue: str, pair: str) -> str:
    """``kind`` "book" (JSON book), "lock" (single-flight read lock) or "mids" (mid history)."""
    if kind not in MARKET_DATA_KINDS:
        raise ValueError(f"unknown market data key kind {kind!r}; expected one of {', '.join(MARKET_DATA_KINDS)}")
    return f"mm:md:{kind}:{venue}:{pair}"


MARKET_DATA_KINDS = ("book", "lock", "mids")


def market_data_pattern(kind: str) -> str:
    """SCAN pattern of every venue's and pair's key of ``kind``."""
    return f"mm:md:{kind}:*"
