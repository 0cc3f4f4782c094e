"""Cancelling every open order of bots from this process: a kill's immediate sweep (bots/services.py) and
the kill task's backstop (bots/tasks.py). Below both, so neither imports the other for it."""

from __future__ import annotations

import logging

from bots.models import Bot

logger = logging.getLogger(__name__)


def cancel_all_orders_now(bot: Bot) -> int:
    """Cancel every open order of the bot on its exchanges from this process."""
    return cancel_all_orders_of([bot])


def cancel_all_orders_of(bots: list[Bot]) -> int:
    """Cancel every open order of these bots on their exchanges from this process, all bots at once.
    Returns the number of exchange orders cancelled."""
    from bots.engine.bot import MarketMakingBot
    from bots.engine.orders import sweep_venues

    sweeps = []
    for bot in bots:
        try:
            engine = MarketMakingBot(bot)
            engine.initialize_exchanges(emit_events=False, validate=False)
        except Exception:  # one bot's broken config or account never holds up the others' cancels
            logger.exception("bot %s: immediate cancel failed; the kill task retries", bot.pk)
            continue
        sweeps.append((engine.order_manager, engine.order_pairs()))
    try:
        return sum(sweep_venues(sweeps))
    except Exception:
        logger.exception("bots %s: immediate cancel failed; the kill task retries", [bot.pk for bot in bots])
        return 0
