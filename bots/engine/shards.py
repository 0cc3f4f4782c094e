"""Shard leases and fair share: which bots this process's engine driver runs.

Bots are split into ``ENGINE_SHARDS`` shards (a bot's shard follows its first exchange account). Each
driver heartbeats into ``keys.DRIVERS`` and holds shard leases (``keys.shard``, TTL ``SHARD_TTL_SECS``,
renewed every ``HOUSEKEEPING_SECS``) up to its fair share ``ceil(shards / live drivers)``; a driver
killed with -9 loses its shards when the leases expire, one shut down warmly gives them back at once.
Runs on the driver thread (``Driver.tick`` -> ``_housekeep``), which alone writes ``Driver.owned`` and
``Driver.runners``.
"""

from __future__ import annotations

import logging
import math
import random
import time

from django.conf import settings
from django.db import close_old_connections

from bots.engine import gc_timer, keys
from bots.engine.driver_state import DriverState
from bots.engine.lease import _RELEASE, new_chain
from bots.engine.rows import bots_fingerprint
from bots.engine.runner import BotSignature, Runner
from bots.models import Bot, BotStatus
from exchanges.gateway import ExchangeGateway
from mmplatform.redis_client import get_redis

logger = logging.getLogger(__name__)

SHARD_TTL_SECS = 10.0


DRIVERS_KEY = keys.DRIVERS


HOUSEKEEPING_SECS = 1.0


def shard_key(shard: int) -> str:
    return keys.shard(shard)


def shard_of(bot_id: int, account_id: int | None = None) -> int:
    """A bot's shard follows its (first) exchange account, so every bot of an account is driven by one
    process and the account is read once per interval, not once per process."""
    return (account_id if account_id is not None else bot_id) % settings.ENGINE_SHARDS


