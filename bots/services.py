"""Writes on bots: lifecycle requests (start, stop, pause, resume), the kill switch per bot and per tenant,
reconciliation, scheduled rebalancing and the resolution of unresolved hedges. Views, the admin, tasks and
commands call these.

Requests change the row in a transaction and enqueue the Celery task on commit. Kill,
stop and pause halt the bot before they return, whoever asks (dashboard, admin, API, risk): they fence the
bot's sends in Redis (``bots.engine.lease.fence_sends``), take the bot's lease (a cycle in flight finishes its
sends first, bounded by HALT_WAIT_SECS; a cycle only queued on a driver's pool is not waited for), commit, and
cancel every order of the bot on its venues in the caller's process while still holding the lease. From the
commit on nothing of that bot is sent (every send checks the fence under its lease), and when the call returns
the venue shows none of its orders; a task follows as a backstop under the lease (and the watchdog after it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from bots.cancels import cancel_all_orders_of
from bots.config import validate_market_making_config
from bots.engine.lease import BotLease, fence_sends, halt_token, hold_leases
from bots.events import publish_event, push_status
from bots.models import OPEN_HEDGE_STATUSES, Bot, BotEventType, BotStatus, Hedge, HedgeStatus, RebalanceRun
from bots.wire import format_decimal
from mmplatform.errors import RiskLimitViolationError
from mmplatform.tenancy.models import Tenant
from risk.models import RiskEvent, RiskEventType

logger = logging.getLogger(__name__)


HALT_WAIT_SECS = 10.0
"""How long a kill, stop or pause waits for a cycle in flight (holding the bot's lease) to end. A cycle
that outlives it is one whose venue hangs: the halt goes on (its sends are fenced), the backstop task
and the watchdog cancel whatever that cycle's last send left."""


class BotStateError(Exception):
    """The request does not fit the bot's current state (e.g. resume a stopped bot)."""


def _actor(user: Any) -> str:
    return getattr(user, "username", None) or "system"


@transaction.atomic
def bot_request_start(*, bot: Bot, user: Any) -> Bot:
    """Start (or restart) a bot: validate, bump the epoch (fencing any older cycle), enqueue start."""
    from bots.tasks import queue_start

    locked = Bot.objects.select_for_update().select_related("tenant").get(pk=bot.pk)
    if locked.status in (BotStatus.RUNNING, BotStatus.STARTING):
        return locked
    validate_market_making_config(locked.to_config())
    if locked.kill_switch_engaged or locked.tenant.kill_switch_engaged:
        raise RiskLimitViolationError("the kill switch is engaged; release it before starting")
    if not locked.exchange_accounts.filter(is_active=True).exists():
        raise BotStateError("the bot has no active exchange account")
    Bot.objects.filter(pk=locked.pk).update(
        status=BotStatus.STARTING, epoch=F("epoch") + 1, status_reason=f"start requested by {_actor(user)}",
        last_error="", started_at=timezone.now(),
    )
    locked.refresh_from_db()
    epoch = locked.epoch
    transaction.on_commit(lambda: queue_start(locked.pk, epoch))
    push_status(locked)
    return locked


@contextmanager
def _halting(bots: list[Bot], *, fence_next_epoch: bool) -> Iterator[None]:
    """Fence the bots' sends (the epoch they run at, and the next one when the request bumps it), then
    hold their leases for the block: a cycle in flight ends first (at most HALT_WAIT_SECS), a check's or a
    queued cycle's lease is taken at once (``lease.hold_leases``), and no cycle starts until the block's
    commit and cancel sweep are done."""
    leases: list[BotLease] = []
    try:
        fence_sends([(bot, bot.epoch + (1 if fence_next_epoch else 0)) for bot in bots])
        token = halt_token()  # a cycle still queued on a driver's pool finds it at its start and does nothing
        wanted = [BotLease(bot.pk, HALT_WAIT_SECS, token) for bot in bots]
        leases = hold_leases(wanted, HALT_WAIT_SECS)
        if len(leases) < len(wanted):
            logger.warning("%s: a cycle still held the lease after %s s; halting anyway (its sends are fenced)",
                           [lease.key for lease in wanted if not lease.held], HALT_WAIT_SECS)
    except RedisError:
        # no Redis, no engine (every cycle needs its lease): the halt still commits and sweeps the venues
        logger.exception("halting bots %s without the Redis fence", [bot.pk for bot in bots])
    try:
        yield
    finally:
        for lease in leases:
            try:
                lease.release()
            except RedisError:
                logger.warning("lease %s not released (it expires)", lease.key)


def _halted(bots: list[Bot]) -> int:
    """After the commit, still under the leases: fence at the committed epochs, cancel every order of
    each bot on its venues. Returns the number of exchange orders cancelled."""
    try:
        fence_sends([(bot, bot.epoch) for bot in bots])
    except RedisError:
        logger.exception("bots %s: fence at the committed epochs not set", [bot.pk for bot in bots])
    return cancel_all_orders_of(bots)


def bot_request_stop(*, bot: Bot, user: Any) -> Bot:
    """Stop: fence the bot's sends, wait for a cycle in flight, bump the epoch (STOPPING), cancel every
    order now; then the stop task records the final inventory and performance and marks it STOPPED."""
    from bots.tasks import stop_bot

    current = Bot.objects.get(pk=bot.pk)
    if current.status == BotStatus.STOPPED:
        return current
    with _halting([current], fence_next_epoch=True):
        with transaction.atomic():
            locked = Bot.objects.select_for_update().get(pk=bot.pk)
            if locked.status == BotStatus.STOPPED:
                return locked
            Bot.objects.filter(pk=locked.pk).update(  # stopped_at: quoting ends here, the task only reports
                status=BotStatus.STOPPING, epoch=F("epoch") + 1, status_reason=f"stop requested by {_actor(user)}",
                stopped_at=timezone.now())
            locked.refresh_from_db()
            epoch = locked.epoch
            transaction.on_commit(lambda: stop_bot.delay(locked.pk, epoch))
            push_status(locked)
        _halted([locked])
    return locked


def bot_request_pause(*, bot: Bot, user: Any, reason: str = "") -> Bot:
    """Pause quoting: the bot's sends are fenced at its epoch, every order is cancelled now; cycles
    keep monitoring. A resume starts a new epoch."""
    from bots.tasks import cancel_bot_orders

    current = Bot.objects.get(pk=bot.pk)
    if current.status != BotStatus.RUNNING:
        raise BotStateError(f"only a running bot can be paused (it is {current.status})")
    with _halting([current], fence_next_epoch=False):
        with transaction.atomic():
            locked = Bot.objects.select_for_update().get(pk=bot.pk)
            if locked.status != BotStatus.RUNNING:
                raise BotStateError(f"only a running bot can be paused (it is {locked.status})")
            locked.status = BotStatus.PAUSED
            locked.status_reason = reason or f"paused by {_actor(user)}"
            locked.save(update_fields=["status", "status_reason", "updated_at"])
            transaction.on_commit(lambda: cancel_bot_orders.delay(locked.pk))
            push_status(locked)
        _halted([locked])
    return locked


@transaction.atomic
def bot_request_resume(*, bot: Bot, user: Any) -> Bot:
    locked = Bot.objects.select_for_update().select_related("tenant").get(pk=bot.pk)
    if locked.status != BotStatus.PAUSED:
        raise BotStateError(f"only a paused bot can be resumed (it is {locked.status})")
    if locked.kill_switch_engaged or locked.tenant.kill_switch_engaged:
        raise RiskLimitViolationError("the kill switch is engaged; release it before resuming")
    # a new epoch: the paused one stays fenced, so nothing a cycle decided before the pause is sent
    Bot.objects.filter(pk=locked.pk).update(
        status=BotStatus.RUNNING, epoch=F("epoch") + 1, status_reason=f"resumed by {_actor(user)}")
    locked.refresh_from_db()
    push_status(locked)
    return locked


def bot_kill(*, bot: Bot, user: Any, reason: str = "") -> int:
    """Kill switch: from its commit nothing of the bot is sent, and when it returns none of its orders
    rests on a venue. Returns the number of exchange orders cancelled here."""
    return _kill([bot.pk], reason or f"kill switch engaged by {_actor(user)}")


def _kill(bot_ids: list[int], message: str) -> int:
    """Fence, wait for the cycles in flight, commit the kill (switch engaged, STOPPED, a new epoch, a
    KILL_SWITCH risk event per bot), cancel every order, then a backstop task per bot."""
    from bots.tasks import cancel_bot_orders

    bots = list(Bot.objects.filter(pk__in=bot_ids).order_by("pk"))
    if not bots:
        return 0
    with _halting(bots, fence_next_epoch=True):
        with transaction.atomic():
            Bot.objects.filter(pk__in=bot_ids).update(
                kill_switch_engaged=True, status=BotStatus.STOPPED, epoch=F("epoch") + 1, status_reason=message,
                stopped_at=timezone.now(),
            )
            killed = list(Bot.objects.filter(pk__in=bot_ids).order_by("pk"))
            for locked in killed:
                RiskEvent.objects.create(tenant_id=locked.tenant_id, bot=locked,
                                         event_type=RiskEventType.KILL_SWITCH, message=message,
                                         action_taken="cancel_all_orders")
                publish_event(bot=locked, event_type=BotEventType.KILL_SWITCH, payload={"reason": message})
                push_status(locked)
                transaction.on_commit(lambda pk=locked.pk: cancel_bot_orders.delay(pk))
        return _halted(killed)


@transaction.atomic
def bot_release_kill_switch(*, bot: Bot, user: Any) -> Bot:
    """Release the bot's kill switch (it stays stopped until started); audited as a risk event."""
    message = f"kill switch released by {_actor(user)}"
    Bot.objects.filter(pk=bot.pk).update(kill_switch_engaged=False, status_reason=message)
    bot.refresh_from_db()
    RiskEvent.objects.create(tenant_id=bot.tenant_id, bot=bot, event_type=RiskEventType.KILL_SWITCH_RELEASED,
                             message=message, action_taken="none: the bot stays stopped")
    publish_event(bot=bot, event_type=BotEventType.KILL_SWITCH_RELEASED, payload={"reason": message})
    push_status(bot)
    return bot


def tenant_kill(*, tenant: Tenant, user: Any) -> int:
    """The tenant-wide kill switch: every bot of the firm is killed at once (one fence, one wait for
    the cycles in flight, one commit, then the cancel sweep), and no bot of it may start until the
    switch is released."""
    Tenant.objects.filter(pk=tenant.pk).update(kill_switch_engaged=True)
    bot_ids = list(Bot.objects.filter(tenant=tenant).values_list("pk", flat=True))
    return _kill(bot_ids, f"tenant kill switch engaged by {_actor(user)}")


@transaction.atomic
def tenant_release_kill_switch(*, tenant: Tenant, user: Any) -> None:
    """Release the firm's kill switch; each bot keeps its own switch and stays stopped."""
    Tenant.objects.filter(pk=tenant.pk).update(kill_switch_engaged=False)
    RiskEvent.objects.create(tenant=tenant, event_type=RiskEventType.KILL_SWITCH_RELEASED,
                             message=f"tenant kill switch released by {_actor(user)}",
                             action_taken="none: bots stay stopped")


def bot_request_reconcile(*, bot: Bot, user: Any) -> None:
    from bots.tasks import reconcile_bot

    transaction.on_commit(lambda: reconcile_bot.delay(bot.pk))


def bot_request_rebalance(*, bot: Bot, user: Any) -> RebalanceRun:
    """"Rebalance now": trade every pair of a running bot back to its target, once, as soon as a worker
    takes it (under the bot's lease, after any cycle in flight). Recorded as a manual ``RebalanceRun``."""
    from bots.tasks import rebalance_bot

    current = Bot.objects.filter(pk=bot.pk).values_list("status", flat=True).first()
    if current != BotStatus.RUNNING:
        raise BotStateError(f"only a running bot can be rebalanced (it is {current})")
    run = RebalanceRun.claim(bot=bot, slot_start=timezone.now(), trigger="manual")
    if run is None:
        raise BotStateError("a rebalance of this bot was requested at this very moment; try again")
    logger.info("bot %s: rebalance requested by %s (run %s)", bot.pk, _actor(user), run.pk)
    transaction.on_commit(lambda: rebalance_bot.delay(bot.pk, run.pk))
    return run


HEDGE_ACTIONS = ("retry", "accept")


def bot_resolve_hedges(*, bot: Bot, user: Any, action: str) -> int:
    """An operator's answer to the bot's unresolved hedges (a failed hedge or a slippage breach: its maker
    account quotes nothing on the pair meanwhile; or a hedge not sent yet, e.g. found by a stop's final
    sync). ``retry``: tried again at the bot's next cycle, within the same limit (a success resumes
    quoting); ``accept``: the exposure stays with the bot (the positions hold it), the hedges are closed
    and never sent, the maker accounts quote again. Taken under the bot's lease, so no
    cycle is hedging meanwhile; the driver starts over from the rows. Returns the hedges resolved or due."""
    if action not in HEDGE_ACTIONS:
        raise ValueError(f"unknown hedge action {action!r}; one of {', '.join(HEDGE_ACTIONS)}")
    lease = BotLease(bot.pk, HALT_WAIT_SECS)
    if not lease.acquire(wait_secs=HALT_WAIT_SECS):
        raise BotStateError(f"the bot's cycle did not end within {HALT_WAIT_SECS:g} s; try again")
    try:
        with transaction.atomic():
            rows = list(Hedge.objects.select_for_update().filter(
                bot=bot, status__in=(HedgeStatus.PENDING, *OPEN_HEDGE_STATUSES)))
            if not rows:
                raise BotStateError("the bot has no unresolved hedge")
            now = timezone.now()
            ids = [row.pk for row in rows]
            if action == "retry":
                Hedge.objects.filter(pk__in=ids).update(next_attempt_at=now)
            else:
                Hedge.objects.filter(pk__in=ids).update(status=HedgeStatus.ACCEPTED, resolved_at=now,
                                                        resolved_by=_actor(user)[:150], next_attempt_at=None)
                for row in rows:
                    base = row.trading_pair.split("/")[0]
                    message = (f"{row.trading_pair}: {_actor(user)} accepted the unhedged exposure of "
                               f"{format_decimal(abs(row.open_base))} {base} ({row.reason or 'not sent yet'})")[:2000]
                    RiskEvent.objects.create(
                        tenant_id=bot.tenant_id, bot=bot, event_type=RiskEventType.HEDGE_RESOLVED,
                        trading_pair=row.trading_pair, message=message, action_taken="maker_quotes_resumed",
                        details={"hedge_id": row.pk, "unhedged_base": str(row.open_base), "accepted_by": _actor(user)})
                    publish_event(bot=bot, event_type=BotEventType.RISK_EVENT_HANDLED, payload={
                        "event_type": RiskEventType.HEDGE_RESOLVED, "action_taken": "maker_quotes_resumed",
                        "trading_pair": row.trading_pair, "message": message})
            Bot.objects.filter(pk=bot.pk).update(updated_at=now)  # the engine driver starts over from the rows
        logger.info("bot %s: %s of %s unresolved hedge(s) by %s", bot.pk, action, len(rows), _actor(user))
        return len(rows)
    finally:
        lease.release()
