"""Where the platform tells the alerts app what happened, cheaply and without waiting.

``notice`` is called by ``bots.events.publish_event`` for every event: an event type that is never an
alert (``matching.EVENT_KINDS``; the routine flood) costs one dict lookup; one that may be is handed,
after its transaction commits, to this process's enqueuer thread, which sends ``alerts.tasks.raise_alerts``
to Celery. The caller (an engine cycle, a kill in the web process) never waits for the broker, the rules
or a webhook. ``venue_read`` is the feeder's report of each account read; an account unreadable for
``ALERTS_VENUE_DOWN_SECS`` is reported once (until it reads again) as a ``VenueDisconnected`` event, and
when it reads again as ``VenueReconnected`` (the alerts it raised are resolved).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from alerts.matching import ALERT_TASKS

logger = logging.getLogger(__name__)

MAX_QUEUED = 10_000

_queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue(maxsize=MAX_QUEUED)
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_lock = threading.Lock()
_down_since: dict[int, float] = {}
_reported: set[int] = set()


def notice(*, tenant_id: int, bot_id: int | None, event_type: str, payload: dict[str, Any],
           event_id: int | None = None, occurred_at: datetime | None = None) -> None:
    """An event was recorded: if its type can be an alert, match it against the rules once it commits; if
    it says a condition cleared (``matching.RESOLVING_EVENTS``), resolve the alerts it raised."""
    task = ALERT_TASKS.get(event_type)
    if task is None:
        return
    args = (tenant_id, bot_id, event_type, payload, event_id, occurred_at.isoformat() if occurred_at else None)
    transaction.on_commit(lambda: _put(task, args))


def venue_read(account_id: int, error: str | None) -> None:
    """The engine's feeder read an exchange account (``error`` None) or failed to (the reason). An account
    reported disconnected that reads again is reported reconnected (its alerts resolved), once."""
    if error is None:
        if account_id in _down_since:
            since = _down_since.pop(account_id)
            if account_id in _reported:
                _reported.discard(account_id)
                _put("venue_reconnected", (account_id, time.monotonic() - since))
        return
    now = time.monotonic()
    since = _down_since.setdefault(account_id, now)
    if account_id not in _reported and now - since >= settings.ALERTS_VENUE_DOWN_SECS:
        _reported.add(account_id)
        _put("venue_disconnected", (account_id, now - since, error[:500]))


def _put(task: str, args: tuple[Any, ...]) -> None:
    _ensure_thread()
    try:
        _queue.put_nowait((task, args))
    except queue.Full:
        logger.error("alerts: %s events waiting for the broker; dropped %s%s", MAX_QUEUED, task, args[:3])


def _ensure_thread() -> None:
    global _thread, _thread_pid
    if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
            return
        _thread = threading.Thread(target=_run, name="mm-alerts-enqueue", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()


BATCH_MAX = 500
"""At most this many events waiting together go to the broker as one task (``alerts.tasks.alert_events``)."""


def _run() -> None:
    """The enqueuer thread: each event to its task, and what waits together (a watchdog pass's stale bots, a burst of
    risk events) as one task: one broker message and one database session on the worker for all of them. At
    active N=1,000 bots past the machine's edge, the watchdog's ``CyclesStale`` events of the bots queued >10 s were
    one ``raise_alerts`` task each, each opening a database session (Celery closed a task's): 940 new sessions in a
    40 s window, Postgres at 0.37-0.45 cores instead of ~0.29, the overload feeding itself."""
    from alerts import tasks

    while True:
        items = [_queue.get()]
        while len(items) < BATCH_MAX:
            try:
                items.append(_queue.get_nowait())
            except queue.Empty:
                break
        events = [item for item in items if item is not None]
        try:
            if events:
                _send(tasks, events)
        finally:
            for _ in items:
                _queue.task_done()
        if len(events) < len(items):  # the stop mark (at exit): after what came before it
            return


def _send(tasks: Any, events: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Hand ``events`` to the broker: one as its own task, several as one ``alert_events`` task; a broker that is
    down is tried again shortly, then the events are logged and dropped."""
    for attempt in range(3):
        try:
            if len(events) == 1:
                name, args = events[0]
                getattr(tasks, name).apply_async(args)
            else:
                tasks.alert_events.apply_async(([[name, list(args)] for name, args in events],))
            return
        except Exception:  # the broker is down: try again shortly, then log and drop
            if attempt == 2:
                logger.exception("alerts: could not enqueue %s event(s), the first %s%s", len(events), events[0][0],
                                 events[0][1][:3])
            else:
                time.sleep(0.5 * (attempt + 1))


def flush(timeout_secs: float = 5.0) -> bool:
    """Wait until this process's queued events are handed to the broker (tests, and at exit)."""
    deadline = time.monotonic() + timeout_secs
    while _queue.unfinished_tasks:
        if time.monotonic() > deadline or _thread is None or not _thread.is_alive():
            return False
        time.sleep(0.002)
    return True


atexit.register(flush, 2.0)
