"""A cycle on the driver's pool: a re-quote on the kept engine, or a full monitoring iteration.

``_cycle`` runs on a pool thread (``mm-cycle``) under the bot's lease: a ``requote`` verdict runs
``_adjust_orders`` on the engine kept from the last full cycle (the cancels the check decided are
already flying), anything else the full ``monitoring_iteration`` (``bots.tasks.execute_cycle``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

from bots.engine.bot import MarketMakingBot
from bots.engine.cycle import begin_fenced_requote, begin_fenced_sync
from bots.engine.driver_state import DriverState
from bots.engine.feed import view_limit
from bots.engine.lease import BotLease, FencedError, HaltedError, LeaseLostError
from bots.engine.market_data import AccountView
from bots.engine.performance import PerformanceFigures, claim_performances, store_performances
from bots.engine.rows import StatementCounter
from bots.engine.runner import Runner, next_due
from bots.engine.self_trades import from_rows, resting_from
from bots.engine.venues import Slot
from bots.engine.verdict import Verdict
from bots.events import pushes_held
from bots.models import OPEN_ORDER_STATUSES, Bot, LiquidityPosition, Order, OrderPurpose
from mmplatform import aio
from mmplatform.errors import ExchangeError
from risk.checks import RestingOrder

logger = logging.getLogger(__name__)

class RequoteMixin(DriverState):
    """The driver's pool-thread cycles (part of ``Driver``)."""

    def _cycle(self, runner: Runner, lease: BotLease, verdict: Verdict, scheduled: float) -> None:
        """A pool thread: a re-quote on the kept engine, or a full cycle. Its dashboard pushes go together at its
        end (``events.pushes_held``: one wake of the I/O loop, one batch), not one by one while its orders fly."""
        with pushes_held():
            self._run_cycle(runner, lease, verdict, scheduled)

    def _run_cycle(self, runner: Runner, lease: BotLease, verdict: Verdict, scheduled: float) -> None:
        from bots.tasks import execute_cycle

        started = time.time()
        cpu_started = time.thread_time()  # this thread's CPU: waits for the venue, the database or the GIL not counted
        delay = runner.interval
        drop = False
        outcome = ""
        # the cycle's round trips: its SQL statements (BEGIN / COMMIT not counted) and its waits for the I/O loop
        statements = StatementCounter()
        connections[DEFAULT_DB_ALIAS].execute_wrappers.append(statements)
        loop_waits = aio.waits()
        try:
            lease.start()  # from here a halt waits for this cycle; one that came while it was queued took its lease
            self._ready_connection(started)
            if runner.high_water_dirty:
                self._write_high_water([runner])
            if verdict.kind in ("requote", "fills", "reset") and runner.engine is not None:
                outcome = self._on_kept_engine(runner, lease, verdict, scheduled, started)
                if verdict.kind == "reset" and outcome == "ok":
                    delay = 0.0  # the reset decided nothing: the bot is checked again at once
            else:
                limit = view_limit(runner.interval)  # the accounts its live order streams keep: no REST reads of their
                result = execute_cycle(runner.bot_id, runner.epoch, runner.chain, scheduled, lease=lease,  # open orders
                                       views=lambda account_id: self._live_view(account_id, limit))  # and balances
                outcome = result.outcome
                self._capture(runner, result.engine, full=True)
                if outcome in ("stale-chain", "fenced", "auth-error"):
                    drop = True  # the driver thread forgets it; a fenced bot comes back if cycling
                elif outcome == "error":
                    delay = runner.error_delay
        except HaltedError as exc:  # a kill, stop or pause while queued: nothing was done, its sweep settles
            logger.info("%s", exc)  # the rows (the cancels a re-quote's check sent among them)
            runner.engine = None
            outcome = "halted"
        except LeaseLostError as exc:  # (only a driver stalled past the lease's TTL)
            logger.warning("%s", exc)
            runner.engine = None
            outcome = "lease-lost"
        except Exception:
            logger.exception("bot %s: driver cycle failed", runner.bot_id)
            runner.engine = None
            delay = runner.error_delay
            lease.release()
        finally:
            now = time.time()
            runner.next_due = next_due(scheduled, runner.interval, now) if delay == runner.interval else now + delay
            # handed back: the driver thread clears ``busy`` and counts the cycle (``Driver._take_back``)
            engine = runner.engine
            counts = engine.order_manager.take_counts() if engine is not None else None
            counts = counts if counts is not None else Counter()
            counts[f"{verdict.kind}_cpu_us"] += int(1e6 * (time.thread_time() - cpu_started))
            connections[DEFAULT_DB_ALIAS].execute_wrappers.remove(statements)
            counts[f"{verdict.kind}_statements"] += statements.n
            counts[f"{verdict.kind}_loop_waits"] += aio.waits() - loop_waits
            if outcome == "lease-lost":  # (a full cycle's next one is full again; the runner stays)
                counts["lease_lost"] += 1
            elif outcome == "halted":
                counts["halted_queued"] += 1
            self.finished.append((runner, verdict.kind, verdict.urgent, drop, int(1000 * (now - started)),
                                  int(1000 * max(started - scheduled, 0.0)), counts))
            self.wake.set()

    def _ready_connection(self, now: float) -> None:
        """This pool thread's database connection: one past its age or broken is dropped (at most once a
        second), and the connection is known to the driver so ``stop()`` closes it."""
        last = self._connection_checked.get(threading.get_ident(), 0.0)
        if now - last > 1.0:
            close_old_connections()
            self._connection_checked[threading.get_ident()] = now
        if threading.get_ident() not in self._pool_connections:
            conn = connections[DEFAULT_DB_ALIAS]
            conn.inc_thread_sharing()  # so stop() may close it from the driver's thread
            self._pool_connections[threading.get_ident()] = conn

    def _store_snapshots(self, batch: list[PerformanceFigures]) -> None:
        """A pool thread: store and push the performance figures the checks took (``Driver._hand_snapshots``),
        each unless another path snapshotted its bot within its metrics interval. A batch that fails to store
        (a bot deleted meanwhile) is stored one claimed bot at a time, so one bad row costs only its own
        snapshot (and a bot another path snapshotted is never written)."""
        self._ready_connection(time.time())
        try:
            claimed = claim_performances(batch, only_if_due=True)
        except Exception:
            logger.exception("performance snapshots of %d bots not claimed", len(batch))
            return
        try:
            store_performances(claimed)
            return
        except Exception:
            logger.warning("performance snapshots of %d bots not stored together; one at a time", len(claimed),
                           exc_info=True)
            close_old_connections()
        for one in claimed:
            try:
                store_performances([one])
            except Exception:
                logger.exception("bot %s: performance snapshot not stored", one[0].bot_id)
                close_old_connections()

    def _on_kept_engine(self, runner: Runner, lease: BotLease, verdict: Verdict, scheduled: float,
                        started: float) -> str:
        """A re-quote (``_adjust_orders`` of the pairs whose quotes moved, on the rows the quiet check saw), a
        fill sync or a daily reset, on the engine kept from the last full cycle, under the bot's lease."""
        from bots.engine.lease import add_cycle_record
        from bots.tasks import worker_id

        engine = runner.engine
        assert engine is not None
        engine.begin_kept_cycle(lease)
        outcome = "ok"
        try:
            numbered: list[int] = []

            def number_once(account_id: int, pair: str) -> tuple[int, list[RestingOrder]]:
                """This cycle's number, taken once (a re-quote's under its first pair's quote guard, after its
                cancels left) and fenced in the statement that reads the account's other bots' rows on ``pair``: a
                stop, kill or restart since the check sends nothing. A later pair's rows are read on their own."""
                if numbered:
                    return numbered[0], from_rows(runner.bot_id, account_id, pair)
                cycle, others = begin_fenced_requote(runner.bot_id, runner.epoch, account_id, pair)
                if cycle is None:
                    raise FencedError(f"bot {runner.bot_id}: stopped, killed or restarted; nothing is sent")
                numbered.append(cycle)
                engine.fenced_cycle(cycle)
                return cycle, resting_from(others)

            if verdict.kind == "reset":  # a new risk day: the P&L baseline at the check's mids (no venue read)
                engine.take_daily_reset()
                return outcome
            if verdict.kind == "fills":
                reading = self._reload_balances(engine, verdict.pairs)  # (meanwhile: the fence)
                # numbered and fenced in the statement that reads the first pair's open rows for its sync
                first = engine.active_positions[verdict.pairs[0]]
                cycle, first_rows = begin_fenced_sync(runner.bot_id, runner.epoch, first.pk)
                if cycle is None:
                    raise FencedError(f"bot {runner.bot_id}: stopped, killed or restarted; nothing is sent")
                numbered.append(cycle)
                engine.fenced_cycle(cycle)
                self._sync_and_requote(runner, engine, verdict.pairs, {first.pk: first_rows}, *reading)
                return outcome
            total_open = sum(runner.open_count.values())
            for slot in verdict.pairs:
                position = engine.active_positions[slot]
                if slot not in verdict.sent:
                    self._fresh_snapshot(runner, engine, position)
                engine.requote_pair(position, live_rows=runner.live.get(position.pk, []),
                                    others_open=total_open - runner.open_count.get(position.pk, 0),
                                    begin_cycle_now=number_once, sent_cancels=verdict.sent.get(slot))
            # the open rows, in memory: the cancelled ones were settled on these objects, the new ones
            # are as the venue answered them (no read back)
            self._capture(runner, engine, full=False, rows=runner.rows + engine.order_manager.stored)
        except FencedError as exc:
            logger.info("%s", exc)
            runner.engine = None
            outcome = "fenced"
        except LeaseLostError as exc:
            logger.warning("%s", exc)
            runner.engine = None
            outcome = "lease-lost"
        except Exception as exc:
            logger.exception("bot %s: re-quote failed", runner.bot_id)
            close_old_connections()
            Bot.objects.filter(pk=runner.bot_id, epoch=runner.epoch).update(
                last_error=f"{type(exc).__name__}: {exc}"[:2000])
            runner.engine = None
            outcome = "error"
        finally:
            # the cycle's record, its uptime counts and the lease's release: one round trip
            batch = engine.end_kept_cycle()
            add_cycle_record(batch, runner.bot_id, scheduled, started, time.time(), worker_id())
            lease.release_on(batch)
            batch.execute()
        return outcome

    def _fresh_snapshot(self, runner: Runner, engine: MarketMakingBot, position: LiquidityPosition) -> None:
        """A re-quote decides on the feeder's book as it is when the cycle runs, not as the check saw it:
        one that waited in the pool's queue (a burst of fills) would otherwise find its book past the
        staleness limit and cancel every quote of the pair, and the next check place them all again. Not
        for a slot whose cancels the driver already sent (that re-quote is settled on the check's book).
        A depth read that fails leaves the check's snapshot (the staleness check still applies)."""
        try:
            self._snapshot(runner, engine, position, {}, time.time())
        except ExchangeError as exc:
            logger.info("bot %s: fresh book for %s not read: %s", runner.bot_id, position.trading_pair, exc)

    def _live_view(self, account_id: int, limit: float) -> AccountView | None:
        """An account as its live order stream keeps it, for a full cycle on a pool thread, while the stream is live
        and the view no older than ``limit`` (a check's); else None (the cycle reads the venue)."""
        view = self.accounts.get(account_id) if account_id in self.order_streams_live else None
        return view if view is not None and time.time() - view.taken_at <= limit else None

    def _reload_balances(self, engine: MarketMakingBot, pairs: list[Slot]) -> tuple[set[int], float]:
        """A fill sync's balances of these slots' accounts: an account whose view holds the balances its venue
        pushed after every update it shows (``AccountView.balances_pushed``), updates that include the fills the
        engine's own answers found (a cancel's), takes them at once; the others' read is started
        (``reload_balances``). Returns the accounts read and when."""
        accounts = {engine.active_positions[p].exchange_account_id for p in pairs}
        balances_read_at = time.time()
        manager = engine.order_manager
        # fills a cancel's (or a replacement's) answer found: maybe not pushed yet
        found = [row for p in pairs if engine.active_positions[p].pk in manager.fills_seen
                 for row in manager.fill_rows.get(engine.active_positions[p].pk, {}).values()]
        for account_id in sorted(accounts):
            view = self.accounts.get(account_id)
            if view is None or account_id not in self.order_streams_live:
                continue
            if view.balances_pushed and _shows(view, [row for row in found if row.exchange_account_id == account_id]):
                engine.inventory_manager.observe_balances(account_id, dict(view.balances), free=dict(view.free))
                manager.count("balances_pushed")
                accounts.discard(account_id)
            else:  # (the driver's stats: an update, or a fill the engine's answers found, after the last balances)
                manager.count("balances_behind")
        if not accounts:
            return accounts, balances_read_at
        # a balance read the process started after the push that showed the fill is shared (a burst of fills
        # on one account); a fill a cancel's answer found (maybe not pushed yet) wants a read from now on
        answered = any(engine.active_positions[p].pk in manager.fills_seen for p in pairs)
        not_before = {a: (balances_read_at if answered else self.accounts[a].pushed_at) for a in accounts
                      if a in self.order_streams_live and a in self.accounts and self.accounts[a].pushed_at}
        engine.reload_balances(accounts, not_before)
        manager.count("balances_rest", len(accounts))
        return accounts, balances_read_at

    def _sync_and_requote(self, runner: Runner, engine: MarketMakingBot, pairs: list[Slot],
                          open_rows: dict[int, list[Order]], accounts: set[int], balances_read_at: float) -> None:
        """Orders of these slots were filled or left the book: reconcile each slot with the venue (its
        open orders, the fate of the missing ones), take in the balances pushed or read since (``_reload_balances``),
        re-quote the pair on them, then book its trades (Fill rows and accounting, OrderFilled events): the
        new quotes do not wait for the booking's statements, and the booking also takes the fills the
        re-quote's cancels found. A hedged bot books (and hedges) first: a failed hedge halts the venue before
        it quotes again. The rest of the bot is as the quiet check left it; the next check assesses risk on
        the new position. ``open_rows``: positions whose open rows the cycle's first statement read (the
        others' are read by their sync); ``accounts``, ``balances_read_at``: the read ``_reload_balances`` started."""
        hedged = engine.hedge_route is not None
        total_open = sum(runner.open_count.values())
        synced_positions: set[int] = set()
        rows: list[Order] = []
        for slot in pairs:
            position = engine.active_positions[slot]
            snapshot = self._snapshot(runner, engine, position, {}, time.time())  # the feeder's book
            mid = snapshot.mid if not snapshot.problem() else float("nan")
            # an account whose orders are pushed: its view stands for the venue's listing (no REST read)
            account_id = position.exchange_account_id
            view = self.accounts.get(account_id) if account_id in self.order_streams_live else None
            synced, booking = engine.reconcile_pair(position, mid, view, open_rows.get(position.pk))
            if hedged:
                synced, booking = engine.book_pair(position, booking, mid), None
            # re-quoted on the rows the sync just reconciled with the venue (not read again)
            live = [o for o in synced if o.status in OPEN_ORDER_STATUSES and o.purpose == OrderPurpose.QUOTE]
            engine.requote_pair(position, live_rows=live,
                                others_open=total_open - runner.open_count.get(position.pk, 0))
            if not hedged:  # on the account's view now: the trades pushed meanwhile count
                synced = engine.book_pair(position, booking, mid, self.accounts.get(account_id))
            synced_positions.add(position.pk)
            rows.extend(synced)
        # the open rows, in memory: other pairs' as they were, the synced pairs' as the venue answered
        # the sync and the re-quote, and the re-quote's new ones
        rows += [o for o in runner.rows if o.position_id not in synced_positions]
        self._capture(runner, engine, full=False, rows=rows + engine.order_manager.stored)
        # balances moved: the accounts this sync read after the fill get those balances in their views; any
        # other (a hedge account, a read that failed) the feeder reads again at once
        inventory = engine.inventory_manager
        for account_id in accounts:
            if account_id in inventory.balances and account_id not in inventory.unread:
                self.fresh_balances.append((account_id, balances_read_at, dict(inventory.balances[account_id]),
                                            dict(inventory.free.get(account_id, {}))))
            else:
                self.outdated.append(account_id)
        if engine.hedge_route is not None:  # a hedge moved the hedge account's balances too
            self.outdated.append(engine.hedge_route.hedge_account_id)


def _shows(view: AccountView, rows: list[Order]) -> bool:
    """The account view's pushed orders show each of ``rows`` filled as far as the row knows (open or ended)."""
    for row in rows:
        pushed = view.orders.get(row.client_order_id)
        if pushed is None:
            ended = view.closed.get(row.client_order_id)
            pushed = ended[1] if ended is not None else None
        if pushed is None or (pushed.filled or 0) < row.filled:
            return False
    return True
