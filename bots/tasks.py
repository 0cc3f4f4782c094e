"""Celery tasks: thin, take ids, re-fetch, call the engine.

A running bot's cycles are driven by the engine driver in every worker process
(bots/engine/driver.py); each full cycle is ``execute_cycle(bot_id, epoch, chain, scheduled_at)``,
fenced by the bot's epoch (bumped at every start/stop/kill) and by its chain id (replaced when another
driver takes the bot over), under a Redis lease so two cycles of one bot never overlap on any number of
workers. Start, stop, kill, reconcile and rebalancing are tasks that take the same lease."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db.models import F
from django.utils import timezone

from bots.engine import keys, starts
from bots.engine.core import MarketMakingBot, begin_cycle
from bots.engine.cycle import LiveViews, end_cycle
from bots.engine.lease import _RELEASE, BotLease, FencedError, LeaseLostError, current_chain, record_cycle
from bots.engine.rows import select_rows
from bots.models import Bot, BotStatus
from mmplatform.errors import AuthenticationFailedError, MarketMakingError
from mmplatform.redis_client import get_redis

logger = logging.getLogger(__name__)

CYCLING = (BotStatus.RUNNING, BotStatus.PAUSED)


def worker_id() -> str:
    """This process (a prefork child has its own pid, read at call time)."""
    return f"{socket.gethostname()}:{os.getpid()}"


LEASE_MIN_SECS = 10.0


def lease_ttl(bot: Bot) -> float:
    """Long enough for a cycle, short enough that a worker killed with -9 frees the bot soon;
    a running cycle extends it before every placement (and aborts if it was lost)."""
    return max(LEASE_MIN_SECS, bot.monitoring_interval_secs * 3)


def _fail(bot_id: int, epoch: int, message: str) -> None:
    """The bot goes to ERROR with the reason on its row and a BotError event (unless a newer request,
    e.g. a kill, has moved it on since: then nothing changes)."""
    from bots.events import publish_event, push_status

    if not Bot.objects.filter(pk=bot_id, epoch=epoch).update(status=BotStatus.ERROR, last_error=message[:2000],
                                                             status_reason=message[:500]):
        return
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is not None:
        publish_event(bot=bot, event_type="BotError", payload={"error": message[:500]})
        push_status(bot)


def queue_start(bot_id: int, epoch: int, *, again: bool = False) -> bool:
    """Send the bot's start task (``start_bot``) and mark it queued (``keys.start_queued``: the epoch, for
    ``START_QUEUED_SECS``). ``again`` (the watchdog, for a start not begun a minute after it was asked for): only
    when no start is marked queued. A mass start queues its starts behind each other on the workers' task threads;
    re-sent every watchdog run while it waited (every start older than a minute, every 10 s), a start of 1,000
    bots queued thousands of duplicates, each of which waited for the running start's lease. Returns whether sent."""
    if not get_redis().set(keys.start_queued(bot_id), str(epoch), nx=again, ex=keys.START_QUEUED_SECS):
        return False
    start_bot.delay(bot_id, epoch)
    return True


@shared_task(acks_late=True)
def start_bot(bot_id: int, epoch: int) -> str:
    """Start the bot (``run_start``): on this worker process's start pool when it runs an engine driver
    (``bots.engine.starts``: a mass start goes ``BOT_START_THREADS`` at a time per process, not one), else here."""
    if starts.hand_over(bot_id, epoch, run_start, requeue=queue_start):
        return "handed to the start pool"
    return run_start(bot_id, epoch)


