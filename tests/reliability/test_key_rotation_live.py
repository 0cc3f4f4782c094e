"""Credential key rotation with a running bot: a new Fernet key goes first in CREDENTIAL_KEYS (a worker
with the new keys replaces the old one), ``rotate_credential_keys`` re-encrypts every row, the old key
is dropped (another worker swap) and the bot keeps trading throughout. A worker with a wrong key makes
the bot's start end in ERROR with a message an operator can act on: no traceback, no secret."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from bots import services
from bots.engine.lease import cycle_records
from bots.models import Bot, BotStatus
from exchanges.models import ExchangeAccount
from tests.bots.conftest import EMULATOR_SECRET
from tests.processes import Proc, start_worker, wait_until
from tests.reliability.conftest import emulator_bot, exchange_orders

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def swap_worker(old: Proc, keys: list[str]) -> Proc:
    """Start a worker with ``keys`` as CREDENTIAL_KEYS, then warm-stop the old one (a rolling restart)."""
    new = start_worker(CREDENTIAL_KEYS=",".join(keys))
    old.stop()
    return new


def keeps_trading(bot: Bot, server: Any, what: str) -> None:
    mark = len(cycle_records(bot.pk))
    wait_until(lambda: len(cycle_records(bot.pk)) >= mark + 3, 60, message=f"the bot stopped cycling {what}")
    row = Bot.objects.get(pk=bot.pk)
    assert row.status == BotStatus.RUNNING and row.last_error == "", (what, row.status, row.last_error)
    assert any(o.is_open for o in exchange_orders(server)), f"no quote resting {what}"


def test_rotation_with_a_running_bot_then_a_wrong_key(world_a: Any, emulator: Any, celery_queue: str,
                                                      settings: Any) -> None:
    old_key = settings.CREDENTIAL_KEYS[0]
    new_key = Fernet.generate_key().decode()
    bot = emulator_bot(world_a, emulator, trading_pairs="BTC/USDT")
    worker = start_worker(CREDENTIAL_KEYS=old_key)
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: any(o.is_open for o in exchange_orders(emulator)), 60, message="the bot never quoted")
        clock = time.monotonic()

        settings.CREDENTIAL_KEYS = [new_key, old_key]
        worker = swap_worker(worker, [new_key, old_key])
        call_command("rotate_credential_keys")
        keeps_trading(bot, emulator, "after the rotation")
        settings.CREDENTIAL_KEYS = [new_key]
        assert ExchangeAccount.objects.get(pk=world_a.account.pk).credentials().api_secret == EMULATOR_SECRET
        worker = swap_worker(worker, [new_key])
        keeps_trading(bot, emulator, "after the old key was dropped")
        print(f"\nkey rotation with a running bot: two worker swaps and a re-encryption in "
              f"{time.monotonic() - clock:.1f} s, the bot trading throughout")

        services.bot_request_stop(bot=bot, user=world_a.operator)
        wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.STOPPED, 60, message="never stopped")
        worker = swap_worker(worker, [Fernet.generate_key().decode()])  # a deployment with the wrong key
        services.bot_request_start(bot=Bot.objects.get(pk=bot.pk), user=world_a.operator)
        wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.ERROR, 60,
                   message="a start with undecryptable credentials did not end in ERROR")
        error = Bot.objects.get(pk=bot.pk).last_error
        print(f"wrong key -> ERROR: {error!r}")
        assert "cannot be decrypted with the configured CREDENTIAL_KEYS" in error
        assert world_a.account.label in error
        assert "Traceback" not in error and EMULATOR_SECRET not in error
        assert not any(o.is_open for o in exchange_orders(emulator))
    finally:
        worker.stop()
