"""Run the local exchange emulator (same options as ``python -m exchanges.emulator``): Binance, OKX or Bybit
REST (``--venue``) over one matching engine."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchanges.emulator.cli import ArgumentError, add_arguments, config_from_options, run


class Command(BaseCommand):
    help = "Run the local exchange emulator (matching engine, synthetic market; Binance, OKX or Bybit spot REST)."

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
