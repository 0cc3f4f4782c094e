"""Bad input, property-based: malformed, huge, negative, NaN, non-ASCII and wrong-type values in the
bot config (pure validator and the admin form), the dashboard's POST endpoints and the websocket
messages get a clear error each time, never another exception, and nothing is half-saved."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.admin import BotForm
from bots.config import MarketMakingConfig, validate_market_making_config
from bots.models import Bot
from mmplatform.errors import ConfigValidationError
from tests.conftest import PASSWORD

TRIED: Counter[str] = Counter()
PARTS = ("strategy_settings", "inventory_settings", "risk_limits", "order_settings", "hedge_settings")
TOP_FIELDS = [f.name for f in dataclasses.fields(MarketMakingConfig) if f.name not in PARTS]
PART_FIELDS = [(part, f.name) for part in PARTS
               for f in dataclasses.fields(dataclasses.fields(MarketMakingConfig)[[x.name for x in dataclasses.fields(
                   MarketMakingConfig)].index(part)].default_factory())]

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "NaN", "nan", "inf", "-inf", "1e309", "-1", "0", "1e-400", "١٢٣", "１２", "½",
                     "BTC/USDT", "btc/usdt", "BTC/USDT,BTC/USDT", "ÄÖÜ/€", "'; DROP TABLE bots_bot; --",
                     "<script>alert(1)</script>", "9" * 400, "\x00", "1,5", "0x10", "true", "None", "{}", "[]"]),
)
nasty_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    nasty_text,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(nasty_text, st.one_of(st.floats(), nasty_text), max_size=3),
    st.tuples(nasty_text),
)
json_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**40), 10**40),
                       st.booleans(), st.none(), nasty_text, st.lists(st.integers(), max_size=3),
                       st.dictionaries(nasty_text, st.one_of(st.floats(), nasty_text), max_size=3))


def base_config() -> MarketMakingConfig:
    return MarketMakingConfig(bot_id="1", exchanges=("account-1",), trading_pairs=("BTC/USDT",))


@settings(max_examples=600, deadline=None)
@given(field=st.sampled_from(TOP_FIELDS + PART_FIELDS), value=nasty_value)
def test_validator_answers_every_bad_value_with_a_field_error(field: Any, value: Any) -> None:
    TRIED["validator"] += 1
    config = base_config()
    try:
        if isinstance(field, tuple):
            part, name = field
            config = dataclasses.replace(config, **{part: dataclasses.replace(getattr(config, part), **{name: value})})
        else:
            config = dataclasses.replace(config, **{field: value})
        validate_market_making_config(config)
    except ConfigValidationError as error:
        assert error.errors and all(messages for messages in error.errors.values())
        assert str(error)  # readable


def form_data(bot: Bot) -> dict[str, Any]:
    data = model_to_dict(bot, exclude=["id", "epoch"])
    data["exchange_accounts"] = [a.pk for a in bot.exchange_accounts.all()]
    data["hedged_accounts"] = [a.pk for a in bot.hedged_accounts.all()]
    data = {k: ("" if v is None else (json.dumps(v) if isinstance(v, dict) else v)) for k, v in data.items()}
    return data


FORM_FIELDS = [f for f in BotForm.base_fields if f not in ("tenant", "exchange_accounts")]


@pytest.mark.django_db
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FORM_FIELDS), value=nasty_text)
def test_admin_form_rejects_bad_values_and_saves_nothing(world_a: Any, field: str, value: str) -> None:
    TRIED["admin form"] += 1
    bot = world_a.bot
    before = model_to_dict(Bot.objects.get(pk=bot.pk))
    data = form_data(bot)
    data[field] = value
    form = BotForm(data=data, instance=Bot.objects.get(pk=bot.pk))
    if form.is_valid():
        form.save()  # a value the form accepts must also be one the engine accepts
        validate_market_making_config(Bot.objects.get(pk=bot.pk).to_config())
        Bot.objects.filter(pk=bot.pk).update(**{k: v for k, v in before.items()
                                               if k not in ("id", "tenant", "exchange_accounts",
                                                            "hedged_accounts")})
    else:
        assert form.errors and all(form.errors.values())
        assert model_to_dict(Bot.objects.get(pk=bot.pk)) == before, "an invalid form changed the bot"


@pytest.fixture
def operator_client(client: Any, world_a: Any) -> Any:
    world_a.account.api_base_url = "http://127.0.0.1:9"  # a kill's synchronous cancel fails fast
    world_a.account.save()
    client.login(username="a-operator", password=PASSWORD)
    return client


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(["pause", "resume", "stop", "release", "reconcile", "start", "kill"]),
       reason=nasty_text, next_url=nasty_text, accept=st.sampled_from(["application/json", "text/html"]))
def test_dashboard_posts_answer_bad_input_without_a_server_error(operator_client: Any, world_a: Any,
                                                                  celery_queue: str, action: str, reason: str,
                                                                  next_url: str, accept: str) -> None:
    TRIED["dashboard POST"] += 1
    url = reverse(f"dashboard:bot_{action}", args=[world_a.bot.pk])
    response = operator_client.post(url, {"reason": reason, "next": next_url}, HTTP_ACCEPT=accept)
    assert response.status_code in (200, 302, 400, 409), (action, response.status_code)
    if response.status_code == 302:
        location = response["Location"]
        assert url_has_allowed_host_and_scheme(location, {"testserver"}), location  # never an open redirect
    tenant_reply = operator_client.post(reverse("dashboard:tenant_switch"), {"tenant_id": reason},
                                        HTTP_ACCEPT=accept)
    assert tenant_reply.status_code in (200, 302, 400, 404)


@pytest.mark.django_db(transaction=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.one_of(nasty_text, st.builds(json.dumps, json_value),
                                   st.builds(lambda v: json.dumps({"type": "catch_up", "after": v}), json_value),
                                   st.builds(lambda v: json.dumps({"type": v}), nasty_text)),
                         min_size=1, max_size=4))
def test_websocket_messages_get_an_answer_never_a_crash(world_a: Any, messages: list[str]) -> None:
    TRIED["websocket message"] += len(messages)
    session = _live_session(world_a.viewer)
    async_to_sync(_talk)(world_a.bot.pk, world_a.viewer, session, messages)


async def _talk(bot_id: int, user: Any, session: Any, messages: list[str]) -> None:
    from channels.routing import URLRouter

    from mmplatform.routing import websocket_urlpatterns

    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/bots/{bot_id}/")
    communicator.scope["user"] = user
    communicator.scope["session"] = session
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "hello"
    for text in messages:
        await communicator.send_input({"type": "websocket.receive", "text": text})
        reply = await communicator.receive_json_from(timeout=5)
        assert reply["type"] in ("error", "pong", "catch_up"), reply
        if reply["type"] == "error":
            assert reply["error"]
    await communicator.disconnect()


def _live_session(user: Any) -> Any:
    """A stored session holding the user's login (what the consumer re-checks)."""
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session


def test_zz_report_cases_tried() -> None:
    """Print how many cases each fuzzer tried in this run (runs last in the module)."""
    print(f"\nfuzz cases tried: {dict(TRIED)} (total {sum(TRIED.values())})")
