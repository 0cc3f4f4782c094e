"""Writes on bots: lifecycle requests (start, stop, pause, resume), the kill switch per bot and per
tenant, reconciliation and scheduled rebalancing. Views, the admin, tasks and commands call these.

Requests change the row in a transaction and enqueue the Celery task on commit. The kill switch
also cancels synchronously in the caller's process, so the orders are gone within a second even
while every worker is busy; a kill task follows as a backstop under the bot's lease.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from bots.config import validate_market_making_config
from bots.events import publish_event, push
from bots.models import Bot, BotEventType, BotStatus, RebalanceRun
from mmplatform.errors import RiskLimitViolationError
from mmplatform.tenancy.models import Tenant
from risk.models import RiskEvent, RiskEventType

logger = logging.getLogger(__name__)


class BotStateError(Exception):
    """The request does not fit the bot's current state (e.g. resume a stopped bot)."""


def _actor(user: Any) -> str:
    return getattr(user, "username", None) or "system"


def _status_push(bot: Bot) -> None:
    push(tenant_id=bot.tenant_id, bot_id=bot.pk, kind="status",
         data={"status": bot.status, "reason": bot.status_reason, "epoch": bot.epoch})


@transaction.atomic
def bot_request_start(*, bot: Bot, user: Any) -> Bot:
    """Start (or restart) a bot: validate, bump the epoch (fencing any older cycle), enqueue start."""
    from bots.tasks import start_bot

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
    transaction.on_commit(lambda: start_bot.delay(locked.pk, epoch))
    _status_push(locked)
    return locked


@transaction.atomic
def bot_request_stop(*, bot: Bot, user: Any) -> Bot:
    """Stop: fence the running cycles (epoch), then a task cancels every order and reports."""
    from bots.tasks import stop_bot

    locked = Bot.objects.select_for_update().get(pk=bot.pk)
    if locked.status == BotStatus.STOPPED:
        return locked
    Bot.objects.filter(pk=locked.pk).update(
        status=BotStatus.STOPPING, epoch=F("epoch") + 1, status_reason=f"stop requested by {_actor(user)}")
    locked.refresh_from_db()
    epoch = locked.epoch
    transaction.on_commit(lambda: stop_bot.delay(locked.pk, epoch))
    _status_push(locked)
    return locked


@transaction.atomic
def bot_request_pause(*, bot: Bot, user: Any, reason: str = "") -> Bot:
    """Pause quoting: cycles keep monitoring, orders are cancelled, nothing new is placed."""
    from bots.tasks import cancel_bot_orders

    locked = Bot.objects.select_for_update().get(pk=bot.pk)
    if locked.status != BotStatus.RUNNING:
        raise BotStateError(f"only a running bot can be paused (it is {locked.status})")
    locked.status = BotStatus.PAUSED
    locked.status_reason = reason or f"paused by {_actor(user)}"
    locked.save(update_fields=["status", "status_reason", "updated_at"])
    transaction.on_commit(lambda: cancel_bot_orders.delay(locked.pk))
    _status_push(locked)
    return locked


@transaction.atomic
def bot_request_resume(*, bot: Bot, user: Any) -> Bot:
    locked = Bot.objects.select_for_update().select_related("tenant").get(pk=bot.pk)
    if locked.status != BotStatus.PAUSED:
        raise BotStateError(f"only a paused bot can be resumed (it is {locked.status})")
    if locked.kill_switch_engaged or locked.tenant.kill_switch_engaged:
        raise RiskLimitViolationError("the kill switch is engaged; release it before resuming")
    locked.status = BotStatus.RUNNING
    locked.status_reason = f"resumed by {_actor(user)}"
    locked.save(update_fields=["status", "status_reason", "updated_at"])
    _status_push(locked)
    return locked


