"""Emulator-backed exchange accounts opened from the Django admin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from bots.engine.gateways import gateway_for_account
from exchanges.emulator.server import EmulatorConfig, EmulatorServer
from exchanges.registry import clear_gateway_cache
from exchanges.services import EmulatorRegistrationError, parse_balances
from mmplatform import aio
from tests.conftest import PASSWORD, TenantWorld, make_account

TOKEN = "admin-test-token-123"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emulator = EmulatorServer(EmulatorConfig(port=0, admin_token=TOKEN, market_step_ms=0))
    emulator.start_in_thread()
    yield emulator
    emulator.stop_thread()
    clear_gateway_cache()


def test_owner_opens_account_on_emulator_from_admin(client: Any, world_a: TenantWorld, server: EmulatorServer,
                                                    settings: Any) -> None:
    settings.EMULATOR_ADMIN_TOKEN = TOKEN
    account = make_account(world_a.tenant, "emu", api_base_url=server.base_url)
    assert aio.run(gateway_for_account(account).validate_connection()) is False  # unknown key so far
    clear_gateway_cache()
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(reverse("admin:exchanges_exchangeaccount_changelist"),
                           {"action": "open_on_emulator", "_selected_action": [account.pk]}, follow=True)
    assert "opened on the emulator" in response.content.decode()
    gateway = gateway_for_account(account)
    assert aio.run(gateway.validate_connection()) is True
    balance = aio.run(gateway.fetch_balance())
    assert balance.free("USDT") == parse_balances(settings.EMULATOR_DEMO_BALANCES)["USDT"]


def test_wrong_token_is_a_clear_error(client: Any, world_a: TenantWorld, server: EmulatorServer,
                                      settings: Any) -> None:
    settings.EMULATOR_ADMIN_TOKEN = "wrong"
    account = make_account(world_a.tenant, "emu", api_base_url=server.base_url)
    client.login(username="a-owner", password=PASSWORD)
    response = client.post(reverse("admin:exchanges_exchangeaccount_changelist"),
                           {"action": "open_on_emulator", "_selected_action": [account.pk]}, follow=True)
    assert "the emulator refused" in response.content.decode()


@pytest.mark.parametrize("text", ["BTC", "btc=1", "BTC=-1", "BTC=abc", "BTC=NaN", "=5"])
def test_malformed_balances_are_rejected(text: str) -> None:
    with pytest.raises(EmulatorRegistrationError, match="ASSET=AMOUNT"):
        parse_balances(text)
