"""The driver's due queue (bots/engine/due.py): a tick gets exactly the bots due by then, each once, earliest
first, whatever order and how often they were scheduled."""

from __future__ import annotations

import random

from bots.engine.due import DueQueue


def test_pop_due_gives_the_due_bots_earliest_first_and_leaves_the_rest() -> None:
    queue = DueQueue()
    for bot_id, at in [(1, 5.0), (2, 1.0), (3, 3.0), (4, 9.0)]:
        queue.schedule(bot_id, at)
    assert queue.pop_due(4.0) == [2, 3]
    assert queue.pop_due(4.0) == []
    assert queue.next_at() == 5.0
    assert queue.pop_due(100.0) == [1, 4]
    assert len(queue) == 0 and queue.next_at() is None


def test_the_earlier_time_stands_and_a_later_entry_left_behind_is_never_popped() -> None:
    queue = DueQueue()
    queue.schedule(7, 10.0)
    queue.schedule(7, 2.0)  # brought forward (a pushed move)
    queue.schedule(7, 6.0)  # later than the live entry: ignored
    assert queue.scheduled_at(7) == 2.0
    assert queue.pop_due(3.0) == [7]
    assert queue.pop_due(20.0) == []  # the stale 10.0 entry is skipped
    queue.schedule(7, 30.0)  # after its pop it may be scheduled later again
    assert queue.pop_due(29.0) == [] and queue.pop_due(30.0) == [7]


def test_forget_drops_the_bot() -> None:
    queue = DueQueue()
    queue.schedule(1, 1.0)
    queue.forget(1)
    assert queue.pop_due(5.0) == [] and queue.next_at() is None


def test_many_reschedules_match_a_plain_scan_and_keep_the_heap_small() -> None:
    rng = random.Random(14)
    queue = DueQueue()
    at: dict[int, float] = {}
    now = 0.0
    for _ in range(200):
        for _ in range(200):  # bots brought forward again and again, and scheduled anew
            bot_id, when = rng.randrange(300), now + rng.uniform(0, 5)
            queue.schedule(bot_id, when)
            at[bot_id] = min(at.get(bot_id, when), when)
        now += 0.5
        expected = sorted((when, bot_id) for bot_id, when in at.items() if when <= now)
        got = queue.pop_due(now)
        assert sorted(got) == sorted(bot_id for _, bot_id in expected)
        for bot_id in got:
            del at[bot_id]
    assert len(queue._heap) <= 4 * len(queue) + 1024 + 1
