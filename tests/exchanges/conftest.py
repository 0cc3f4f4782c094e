"""Fixtures for the exchange layer: an emulator on a free 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from exchanges_testkit import emulator_config

from exchanges.emulator.server import EmulatorServer


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    """One emulator per test module, served from a background thread."""
    server = EmulatorServer(emulator_config())
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def fresh_emulator() -> Iterator[EmulatorServer]:
    """An emulator of its own, for tests that change faults or global state."""
    server = EmulatorServer(emulator_config())
    server.start_in_thread()
    yield server
    server.stop_thread()
