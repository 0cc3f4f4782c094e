"""Per-bot rebalancing schedules: a crontab on the bot, claimed once per fire time by beat's every-minute
tick; a changed schedule never drops a run, a fire that could not run leaves a row saying why; the admin
edits the schedule (validated) and has a tenant-scoped "rebalance now"; ``migrate`` installs the beat
entries (so one ``celery beat`` is enough in production)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse

from bots import tasks
from bots.models import Bot, BotStatus, RebalanceRun
from tests.conftest import PASSWORD, TenantWorld
from tests.platform.test_config_validation import admin_payload

pytestmark = pytest.mark.django_db


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 4, hour, minute, second, tzinfo=UTC)


def schedule(bot: Bot, crontab: str, since: datetime, status: str = BotStatus.RUNNING) -> None:
    Bot.objects.filter(pk=bot.pk).update(rebalance_schedule_enabled=True, rebalance_crontab=crontab,
                                         rebalance_schedule_since=since, status=status)


def runs(bot: Bot) -> list[tuple[datetime, str, str]]:
    return list(RebalanceRun.objects.filter(bot=bot).order_by("slot_start").values_list(
        "slot_start", "trigger", "outcome"))


def test_each_fire_time_runs_once_and_a_changed_crontab_drops_none(world_a: TenantWorld) -> None:
    bot = world_a.bot
    schedule(bot, "0 * * * *", since=at(9, 30))
    assert tasks.claim_scheduled_rebalances(at(10, 0, 20)) == [(bot.pk, RebalanceRun.objects.get().pk)]
    assert tasks.claim_scheduled_rebalances(at(10, 0, 50)) == []  # a second tick (or beat) in the same minute
    assert tasks.claim_scheduled_rebalances(at(10, 9)) == []
    # every 30 minutes from now on: with the former platform-wide task (slot_minutes=60 kept) the 10:30
    # run fell into the already claimed 10:00 slot and was dropped without a word
    schedule(bot, "*/30 * * * *", since=at(10, 10))
    due = tasks.claim_scheduled_rebalances(at(10, 30, 5))
    assert len(due) == 1
    assert [slot for slot, _, _ in runs(bot)] == [at(10, 0), at(10, 30)]


def test_fire_times_before_the_schedule_was_set_do_not_run(world_a: TenantWorld) -> None:
    schedule(world_a.bot, "0 * * * *", since=at(10, 10))
    assert tasks.claim_scheduled_rebalances(at(10, 11)) == []
    assert runs(world_a.bot) == []


def test_a_fire_that_cannot_run_leaves_a_row_that_says_why(world_a: TenantWorld, world_b: TenantWorld) -> None:
    schedule(world_a.bot, "0 12 * * *", since=at(0, 0))
    assert tasks.claim_scheduled_rebalances(at(15, 0)) == []  # beat was down from noon to three
    [(slot, trigger, outcome)] = runs(world_a.bot)
    assert slot == at(12, 0) and trigger == "schedule" and outcome.startswith("missed: first seen 10800 s")
    schedule(world_b.bot, "0 12 * * *", since=at(0, 0), status=BotStatus.PAUSED)
    assert tasks.claim_scheduled_rebalances(at(12, 0, 30)) == []  # the paused bot: recorded, not traded
    assert runs(world_b.bot)[0][2] == "skipped: the bot was paused"


@pytest.mark.django_db(transaction=True)  # the task closes old connections, as in a worker
def test_the_tick_ignores_the_former_slot_minutes_keyword(world_a: TenantWorld) -> None:
    assert tasks.scheduled_rebalance(slot_minutes=60) == 0  # queued by the old schedule: no error


def test_saving_the_bot_dates_a_changed_schedule(world_a: TenantWorld) -> None:
    bot = Bot.objects.get(pk=world_a.bot.pk)
    bot.spread_bps = 30.0
    bot.save()
    assert Bot.objects.get(pk=bot.pk).rebalance_schedule_since is None  # no schedule: nothing dated
    bot.rebalance_schedule_enabled = True
    bot.save(update_fields=["rebalance_schedule_enabled"])
    since = Bot.objects.get(pk=bot.pk).rebalance_schedule_since
    assert since is not None
    bot = Bot.objects.get(pk=bot.pk)
    bot.spread_bps = 40.0
    bot.save()
    assert Bot.objects.get(pk=bot.pk).rebalance_schedule_since == since  # another field: the schedule stands
    bot.rebalance_crontab = "*/5 * * * *"
    bot.save()
    assert Bot.objects.get(pk=bot.pk).rebalance_schedule_since > since


# --- the admin ----------------------------------------------------------------------------------------


def test_admin_edits_the_schedule_and_refuses_a_bad_crontab(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    bot = world_a.bot
    url = reverse("admin:bots_bot_change", args=[bot.pk])
    page = client.get(url).content.decode()
    assert "Rebalancing schedule" in page and 'name="rebalance_crontab"' in page
    payload = admin_payload(world_a, bot)
    payload.update(rebalance_schedule_enabled="on", rebalance_crontab="15 */4 * * *")
    assert client.post(url, payload).status_code == 302
    saved = Bot.objects.get(pk=bot.pk)
    assert saved.rebalance_schedule_enabled and saved.rebalance_crontab == "15 */4 * * *"
    assert saved.rebalance_schedule_since is not None
    for bad in ("61 * * * *", "* * *", "every hour", "0 25 * * *"):
        payload["rebalance_crontab"] = bad
        response = client.post(url, payload)
        assert response.status_code == 200, bad
        assert "rebalance_crontab" in response.context["adminform"].form.errors, bad
        assert Bot.objects.get(pk=bot.pk).rebalance_crontab == "15 */4 * * *"


def run_action(client: Any, action: str, ids: list[int]) -> str:
    return client.post(reverse("admin:bots_bot_changelist"), {"action": action, "_selected_action": ids},
                       follow=True).content.decode()


def test_rebalance_now_is_scoped_by_tenant_and_role(client: Any, world_a: TenantWorld,
                                                    world_b: TenantWorld) -> None:
    Bot.objects.filter(pk__in=[world_a.bot.pk, world_b.bot.pk]).update(status=BotStatus.RUNNING)
    client.login(username="a-viewer", password=PASSWORD)
    assert "rebalance_now" not in client.get(reverse("admin:bots_bot_changelist")).content.decode()
    run_action(client, "rebalance_now", [world_a.bot.pk])
    client.login(username="a-operator", password=PASSWORD)
    run_action(client, "rebalance_now", [world_b.bot.pk])  # another tenant's bot is not in the queryset
    assert not RebalanceRun.objects.exists()
    page = run_action(client, "rebalance_now", [world_a.bot.pk])
    assert "Rebalance now: trade every pair back to its target: 1 bot(s)." in page
    [run] = RebalanceRun.objects.all()
    assert run.bot_id == world_a.bot.pk and run.trigger == "manual" and run.outcome == ""


def test_rebalance_now_refuses_a_bot_that_is_not_running(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-operator", password=PASSWORD)
    page = run_action(client, "rebalance_now", [world_a.bot.pk])
    assert "only a running bot can be rebalanced (it is stopped)" in page
    assert not RebalanceRun.objects.exists()


# --- migrate installs the beat schedules --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # SQLite migrates only outside a transaction
def test_migrate_installs_the_beat_schedules_and_upgrades_the_old_rebalance_entry() -> None:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    call_command("migrate", "mmplatform", "zero", verbosity=0)
    PeriodicTask.objects.all().delete()
    hourly = CrontabSchedule.objects.create(minute="0", hour="*", timezone="UTC")
    PeriodicTask.objects.create(name="scheduled-rebalance", task="bots.tasks.scheduled_rebalance", crontab=hourly,
                                kwargs='{"slot_minutes": 60}')
    PeriodicTask.objects.create(name="bot-watchdog", task="bots.tasks.watchdog", crontab=hourly, enabled=False)
    call_command("migrate", verbosity=0)  # every app: the ones that depend on mmplatform's migrations too

    tasks_by_name = {t.name: t for t in PeriodicTask.objects.all()}
    assert {"bot-watchdog", "scheduled-rebalance", "daily-risk-reset"} <= set(tasks_by_name)
    rebalance = tasks_by_name["scheduled-rebalance"]
    assert json.loads(rebalance.kwargs) == {}
    assert (rebalance.crontab.minute, rebalance.crontab.hour) == ("*", "*")  # the per-minute tick
    assert not tasks_by_name["bot-watchdog"].enabled  # an entry the admin changed is left as it is
    daily = tasks_by_name["daily-risk-reset"]
    assert (daily.task, daily.crontab.minute, daily.crontab.hour) == ("bots.tasks.daily_risk_reset", "0", "0")
    assert PeriodicTasks.objects.filter(ident=1).exists()  # a running beat reloads its schedule
