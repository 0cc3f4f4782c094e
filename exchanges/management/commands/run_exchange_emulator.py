"""Run the local Binance-compatible exchange emulator (same options as ``python -m exchanges.emulator``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchanges.emulator.cli import ArgumentError, add_arguments, config_from_options, run


class Command(BaseCommand):
    help = "Run the local exchange emulator (matching engine, synthetic market, Binance spot REST API)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = config_from_options(options)
        except ArgumentError as error:
            raise CommandError(str(error)) from None
        code = run(config, announce=lambda line: self.stdout.write(line))
        if code:  # the reason was already printed as one line
            raise SystemExit(code)
