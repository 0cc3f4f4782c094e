"""A venue that stops answering: the engine driver's feeder (in process, against the real emulator with
every request failing) reports the account once it has been unreadable for ALERTS_VENUE_DOWN_SECS, once
per outage, and reconnected once when it reads again. The broker hand-off is replaced by a list here
(``hooks._put``: the worker side is ``test_alerts.py``'s ``venue_disconnected_raise`` and
``venue_reconnected_resolve``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from alerts import hooks
from bots.engine.driver import Driver
from bots.models import Bot
from exchanges.emulator.server import EmulatorServer, FaultConfig
from tests.bots.test_driver import driver, no_streams, running_bot, settle  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unreadable_account_is_reported_once_per_outage(running_bot: Bot, driver: Driver,  # noqa: F811
                                                           frozen_emulator: EmulatorServer, settings: Any,
                                                           monkeypatch: Any) -> None:
    settings.ALERTS_VENUE_DOWN_SECS = 0.5
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(hooks, "_put", lambda task, args: sent.append((task, args)))
    monkeypatch.setattr(hooks, "_down_since", {})  # this process's outage record, this test's own
    monkeypatch.setattr(hooks, "_reported", set())
    settle(driver, running_bot, lambda runner: runner.engine is not None)
    account_id = running_bot.exchange_accounts.get().pk
    assert account_id in driver.wanted_accounts

    frozen_emulator.set_faults(FaultConfig(error_rate=1.0))
    deadline = time.monotonic() + 20
    while not sent and time.monotonic() < deadline:
        driver._feed_once(time.time())
        time.sleep(0.05)
    assert [(task, args[0]) for task, args in sent] == [("venue_disconnected", account_id)]
    assert args_down(sent[0]) >= 0.5
    for _ in range(10):  # still down: no second report
        driver._feed_once(time.time())
        time.sleep(0.05)
    assert len(sent) == 1

    frozen_emulator.set_faults(FaultConfig())
    deadline = time.monotonic() + 20
    while account_id in hooks._down_since and time.monotonic() < deadline:
        driver._feed_once(time.time())
        time.sleep(0.05)
    assert account_id not in hooks._down_since, "a good read never cleared the outage"
    for _ in range(5):  # reading on: reported reconnected once
        driver._feed_once(time.time())
    assert [(task, args[0]) for task, args in sent] == [("venue_disconnected", account_id),
                                                        ("venue_reconnected", account_id)]


def args_down(item: tuple[str, tuple]) -> float:
    return item[1][1]
