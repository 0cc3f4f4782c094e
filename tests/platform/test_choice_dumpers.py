"""The models' choices bind as plain strings do on Postgres (``mmplatform.db_adapters``): the same dumper
classes as ``str``, found by the class itself (psycopg's lookup through the MRO of an unknown class, done again
on every bind, was ~2 % of an engine worker's GIL at active N=1,000), and the same values in the database."""

from __future__ import annotations

import pytest
from django.db import connection

from bots.models import BotStatus, OrderPurpose, OrderStatus
from mmplatform.db_adapters import register_choice_dumpers
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