def run_start(bot_id: int, epoch: int) -> str:
    """Connect, reconcile and start market making; the engine driver then cycles the bot."""
    get_redis().eval(_RELEASE, 1, keys.start_queued(bot_id), str(epoch))  # begun: no longer queued
    close_old_connections()
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None or bot.epoch != epoch or bot.status != BotStatus.STARTING:
        return "fenced"
    lease = BotLease(bot_id, lease_ttl(bot))
    if not lease.acquire(wait_secs=30):
        return "busy"
    try:
        engine = MarketMakingBot(bot, lease=lease)
        if not engine.initialize_exchanges():
            reasons = "; ".join(f"{label}: {why}" for label, why in engine.connection_problems.items())
            _fail(bot_id, epoch, "no exchange could be connected (check the account's URL and credentials)"
                  + (f": {reasons}" if reasons else ""))
            return "error"
        try:
            started_ok = engine.start_market_making(bot.pairs)
        except MarketMakingError as exc:  # refused before anything was placed (pairs, start-up risk)
            _fail(bot_id, epoch, f"{type(exc).__name__}: {exc}")
            return "error"
        if not started_ok and engine.start_fenced:  # killed, stopped or paused meanwhile: that request rules
            return "fenced"
        if not started_ok:  # failed midway: start_market_making cancelled everything it had placed
            _fail(bot_id, epoch, f"start failed, its orders were cancelled: {engine.start_error}")
            return "error"
        started = Bot.objects.filter(pk=bot_id, epoch=epoch, status=BotStatus.STARTING).update(
            status=BotStatus.RUNNING, status_reason="running", last_cycle_finished_at=timezone.now())
        if not started:
            return "fenced"
        from bots.events import push_status

        bot.refresh_from_db()
        push_status(bot)
        return "started"  # an engine driver picks the bot up within a second (bots/engine/driver.py)
    except Exception as exc:
        logger.exception("bot %s: start failed", bot_id)
        _fail(bot_id, epoch, f"start failed: {exc}")
        return "error"
    finally:
        lease.release()


@dataclass
class CycleResult:
    """What one cycle did; ``engine`` is the MarketMakingBot that ran it (the driver keeps it for its
    quiet checks) when the cycle completed."""

    outcome: str
    engine: MarketMakingBot | None = None


def execute_cycle(bot_id: int, epoch: int, chain: str, scheduled_at: float | None = None, *,
                  lease: BotLease | None = None, views: LiveViews | None = None) -> CycleResult:
    """One monitoring iteration of one bot, fenced by epoch and chain, under the bot's lease (taken
    here unless the caller already holds it; released here either way). Schedules nothing: the
    engine driver (bots/engine/driver.py) decides when the next cycle runs. ``views``: the driver's live
    account views (``CycleMixin.monitoring_iteration``)."""
    close_old_connections()
    started = time.time()
    if current_chain(bot_id) != chain:
        if lease is not None:
            lease.release()
        return CycleResult("stale-chain")
    bot = next(iter(select_rows(Bot, "id = %s", [bot_id])), None)  # (the ORM's query building: ~10 % of a cycle)
    if bot is None or bot.epoch != epoch or bot.status not in CYCLING:
        if lease is not None:
            lease.release()
        return CycleResult("fenced")
    if lease is None:
        lease = BotLease(bot_id, lease_ttl(bot))
        if not lease.acquire():
            return CycleResult("busy")
    result = CycleResult("ok")
    try:
        if current_chain(bot_id) != chain:
            return CycleResult("stale-chain")
        cycle = begin_cycle(bot_id)
        engine = MarketMakingBot(bot, lease=lease)
        if not engine.initialize_exchanges(emit_events=False, validate=False, skip_failing=True):
            raise MarketMakingError("no exchange could be connected this cycle")
        engine.monitoring_iteration(cycle, views)
        result.engine = engine
    except FencedError as exc:  # killed, stopped or paused mid-cycle: nothing was sent
        logger.info("%s", exc)
        result = CycleResult("fenced")
    except LeaseLostError as exc:  # someone else holds the bot now: this cycle sends nothing more
        logger.warning("%s", exc)
        result = CycleResult("lease-lost")
    except AuthenticationFailedError as exc:
        _fail(bot_id, epoch, f"authentication failed, bot disabled: {exc}")
        result = CycleResult("auth-error")
    except Exception as exc:  # an error in one iteration never ends the loop (spec)
        logger.exception("bot %s: monitoring loop error", bot_id)
        close_old_connections()  # a database connection that died mid-cycle is replaced, not reused
        Bot.objects.filter(pk=bot_id, epoch=epoch).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        result = CycleResult("error")
    finally:
        finished = time.time()
        try:
            end_cycle(bot_id, epoch, ok=result.outcome == "ok")  # (and the last error cleared)
        finally:  # the lease is freed even when the database is unreachable
            record_cycle(bot_id, scheduled_at or started, started, finished, worker_id())
            lease.release()
    return result


@shared_task(acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=1, retry_backoff_max=5,
             retry_jitter=False, max_retries=30)
