"""Shared fixtures: two tenants, and for each role a user (owner / operator / viewer / outsider); and three
session-wide guards: no test leaves this process pointed at another Redis, no process started during
the session (Celery, daphne, the emulator, redis-server, Chromium) outlives it (with pytest-xdist, each
worker checks its own session and the controller fails the run for it), and no process of the session
reaches beyond this machine (``mmplatform.network_guard``: a test whose code, or a worker it started, tries
to resolve or connect to another host fails, naming the host and the caller)."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from mmplatform import network_guard

# Every process started from here on inherits the tag, however it is started and whoever its parent
# becomes: the session-finish check finds them all by it (tests.processes.processes_tagged). One tag per
# pytest process: this file is imported twice in a session (pytest's ``conftest``, and ``tests.conftest``
# for the helpers below), and the second import must not hand later processes another tag (nor another
# network log); an xdist worker inherits the controller's variables but is a process of its own.
if os.environ.get("MMPLATFORM_SESSION_PID") == str(os.getpid()):
    SESSION_TAG = os.environ["MMPLATFORM_PROCESS_TAG"]
else:
    SESSION_TAG = f"pytest-{uuid.uuid4().hex}"
    os.environ["MMPLATFORM_PROCESS_TAG"] = SESSION_TAG
    os.environ["MMPLATFORM_SESSION_PID"] = str(os.getpid())

# Offline: this process, and every process started from here on (mmplatform.test_settings installs it from
# the variable), refuses any host but this machine's and records who asked (checked after each test).
NETWORK_LOG = os.path.join(tempfile.gettempdir(), f"mmplatform-network-{SESSION_TAG}.jsonl")
os.environ[network_guard.ENVIRONMENT_VARIABLE] = NETWORK_LOG
network_guard.install(NETWORK_LOG)

PASSWORD = "correct-horse-battery-staple"
CLOSED_PORT_URL = "http://127.0.0.1:9"
"""An exchange account's ``api_base_url`` where nothing listens: a connection fails at once. Every test
account has one unless the test gives it a venue (an emulator): an empty ``api_base_url`` is the real
exchange, and no test may reach it."""


@dataclass
class TenantWorld:
    tenant: Any
    owner: Any
    operator: Any
    viewer: Any
    account: Any
    bot: Any


def make_user(username: str, *, staff: bool = True, superuser: bool = False) -> Any:
    user_model = get_user_model()
    if superuser:
        return user_model.objects.create_superuser(username=username, password=PASSWORD, email="")
    return user_model.objects.create_user(username=username, password=PASSWORD, is_staff=staff)


def make_account(tenant: Any, label: str = "main", *, api_key: str = "", api_secret: str = "", **extra: Any) -> Any:
    """A Binance account of ``tenant``; on ``CLOSED_PORT_URL`` unless ``api_base_url`` says where its venue is."""
    from exchanges.models import ExchangeAccount

    extra.setdefault("api_base_url", CLOSED_PORT_URL)
    account = ExchangeAccount(tenant=tenant, label=label, exchange_id="binance", **extra)
    account.set_credentials(
        api_key=api_key or f"key-{tenant.slug}-{label}-0123456789",
        api_secret=api_secret or f"secret-{tenant.slug}-{label}-abcdefghijklmnop",
    )
    account.save()
    return account


def make_bot(tenant: Any, account: Any, name: str = "bot-1", pairs: str = "BTC/USDT", **fields: Any) -> Any:
    from bots.models import Bot

    bot = Bot.objects.create(tenant=tenant, name=name, trading_pairs=pairs, **fields)
    bot.exchange_accounts.add(account)
    return bot


def make_world(slug: str) -> TenantWorld:
    from mmplatform.tenancy.models import Membership, Role, Tenant

    tenant = Tenant.objects.create(name=f"Firm {slug.upper()}", slug=slug)
    users = {}
    for role in (Role.OWNER, Role.OPERATOR, Role.VIEWER):
        user = make_user(f"{slug}-{role}")
        Membership.objects.create(user=user, tenant=tenant, role=role)
        users[role] = user
    account = make_account(tenant)
    bot = make_bot(tenant, account, name=f"{slug}-bot")
    return TenantWorld(tenant, users[Role.OWNER], users[Role.OPERATOR], users[Role.VIEWER], account, bot)


@pytest.fixture
def world_a(db: Any) -> TenantWorld:
    return make_world("a")


@pytest.fixture
def world_b(db: Any) -> TenantWorld:
    return make_world("b")


@pytest.fixture
def superuser(db: Any) -> Any:
    return make_user("root", superuser=True)


PLATFORM_KEY_PATTERNS = ("mm:*", "mmplatform:*", "mmp:*")  # engine and risk state, rate limits, the cache


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """pytest-django's test database, whose other sessions are ended before it is dropped: connections that
    threads of this process never closed (which threads was not traced; a daemon thread holding one reproduces
    it) made the drop fail ("is being accessed by other users") and left ``test_test_gw<n>`` behind on the server
    after CI's Postgres pass. The fixtures that start processes using the database depend on this one, so they
    are stopped by then."""
    yield django_db_setup
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(autouse=True, scope="session")
def gateways_closed_at_the_end() -> Any:
    """The process's cached gateways are closed when the session ends: a ccxt client never closed logs so when
    the interpreter collects it, at an xdist worker's exit, to a stream already closed (``--- Logging error``)."""
    yield
    from exchanges.registry import clear_gateway_cache

    clear_gateway_cache(wait_secs=2.0)


