"""An account view keeps a minute of pushed final states and trades (``market_data.recent_entries``): a push
does not walk or copy them while the oldest is within the minute and a few seconds, and the expired ones leave
together once it is not."""

from __future__ import annotations

from bots.engine.market_data import CLOSED_KEEP_SECS, RECENT_PRUNE_SECS, recent_entries


def test_the_same_entries_while_the_oldest_is_recent_and_the_expired_ones_dropped_after() -> None:
    now = 1_000.0
    times = [now - CLOSED_KEEP_SECS + 1 + 3 * i for i in range(5)]  # oldest first, all within the minute
    entries = {f"t{i}": (at, i) for i, at in enumerate(times)}
    assert recent_entries(entries, now) is entries

    later = now + 3.5  # t0 and t1 are older than the minute, not past its margin: the same entries
    assert recent_entries(entries, later) is entries
    later = times[0] + CLOSED_KEEP_SECS + RECENT_PRUNE_SECS + 0.5  # t0 past the margin: t0, t1 leave together
    kept = recent_entries(entries, later)
    assert list(kept) == ["t2", "t3", "t4"]
    assert list(entries) == ["t0", "t1", "t2", "t3", "t4"]  # a new dict (views are frozen)
    assert recent_entries(entries, now + 1_000) == {}
    assert recent_entries({}, now) == {}
