"""An account view keeps a minute of pushed final states and trades (``market_data.recent_entries``): a push
does not walk them all while the oldest is within the minute, and the expired ones leave once it is not."""

from __future__ import annotations

from bots.engine.market_data import CLOSED_KEEP_SECS, recent_entries


def test_the_same_entries_while_the_oldest_is_recent_and_the_expired_ones_dropped_after() -> None:
    now = 1_000.0
    entries = {f"t{i}": (now - CLOSED_KEEP_SECS + 1 + i, i) for i in range(5)}  # oldest first, all recent
    assert recent_entries(entries, now) is entries

    later = now + 3.5  # the first three are now older than the horizon
    kept = recent_entries(entries, later)
    assert kept is not entries
    assert list(kept) == ["t3", "t4"]
    assert entries == {f"t{i}": (now - CLOSED_KEEP_SECS + 1 + i, i) for i in range(5)}  # (a new dict: views are frozen)
    assert recent_entries({}, later) == {}
