"""Kill, stop and pause are airtight under active re-quoting, whichever way they are asked.

A real Celery worker (its engine driver) runs the bots against the exchange emulator; the test moves the
emulator's mid every 50 ms (its market controls, pushed to the driver on the bookTicker stream), so the
bots re-quote continuously, and halts them at a random moment of that, round after round. Everything is
judged from the outside, on the venue's own records (each order's accept time and, once it left the
book, its cancel time, on the emulator's clock) and the database rows:

* no order of a halted epoch was accepted after the halt committed (the kill's ``stopped_at``, written
  in its transaction, is a lower bound of its commit, so the check is stricter than the rule);
* none was accepted after the call returned, none rested when it returned, none rested 1 s later;
* no order row of the bot is open when the call returns.

Nothing is mocked. The halted epoch of a round is every epoch up to the one the bot ran at (a kill or
stop bumps it; a pause fences the epoch it runs at and a resume starts a new one)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from bots import services
from bots.engine.gateways import warm_up
from bots.models import OPEN_ORDER_STATUSES, Bot, BotStatus, Order
from exchanges.emulator.server import EmulatorServer
from tests.conftest import make_bot
from tests.processes import Proc, start_worker, wait_until
from tests.reliability.conftest import emulator_bot, exchange_orders, start_emulator

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MOVE_EVERY_SECS = 0.05
MID = 60000.0
JUMP = 5e-4  # the mid alternates +-5 bps: every move is past the bots' 2 bps refresh tolerance
QUICK_BOT = {
    "trading_pairs": "BTC/USDT", "grid_levels": 2, "spread_bps": 40.0, "level_spacing_bps": 10.0,
    "order_size_quote": Decimal("500"), "monitoring_interval_secs": MOVE_EVERY_SECS,
    "error_recovery_delay_secs": 0.2, "order_refresh_tolerance_bps": 2.0, "order_refresh_secs": 3600.0,
    "adaptation_enabled": False, "metrics_interval_secs": 60.0, "volatility_pause_threshold": 1e9,
    "high_volatility_threshold": 1e9, "max_daily_loss_quote": Decimal("1e9"), "max_drawdown_ratio": 1.0,
    "inventory_deviation_limit": 1.0, "default_rebalance_threshold": 1.0,
}


class MidMover:
    """Moves the emulator's mid every 50 ms (as its admin endpoint does: the bookTicker push follows)."""

    def __init__(self, server: EmulatorServer, symbol: str = "BTC/USDT"):
        self.server, self.symbol = server, symbol
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _move(self, mid: Decimal) -> None:
        self.server.market.set_mid(self.symbol, mid)
        self.server.streams.books_changed()

    def _run(self) -> None:
        up = False
        while not self.stopping.wait(MOVE_EVERY_SECS):
            up = not up
            mid = Decimal(f"{MID * (1 + JUMP if up else 1 - JUMP):.2f}")
            self.server.call(lambda mid=mid: self._move(mid))

    def __enter__(self) -> MidMover:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)


@dataclass
class Halt:
    """One halt as the outside saw it: which bots, which epochs may no longer send, when it committed
    (a lower bound), when the call returned, what rested then."""

    bot_ids: list[int]
    fenced_epoch: dict[int, int]
    committed_ms: float
    returned_ms: float
    open_at_return: int
    open_rows_at_return: int
    sent_in_last_half_second: int  # orders of the bots the venue accepted in the 0.5 s before the call
    problems: list[str] = field(default_factory=list)


def epoch_of(client_order_id: str) -> int:
    return int(client_order_id.split("-")[2])


def orders_of(server: EmulatorServer, bot_ids: list[int]) -> list[Any]:
    prefixes = tuple(f"mm-{pk}-" for pk in bot_ids)
    return [o for o in exchange_orders(server) if (o.client_order_id or "").startswith(prefixes)]


