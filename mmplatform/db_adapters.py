"""Bind the models' choices (``TextChoices`` members, ``str`` subclasses) as fast as plain strings on Postgres.

psycopg finds a value's dumper by its exact class first; a class it does not know is looked up through its
MRO after a ``KeyError`` and the lookup is not kept, so every ``OrderStatus.OPEN`` bound as a parameter (a
row's status and purpose, the open statuses of the engine's reads) took ~2.5 us instead of ~0.2 us, ten times
for a re-quote's two rows: ~2 % of an engine worker's GIL at active N=1,000. Each choices class gets the
dumpers ``str`` has (the same classes: the bound value and its type are unchanged).
"""

from __future__ import annotations

from enum import Enum


def _choices_classes() -> list[type]:
    from django.db import models

    found: list[type] = []
    todo: list[type] = [models.TextChoices]
    while todo:
        sub: type
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return [cls for cls in found if issubclass(cls, str) and issubclass(cls, Enum)]


def register_choice_dumpers() -> list[type]:
    """Register ``str``'s dumpers for every ``TextChoices`` class defined so far (call once the models are
    imported: an app's ``ready``). No-op without psycopg 3. Returns the classes registered."""
    try:
        import psycopg
        from psycopg.adapt import PyFormat
    except ImportError:
        return []
    adapters = psycopg.adapters
    binary = adapters.get_dumper(str, PyFormat.BINARY)
    auto = adapters.get_dumper(str, PyFormat.AUTO)
    classes = _choices_classes()
    for cls in classes:
        adapters.register_dumper(cls, binary)  # (binary and auto) ...
        adapters.register_dumper(cls, auto)  # ... then text and auto: as str has them
    return classes