def run_cycle(bot_id: int, epoch: int, chain: str, scheduled_at: float | None = None) -> str:
    """One fenced cycle of one bot on demand (the engine driver runs ``execute_cycle`` in-process).

    A database error outside the iteration (e.g. the connection was dropped under the fence reads)
    retries this same cycle on a fresh connection."""
    return execute_cycle(bot_id, epoch, chain, scheduled_at).outcome


@shared_task(acks_late=True)
def stop_bot(bot_id: int, epoch: int) -> str:
    """Cancel every order, record the final inventory and performance, mark the bot stopped."""
    close_old_connections()
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None or bot.epoch != epoch or bot.status != BotStatus.STOPPING:
        return "fenced"
    lease = BotLease(bot_id, lease_ttl(bot))
    lease.acquire(wait_secs=lease_ttl(bot))
    try:
        engine = MarketMakingBot(bot)
        engine.initialize_exchanges(emit_events=False)
        engine.stop_market_making()
        Bot.objects.filter(pk=bot_id, epoch=epoch).update(  # stopped_at: set by the request (quoting ended)
            status=BotStatus.STOPPED, status_reason="stopped")
        from bots.events import push_status

        bot.refresh_from_db()
        push_status(bot)
        return "stopped"
    finally:
        lease.release()


@shared_task(acks_late=True)
def cancel_bot_orders(bot_id: int) -> int:
    """Cancel every resting order of the bot under its lease, i.e. after any running cycle: the
    kill switch's backstop and the pause. Idempotent."""
    from bots.cancels import cancel_all_orders_now

    close_old_connections()
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None:
        return 0
    lease = BotLease(bot_id, lease_ttl(bot))
    lease.acquire(wait_secs=lease_ttl(bot))
    try:
        return cancel_all_orders_now(bot)
    finally:
        lease.release()


@shared_task(acks_late=True)
def reconcile_bot(bot_id: int) -> int:
    close_old_connections()
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None:
        return 0
    lease = BotLease(bot_id, lease_ttl(bot))
    if not lease.acquire(wait_secs=lease_ttl(bot)):
        return 0
    try:
        engine = MarketMakingBot(bot)
        engine.initialize_exchanges(emit_events=False)
        return engine.reconcile()
    finally:
        lease.release()


WATCHDOG_FIELDS = ("id", "tenant_id", "status", "last_cycle_finished_at", "last_cycle_started_at", "started_at",
                   "monitoring_interval_secs", "error_recovery_delay_secs")
"""The Bot columns the watchdog reads of every cycling bot."""


class Watched(NamedTuple):
    """A cycling bot as the watchdog reads it (``WATCHDOG_FIELDS``): a tuple, not a model instance. Every cycling
    bot's row every 10 s as a ``Bot`` built through ``from_db`` (even with only these columns) was ~2.4 % of an
    engine worker's GIL at active N=1,000."""

    pk: int
    tenant_id: int
    status: str
    last_cycle_finished_at: datetime | None
    last_cycle_started_at: datetime | None
    started_at: datetime | None
    monitoring_interval_secs: Any
    error_recovery_delay_secs: Any


def stale_after_secs(bot: Bot | Watched) -> float:
    return max(3 * bot.monitoring_interval_secs + bot.error_recovery_delay_secs, settings.BOT_WATCHDOG_INTERVAL_SECS)


def _stale_alert(bot: Watched, last: datetime, now: datetime) -> None:
    """A running bot whose last cycle is older than its deadline: the alerts' ``CyclesStale`` event
    (no BotEvent row: the alert log keeps it; each rule's dedup window keeps it to one per window)."""
    from alerts.hooks import notice
    from alerts.matching import CYCLES_STALE_EVENT

    notice(tenant_id=bot.tenant_id, bot_id=bot.pk, event_type=CYCLES_STALE_EVENT, occurred_at=now,
           payload={"last_cycle_at": last.isoformat(), "silent_secs": round((now - last).total_seconds(), 1),
                    "deadline_secs": stale_after_secs(bot)})


def _resumed_alerts(cycling: dict[int, tuple[Watched, datetime]], now: datetime) -> None:
    """Running bots that cycle within their deadline again and still have an open stale-cycles alert: the
    alerts' ``CyclesResumed`` event resolves it (one query for all of them; nothing for the others)."""
    from alerts.hooks import notice
    from alerts.matching import CYCLES_RESUMED_EVENT, STALE_CYCLES
    from alerts.services import open_alert_bot_ids

    for bot_id in open_alert_bot_ids(kind=STALE_CYCLES, bot_ids=list(cycling)):
        bot, last = cycling[bot_id]
        notice(tenant_id=bot.tenant_id, bot_id=bot_id, event_type=CYCLES_RESUMED_EVENT, occurred_at=now,
               payload={"last_cycle_at": last.isoformat()})


@shared_task
def watchdog() -> dict[str, int]:
    """The dead-man's switch behind the engine drivers: cancel the resting orders of a cycling bot
    that has been silent for twice its deadline (no driver reached it: every worker down, its shard
    unclaimed, its account unreachable), cancel what a bot that no longer cycles (ERROR, e.g. a start
    that failed and could not cancel; STOPPED, e.g. a kill whose sweep failed) still has open, and
    re-enqueue starts that never ran. A running bot silent past its deadline raises a ``CyclesStale``
    alert event, and one cycling again while its alert is open a ``CyclesResumed`` one. Resuming a
    bot's cycles needs nothing here: drivers claim a dead driver's shards when its shard leases expire."""
    from bots.models import OPEN_ORDER_STATUSES, Order

    close_old_connections()
    now = timezone.now()
    restarted = cancelled = cleaned = 0
    cycling: dict[int, tuple[Watched, datetime]] = {}
    # only the columns read here (``stale_after_secs``, the alerts), as tuples (``Watched``): every cycling bot's
    # whole row every 10 s was ~2 % of an engine worker's GIL at active N=800 (the rows carry the configuration)
    for bot in map(Watched._make, Bot.objects.filter(status__in=CYCLING).values_list(*WATCHDOG_FIELDS)):
        last = bot.last_cycle_finished_at or bot.last_cycle_started_at or bot.started_at
        deadline = stale_after_secs(bot)
        if last is not None and bot.status == BotStatus.RUNNING:
            if (now - last).total_seconds() > deadline:
                _stale_alert(bot, last, now)
            else:
                cycling[bot.pk] = (bot, last)
        if last is None or (now - last).total_seconds() <= 2 * deadline or BotLease.is_held(bot.pk):
            continue
        cancel_bot_orders.delay(bot.pk)
        cancelled += 1
    if cycling:
        _resumed_alerts(cycling, now)
    idle_with_orders = Order.objects.filter(
        status__in=OPEN_ORDER_STATUSES, bot__status__in=(BotStatus.ERROR, BotStatus.STOPPED),
    ).order_by().values_list("bot_id", flat=True).distinct()
    for bot_id in idle_with_orders:
        if not BotLease.is_held(bot_id):
            cancel_bot_orders.delay(bot_id)
            cleaned += 1
    for bot_id, epoch in Bot.objects.filter(status=BotStatus.STARTING, started_at__lt=now - timedelta(seconds=60)
                                            ).values_list("pk", "epoch"):
        restarted += queue_start(bot_id, epoch, again=True)  # (not while one is queued: a mass start's wait)
    return {"restarted": restarted, "cancelled": cancelled, "cleaned": cleaned}


def claim_scheduled_rebalances(now: datetime) -> list[tuple[int, int]]:
    """The (bot id, run id) of every scheduled rebalance due at ``now``: for each bot with a schedule,
    the latest fire time of its crontab (since the schedule was switched on or changed), claimed once
    per (bot, fire time) whichever beat or tick sees it first. A fire seen more than ``MAX_LATE`` after
    its time is recorded as missed, and one that finds the bot not running as skipped: a run is never
    dropped without a row that says why."""
    from bots.models import RebalanceRun
    from bots.schedule import MAX_LATE, latest_fire, parse_crontab

    parsed: dict[str, Any] = {}
    fires: dict[int, tuple[Bot, datetime]] = {}
    for bot in Bot.objects.filter(rebalance_schedule_enabled=True):
        if bot.rebalance_crontab not in parsed:
            try:
                parsed[bot.rebalance_crontab] = parse_crontab(bot.rebalance_crontab)
            except ValueError as exc:  # the admin validates it; a row written around it is reported here
                logger.error("bot %s: rebalancing schedule not run: %s", bot.pk, exc)
                parsed[bot.rebalance_crontab] = None
        schedule = parsed[bot.rebalance_crontab]
        fire = latest_fire(schedule, now, not_before=bot.rebalance_schedule_since) if schedule else None
        if fire is not None:
            fires[bot.pk] = (bot, fire)
    if not fires:
        return []
    claimed = set(RebalanceRun.objects.filter(bot_id__in=list(fires), slot_start__in={f for _, f in fires.values()})
                  .values_list("bot_id", "slot_start"))
    due = []
    for bot_id, (bot, fire) in fires.items():
        if (bot_id, fire) in claimed:
            continue
        run = RebalanceRun.claim(bot=bot, slot_start=fire, trigger="schedule")
        if run is None:
            continue  # another beat (or tick) claimed it first
        if now - fire > MAX_LATE:
            late = int((now - fire).total_seconds())
            run.outcome = f"missed: first seen {late} s after its time (beat or the workers were down)"
        elif bot.status != BotStatus.RUNNING:
            run.outcome = f"skipped: the bot was {bot.status}"
        else:
            due.append((bot_id, run.pk))
            continue
        run.save(update_fields=["outcome"])
    return due


