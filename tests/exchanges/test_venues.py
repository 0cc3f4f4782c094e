"""The venue registry: client-id encodings, passphrase rules, and nothing venue-specific outside
``exchanges/venues/`` (the gateway, the streams and the engine speak ccxt's unified API only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import ccxt
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from exchanges_testkit import ADMIN_TOKEN, emulator_config

from exchanges.ccxt_config import config_for
from exchanges.emulator.server import EmulatorServer
from exchanges.models import ExchangeAccount
from exchanges.services import emulator_open_account
from exchanges.venues import SUPPORTED_EXCHANGE_IDS, VENUES, ClientIdError, get_venue
from tests.conftest import PASSWORD, TenantWorld

ROOT = Path(__file__).resolve().parents[2]

ENGINE_IDS = ["mm-1-0-0-1b0", "mm-12345-7-981234-42s3", "mm-9-3-12-7r0", "t0x1234"]
PLATFORM_IDS = [*ENGINE_IDS, "a.b:c/d_e-f", "YZ-yz_Y-Z", "Z", "ZA", "x" * 30]


def test_the_registry_lists_binance_okx_bybit():
    assert SUPPORTED_EXCHANGE_IDS == ("binance", "okx", "bybit")
    assert get_venue("okx").requires_passphrase and not get_venue("bybit").requires_passphrase
    assert get_venue("binance").cancel_replace is not None
    assert get_venue("okx").cancel_replace is None and get_venue("bybit").cancel_replace is None
    with pytest.raises(KeyError, match="unsupported exchange 'kraken'"):
        get_venue("kraken")


@pytest.mark.parametrize("exchange_id", SUPPORTED_EXCHANGE_IDS)
@pytest.mark.parametrize("cid", PLATFORM_IDS)
def test_client_ids_round_trip_within_the_venue_rules(exchange_id, cid):
    rules = VENUES[exchange_id].client_ids
    wire = rules.encode(cid)
    assert re.fullmatch(rules.pattern, wire) and len(wire) <= rules.max_length
    assert rules.decode(wire) == cid


def test_okx_ids_are_alphanumeric_and_engine_ids_keep_their_length():
    rules = get_venue("okx").client_ids
    assert rules.encode("mm-12-3-456-7b0") == "mmY12Y3Y456Y7b0"
    assert rules.encode("a.b") == "aZAb" and rules.encode("Yz") == "ZFz"
    with pytest.raises(ClientIdError, match="32 characters"):
        rules.encode("mm-" + "1" * 30)  # 33 characters: OKX refuses, Binance would take it
    assert get_venue("binance").client_ids.encode("mm-" + "1" * 30) == "mm-" + "1" * 30
    assert rules.decode(None) is None and rules.decode("") is None
    assert rules.decode("manual123") == "manual123"  # an id typed on the venue comes back as it is


def test_bybit_ids_keep_dashes_and_escape_the_rest():
    rules = get_venue("bybit").client_ids
    assert rules.encode("mm-12-3-456-7b0") == "mm-12-3-456-7b0"
    assert rules.encode("a.b") == "aZAb"
    with pytest.raises(ClientIdError):
        rules.encode("bad id with spaces")


# --- the account model ------------------------------------------------------------------------------


def test_okx_credentials_need_a_passphrase_that_is_stored_encrypted(settings):
    account = ExchangeAccount(label="okx", exchange_id="okx")
    with pytest.raises(ValidationError) as info:
        account.set_credentials(api_key="k", api_secret="s")
    assert "passphrase" in info.value.message_dict and account.api_key_encrypted == ""  # nothing half-set
    account.set_credentials(api_key="k", api_secret="s", passphrase="pass-PHRASE-1")
    assert "pass-PHRASE-1" not in account.passphrase_encrypted and account.passphrase_encrypted
    assert account.credentials().passphrase == "pass-PHRASE-1"
    account.clean()
    binance = ExchangeAccount(label="b", exchange_id="binance")
    with pytest.raises(ValidationError, match="no passphrase"):
        binance.set_credentials(api_key="k", api_secret="s", passphrase="p")
    binance.set_credentials(api_key="k", api_secret="s")
    binance.exchange_id = "okx"  # moved to a venue that signs with a passphrase, without one
    with pytest.raises(ValidationError) as info:
        binance.clean()
    assert "exchange_id" in info.value.message_dict


def test_admin_refuses_an_okx_account_without_passphrase(client: Any, world_a: TenantWorld) -> None:
    client.login(username="a-owner", password=PASSWORD)
    form = {"tenant": world_a.tenant.pk, "label": "okx-1", "exchange_id": "okx", "rate_limit_per_sec": "10",
            "api_key": "k" * 10, "api_secret": "s" * 10}
    response = client.post(reverse("admin:exchanges_exchangeaccount_add"), form)
    assert response.status_code == 200
    assert "passphrase" in response.context["adminform"].form.errors
    assert not ExchangeAccount.objects.filter(label="okx-1").exists()
    response = client.post(reverse("admin:exchanges_exchangeaccount_add"), {**form, "passphrase": "Phrase-1"})
    assert response.status_code == 302
    assert ExchangeAccount.objects.get(label="okx-1").credentials().passphrase == "Phrase-1"


# --- nothing venue-specific outside the registry -------------------------------------------------------

VENUE_NEUTRAL_FILES = [
    "exchanges/ccxt_gateway.py", "exchanges/streams.py", "exchanges/gateway.py", "exchanges/registry.py",
    "exchanges/ccxt_config.py",
    "exchanges/models.py", "exchanges/services.py",
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "bots/engine").glob("*.py")),
]
VENUE_WORDS = re.compile(
    r"binance|okx|bybit|kraken|coinbase|newClientOrderId|origClientOrderId|cancelOrigClientOrderId|cancelReplaceMode"
    r"|fromId|clOrdId|orderLinkId|instId|X-MBX|OK-ACCESS|X-BAPI", re.IGNORECASE)
ALLOWED = {
    # the historical names of the default venue's configs (tests and benchmarks import them)
    ("exchanges/ccxt_config.py", "from exchanges.venues import binance as _default_venue"),
    ("exchanges/ccxt_config.py", "def binance_config_for("),
    ("exchanges/ccxt_config.py", "def binance_stream_config_for("),
    ("exchanges/ccxt_config.py", '__all__ = ["binance_config_for", "binance_stream_config_for"'),
    ("bots/engine/orders.py", "in Binance's alphabet"),
}


def test_nothing_venue_specific_outside_the_registry():
    found = []
    for name in VENUE_NEUTRAL_FILES:
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if VENUE_WORDS.search(line) and not any(name == f and text in line for f, text in ALLOWED):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []


def test_opening_an_okx_account_on_the_emulator_registers_its_passphrase(world_a: TenantWorld, settings) -> None:
    server = EmulatorServer(emulator_config(venue="okx", accounts=()))
    server.start_in_thread()
    try:
        settings.EMULATOR_ADMIN_TOKEN = ADMIN_TOKEN
        settings.EMULATOR_DEMO_BALANCES = "USDT=1000"
        account = ExchangeAccount(tenant=world_a.tenant, label="okx-demo", exchange_id="okx",
                                  api_base_url=server.base_url)
        account.set_credentials(api_key="okx-key", api_secret="okx-secret", passphrase="okx-Phrase")
        account.save()
        emulator_open_account(account=account)
        exchange = ccxt.okx(config_for("okx", server.base_url, "okx-key", "okx-secret", "okx-Phrase"))
        assert exchange.fetch_balance()["USDT"]["free"] == 1000
        with pytest.raises(ccxt.AuthenticationError):
            ccxt.okx(config_for("okx", server.base_url, "okx-key", "okx-secret", "other")).fetch_balance()
    finally:
        server.stop_thread()
