"""The models' choices bind as plain strings do on Postgres (``mmplatform.db_adapters``): the same dumper
classes as ``str``, found by the class itself (psycopg's lookup through the MRO of an unknown class, done again
on every bind, was ~2 % of an engine worker's GIL at active N=1,000), and the same values in the database."""

from __future__ import annotations

import functools

import pytest
from django.db import connection

from bots.models import BotStatus, OrderPurpose, OrderStatus
from mmplatform.db_adapters import cache_statement_parses, register_choice_dumpers
from risk.models import RiskEventType

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="psycopg's adapters: Postgres only")
def test_choices_bind_as_plain_strings_through_their_own_dumpers() -> None:
    from psycopg.adapt import PyFormat

    assert {OrderStatus, OrderPurpose, BotStatus, RiskEventType} <= set(register_choice_dumpers())
    connection.ensure_connection()
    adapters = connection.connection.adapters  # (the connection's map, made from the global one)
    for choices in (OrderStatus, OrderPurpose, BotStatus, RiskEventType):
        for fmt in PyFormat:
            assert adapters._dumpers[fmt].get(choices) is adapters.get_dumper(str, fmt), (choices, fmt)
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text, %s::varchar[]", [OrderStatus.OPEN, [OrderStatus.OPEN, OrderPurpose.QUOTE]])
        assert cursor.fetchone() == ("open", ["open", "quote"])
        cursor.execute("SELECT %s = %s", [OrderStatus.CANCELED, "canceled"])
        assert cursor.fetchone() == (True,)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="psycopg's statement parse cache: Postgres only")
def test_a_statement_of_more_than_fifty_parameters_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement of 60 parameters (a fill sync's booking with the venue's answers passes 50) is split into its
    parts once, then taken from psycopg's cache; the app raised the limits at start (``cache_statement_parses``)."""
    from psycopg import _queries

    assert cache_statement_parses()
    calls: list[bytes] = []
    parse = _queries._query2pg_nocache

    def counted(query: bytes, encoding: str):  # type: ignore[no-untyped-def]
        calls.append(query)
        return parse(query, encoding)

    sql = "SELECT " + ", ".join(f"%s::int AS c{i}" for i in range(60))
    monkeypatch.setattr(_queries, "_query2pg_nocache", counted)
    monkeypatch.setattr(_queries, "_query2pg", functools.lru_cache(counted))  # (a fresh cache: counted from 0)
    with connection.cursor() as cursor:
        for n in range(3):
            cursor.execute(sql, list(range(n, n + 60)))
            assert cursor.fetchone() == tuple(range(n, n + 60))
    assert len(calls) == 1, "parsed on every execution: the statement is over psycopg's cache limits"