@shared_task(acks_late=True)
def scheduled_rebalance(slot_minutes: int | None = None) -> int:
    """Beat's rebalancing tick (every minute): each bot's own schedule (``Bot.rebalance_crontab``), exactly
    one run per (bot, fire time). ``slot_minutes`` is ignored: a keyword of the former platform-wide
    hourly schedule, still in messages queued before the upgrade."""
    close_old_connections()
    due = claim_scheduled_rebalances(datetime.now(tz=UTC))
    for bot_id, run_id in due:
        rebalance_bot.delay(bot_id, run_id)
    return len(due)


@shared_task(acks_late=True)
def rebalance_bot(bot_id: int, run_id: int) -> int:
    """One scheduled or manual rebalance of a running bot: every pair traded back to its target, under
    the bot's lease (after any cycle in flight) and the epoch / kill-switch fence, as its own cycle."""
    from bots.models import RebalanceRun

    close_old_connections()
    run = RebalanceRun.objects.filter(pk=run_id, outcome="").select_related("bot").first()
    if run is None:
        return 0
    bot = run.bot
    lease = BotLease(bot_id, lease_ttl(bot))
    if not lease.acquire(wait_secs=lease_ttl(bot)):
        RebalanceRun.objects.filter(pk=run_id).update(outcome="skipped: bot busy")
        return 0
    try:
        bot.refresh_from_db()
        if bot.status != BotStatus.RUNNING:
            RebalanceRun.objects.filter(pk=run_id).update(outcome=f"skipped: the bot was {bot.status}")
            return 0
        engine = MarketMakingBot(bot, lease=lease)
        engine.initialize_exchanges(emit_events=False)
        trades = engine.rebalance_now(begin_cycle(bot_id))
        RebalanceRun.objects.filter(pk=run_id).update(trades_executed=trades, outcome="done")
        return trades
    except Exception as exc:
        RebalanceRun.objects.filter(pk=run_id).update(outcome=f"failed: {exc}"[:500])
        raise
    finally:
        lease.release()


@shared_task
def daily_risk_reset() -> int:
    """Start a new risk day: each bot's next cycle moves its daily P&L baseline to its current net
    P&L (marked to the mid it sees then); bots paused by the daily loss limit resume."""
    from bots.engine.core import request_daily_reset
    from risk.models import RiskEvent, RiskEventType

    close_old_connections()
    count = 0
    for bot in Bot.objects.all():
        request_daily_reset(bot.pk)
        # a resume starts a new epoch: the paused one stays fenced (bots.engine.lease.fence_sends)
        Bot.objects.filter(pk=bot.pk, status=BotStatus.PAUSED, status_reason__startswith="daily P&L").update(
            status=BotStatus.RUNNING, epoch=F("epoch") + 1, status_reason="resumed by the daily risk reset")
        RiskEvent.objects.create(tenant_id=bot.tenant_id, bot=bot, event_type=RiskEventType.DAILY_RESET,
                                 message="daily risk counters reset", action_taken="reset_daily_pnl")
        count += 1
    return count


@shared_task
def prune_storage() -> dict[str, int]:
    """Beat's ``storage-retention``: one batched pass of the retention policy (bots/retention.py);
    the counts it deleted are logged and are the task's result. One pass at a time; a pass that
    stopped at its batch limit enqueues the next one, so a backlog is worked off in bounded steps."""
    from bots.retention import prune_once

    counts = prune_once()
    if counts.get("more"):
        prune_storage.apply_async(countdown=5)
    return counts
