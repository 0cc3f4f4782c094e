"""The "not quoting" reasons (bots/quoting.py) against the real Redis: a changed reason is written at once,
an unchanged one is re-written every REFRESH_SECS, and the re-writes that fall due are gathered into one
round trip at most every REFRESH_BATCH_SECS. The process's clock is the test's (``time.monotonic`` of
the module replaced), so the intervals are stepped over instead of slept."""

from __future__ import annotations

from typing import Any

import pytest

from bots import quoting
from mmplatform.redis_client import get_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch: Any) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(quoting.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(quoting, "_written", {})
    monkeypatch.setattr(quoting, "_refresh", {})
    monkeypatch.setattr(quoting, "_refresh_sent", [0.0])
    return now


def stored(bot: Any) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in get_redis().hgetall(quoting.key(bot.pk)).items()}


def test_unchanged_reasons_are_rewritten_together(world_a: Any, clock: list[float]) -> None:
    bot = world_a.bot
    quoting.note(bot, "BTC/USDT", "paused: volatility")
    quoting.note(bot, "ETH/USDT", "no order fits")
    assert stored(bot) == {"BTC/USDT": "paused: volatility", "ETH/USDT": "no order fits"}
    get_redis().delete(quoting.key(bot.pk))  # as if the hash had lapsed: only a re-write brings it back

    clock[0] += quoting.REFRESH_SECS + 1
    quoting.note(bot, "BTC/USDT", "paused: volatility")  # due, and no batch left yet: written now
    assert stored(bot) == {"BTC/USDT": "paused: volatility"}
    clock[0] += 1
    quoting.note(bot, "ETH/USDT", "no order fits")  # due, but a batch left 1 s ago: it waits
    assert stored(bot) == {"BTC/USDT": "paused: volatility"}
    clock[0] += quoting.REFRESH_BATCH_SECS
    quoting.note(bot, "SOL/USDT", None)  # a first decision: written at once, alone
    assert "ETH/USDT" not in stored(bot)  # only a due re-write sends the batch
    clock[0] += quoting.REFRESH_SECS
    quoting.note(bot, "BTC/USDT", "paused: volatility")  # due: the batch goes, with ETH/USDT's
    assert stored(bot) == {"BTC/USDT": "paused: volatility", "ETH/USDT": "no order fits"}
    assert 0 < get_redis().ttl(quoting.key(bot.pk)) <= quoting.TTL_SECS


def test_a_change_is_never_overwritten_by_an_older_waiting_rewrite(world_a: Any, clock: list[float]) -> None:
    bot = world_a.bot
    quoting.note(bot, "BTC/USDT", "paused")
    quoting.note(bot, "ETH/USDT", None)
    clock[0] += quoting.REFRESH_SECS + 1
    quoting.note(bot, "ETH/USDT", None)  # the first due re-write: sent at once, a batch of one
    clock[0] += 1
    quoting.note(bot, "BTC/USDT", "paused")  # due, waits for the next batch
    quoting.note(bot, "BTC/USDT", None)  # changed: written at once, the waiting re-write dropped
    assert stored(bot) == {}
    clock[0] += quoting.REFRESH_SECS + quoting.REFRESH_BATCH_SECS
    quoting.note(bot, "ETH/USDT", None)  # a batch goes: it must not bring "paused" back
    assert stored(bot) == {}
