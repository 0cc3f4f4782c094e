"""Fixtures of the liquidity (SLA) tests: the engine's emulator fixtures."""

from tests.bots.conftest import emulator, frozen_emulator  # noqa: F401  (fixtures re-exported for this directory)
