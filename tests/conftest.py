"""Shared fixtures: two tenants, and for each role a user (owner / operator / viewer / outsider)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model

PASSWORD = "correct-horse-battery-staple"


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
    from exchanges.models import ExchangeAccount

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


@pytest.fixture(scope="session", autouse=True)
def clean_platform_redis_keys() -> None:
    """Forget Redis state of earlier runs (bot ids restart with each new test database)."""
    from mmplatform.redis_client import get_redis

    r = get_redis()
    for key in r.scan_iter(match="mm:*", count=1000):
        r.delete(key)


@pytest.fixture
def celery_queue(settings: Any) -> str:
    """A queue of this test's own, so no task of another test (or run) reaches its workers."""
    import uuid

    from mmplatform.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous
