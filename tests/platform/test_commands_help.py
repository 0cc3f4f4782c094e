"""Every option of every project management command says what it does and what its default is."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand

ROOT = Path(__file__).resolve().parents[2]


def project_commands() -> list[tuple[str, str]]:
    """(app, command) of the commands defined in this repository (not Django's or a library's)."""
    from django.apps import apps

    found = []
    for name, app in sorted(get_commands().items()):
        config = next((c for c in apps.get_app_configs() if c.name == app), None)
        if config is not None and Path(config.path).resolve().is_relative_to(ROOT) and ".venv" not in config.path:
            found.append((app, name))
    return found


BASE_OPTIONS = {action.dest for action in BaseCommand().create_parser("manage.py", "base")._actions}


def test_the_project_commands_are_found() -> None:
    names = {name for _, name in project_commands()}
    assert {"run_platform", "run_exchange_emulator", "simulate_as", "rotate_credential_keys"} <= names


@pytest.mark.parametrize(("app", "name"), project_commands())
def test_every_option_has_help_showing_its_default(app: str, name: str) -> None:
    command = load_command_class(app, name)
    assert (command.help or "").strip(), f"{name} has no description"
    parser = command.create_parser("manage.py", name)
    problems = []
    for action in parser._actions:
        if action.dest in BASE_OPTIONS or action.help == argparse.SUPPRESS:
            continue
        option = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip():
            problems.append(f"{option}: no help text")
            continue
        shown = action.help % {**vars(action), "prog": parser.prog}
        if "default" not in shown.lower():
            problems.append(f"{option}: the help does not say the default ({shown!r})")
        elif action.default not in (None, False, [], "") and str(action.default) not in shown:
            problems.append(f"{option}: the help does not show the default {action.default!r} ({shown!r})")
    assert not problems, f"manage.py {name}:\n" + "\n".join(problems)