@pytest.fixture(autouse=True)
def clean_platform_redis_keys() -> None:
    """Each test starts with none of the platform's Redis state (engine drivers and shard leases of
    earlier tests' workers, risk memory, shared books keyed by an emulator URL whose free port a later
    emulator can get again, rate-limit buckets, the cache): what a test sees must not depend on which
    tests ran before it."""
    from mmplatform.redis_client import get_redis

    r = get_redis()
    for pattern in PLATFORM_KEY_PATTERNS:
        keys = list(r.scan_iter(match=pattern, count=1000))
        if keys:
            r.delete(*keys)


@pytest.fixture
def celery_queue(settings: Any) -> str:
    """Queues of this test's own (the default one, returned, and the alerts one beside it: the workers of
    ``tests.processes`` consume both), so no task of another test (or run) reaches its workers."""
    from mmplatform.celery import app
    from mmplatform.queues import alerts_queue_for

    queue = f"test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue  # before the settings change: Celery's conf reads them live
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.CELERY_ALERTS_QUEUE = alerts_queue_for(queue)  # read by mmplatform.queues.route_task per send
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous


_network_log_offset = 0


def take_network_refusals() -> list[dict[str, Any]]:
    """The refusals recorded since the last check, taken (a test of the guard itself expects them)."""
    global _network_log_offset
    refusals, _network_log_offset = network_guard.read_refusals(NETWORK_LOG, _network_log_offset)
    return refusals


@pytest.fixture
def network_refusals() -> Any:
    """``take_network_refusals`` for a test of the guard itself (a fixture: this module's own offset, not
    that of the second import a ``from tests.conftest import`` makes)."""
    return take_network_refusals


@pytest.fixture(autouse=True)
def network_stays_local(request: pytest.FixtureRequest) -> Any:
    """A test whose code, or a process it started, tried to reach another host fails here, with the host
    and the stack that asked (``mmplatform.network_guard``)."""
    yield
    refusals = take_network_refusals()
    if refusals:
        pytest.fail(f"{request.node.nodeid}: a process of this test tried to leave this machine:\n"
                    f"{network_guard.describe_refusals(refusals)}", pytrace=False)


