"""The test session is offline (``mmplatform.network_guard``, installed by tests/conftest.py in pytest and
by ``mmplatform.test_settings`` in every process a test starts): a path that reaches for a real venue, in
this process or in a worker, is refused and named (host, process, the caller's stack), and fails the test
it ran in; this machine (loopback, the test servers) stays reachable."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest

from bots.engine.gateways import gateway_for_account
from exchanges.registry import clear_gateway_cache
from mmplatform import aio
from mmplatform.errors import ExchangeError
from mmplatform.network_guard import NetworkRefusedError
from tests.conftest import make_account
from tests.processes import ROOT, process_env


@pytest.mark.django_db
def test_an_account_on_the_real_venue_is_refused_and_its_caller_named(world_a: Any, network_refusals: Any) -> None:
    """An exchange account without ``api_base_url`` is the real Binance: its gateway's first request is
    refused, and the refusal names the host and the gateway call that asked."""
    account = make_account(world_a.tenant, "real", api_base_url="")
    try:
        with pytest.raises(ExchangeError):
            aio.run(gateway_for_account(account).load_markets())
    finally:
        clear_gateway_cache()
    refusals = network_refusals()
    assert refusals and {r["host"] for r in refusals} == {"resolve 'api.binance.com'"}
    assert all("exchanges/ccxt_gateway.py" in r["stack"] and "load_markets" in r["stack"] for r in refusals)


def test_a_process_a_test_starts_is_offline_too_and_reports_here(network_refusals: Any) -> None:
    code = ("import django, socket; django.setup()\n"
            "try:\n    socket.create_connection(('example.com', 443), timeout=5)\n"
            "except ConnectionRefusedError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=process_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: resolve 'example.com'" in done.stdout
    refusals = network_refusals()
    assert [r["host"] for r in refusals] == ["resolve 'example.com'"]
    assert refusals[0]["pid"] != __import__("os").getpid() and "<string>" in refusals[0]["stack"]


def test_this_machine_stays_reachable(network_refusals: Any) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        for host in ("127.0.0.1", "localhost"):
            socket.create_connection((host, server.getsockname()[1]), timeout=5).close()
    with socket.socket() as client, pytest.raises(NetworkRefusedError):
        client.connect(("203.0.113.7", 443))  # an address: no name to resolve, the connect is refused
    assert [r["host"] for r in network_refusals()] == ["connect to 203.0.113.7:443"]