def halt_and_measure(server: EmulatorServer, bots: list[Bot], call: Callable[[], Any],
                     committed_ms: Callable[[], float]) -> Halt:
    """Run the halt ``call`` while the bots re-quote; read the venue and the rows the moment it returns."""
    ids = [b.pk for b in bots]
    before = {b.pk: b.epoch for b in Bot.objects.filter(pk__in=ids)}
    began_ms = time.time() * 1000
    call()
    returned_ms = time.time() * 1000
    resting = [o for o in orders_of(server, ids) if o.is_open]
    open_rows = Order.objects.filter(bot_id__in=ids, status__in=OPEN_ORDER_STATUSES).count()
    recent = [o for o in orders_of(server, ids) if began_ms - 500 <= o.created_ms <= began_ms]
    return Halt(ids, before, committed_ms(), returned_ms, len(resting), open_rows, len(recent))


def judge(server: EmulatorServer, halts: list[Halt]) -> list[str]:
    """Every rule, for every halt, on the venue's records (accept and cancel times)."""
    problems: list[str] = []
    for index, halt in enumerate(halts):
        fenced = [o for o in orders_of(server, halt.bot_ids)
                  if epoch_of(o.client_order_id) <= halt.fenced_epoch[int(o.client_order_id.split("-")[1])]]
        after_commit = [o for o in fenced if o.created_ms > halt.committed_ms]
        after_return = [o for o in fenced if o.created_ms > halt.returned_ms]
        one_second = halt.returned_ms + 1000
        open_later = [o for o in fenced if o.created_ms <= one_second and (o.is_open or o.updated_ms > one_second)]
        if after_commit:
            late = sorted(o.created_ms - halt.committed_ms for o in after_commit)
            problems.append(f"halt {index}: {len(after_commit)} order(s) accepted {late[0]:.0f}-{late[-1]:.0f} ms "
                            "after the halt committed")
        if after_return:
            problems.append(f"halt {index}: {len(after_return)} order(s) accepted after the call returned")
        if halt.open_at_return:
            problems.append(f"halt {index}: {halt.open_at_return} order(s) resting when the call returned")
        if open_later:
            problems.append(f"halt {index}: {len(open_later)} order(s) resting 1 s after the call returned")
        if halt.open_rows_at_return:
            problems.append(f"halt {index}: {halt.open_rows_at_return} open order row(s) when the call returned")
    return problems


def assert_airtight(server: EmulatorServer, halts: list[Halt], what: str) -> None:
    time.sleep(1.1)  # the last round's "1 s after" is on the venue's clock too
    active = sum(1 for h in halts if h.sent_in_last_half_second)
    after = sorted(round(h.returned_ms - h.committed_ms) for h in halts if h.committed_ms < h.returned_ms)
    print(f"{what}: {len(halts)} halts, {active} under re-quoting (orders accepted in the 0.5 s before), "
          f"call returned {after} ms after its commit")
    problems = judge(server, halts)
    assert not problems, f"{what}: " + "; ".join(problems)
    # the rounds really halted bots that were re-quoting (else this test proves nothing)
    assert active >= 0.8 * len(halts), f"{what}: only {active}/{len(halts)} halts hit a re-quoting bot"


def run_until_requoting(server: EmulatorServer, bots: list[Bot], user: Any) -> None:
    """Start the bots and wait until the driver re-quotes each of them (orders of 3 cycles of its epoch)."""
    for bot in bots:
        services.bot_request_start(bot=bot, user=user)
    for bot in bots:
        epoch = Bot.objects.values_list("epoch", flat=True).get(pk=bot.pk)

        def requoting(bot: Bot = bot, epoch: int = epoch) -> bool:
            cycles = {o.client_order_id.split("-")[3] for o in orders_of(server, [bot.pk])
                      if epoch_of(o.client_order_id) == epoch}
            return len(cycles) >= 3
        wait_until(requoting, 60, interval_secs=0.05, message=f"bot {bot.pk} never re-quoted")