_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class ShardsMixin(DriverState):
    """The driver's shard and bot-membership housekeeping (part of ``Driver``; driver thread)."""

    def _housekeep(self, now: float) -> None:
        close_old_connections()
        shards = settings.ENGINE_SHARDS
        r = get_redis()
        pipe = r.pipeline(transaction=False)
        pipe.zadd(DRIVERS_KEY, {self.token: now})
        pipe.zremrangebyscore(DRIVERS_KEY, 0, now - SHARD_TTL_SECS)
        pipe.zcard(DRIVERS_KEY)
        owned = sorted(self.owned)
        ttl_ms = int(SHARD_TTL_SECS * 1000)
        for shard in owned:
            pipe.eval(_EXTEND, 1, shard_key(shard), self.token, ttl_ms)
        results = pipe.execute()
        live = max(int(results[2]), 1)
        for shard, kept in zip(owned, results[3:], strict=True):
            if not kept:
                logger.warning("engine driver %s: lost shard %s", self.token, shard)
                self.owned.discard(shard)
        share = math.ceil(shards / live)
        while len(self.owned) > share:  # a new driver joined: give it room
            shard = max(self.owned)
            r.eval(_RELEASE, 1, shard_key(shard), self.token)
            self.owned.discard(shard)
        if len(self.owned) < share:
            start = random.randrange(shards)
            for offset in range(shards):
                shard = (start + offset) % shards
                if shard in self.owned:
                    continue
                if r.set(shard_key(shard), self.token, nx=True, px=ttl_ms):
                    self.owned.add(shard)
                    if len(self.owned) >= share:
                        break
        self._refresh_bots(now)
        accounts: dict[int, tuple[ExchangeGateway, float]] = {}
        books: dict[tuple[str, str], ExchangeGateway] = {}
        self.wanted_accounts, self.wanted_books = accounts, books  # rebuilt: bots that left drop out
        by_pair: dict[tuple[str, str], dict[int, Runner]] = {}
        for runner in list(self.runners.values()):
            if runner.engine is not None:
                self._want(runner, runner.engine)
            runner.indexed = tuple(runner.quoted_mid)  # (a busy one's too: a move during its cycle wakes it after)
            for key in runner.indexed:
                by_pair.setdefault(key, {})[runner.bot_id] = runner
        self.by_pair = by_pair  # rebuilt too (``Driver._index_quoted`` keeps it between two passes)
        self._ensure_streams()
        self._ensure_order_streams()
        gc_timer.collect_if_due(settings.ENGINE_GC_FULL_SECS)  # (the engine worker's thresholds leave it to this)
        busy = sum(r.busy for r in self.runners.values())
        self.stats["driver_cpu_ms"] = int(1000 * time.thread_time())  # the driver thread's CPU so far (a gauge)
        stats = {"bots": len(self.runners), "shards": len(self.owned), "busy": busy,
                 "pool_queue": self.pool.qsize(), "due_now": sum(
                     1 for r in self.runners.values() if not r.busy and r.next_due <= now),
                 "order_streams_live": len(self.order_streams_live), **self.stats, **self.feed_stats,
                 **self.shared.stats, **gc_timer.totals()}
        pipe = r.pipeline(transaction=False)
        pipe.hset(keys.driver_stats(self.token), mapping={k: str(v) for k, v in stats.items()})
        pipe.expire(keys.driver_stats(self.token), int(SHARD_TTL_SECS * 3))
        pipe.execute()

    def _refresh_bots(self, now: float) -> None:
        """The runners of the running and paused bots of the owned shards, as the rows say now. Read only when
        something the driver reads of them moved (``rows.bots_fingerprint``), the shards changed hands, or a
        runner was dropped since (a fenced bot comes back if it is cycling)."""
        statuses = (BotStatus.RUNNING, BotStatus.PAUSED)
        seen_key = (bots_fingerprint(statuses), frozenset(self.owned))
        if seen_key == self.bots_read:
            self.stats["bots_read_skipped"] += 1
            return
        self.stats["bots_read"] += 1
        rows = Bot.objects.filter(status__in=statuses).values_list(
            "pk", "epoch", "status", "monitoring_interval_secs", "error_recovery_delay_secs", "updated_at",
            "kill_switch_engaged", "tenant__kill_switch_engaged", "daily_pnl_baseline_quote")
        first_account: dict[int, int] = {}
        for bot_id, account_id in Bot.exchange_accounts.through.objects.values_list("bot_id", "exchangeaccount_id"):
            if account_id < first_account.get(bot_id, account_id + 1):
                first_account[bot_id] = account_id
        seen = set()
        for pk, epoch, status, interval, error_delay, updated, kill, tenant_kill, baseline in rows:
            if shard_of(pk, first_account.get(pk)) not in self.owned:
                continue
            seen.add(pk)
            signature = BotSignature(epoch, status, interval, error_delay, updated, kill, tenant_kill, baseline)
            runner = self.runners.get(pk)
            if runner is None or runner.epoch != epoch:
                if runner is not None:
                    runner.dropped = True
                # spread first cycles over one interval so a thousand bots do not all fire at once
                offset = (pk * 0.6180339887) % 1.0 * min(interval, 1.0)
                self.runners[pk] = Runner(pk, epoch, new_chain(pk), interval, error_delay, signature,
                                          next_due=now + offset)
            elif runner.signature != signature:
                # a daily P&L baseline the kept engine holds already is its own daily reset's (``Verdict("reset")``;
                # set in memory before the row is written: read here even while a pool thread holds the runner)
                held = runner.engine.bot.daily_pnl_baseline_quote if runner.engine is not None else None
                rest_moved = signature._replace(baseline=None) != runner.signature._replace(baseline=None)
                moved = rest_moved or baseline != held
                runner.signature = signature
                runner.interval, runner.error_delay = interval, error_delay
                if not moved:
                    continue
                if runner.busy:  # its cycle holds the engine: dropped when the driver takes the runner back
                    runner.stale = True
                else:
                    runner.engine = None  # the next cycle is a full one, on the bot as it is now
        for pk in list(self.runners):
            if pk not in seen:
                self.runners.pop(pk).dropped = True
        self.bots_read = seen_key
