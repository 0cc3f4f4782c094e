"""Tenant isolation matrix generated from the URL conf: every admin and dashboard pattern that takes an
object id, asked by an owner of tenant A for tenant B's object, answers 404 and never B's data; every
websocket route with an id closes. A new pattern with a parameter the matrix cannot fill fails here."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from mmplatform.routing import websocket_urlpatterns
from tests.conftest import PASSWORD
from tests.platform.test_admin_tenancy import populate

pytestmark = pytest.mark.django_db(transaction=True)

NO_OBJECT_PARAMS = {"app_label", "url"}  # admin app index and catch-all: not objects
NON_TENANT_OBJECT_PARAMS = {"id"}  # auth user password change: users are not tenant-owned


def walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[tuple[str, str, list[str], Any]]:
    """(route, namespaced name, parameter names, callback) of every URL pattern."""
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            params = list(entry.pattern.converters) if hasattr(entry.pattern, "converters") else []
            if not params and "(?P<" in route:
                params = [p.split(">")[0] for p in route.split("(?P<")[1:]]
            found.append((route, f"{namespace}{entry.name or ''}", params, entry))
    return found


def fill(route: str, values: dict[str, Any]) -> str:
    import re

    def one(match: Any) -> str:
        return str(values[match.group(2) or match.group(4)])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>|\(\?P<((\w+))>[^)]*\)", one, route).lstrip("^").rstrip("$")


def model_of(name: str, route: str) -> Any:
    """The model of an admin URL: from its name (``admin:bots_order_change``) or, for the unnamed
    redirect pattern, from its route (``admin/bots/order/<path:object_id>/``)."""
    label = name.split(":", 1)[1]
    if not label:
        parts = route.split("/")
        try:
            return apps.get_model(parts[1], parts[2])
        except (IndexError, LookupError):
            return None
    for model in apps.get_models():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if label.startswith(prefix) and "_" not in label[len(prefix):]:
            return model
    return None


def is_tenant_owned(model: Any) -> bool:
    return model._meta.label_lower == "tenancy.tenant" or any(f.name == "tenant" for f in model._meta.fields)


def test_every_object_url_answers_404_for_another_tenants_object(client: Any, world_a: Any, world_b: Any) -> None:
    populate(world_a)
    foreign = populate(world_b)
    client.login(username="a-owner", password=PASSWORD)
    checked, skipped = [], []
    for route, name, params, _ in walk(get_resolver().url_patterns):
        params = [p for p in params if p not in ("action",)]
        if not params or set(params) <= NO_OBJECT_PARAMS:
            skipped.append(name)
            continue
        if set(params) <= NON_TENANT_OBJECT_PARAMS:
            skipped.append(name)
            continue
        if name.startswith("admin:") and set(params) == {"object_id"}:
            model = model_of(name, route)
            assert model is not None, f"{name}: cannot tell which model this admin URL serves"
            if not is_tenant_owned(model):
                skipped.append(name)
                continue
            assert model in foreign, f"{name}: the matrix has no tenant-B {model.__name__} to ask for; add one"
            obj = foreign[model]
            url = fill(route, {"object_id": obj.pk})
        elif name == "admin:view_on_site":
            from django.contrib.contenttypes.models import ContentType

            bot = foreign[apps.get_model("bots", "Bot")]
            url = fill(route, {"content_type_id": ContentType.objects.get_for_model(bot).pk, "object_id": bot.pk})
        elif set(params) == {"bot_id"}:
            url = fill(route, {"bot_id": world_b.bot.pk})
        else:
            raise AssertionError(f"{name} ({route}): parameters {params} are unknown to the isolation matrix")
        response = client.get(url, follow=True)  # the unnamed admin pattern redirects to the change view
        if response.status_code == 405:
            response = client.post(url, {"post": "yes", "reason": "x"})
        assert response.status_code == 404, f"{name or route} {url}: {response.status_code}"
        body = response.content.decode(errors="replace")
        assert world_b.bot.name not in body and world_b.tenant.name not in body, f"{name} leaks B's data"
        checked.append(name or route)
    print(f"\nisolation matrix: {len(checked)} object URL patterns answered 404; {len(skipped)} without a "
          "tenant object skipped")
    assert any(n.startswith("dashboard:") for n in checked) and any(n.startswith("admin:bots_") for n in checked)


def test_every_websocket_route_with_an_id_closes_for_another_tenants_object(world_a: Any, world_b: Any) -> None:
    from tests.reliability.test_fuzz_input import _live_session

    session = _live_session(world_a.owner)
    routes = walk(websocket_urlpatterns)
    closed = 0
    for route, _, params, _ in routes:
        if not params:
            continue
        assert set(params) == {"bot_id"}, f"websocket route {route}: parameters {params} unknown to the matrix"
        closed += async_to_sync(_refused)(fill(route, {"bot_id": world_b.bot.pk}), world_a.owner, session)
    assert closed >= 1


async def _refused(path: str, user: Any, session: Any) -> int:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    communicator.scope["session"] = session
    await communicator.connect()
    message = await communicator.receive_output(timeout=5)
    while message["type"] == "websocket.accept":
        message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    assert message.get("code") == 4404, message
    await communicator.wait()
    return 1


def test_a_client_login_sees_only_its_shared_bots_sla_pages(client: Any, world_a: Any, world_b: Any) -> None:
    """The client role (a token issuer's login, ``liquidity.ClientAccess``): every URL pattern with a bot
    id answers 200 for the shared bot only on the SLA pages (``liquidity:``), 404 on every other page
    (no controls, no orders) and for any bot not shared with it, of its desk's tenant or another's."""
    from liquidity.models import ClientAccess
    from tests.conftest import make_bot, make_user

    shared = world_a.bot
    unshared = make_bot(world_a.tenant, world_a.account, name="a-unshared-bot")
    issuer = make_user("issuer", staff=False)
    ClientAccess.objects.create(tenant=world_a.tenant, bot=shared, user=issuer)
    client.login(username="issuer", password=PASSWORD)
    seen = []
    for route, name, params, _ in walk(get_resolver().url_patterns):
        params = [p for p in params if p != "action"]
        if set(params) != {"bot_id"}:
            continue
        for bot in (shared, unshared, world_b.bot):
            url = fill(route, {"bot_id": bot.pk})
            response = client.get(url)
            if response.status_code == 405:
                response = client.post(url, {"reason": "x"})
            expected = 200 if bot is shared and name.startswith("liquidity:") else 404
            assert response.status_code == expected, f"{name} {url} for the client: {response.status_code}"
            body = response.content.decode(errors="replace")
            assert unshared.name not in body and world_b.bot.name not in body, f"{name} leaks another bot"
            assert "mm-" not in body, f"{name} shows order-level detail"
        seen.append(name)
    assert any(n.startswith("liquidity:") for n in seen) and any(n.startswith("dashboard:") for n in seen)
    overview = client.get("/sla/").content.decode()
    assert shared.name in overview and unshared.name not in overview and world_b.bot.name not in overview
    assert client.get("/admin/").status_code == 302  # not staff: the admin's login page
    assert client.get("/bots/").status_code in (200, 404) and shared.name not in client.get("/bots/").content.decode()
