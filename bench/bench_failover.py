"""Failover benchmark across hosts: how long a host's bots go undriven when it dies, stops or joins.

Real parts: ``--hosts`` Celery workers (prefork, ``--concurrency`` pool processes each, so one engine
driver each by default) stand for separate hosts — each its own node name (``wN@hostX``) and its own
process group, so one ``killpg`` takes a whole host at once — sharing ``--bots`` bots (one-level grid,
1 s interval, ``--bots-per-account`` per exchange account, the engine bench's active market: the mid
moves every 100 ms and noise traders fill the quotes) in
``--shards`` shards, against one exchange emulator process, a private Redis and a database of the run's
own. What is not real: the hosts share one kernel, hostname and clock (the cycle records' start times
and this process's clock are the same clock).

Each round (``--rounds``):

1. **kill -9** of one host's whole process group. Measured: the time until every shard it held is
   held by a survivor (its shard leases, ``bots.engine.health.shard_owners``, polled every 0.1 s) and
   until every one of its bots started a cycle on a survivor (the bots' cycle records,
   ``bots.engine.lease.cycle_records``: the survivor's own start time). Bounded by the shard lease TTL
   (``SHARD_TTL_SECS``, 10 s: a dead driver's leases and heartbeat expire) plus a survivor's
   housekeeping pass (``HOUSEKEEPING_SECS``, 1 s) plus the bot's first cycle there.
2. a **joining host** (a new worker in its place): the time from its first heartbeat (and from its
   process start) until it holds its fair share of the shards and every host holds at most
   ``ceil(shards / hosts)``, and until the bots of its shards cycled there.
3. a **warm shutdown** of another host (SIGTERM to its worker's main process, as ``docker stop`` or
   ``kill PID`` sends it: Celery's warm shutdown; the pool process's driver finishes its cycles and
   releases its shard leases): the same two hand-over times, which no lease TTL bounds.
4. another joining host, measured as in 2.

After each stop or kill the round checks the orders on the emulator: no client order id accepted twice
(the emulator's order journal, ``GET /admin/journal``), and no orphan — an order of the fleet's bots
still open on the venue after the failover settled (every bot of the lost host cycled again on a
survivor) that no engine manages: unknown to the database, ended there, or beyond the bot's one order
a side — persisting over a few seconds (a place-first re-quote holds two a side for a moment). Orders
stored but never confirmed (``pending``) left after the failover, and overlapping cycles of one bot, are
counted too.

Prints figures and writes ``bench/results/failover.json``; it never fails on a time.

    python -m bench.bench_failover [--rounds 5] [--bots 60] [--hosts 3] [--shards 12]   # ~2.5 min
    python -m bench.bench_failover --quick                                               # 2 rounds, 24 bots
    python -m bench.bench_failover --stop-signal group   # the warm stop's SIGTERM to the whole process group
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import (  # noqa: E402
    ADMIN_TOKEN,
    MARKETS,
    account_balances,
    account_plan,
    fence_bots,
    make_account,
    make_bot,
    make_tenant,
    scale_symbols,
    setup_django,
    use_queue,
    wait_for,
)
from bench.common import (  # noqa: E402
    PYTHON,
    BenchDatabase,
    Child,
    PrivateRedis,
    admin_get,
    admin_post,
    free_port,
    percentile,
    release,
    start_emulator,
    write_result,
)

TARGETS = {"kill_shards_moved_max_secs": 15.0, "kill_bots_cycled_max_secs": 15.0,
           "duplicate_client_order_ids": 0, "orphan_orders": 0}
POLL_SECS = 0.1
HANDOVER_TIMEOUT_SECS = 60.0
INTERVAL_SECS = 1.0
LEVELS = 1  # grid levels a side of every bot: one bid and one ask when settled


def seconds(samples: Iterable[float]) -> dict[str, Any]:
    """count, p50, max and mean of durations in seconds (rounded to 10 ms)."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered), "p50": round(percentile(ordered, 50), 2), "max": round(ordered[-1], 2),
            "mean": round(sum(ordered) / len(ordered), 2)}


# --- hosts ------------------------------------------------------------------------------------------------


@dataclass
class Host:
    """One Celery worker standing for a host: its own node name and process group."""

    name: str
    node: str
    child: Child
    started_at: float
    pids: set[int] = field(default_factory=set)

    def alive(self) -> bool:
        return self.child.alive()

    def refresh_pids(self) -> set[int]:
        """The worker and its pool processes (kept after it died: its drivers' tokens name them)."""
        import psutil

        try:
            main = psutil.Process(self.child.pid)
            self.pids |= {main.pid, *(c.pid for c in main.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass
        return self.pids

    def kill9(self) -> None:
        """kill -9 of the whole host at once (its process group)."""
        self.refresh_pids()
        try:
            os.killpg(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.child.popen.wait(timeout=10)

    def warm_stop(self) -> None:
        """SIGTERM to the worker's main process only: Celery's warm shutdown (returns at once)."""
        self.refresh_pids()
        self.child.popen.send_signal(signal.SIGTERM)

    def group_term(self) -> None:
        """SIGTERM to every process of the host at once (systemd's default ``KillMode=control-group``)."""
        self.refresh_pids()
        try:
            os.killpg(self.child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def reap(self, timeout_secs: float = 30) -> float | None:
        """Wait for the worker to exit (-9 after ``timeout_secs``); when the wait ended, or None if it had
        to be killed."""
        try:
            self.child.popen.wait(timeout=timeout_secs)
            exited: float | None = time.time()
        except subprocess.TimeoutExpired:
            exited = None
        self.child.stop(5)  # leftovers of the group, the log closed
        return exited


def start_host(env: dict[str, str], queue: str, name: str, index: int, concurrency: int) -> Host:
    node = f"w{index}@{name}"
    child = Child(f"failover-{name}", [
        PYTHON, "-m", "celery", "-A", "mmplatform", "worker", "--loglevel", "WARNING", "-P", "prefork",
        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", node, "-Q", queue], env)
    return Host(name, node, child, time.time())


def token_pid(token: str) -> int:
    """A driver token is ``<hostname>:<pid>:<random>``."""
    return int(token.rsplit(":", 2)[1])


def record_pid(worker: str) -> int:
    """A cycle record's worker is ``<hostname>:<pid>``."""
    return int(worker.rsplit(":", 1)[1])


def holders(hosts: dict[str, Host]) -> dict[str, set[int]]:
    """Live host -> the shards its drivers hold now (from the shard leases)."""
    from bots.engine.health import shard_owners

    alive = {name: host for name, host in hosts.items() if host.alive()}
    by_pid = {pid: name for name, host in alive.items() for pid in host.refresh_pids()}
    out: dict[str, set[int]] = {name: set() for name in alive}
    for shard, token in shard_owners().items():
        name = by_pid.get(token_pid(token))
        if name is not None:
            out[name].add(shard)
    return out


def balanced(held: dict[str, set[int]], shards: int) -> bool:
    """Every shard held, no host above ``ceil(shards / hosts)`` nor below ``floor``."""
    if not held or len(set().union(*held.values())) != shards:
        return False
    low, high = shards // len(held), math.ceil(shards / len(held))
    return all(low <= len(s) <= high for s in held.values())


def heartbeat_pids() -> set[int]:
    from bots.engine.health import live_drivers

    return {token_pid(token) for token in live_drivers()}


def first_cycles(bot_ids: list[int], since: float, pids: set[int]) -> dict[int, float]:
    """Bot -> the start time of its first cycle that started at or after ``since`` in one of ``pids``."""
    from bots.engine import keys
    from mmplatform.redis_client import get_redis, text

    pipe = get_redis().pipeline(transaction=False)
    for bot_id in bot_ids:
        pipe.lrange(keys.cycles(bot_id), 0, 99)  # newest first
    out: dict[int, float] = {}
    for bot_id, rows in zip(bot_ids, pipe.execute() if bot_ids else [], strict=True):
        for row in rows:
            _scheduled, started, _finished, worker = text(row).split(" ", 3)
            began = float(started)
            if began < since:
                break
            if record_pid(worker) in pids:
                out[bot_id] = began  # keeps the earliest: rows are newest first
    return out


def overlapping_cycles(bot_ids: list[int], since: float) -> int:
    """Pairs of consecutive cycles of one bot (after ``since``) where one started before the other ended."""
    from bots.engine.lease import cycle_records

    count = 0
    for bot_id in bot_ids:
        records = [r for r in cycle_records(bot_id) if r[1] >= since]
        count += sum(1 for a, b in itertools.pairwise(records) if b[1] < a[2])
    return count


# --- the venue's side ---------------------------------------------------------------------------------------


class Venue:
    """The emulator seen from outside: its accounts' open orders and order journals."""

    def __init__(self, base_url: str, keys: list[str]):
        self.base_url = base_url
        self.keys = keys
        self.accepts: Counter[str] = Counter()  # client order id -> times the venue accepted it
        self._seen: dict[str, int] = {}  # account key -> last journal seq counted

    def open_orders(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key in self.keys:
            out += admin_get(self.base_url, f"/admin/orders?api_key={key}", ADMIN_TOKEN)["orders"]
        return out

    def read_journals(self) -> None:
        """Count the accepts the journals gained since the last read."""
        for key in self.keys:
            entries = admin_get(self.base_url, f"/admin/journal?account={key}", ADMIN_TOKEN)["entries"]
            last = self._seen.get(key, -1)
            for entry in entries:
                if entry["seq"] > last and entry["event"] == "accept" and entry["client_order_id"]:
                    self.accepts[entry["client_order_id"]] += 1
            if entries:
                self._seen[key] = max(last, max(e["seq"] for e in entries))

    def duplicates(self) -> list[str]:
        return sorted(cid for cid, n in self.accepts.items() if n > 1)


def unmanaged(remote: list[dict[str, Any]], open_rows: set[str], levels: int = LEVELS) -> set[str]:
    """Client order ids of the bots' orders open on the venue (``remote``, the admin API's shape) that no
    engine manages: not open in the database (``open_rows``), or beyond ``levels`` orders a side of their
    bot (the oldest ones: an old quote left behind)."""
    ours = [o for o in remote if (o.get("clientOrderId") or "").startswith("mm-")]
    out = {o["clientOrderId"] for o in ours if o["clientOrderId"] not in open_rows}
    by_side: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for order in ours:
        bot_part = order["clientOrderId"].split("-")[1]
        by_side.setdefault((bot_part, order["side"]), []).append(order)
    for orders in by_side.values():
        orders.sort(key=lambda o: o["time"])
        out |= {o["clientOrderId"] for o in orders[:-levels]}
    return out


def orphan_candidates(venue: Venue, bot_ids: list[int]) -> set[str]:
    """The bots' orders open on the venue right now that no engine manages (see ``unmanaged``)."""
    from bots.models import OPEN_ORDER_STATUSES, Order

    remote = venue.open_orders()
    open_rows = set(Order.objects.filter(bot_id__in=bot_ids, status__in=OPEN_ORDER_STATUSES)
                    .values_list("client_order_id", flat=True))
    return unmanaged(remote, open_rows)


def persistent_orphans(venue: Venue, bot_ids: list[int], watch_secs: float = 10.0) -> list[str]:
    """The candidates still there after each poll for ``watch_secs`` (a re-quote's moment of two a side,
    a cancel in flight, are gone within a poll or two)."""
    left = orphan_candidates(venue, bot_ids)
    deadline = time.monotonic() + watch_secs
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left &= orphan_candidates(venue, bot_ids)
    return sorted(left)


def pending_left(bot_ids: list[int], wait_secs: float = 20.0) -> int:
    """Orders stored before sending and never resolved, after waiting up to ``wait_secs`` for them."""
    from bots.models import Order

    query = Order.objects.filter(bot_id__in=bot_ids, status="pending")
    wait_for(lambda: not query.exists(), wait_secs, 0.5)
    return query.count()


# --- one hand-over ----------------------------------------------------------------------------------------


def hand_over(kind: str, victim: Host, hosts: dict[str, Host], bots_by_shard: dict[int, list[int]],
              act: Callable[[], None]) -> dict[str, Any]:
    """Take ``victim`` away with ``act``; time until its shards and bots are on the survivors."""
    from bots.engine.health import shard_owners

    before = holders(hosts)
    lost = sorted(before.get(victim.name, set()))
    lost_bots = sorted(b for shard in lost for b in bots_by_shard.get(shard, []))
    survivors = {name: host for name, host in hosts.items() if host is not victim}
    survivor_pids = {pid for host in survivors.values() for pid in host.refresh_pids()}
    began = time.time()
    act()
    moved: dict[int, float] = {}
    cycled: dict[int, float] = {}
    exited: float | None = None
    deadline = began + HANDOVER_TIMEOUT_SECS
    while time.time() < deadline and (len(moved) < len(lost) or len(cycled) < len(lost_bots)):
        now = time.time()
        if exited is None and not victim.alive():
            exited = now
        owners = shard_owners()
        for shard in lost:
            token = owners.get(shard)
            if shard not in moved and token is not None and token_pid(token) in survivor_pids:
                moved[shard] = now
        pending = [b for b in lost_bots if b not in cycled]
        if pending:
            cycled.update(first_cycles(pending, began, survivor_pids))
        time.sleep(POLL_SECS)
    if victim.reap() is not None and exited is None:
        exited = time.time()
    shard_secs = [t - began for t in moved.values()]
    bot_secs = [t - began for t in cycled.values()]
    return {
        "kind": kind,
        "host": victim.name,
        "shards": len(lost),
        "bots": len(lost_bots),
        "shards_moved": len(moved),
        "bots_cycled": len(cycled),
        "complete": len(moved) == len(lost) and len(cycled) == len(lost_bots),
        "all_shards_moved_secs": round(max(shard_secs), 2) if len(moved) == len(lost) and lost else None,
        "all_bots_cycled_secs": round(max(bot_secs), 2) if len(cycled) == len(lost_bots) and lost_bots else None,
        "bot_secs": seconds(bot_secs),
        "process_exited_secs": round(exited - began, 2) if exited is not None else None,
        "began": began,
    }


def join(env: dict[str, str], queue: str, name: str, index: int, hosts: dict[str, Host], shards: int,
         bots_by_shard: dict[int, list[int]], concurrency: int) -> dict[str, Any]:
    """Start a new host; time until it heartbeats, holds its fair share, and its bots cycled there."""
    host = start_host(env, queue, name, index, concurrency)
    hosts[name] = host
    began = host.started_at
    heartbeat_at = share_at = None
    cycled: dict[int, float] = {}
    mine: list[int] = []
    deadline = began + HANDOVER_TIMEOUT_SECS + 30  # a worker's start on a loaded machine included
    while time.time() < deadline:
        now = time.time()
        pids = host.refresh_pids()
        if heartbeat_at is None and pids & heartbeat_pids():
            heartbeat_at = now
        if heartbeat_at is not None and share_at is None:
            held = holders(hosts)
            if balanced(held, shards) and held.get(name):
                share_at = now
                mine = sorted(b for shard in held[name] for b in bots_by_shard.get(shard, []))
        if share_at is not None:
            pending = [b for b in mine if b not in cycled]
            if not pending:
                break
            cycled.update(first_cycles(pending, began, pids))
        if not host.alive():
            raise RuntimeError(f"joining host {name} exited; see {host.child.log_path}")
        time.sleep(POLL_SECS)
    return {
        "host": name,
        "boot_secs": round(heartbeat_at - began, 2) if heartbeat_at else None,
        "fair_share_after_heartbeat_secs": round(share_at - heartbeat_at, 2) if share_at and heartbeat_at else None,
        "fair_share_after_start_secs": round(share_at - began, 2) if share_at else None,
        "bots": len(mine),
        "bots_cycled": len(cycled),
        "all_bots_cycled_after_heartbeat_secs": (round(max(cycled.values()) - heartbeat_at, 2)
                                                 if heartbeat_at and mine and len(cycled) == len(mine) else None),
    }


def check_orders(venue: Venue, bot_ids: list[int], since: float) -> dict[str, Any]:
    """After a hand-over settled: duplicates so far, orphans, pending rows left, overlapping cycles."""
    orphans = persistent_orphans(venue, bot_ids)
    pending = pending_left(bot_ids)
    venue.read_journals()
    return {"duplicate_client_order_ids": len(venue.duplicates()), "orphan_orders": len(orphans),
            "orphans": orphans, "pending_left": pending,
            "overlapping_cycles": overlapping_cycles(bot_ids, since - 60)}


# --- the run ------------------------------------------------------------------------------------------------


def run(env: dict[str, str], *, rounds: int, n_bots: int, n_hosts: int, shards: int, concurrency: int,
        bots_per_account: int, market: str, stop_signal: str = "main") -> dict[str, Any]:
    from bots import services
    from bots.engine.health import cycling_bots
    from bots.engine.lease import cycle_records
    from bots.engine.shards import HOUSEKEEPING_SECS, SHARD_TTL_SECS
    from bots.models import Bot, BotStatus

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    symbols = scale_symbols(n_bots, max(1, n_bots // 6))[:6]
    plan = account_plan(n_bots, symbols, bots_per_account)
    account_symbols = {index: symbol for symbol, index in plan}
    conditions = MARKETS[market]
    emulator = start_emulator(port, account="unusedkey:unusedsecret:USDT=1", admin_token=ADMIN_TOKEN,
                              symbols=",".join(symbols), market_step_ms=100,
                              volatility_bps=conditions["volatility_bps"], noise_rate=conditions["noise_rate"])
    queue = f"bench-failover-{uuid.uuid4().hex[:6]}"
    use_queue(queue)
    worker_env = {**env, "CELERY_QUEUE": queue, "ENGINE_SHARDS": str(shards)}
    hosts: dict[str, Host] = {}
    started_hosts = itertools.count(1)

    def new_host() -> tuple[str, int]:
        index = next(started_hosts)
        return (f"host{chr(64 + index)}" if index <= 26 else f"host{index}"), index

    bot_ids: list[int] = []
    load = [os.getloadavg()]
    try:
        tenant = make_tenant(f"failover-{uuid.uuid4().hex[:4]}")
        keys = [f"fail{index}key" for index in range(len(account_symbols))]
        accounts = []
        for index, key in enumerate(keys):
            admin_post(base_url, "/admin/accounts", {"api_key": key, "secret": f"fail{index}secret",
                                                     "balances": account_balances(account_symbols[index])},
                       ADMIN_TOKEN)
            accounts.append(make_account(tenant, f"acct-{index}", base_url, key, f"fail{index}secret"))
        venue = Venue(base_url, keys)
        for _ in range(n_hosts):
            name, index = new_host()
            hosts[name] = start_host(worker_env, queue, name, index, concurrency)
        if not wait_for(lambda: balanced(holders(hosts), shards), 120, 0.5):
            raise RuntimeError(f"the hosts never shared the shards: {holders(hosts)}")
        bots = [make_bot(tenant, accounts[index], f"failover-{i}", symbol, INTERVAL_SECS)
                for i, (symbol, index) in enumerate(plan)]
        bot_ids = [b.pk for b in bots]
        for bot in bots:
            services.bot_request_start(bot=bot, user=None)
        if not wait_for(lambda: Bot.objects.filter(pk__in=bot_ids, status=BotStatus.RUNNING).count() == n_bots,
                        max(90.0, n_bots * 0.5), 1.0):
            raise RuntimeError(f"not every bot started; see {next(iter(hosts.values())).child.log_path}")
        if not wait_for(lambda: all(len(cycle_records(b)) >= 3 for b in bot_ids), 90, 1.0):
            raise RuntimeError("not every bot cycled")
        bots_by_shard: dict[int, list[int]] = {}
        for bot_id, shard in cycling_bots(bot_ids).items():
            bots_by_shard.setdefault(shard, []).append(bot_id)
        started = time.time()
        venue.read_journals()
        first = check_orders(venue, bot_ids, started)
        print(f"{n_bots} bots on {len(hosts)} hosts, {shards} shards ({len(accounts)} accounts); before the "
              f"first round: {first['orphan_orders']} orphans, {first['duplicate_client_order_ids']} duplicates",
              flush=True)
        handovers: list[dict[str, Any]] = []
        joins: list[dict[str, Any]] = []
        for number in range(rounds):
            for kind in ("kill", "warm"):
                live = [h for h in hosts.values() if h.alive()]
                victim = live[(2 * number + (kind == "warm")) % len(live)]
                stop = victim.group_term if stop_signal == "group" else victim.warm_stop
                result = hand_over(kind, victim, hosts, bots_by_shard, victim.kill9 if kind == "kill" else stop)
                result |= check_orders(venue, bot_ids, result.pop("began"))
                result["round"] = number + 1
                handovers.append(result)
                print(f"round {number + 1} {kind:>4} {victim.name}: {result['shards']} shards moved in "
                      f"{result['all_shards_moved_secs']} s, {result['bots']} bots cycled on a survivor in "
                      f"{result['all_bots_cycled_secs']} s (p50 {result['bot_secs'].get('p50')} s); "
                      f"orphans {result['orphan_orders']}, duplicates {result['duplicate_client_order_ids']}, "
                      f"pending left {result['pending_left']}", flush=True)
                del hosts[victim.name]
                joined = join(worker_env, queue, *new_host(), hosts, shards, bots_by_shard, concurrency)
                joined["round"] = number + 1
                joins.append(joined)
                print(f"round {number + 1} join {joined['host']}: heartbeat {joined['boot_secs']} s after start, "
                      f"fair share {joined['fair_share_after_heartbeat_secs']} s after it, its {joined['bots']} "
                      f"bots cycled {joined['all_bots_cycled_after_heartbeat_secs']} s after it", flush=True)
                load.append(os.getloadavg())
        final = check_orders(venue, bot_ids, started)
    finally:
        fence_bots(bot_ids)
        for host in hosts.values():
            host.child.stop(20)
        emulator.stop()

    def of(kind: str, key: str) -> list[float]:
        return [h[key] for h in handovers if h["kind"] == kind and h[key] is not None]

    def bots_of(kind: str) -> list[float]:
        return [h["bot_secs"]["p50"] for h in handovers if h["kind"] == kind and h["bot_secs"].get("count")]

    summary = {
        kind: {"shards_moved_secs": seconds(of(kind, "all_shards_moved_secs")),
               "bots_cycled_secs": seconds(of(kind, "all_bots_cycled_secs")),
               "bot_p50_secs": seconds(bots_of(kind)),
               "incomplete": sum(1 for h in handovers if h["kind"] == kind and not h["complete"])}
        for kind in ("kill", "warm")
    }
    summary["join"] = {key: seconds(j[key] for j in joins if j[key] is not None)
                       for key in ("boot_secs", "fair_share_after_heartbeat_secs", "fair_share_after_start_secs",
                                   "all_bots_cycled_after_heartbeat_secs")}
    return {
        "bots": n_bots, "hosts": n_hosts, "shards": shards, "accounts": len(keys), "rounds": rounds,
        "bots_per_account": bots_per_account,
        "worker_concurrency": concurrency, "monitoring_interval_secs": INTERVAL_SECS, "market": market,
        "warm_stop_signal": stop_signal,
        "shard_ttl_secs": SHARD_TTL_SECS, "housekeeping_secs": HOUSEKEEPING_SECS,
        "summary": summary,
        "correctness": {"duplicate_client_order_ids": final["duplicate_client_order_ids"],
                        "duplicates": venue.duplicates()[:10],
                        "orphan_orders": len({cid for check in (*handovers, final) for cid in check["orphans"]}),
                        "pending_left": sum(h["pending_left"] for h in handovers),
                        "overlapping_cycles": final["overlapping_cycles"],
                        "orders_accepted": sum(venue.accepts.values())},
        "handovers": handovers,
        "joins": joins,
        "load_average_1m": [round(one, 2) for one, _, _ in load],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of kill -9 + join + warm stop + join")
    parser.add_argument("--bots", type=int, default=60)
    parser.add_argument("--hosts", type=int, default=3, help="hosts (workers) running at once")
    parser.add_argument("--shards", type=int, default=12, help="ENGINE_SHARDS of the hosts")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes (drivers) per host")
    parser.add_argument("--bots-per-account", type=int,
                        help="bots per exchange account (default bots / shards: every shard carries bots)")
    parser.add_argument("--market", choices=sorted(MARKETS), default="active")
    parser.add_argument("--stop-signal", choices=("main", "group"), default="main",
                        help="the warm stop's SIGTERM: to the worker's main process (Celery's warm shutdown) or "
                             "to its whole process group (systemd's default KillMode=control-group)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 24 bots")
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.bots = min(options.rounds, 2), min(options.bots, 24)
    if options.hosts < 2:
        parser.error("--hosts must be at least 2 (a survivor is needed)")
    os.environ["ENGINE_SHARDS"] = str(options.shards)  # this process reads the shards with the hosts' count
    database = BenchDatabase("mmbench_failover")  # this run's own database, dropped at the end
    redis: PrivateRedis | None = None
    try:
        redis = PrivateRedis()
        env = setup_django(database.url, redis.url)
        result = run(env, rounds=options.rounds, n_bots=options.bots, n_hosts=options.hosts, shards=options.shards,
                     concurrency=options.concurrency,
                     bots_per_account=options.bots_per_account or max(1, options.bots // options.shards),
                     market=options.market, stop_signal=options.stop_signal)
    finally:
        release(database, redis)
    figures = {"database": database.kind, "targets": TARGETS, "quick": options.quick,
               "command": "python -m bench.bench_failover " + " ".join(argv if argv is not None else sys.argv[1:]),
               "failover": result}
    summary = result["summary"]
    for kind, label in (("kill", "kill -9 of a host"), ("warm", "warm shutdown of a host")):
        shards_moved, cycled = summary[kind]["shards_moved_secs"], summary[kind]["bots_cycled_secs"]
        print(f"{label}: shards on survivors p50 {shards_moved.get('p50')} s max {shards_moved.get('max')} s; every "
              f"bot cycled on a survivor p50 {cycled.get('p50')} s max {cycled.get('max')} s "
              f"({summary[kind]['incomplete']} incomplete)")
    joined = summary["join"]
    print(f"joining host: fair share p50 {joined['fair_share_after_heartbeat_secs'].get('p50')} s max "
          f"{joined['fair_share_after_heartbeat_secs'].get('max')} s after its first heartbeat (start to heartbeat "
          f"p50 {joined['boot_secs'].get('p50')} s)")
    correct = result["correctness"]
    print(f"orders: {correct['orders_accepted']} accepted, {correct['duplicate_client_order_ids']} client order ids "
          f"accepted twice, {correct['orphan_orders']} orphans, {correct['pending_left']} pending left, "
          f"{correct['overlapping_cycles']} overlapping cycles; load average {result['load_average_1m']}")
    path = write_result("failover", figures)
    print(f"wrote {path.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
