"""The feeder's mid histories (``market_data.MidHistoryReader``) read each Redis list's tail after the first read and
stay equal to a whole read (``mid_history``) through appends, a gap longer than the tail, the front trimmed at
``HISTORY_LENGTH`` and a history that starts again; each read hands out new lists. Real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bots.engine.market_data import HISTORY_LENGTH, BookData, MidHistoryReader, _key, mid_history, store_books
from mmplatform.redis_client import get_redis

pytestmark = pytest.mark.django_db


class CountingPipelines:
    """How many list entries the reader asked Redis for (the tails, not the histories)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entries = 0
        redis = get_redis()
        real = redis.pipeline
        counter = self

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = real(*args, **kwargs)
            execute = pipe.execute

            def counted() -> list[Any]:
                answers = execute()
                counter.entries += sum(len(a) for a in answers if isinstance(a, list))
                return answers

            pipe.execute = counted
            return pipe

        monkeypatch.setattr(redis, "pipeline", pipeline)


def append(books: list[tuple[str, str]], start: int, count: int) -> int:
    for i in range(start, start + count):
        mid = 100.0 + i / 10
        store_books([(venue, pair, BookData(bids=[(mid - 0.5, 1.0)], asks=[(mid + 0.5, 1.0)], fetched_at=1_000.0 + i))
                     for venue, pair in books], max_age_secs=60)
    return start + count


def test_the_tail_reads_stay_equal_to_whole_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    books = [(f"bench-{uuid.uuid4().hex[:6]}", "BTC/USDT"), (f"bench-{uuid.uuid4().hex[:6]}", "ETH/USDT")]
    reader = MidHistoryReader()
    assert reader.read(books) == {book: ([], []) for book in books}  # nothing recorded yet
    n = append(books, 0, 50)
    first = reader.read(books)  # the histories whole (no tail held)
    assert all(first[book] == mid_history(*book) for book in books)
    kept = {book: (list(times), list(mids)) for book, (times, mids) in first.items()}

    counting = CountingPipelines(monkeypatch)
    n = append(books, n, 5)
    second = reader.read(books)
    assert all(second[book] == mid_history(*book) for book in books)
    assert counting.entries == 2 * MidHistoryReader.TAIL, "only the tails were read"
    assert first == kept, "the lists handed out before are left as they were"

    n = append(books, n, MidHistoryReader.TAIL + 10)  # more than a tail since: read whole again
    assert all(reader.read(books)[book] == mid_history(*book) for book in books)
    n = append(books, n, HISTORY_LENGTH)  # the front trimmed
    assert reader.read(books)[books[0]] == mid_history(*books[0])
    for step in (3, 1, MidHistoryReader.TAIL - 1):
        n = append(books, n, step)
        read = reader.read(books)
        assert all(read[book] == mid_history(*book) for book in books)
        assert len(read[books[0]][0]) == HISTORY_LENGTH

    get_redis().delete(*(_key(venue, pair, "mids") for venue, pair in books))  # a history that starts again
    append(books, 10_000, 3)
    assert all(reader.read(books)[book] == mid_history(*book) for book in books)
    assert reader.read(books[:1]).keys() == {books[0]}, "a book no longer wanted is forgotten"
