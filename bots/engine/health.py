"""The engine's health, read from what the drivers already publish in Redis (nothing here talks to a
driver object, so a prefork parent reports its children and the dashboard reports the whole fleet):

* ``mm:engine:drivers`` (zset: driver token -> last heartbeat), the live drivers;
* ``mm:engine:shard:<n>`` (string: the token of the driver holding shard n);
* ``mm:engine:stats:<token>`` (hash: bots, shards, busy, and cycle counts by verdict since the driver
  started: ``quiet``, ``requote``, ``fills``, ``snapshot``, ``full: <reason>``);
* ``mm:cycles:bot:<id>`` (list: ``scheduled started finished worker`` of the bot's recent cycles), from
  which the cycle lag (start - scheduled start) is computed.

A driver token is ``<hostname>:<pid>:<random>`` (``Driver(worker_label())``), so the drivers of one
Celery worker are the tokens of its pool processes' pids (prefork) or of its own pid (threads, solo).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from django.conf import settings

from bots.engine import keys
from mmplatform.redis_client import get_redis, text

LAG_WINDOW_SECS = 60.0
"""Cycle lag percentiles are over the cycles that started in this last window (each bot's latest
``RECORDS_READ`` at most)."""
RECORDS_READ = 60
"""At most this many of a bot's latest cycle records are read (the list keeps 1,000): the fleet's page
reads 60 short strings per bot, and a bot on a 50 ms clock does not outweigh the others in the fleet's
percentiles."""
STATE_FIELDS = ("bots", "shards", "busy", "pool_queue", "due_now")
VERDICTS = ("quiet", "requote", "fills", "snapshot", "reset", "full")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (None when empty)."""
    if not values:
        return None
    rank = max(math.ceil(q / 100 * len(values)), 1)
    return values[min(rank, len(values)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 1)


@dataclass
class Lag:
    cycles: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    last_cycle_at: float | None = None
    last_worker: str = ""

    @classmethod
    def of(cls, lags: list[float], last_at: float | None = None, last_worker: str = "") -> Lag:
        lags = sorted(lags)
        return cls(len(lags), _ms(percentile(lags, 50)), _ms(percentile(lags, 99)), last_at, last_worker)


@dataclass
class DriverHealth:
    token: str
    worker: str  # hostname:pid of the process running it
    heartbeat_age_secs: float
    shards: list[int]
    bots: list[int]
    verdicts: dict[str, int]
    busy: int
    lag: Lag = field(default_factory=Lag)
    lag_samples: list[float] = field(default_factory=list, repr=False)  # seconds, for fleet percentiles

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["lag_samples"]
        return out


@dataclass
class BotHealth:
    bot_id: int
    shard: int
    driver: str  # the token holding its shard ("" when no live driver holds it)
    lag: Lag

    @property
    def worker(self) -> str:
        """``hostname:pid`` of the process whose driver holds the bot's shard ("" when none)."""
        return self.driver.rsplit(":", 1)[0] if self.driver else ""


def verdict_counts(stats: dict[str, str]) -> dict[str, int]:
    """Cycles by verdict since the driver started: ``quiet``, ``requote``, ``fills``, ``snapshot``, ``reset`` and
    ``full`` (every ``full: <reason>`` summed, each reason also kept under its own key)."""
    out: dict[str, int] = dict.fromkeys(VERDICTS, 0)
    for key, value in stats.items():
        if key in STATE_FIELDS or key.endswith(("_ms", "_calls")):
            continue
        try:
            count = int(value)
        except ValueError:
            continue
        if key.startswith("full: "):
            out["full"] += count
            out[key] = count
        elif key in out:
            out[key] += count
    return out


def live_drivers(now: float | None = None) -> dict[str, float]:
    """Driver token -> seconds since its last heartbeat, for the drivers alive now."""
    from bots.engine.shards import DRIVERS_KEY, SHARD_TTL_SECS

    now = time.time() if now is None else now
    rows = cast("list[tuple[bytes, float]]",
                get_redis().zrangebyscore(DRIVERS_KEY, now - SHARD_TTL_SECS, "+inf", withscores=True))
    return {text(token): round(max(now - float(score), 0.0), 1) for token, score in rows}


def shard_owners() -> dict[int, str]:
    """Shard -> the token of the driver holding its lease (shards nobody holds are left out)."""
    from bots.engine.shards import shard_key

    shards = list(range(settings.ENGINE_SHARDS))
    values = get_redis().mget([shard_key(s) for s in shards]) if shards else []
    return {s: text(v) for s, v in zip(shards, values, strict=True) if v is not None}


def cycling_bots(bot_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Running and paused bots (those a driver cycles) -> their shard, as the driver computes it."""
    from bots.engine.shards import shard_of
    from bots.models import Bot, BotStatus

    bots = Bot.objects.filter(status__in=(BotStatus.RUNNING, BotStatus.PAUSED))
    links = Bot.exchange_accounts.through.objects.all()
    if bot_ids is not None:
        ids = list(bot_ids)
        bots, links = bots.filter(pk__in=ids), links.filter(bot_id__in=ids)
    first_account: dict[int, int] = {}
    for bot_id, account_id in links.values_list("bot_id", "exchangeaccount_id"):
        if account_id < first_account.get(bot_id, account_id + 1):
            first_account[bot_id] = account_id
    return {pk: shard_of(pk, first_account.get(pk)) for pk in bots.values_list("pk", flat=True)}


def bot_lags(bot_ids: list[int], now: float | None = None) -> dict[int, tuple[list[float], float | None, str]]:
    """Bot -> (lags in seconds of its cycles started in the last ``LAG_WINDOW_SECS``, when its last cycle
    started, which worker ran it)."""
    now = time.time() if now is None else now
    pipe = get_redis().pipeline(transaction=False)
    for bot_id in bot_ids:
        pipe.lrange(keys.cycles(bot_id), 0, RECORDS_READ - 1)
    out: dict[int, tuple[list[float], float | None, str]] = {}
    for bot_id, rows in zip(bot_ids, pipe.execute() if bot_ids else [], strict=True):
        lags: list[float] = []
        last_at: float | None = None
        last_worker = ""
        for row in rows:  # newest first
            scheduled, started, _finished, worker = row.decode().split(" ", 3)
            began = float(started)
            if last_at is None:
                last_at, last_worker = began, worker
            if began < now - LAG_WINDOW_SECS:
                break
            lags.append(max(began - float(scheduled), 0.0))
        out[bot_id] = (lags, last_at, last_worker)
    return out


def drivers_health(workers: Iterable[str] | None = None) -> list[DriverHealth]:
    """Every live driver (or those run by the processes ``workers``, each ``hostname:pid``): its shards,
    the bots of those shards, its cycle counts by verdict since it started and the p50/p99 lag of its
    bots' cycles over the last minute."""
    now = time.time()
    alive = live_drivers(now)
    if workers is not None:
        prefixes = tuple(f"{w}:" for w in workers)
        alive = {t: age for t, age in alive.items() if t.startswith(prefixes)}
    if not alive:
        return []
    owners = shard_owners()
    shards_of: dict[str, list[int]] = {token: [] for token in alive}
    for shard, token in owners.items():
        if token in shards_of:
            shards_of[token].append(shard)
    held = {shard: token for token, shards in shards_of.items() for shard in shards}
    bots_of: dict[str, list[int]] = {token: [] for token in alive}
    for bot_id, shard in sorted(cycling_bots().items()):
        holder = held.get(shard)
        if holder is not None:
            bots_of[holder].append(bot_id)
    lags = bot_lags([b for bots in bots_of.values() for b in bots], now)
    pipe = get_redis().pipeline(transaction=False)
    tokens = sorted(alive)
    for token in tokens:
        pipe.hgetall(keys.driver_stats(token))
    out = []
    for token, raw in zip(tokens, pipe.execute(), strict=True):
        stats = {text(k): text(v) for k, v in raw.items()}
        driver_lags = [lag for b in bots_of[token] for lag in lags[b][0]]
        out.append(DriverHealth(
            token=token, worker=token.rsplit(":", 1)[0], heartbeat_age_secs=alive[token],
            shards=sorted(shards_of[token]), bots=bots_of[token], verdicts=verdict_counts(stats),
            busy=int(stats.get("busy", 0) or 0), lag=Lag.of(driver_lags), lag_samples=driver_lags))
    return out


def fleet_totals(drivers: list[DriverHealth]) -> dict[str, Any]:
    """Fleet-level figures: drivers, shards held of all, bots driven, verdict totals, overall lag."""
    verdicts: dict[str, int] = {}
    for driver in drivers:
        for key, count in driver.verdicts.items():
            verdicts[key] = verdicts.get(key, 0) + count
    owners = shard_owners()
    lag = Lag.of([sample for driver in drivers for sample in driver.lag_samples])
    return {
        "drivers": len(drivers),
        "shards_total": settings.ENGINE_SHARDS,
        "shards_held": sum(len(d.shards) for d in drivers),
        "shards_orphaned": settings.ENGINE_SHARDS - len(owners),
        "bots": sum(len(d.bots) for d in drivers),
        "verdicts": verdicts,
        "cycles_last_minute": lag.cycles,
        "lag_p50_ms": lag.p50_ms,
        "lag_p99_ms": lag.p99_ms,
    }


def bots_health(bot_ids: list[int]) -> dict[int, BotHealth]:
    """Per bot (running or paused ones; others are not driven): its shard, the driver holding it, and
    its cycle lag over the last minute."""
    shards = cycling_bots(bot_ids)
    owners = shard_owners()
    alive = live_drivers()
    lags = bot_lags(sorted(shards))
    out = {}
    for bot_id, shard in shards.items():
        token = owners.get(shard, "")
        values, last_at, last_worker = lags[bot_id]
        out[bot_id] = BotHealth(bot_id, shard, token if token in alive else "", Lag.of(values, last_at, last_worker))
    return out
