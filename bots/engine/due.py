"""When each bot is next due, for the driver thread's tick: a heap of (time, bot), so a tick looks only at the
bots that are due instead of walking every runner.

Before, every tick (~50 a second per process when bots are due often) walked all the process's runners to
find the due ones: an O(bots x ticks) term, ~10 % of the driver thread's samples at calm N=1,500. Now a
bot is *scheduled* at the time its runner must next be looked at (its ``next_due``, a depth read's wait
limit, at once when a cycle hands it back, a pushed move wakes it or it was dropped), and the tick pops
what is due. The driver thread alone uses it (no lock).

One live entry per bot: ``schedule`` keeps the earlier of the bot's live time and the new one (an entry
that came too early is looked at and scheduled again for later; a later one left behind is stale and
skipped when it surfaces). Keyed by bot id, so a runner replaced by a new one of the same bot is looked
up afresh when its entry pops.
"""

from __future__ import annotations

import heapq


class DueQueue:
    """Bot ids by the time the driver must next look at them (driver thread only)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []  # (at, sequence, bot id)
        self._at: dict[int, float] = {}  # bot id -> the time of its live entry
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, bot_id: int, at: float) -> None:
        """Look at the bot at ``at`` at the latest (a live entry that is earlier already stands)."""
        held = self._at.get(bot_id)
        if held is not None and held <= at:
            return
        self._at[bot_id] = at
        self._sequence += 1
        heapq.heappush(self._heap, (at, self._sequence, bot_id))
        if len(self._heap) > 4 * len(self._at) + 1024:
            self._compact()

    def scheduled_at(self, bot_id: int) -> float | None:
        return self._at.get(bot_id)

    def pop_due(self, now: float) -> list[int]:
        """The bots whose live entry is at or before ``now``, earliest first; their entries are gone."""
        heap, at = self._heap, self._at
        due: list[int] = []
        while heap and heap[0][0] <= now:
            when, _, bot_id = heapq.heappop(heap)
            if at.get(bot_id) == when:
                del at[bot_id]
                due.append(bot_id)
        return due

    def next_at(self) -> float | None:
        """The earliest live entry's time (stale entries on top are dropped on the way)."""
        heap, at = self._heap, self._at
        while heap and at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def forget(self, bot_id: int) -> None:
        self._at.pop(bot_id, None)

    def _compact(self) -> None:
        """Drop the stale entries (bots scheduled earlier again and again leave later ones behind)."""
        self._heap = [entry for entry in self._heap if self._at.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