def stopped_at_ms(bot_ids: list[int]) -> Callable[[], float]:
    """The halt's commit, from below: the ``stopped_at`` the kill or stop wrote in its transaction."""
    def read() -> float:
        times = [t for t in Bot.objects.filter(pk__in=bot_ids).values_list("stopped_at", flat=True) if t]
        # none recorded (a stop that only asks a task to stop later): the after-commit rule cannot be
        # judged, the resting rules still are
        return min(t.timestamp() for t in times) * 1000 if len(times) == len(bot_ids) else float("inf")
    return read


@pytest.fixture
def venue() -> Iterator[EmulatorServer]:
    """A frozen market (no timer, no noise traders): only the test moves it."""
    server = start_emulator(market_step_ms=0,
                            dynamics={s: {"noise_arrival_rate_per_sec": 0.0} for s in ("BTC/USDT", "ETH/USDT")})
    yield server
    server.stop_thread()


@pytest.fixture
def worker(celery_queue: str) -> Iterator[Proc]:
    proc = start_worker(concurrency=1)
    warm_up()  # as daphne does at start: the halts run in this (the web) process
    yield proc
    proc.stop()


def test_bot_kill_30_rounds_nothing_sent_after_commit_nothing_resting(world_a: Any, venue: EmulatorServer,
                                                                      worker: Proc) -> None:
    bot = emulator_bot(world_a, venue, **QUICK_BOT)
    rng = random.Random(13)
    halts = []
    with MidMover(venue):
        for _ in range(30):
            run_until_requoting(venue, [bot], world_a.operator)
            time.sleep(rng.uniform(0, 0.1))
            halts.append(halt_and_measure(venue, [bot], lambda: services.bot_kill(bot=bot, user=world_a.operator),
                                          stopped_at_ms([bot.pk])))
            services.bot_release_kill_switch(bot=Bot.objects.get(pk=bot.pk), user=world_a.operator)
    assert_airtight(venue, halts, "bot kill")


def test_tenant_kill_of_20_bots(world_a: Any, venue: EmulatorServer, worker: Proc) -> None:
    bots = [emulator_bot(world_a, venue, **QUICK_BOT)]
    for index in range(1, 20):
        bots.append(make_bot(world_a.tenant, world_a.account, name=f"a-bot-{index}", pairs="BTC/USDT",
                             **{k: v for k, v in QUICK_BOT.items() if k != "trading_pairs"}))
    Bot.objects.filter(pk__in=[b.pk for b in bots]).update(grid_levels=1)  # 20 bots on one worker core
    ids = [b.pk for b in bots]
    halts = []
    with MidMover(venue):
        for _ in range(3):
            run_until_requoting(venue, bots, world_a.operator)
            halts.append(halt_and_measure(venue, bots, lambda: services.tenant_kill(tenant=world_a.tenant,
                                                                                    user=world_a.owner),
                                          stopped_at_ms(ids)))
            services.tenant_release_kill_switch(tenant=world_a.tenant, user=world_a.owner)
            for bot in Bot.objects.filter(pk__in=ids):
                services.bot_release_kill_switch(bot=bot, user=world_a.owner)
    assert_airtight(venue, halts, "tenant kill, 20 bots")