def bot_kill(*, bot: Bot, user: Any, reason: str = "") -> int:
    """Kill switch: fence the bot, cancel every order now (in this process), then a backstop task.
    Returns the number of exchange orders cancelled here."""
    from bots.tasks import cancel_bot_orders

    message = reason or f"kill switch engaged by {_actor(user)}"
    with transaction.atomic():
        Bot.objects.filter(pk=bot.pk).update(
            kill_switch_engaged=True, status=BotStatus.STOPPED, epoch=F("epoch") + 1, status_reason=message,
            stopped_at=timezone.now(),
        )
        locked = Bot.objects.get(pk=bot.pk)
        RiskEvent.objects.create(tenant_id=locked.tenant_id, bot=locked, event_type=RiskEventType.KILL_SWITCH,
                                 message=message, action_taken="cancel_all_orders")
        publish_event(bot=locked, event_type=BotEventType.KILL_SWITCH, payload={"reason": message})
        _status_push(locked)
        transaction.on_commit(lambda: cancel_bot_orders.delay(locked.pk))
    return cancel_all_orders_now(locked)


def cancel_all_orders_now(bot: Bot) -> int:
    """Cancel every open order of the bot on its exchanges from this process."""
    from bots.engine.core import MarketMakingBot

    engine = MarketMakingBot(bot)
    engine.initialize_exchanges(emit_events=False, validate=False)
    pairs = {(p.exchange_account_id, p.trading_pair) for p in engine.active_positions.values()}
    for account_id in engine.exchanges:
        for pair in bot.pairs:
            pairs.add((account_id, pair))
    try:
        return engine.order_manager.cancel_everything_on_exchange(sorted(pairs))
    except Exception:
        logger.exception("bot %s: immediate cancel failed; the kill task retries", bot.pk)
        return 0


@transaction.atomic
def bot_release_kill_switch(*, bot: Bot, user: Any) -> Bot:
    """Release the bot's kill switch (it stays stopped until started); audited as a risk event."""
    message = f"kill switch released by {_actor(user)}"
    Bot.objects.filter(pk=bot.pk).update(kill_switch_engaged=False, status_reason=message)
    bot.refresh_from_db()
    RiskEvent.objects.create(tenant_id=bot.tenant_id, bot=bot, event_type=RiskEventType.KILL_SWITCH_RELEASED,
                             message=message, action_taken="none: the bot stays stopped")
    publish_event(bot=bot, event_type=BotEventType.KILL_SWITCH_RELEASED, payload={"reason": message})
    _status_push(bot)
    return bot


def tenant_kill(*, tenant: Tenant, user: Any) -> int:
    """The tenant-wide kill switch: every bot of the firm is killed."""
    Tenant.objects.filter(pk=tenant.pk).update(kill_switch_engaged=True)
    cancelled = 0
    for bot in Bot.objects.filter(tenant=tenant):
        cancelled += bot_kill(bot=bot, user=user, reason=f"tenant kill switch engaged by {_actor(user)}")
    return cancelled


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


def rebalance_slot_claim(*, bot: Bot, slot_start: Any, trigger: str = "schedule") -> RebalanceRun | None:
    """Claim the (bot, slot) rebalance; None when another beat/worker already did (unique row)."""
    from django.db import IntegrityError

    try:
        with transaction.atomic():
            return RebalanceRun.objects.create(tenant_id=bot.tenant_id, bot=bot, slot_start=slot_start,
                                               trigger=trigger)
    except IntegrityError:
        return None


def bot_request_rebalance(*, bot: Bot, user: Any) -> RebalanceRun:
    """"Rebalance now": trade every pair of a running bot back to its target, once, as soon as a worker
    takes it (under the bot's lease, after any cycle in flight). Recorded as a manual ``RebalanceRun``."""
    from bots.tasks import rebalance_bot

    current = Bot.objects.filter(pk=bot.pk).values_list("status", flat=True).first()
    if current != BotStatus.RUNNING:
        raise BotStateError(f"only a running bot can be rebalanced (it is {current})")
    run = rebalance_slot_claim(bot=bot, slot_start=timezone.now(), trigger="manual")
    if run is None:
        raise BotStateError("a rebalance of this bot was requested at this very moment; try again")
    logger.info("bot %s: rebalance requested by %s (run %s)", bot.pk, _actor(user), run.pk)
    transaction.on_commit(lambda: rebalance_bot.delay(bot.pk, run.pk))
    return run
