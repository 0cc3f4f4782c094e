"""Bind the models' choices (``TextChoices`` members, ``str`` subclasses) as fast as plain strings on Postgres.

psycopg finds a value's dumper by its exact class first; a class it does not know is looked up through its
MRO after a ``KeyError`` and the lookup is not kept, so every ``OrderStatus.OPEN`` bound as a parameter (a
row's status and purpose, the open statuses of the engine's reads) took ~2.5 us instead of ~0.2 us, ten times
for a re-quote's two rows: ~2 % of an engine worker's GIL at active N=1,000. Each choices class gets the
dumpers ``str`` has (the same classes: the bound value and its type are unchanged).

psycopg also parses a statement's text (its ``%s`` placeholders) once and keeps the parse (an LRU of 128), but only
for statements of at most 50 parameters and 4 KB: a longer one was split by regular expression on every execution
(~137 us for 60 parameters against ~12 us from the cache, on this machine). The engine's statements are built once
per shape (``bots.engine.booking._booking_sql``, the rows' INSERTs) and a fill sync's booking with the venue's
answers passes 50 parameters, so the limits are raised (``cache_statement_parses``).
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


STATEMENT_PARSE_MAX_PARAMS = 1000
"""Statements with up to this many parameters have their parse kept by psycopg (its default: 50)."""
STATEMENT_PARSE_MAX_BYTES = 32_768
"""... and up to this length (its default: 4,096 bytes)."""


def cache_statement_parses() -> bool:
    """Raise psycopg's limits for keeping a statement's parse (``psycopg._queries``; its cache stays an LRU of
    128 entries, so a statement of a rare shape only takes a slot until hotter ones push it out). False when
    psycopg 3 is absent or no longer has these limits (then nothing changes)."""
    try:
        from psycopg import _queries
    except ImportError:
        return False
    if not (hasattr(_queries, "MAX_CACHED_STATEMENT_PARAMS") and hasattr(_queries, "MAX_CACHED_STATEMENT_LENGTH")):
        return False
    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, STATEMENT_PARSE_MAX_PARAMS)
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, STATEMENT_PARSE_MAX_BYTES)
    return True
