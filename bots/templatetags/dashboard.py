"""Template filters of the dashboard: the same number formatting as ``bots.wire`` (and live.js's
``MM.dec`` / ``MM.money``), so a rendered number and a live-updated one look alike."""

from __future__ import annotations

from typing import Any

from django import template

from bots import wire

register = template.Library()


@register.filter
def dec(value: Any, places: Any = None) -> str:
    """An exact decimal without exponent notation or trailing zeros (``0E-12`` -> ``0``);
    ``|dec:4`` fixes four decimals."""
    return wire.format_decimal(value, int(places) if places not in (None, "") else None)


@register.filter
def money(value: Any) -> str:
    """Quote-currency money: ``-1,234.50``."""
    return wire.format_money(value)


@register.filter
def percent(value: Any, places: Any = 1) -> str:
    """A ratio as a percentage: ``0.128`` -> ``12.8 %``."""
    return wire.format_percent(value, int(places))


@register.filter
def raw_json(value: Any) -> str:
    """A payload as the event log's "raw" view shows it (the layout of JSON.stringify(x, null, 1))."""
    import json

    return json.dumps(value, indent=1, ensure_ascii=False)