def test_stop_and_pause(world_a: Any, venue: EmulatorServer, worker: Proc) -> None:
    bot = emulator_bot(world_a, venue, **QUICK_BOT)
    stops: list[Halt] = []
    pauses: list[Halt] = []
    risk_pauses: list[Halt] = []
    paused_seen_ms: list[float] = []

    def trip_daily_loss(bot: Bot) -> None:
        """A loss beyond the limit (the baseline moved up); the worker's next full cycle pauses the bot.
        Returns once the outside sees it PAUSED and the cycle that paused it has ended (the lease is
        free); the pause's commit is at or before the first time it was seen (an upper bound: the rules
        are judged from there)."""
        from bots.engine.lease import BotLease

        Bot.objects.filter(pk=bot.pk).update(max_daily_loss_quote=Decimal("100"),
                                             daily_pnl_baseline_quote=Decimal("1000"))
        wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.PAUSED, 30, interval_secs=0.002,
                   message="the daily loss limit never paused the bot")
        paused_seen_ms.append(time.time() * 1000)
        wait_until(lambda: not BotLease.is_held(bot.pk), 30, interval_secs=0.002, message="the pausing cycle hung")
        assert Bot.objects.get(pk=bot.pk).status_reason.startswith("daily P&L")
    with MidMover(venue):
        for _ in range(4):
            run_until_requoting(venue, [bot], world_a.operator)
            stops.append(halt_and_measure(venue, [bot], lambda: services.bot_request_stop(
                bot=bot, user=world_a.operator), stopped_at_ms([bot.pk])))
            wait_until(lambda: Bot.objects.get(pk=bot.pk).status == BotStatus.STOPPED, 30,
                       message="the stop task never finished")
        for _ in range(4):
            if Bot.objects.get(pk=bot.pk).status != BotStatus.RUNNING:
                run_until_requoting(venue, [bot], world_a.operator)
            else:  # resumed: wait for the new epoch's re-quotes
                epoch = Bot.objects.get(pk=bot.pk).epoch
                wait_until(lambda epoch=epoch: len({o.client_order_id.split("-")[3] for o in orders_of(venue, [bot.pk])
                                                    if epoch_of(o.client_order_id) == epoch}) >= 3,
                           60, interval_secs=0.05, message="the resumed bot never re-quoted")
            pauses.append(halt_and_measure(
                venue, [bot], lambda: services.bot_request_pause(bot=bot, user=world_a.operator),
                # the pause's own save stamps updated_at in its transaction: a lower bound of its commit
                lambda: Bot.objects.get(pk=bot.pk).updated_at.timestamp() * 1000))
            assert Bot.objects.get(pk=bot.pk).status == BotStatus.PAUSED
            time.sleep(0.3)  # paused cycles keep monitoring; nothing may be sent meanwhile
            services.bot_request_resume(bot=Bot.objects.get(pk=bot.pk), user=world_a.operator)
        # the risk manager's pause (a daily loss limit breach), decided inside a cycle of the worker
        for _ in range(3):
            Bot.objects.filter(pk=bot.pk).update(daily_pnl_baseline_quote=Decimal("0"))
            if Bot.objects.get(pk=bot.pk).status == BotStatus.PAUSED:
                services.bot_request_resume(bot=Bot.objects.get(pk=bot.pk), user=world_a.operator)
            epoch = Bot.objects.get(pk=bot.pk).epoch
            try:
                wait_until(lambda epoch=epoch: len({o.client_order_id.split("-")[3] for o in orders_of(
                    venue, [bot.pk]) if epoch_of(o.client_order_id) == epoch}) >= 3, 60, interval_secs=0.05)
            except AssertionError:
                raise AssertionError(f"the resumed bot never re-quoted: {Bot.objects.filter(pk=bot.pk).values()}, "
                                     f"{len(risk_pauses)} risk pauses so far") from None
            risk_pauses.append(halt_and_measure(venue, [bot], lambda: trip_daily_loss(bot),
                                                lambda: paused_seen_ms[-1]))
    assert_airtight(venue, stops, "stop")
    assert_airtight(venue, pauses, "pause")
    assert_airtight(venue, risk_pauses, "risk pause (daily loss limit)")


def test_dashboard_kill_button(world_a: Any, venue: EmulatorServer, worker: Proc) -> None:
    """The dashboard's Kill button: the same POST the button sends, through the view."""
    bot = emulator_bot(world_a, venue, **QUICK_BOT)
    client = Client()
    client.force_login(world_a.operator)
    halts = []
    with MidMover(venue):
        for _ in range(4):
            run_until_requoting(venue, [bot], world_a.operator)

            def press() -> None:
                response = client.post(reverse("dashboard:bot_kill", args=[bot.pk]), {"reason": "test"})
                assert response.status_code in (200, 302), response.status_code
            halts.append(halt_and_measure(venue, [bot], press, stopped_at_ms([bot.pk])))
            services.bot_release_kill_switch(bot=Bot.objects.get(pk=bot.pk), user=world_a.operator)
    assert_airtight(venue, halts, "dashboard kill button")
