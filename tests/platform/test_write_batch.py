"""``WriteBatch``'s one-record operations write what a redis-py pipeline's commands do (real Redis): the capped
list of a cycle record (``capped_lpush``: LPUSH + LTRIM) and the several counters of a quoting record
(``hincrby_many``), through the same helpers the engine's one writers call (``lease.add_cycle_record``,
``performance.count_quoting``)."""

from __future__ import annotations

import uuid

import pytest

from mmplatform.redis_client import WriteBatch, capped_lpush, get_redis, hincrby_many


def _keys() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"test:batch:{tag}", f"test:pipe:{tag}"


def test_capped_lpush_in_a_batch_keeps_the_newest_as_a_pipeline_does() -> None:
    r = get_redis()
    batched, piped = _keys()
    try:
        for round_ in range(3):  # batches after batches: the cap holds across them
            batch, pipe = WriteBatch(), r.pipeline(transaction=False)
            for i in range(4):
                capped_lpush(batch, batched, f"{round_}-{i} a b", 5)
                capped_lpush(pipe, piped, f"{round_}-{i} a b", 5)
            assert len(batch) == 4  # one record an operation
            batch.execute()
            pipe.execute()
        assert r.lrange(batched, 0, -1) == r.lrange(piped, 0, -1) == [
            b"2-3 a b", b"2-2 a b", b"2-1 a b", b"2-0 a b", b"1-3 a b"]
    finally:
        r.delete(batched, piped)


def test_hincrby_many_in_a_batch_counts_as_a_pipeline_does() -> None:
    r = get_redis()
    batched, piped = _keys()
    try:
        batch, pipe = WriteBatch(), r.pipeline(transaction=False)
        for fields, amount in ((("BTC/USDT:cycles", "BTC/USDT:quoted"), 1), (("BTC/USDT:cycles",), 1),
                               (("ETH/USDT:cycles",), 2), (("ETH/USDT:quoted", "BTC/USDT:quoted"), -1),
                               (("BTC/USDT:quoted",), 4)):
            hincrby_many(batch, batched, fields, amount)
            hincrby_many(pipe, piped, fields, amount)
        assert len(batch) == 5
        batch.execute()
        pipe.execute()
        assert r.hgetall(batched) == r.hgetall(piped) == {
            b"BTC/USDT:cycles": b"2", b"BTC/USDT:quoted": b"4", b"ETH/USDT:cycles": b"2", b"ETH/USDT:quoted": b"-1"}
    finally:
        r.delete(batched, piped)


def test_a_field_holding_a_separator_is_refused_before_anything_is_written() -> None:
    batch = WriteBatch()
    with pytest.raises(ValueError, match="separator"):
        batch.hincrby_many("test:batch:x", ("bad\x1ffield",))
    with pytest.raises(ValueError, match="separator"):
        batch.capped_lpush("test:batch:x", "bad\x1evalue", 3)
    assert len(batch) == 0
