"""Per-bot rebalancing schedules: a crontab string on the bot, read the way celery reads crontabs.

Beat runs one platform task every minute (``bots.tasks.scheduled_rebalance``); for each bot with a
schedule it asks ``latest_fire`` for the most recent fire time of the bot's crontab and claims that
(bot, fire time) once (``RebalanceRun``'s unique constraint). The slot *is* the fire time, so a
changed crontab can never map two fires onto one slot (the old platform-wide task needed its
``slot_minutes`` changed together with its crontab, or runs were dropped without a word). A fire time
that a tick saw too late to trade on is recorded as missed, not skipped silently.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from celery.schedules import crontab

LOOKBACK = timedelta(days=8)
"""How far back a tick looks for a bot's latest fire time (a weekly crontab after a long outage)."""
MAX_LATE = timedelta(minutes=15)
"""A fire time older than this when a tick first sees it (beat or the workers were down) is recorded as
missed rather than traded on hours late."""
MINUTE = timedelta(minutes=1)


def parse_crontab(value: str) -> crontab:
    """``minute hour day-of-month month day-of-week``; ValueError with the reason when it is not one."""
    fields = (value or "").split()
    if len(fields) != 5:
        raise ValueError(f"a crontab has 5 fields (minute hour day-of-month month day-of-week), got {value!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        schedule = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                           day_of_week=day_of_week)
    except Exception as exc:  # celery raises ValueError or its own ParseException
        raise ValueError(f"{value!r} is not a valid crontab: {exc}") from None
    return schedule


def fires_at(schedule: crontab, moment: datetime) -> bool:
    """Whether the crontab fires in the (UTC) minute of ``moment``."""
    return (moment.minute in schedule.minute and moment.hour in schedule.hour
            and moment.day in schedule.day_of_month and moment.month in schedule.month_of_year
            and moment.isoweekday() % 7 in schedule.day_of_week)


def latest_fire(schedule: crontab, now: datetime, *, not_before: datetime | None = None) -> datetime | None:
    """The most recent minute at or before ``now`` in which the crontab fires, not before
    ``not_before`` nor ``LOOKBACK`` ago; None when there is none."""
    floor = now - LOOKBACK
    if not_before is not None and not_before > floor:
        floor = not_before
    moment = now.replace(second=0, microsecond=0)
    while moment >= floor:
        if (moment.month not in schedule.month_of_year or moment.day not in schedule.day_of_month
                or moment.isoweekday() % 7 not in schedule.day_of_week):
            moment = moment.replace(hour=0, minute=0) - MINUTE  # the whole day is out
        elif moment.hour not in schedule.hour:
            moment = moment.replace(minute=0) - MINUTE  # the whole hour is out
        elif moment.minute in schedule.minute:
            return moment
        else:
            moment -= MINUTE
    return None
