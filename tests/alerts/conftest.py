"""Fixtures of the alerts suite: the engine's emulator fixtures (tests/bots/conftest.py)."""

from tests.bots.conftest import frozen_emulator  # noqa: F401  (fixture re-exported for this directory)