@pytest.fixture(autouse=True)
def redis_state_restored(request: pytest.FixtureRequest) -> Any:
    """A test that points this process at another Redis (or queue) must point it back: a leak breaks
    every later test that sends a task, far from its cause (``KeyError: 'No such transport: unix'``)."""
    from tests.processes import redis_state

    before = redis_state()
    yield
    after = redis_state()
    if after != before:
        from mmplatform.celery import app

        app.conf.broker_url = before["celery broker_url"]
        app.conf.result_backend = before["celery result_backend"]
        app.conf.task_default_queue = before["celery task_default_queue"]
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        pytest.fail(f"{request.node.nodeid} left this process's Redis configuration changed: {changed}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is torn down: no process the session started may still run (the session's
    own embedded Redis excepted: this process stops it at exit). Leftovers are listed, killed, and fail
    the run."""
    import psutil

    from mmplatform.embedded_redis import owned_server_pid
    from tests.processes import describe, wait_gone

    own_redis = owned_server_pid()
    descendants = tuple(psutil.Process().children(recursive=True))
    left = wait_gone(SESSION_TAG, 15, ignore={own_redis} if own_redis else set(), known=descendants)
    messages = list(getattr(session.config, "_leftovers_of_xdist_workers", []))
    refusals, _ = network_guard.read_refusals(NETWORK_LOG, _network_log_offset)  # after the last test's check
    if refusals:
        messages.append(f"processes of the test session tried to leave this machine:\n"
                        f"{network_guard.describe_refusals(refusals)}")
    if os.path.exists(NETWORK_LOG):
        os.unlink(NETWORK_LOG)
    if left:
        messages.append(f"processes started by the test session still running after it:\n{describe(left)}")
        for process in left:
            try:
                process.kill()
            except psutil.Error:
                pass  # gone meanwhile
    if not messages:
        return
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its exit status is not the run's; the controller fails it
        workeroutput["leftover_processes"] = "\n".join(messages)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for message in messages:
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist's controller: a worker whose session left processes running fails the run (its own
    session's exit status does not reach the controller; ``pytest_sessionfinish`` above reports it)."""
    leftover = getattr(node, "workeroutput", {}).get("leftover_processes")
    if leftover:
        config = node.config
        if not hasattr(config, "_leftovers_of_xdist_workers"):
            config._leftovers_of_xdist_workers = []
        config._leftovers_of_xdist_workers.append(f"[{node.gateway.id}] {leftover}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """A shuffled run names its order (``-q`` hides pytest-random-order's header), so a failure that
    depends on it can be repeated."""
    try:
        from random_order.config import Config
    except ImportError:
        return
    order = Config(config)
    try:
        shuffled = order.is_enabled and order.bucket_type != "none"
    except ValueError:  # the plugin is installed but disabled (-p no:random_order)
        return
    if not shuffled:
        return
    workers = getattr(config.option, "numprocesses", None)
    if workers:  # pytest-xdist: the seed fixes the order handed out; which worker ran what depends on timing
        again = f"make test TEST_WORKERS=0 PYTEST_ARGS=--random-order-seed={order.seed} runs it in one process"
    else:
        again = f"make test PYTEST_ARGS=--random-order-seed={order.seed} repeats it"
    terminalreporter.write_line(f"test order: --random-order-bucket={order.bucket_type} "
                                f"--random-order-seed={order.seed} ({again})")


@pytest.fixture(scope="module")
def daphne(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """A real daphne serving the project to one module's browser tests (skipped without Chromium)."""
    from tests.dashboard.browser import Daphne, require_chromium

    require_chromium()
    with django_db_blocker.unblock():
        server = Daphne().start()
    yield server
    server.stop()


@pytest.fixture
def playwright_beside_django(monkeypatch: Any) -> None:
    """Playwright's sync API keeps an event loop in the test's thread; the ORM calls in a browser test are
    still plain synchronous calls between browser steps (browser modules use it for every test)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
