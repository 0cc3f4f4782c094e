"""A model's values as the ORM binds them, for the engine's one-statement writes (``bots/engine/rows.py``,
``booking.py``, ``bots/events.py``): ``insert_params`` (every column of new rows, ``pre_save`` first), ``db_values``
(some fields' values), ``rows_db_values`` (some fields of several rows), without Django's per-field calls where they
would hand a value back unchanged (``_value_plan``), and ``mark_stored`` (what ``save`` leaves on an instance)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import Field, Model


def insert_params(rows: Sequence[Model], fields: list[Field]) -> list[Any]:
    """The parameters of new ``rows``' ``fields`` (``pre_save`` first: auto_now columns are stamped), as the ORM
    would bind them (``get_db_prep_save``, skipped where it would hand a value back unchanged: ``_value_plan``)."""
    conn = connections[DEFAULT_DB_ALIAS]
    plan = _value_plan(tuple(fields), conn.vendor)
    params: list[Any] = []
    append = params.append
    for row in rows:
        for field, attname, same, stamped in plan:
            value = field.pre_save(row, True) if stamped else getattr(row, attname)
            append(value if same(value) else field.get_db_prep_save(value, conn))
    return params


def db_values(model: type[Model], names: tuple[str, ...], values: Sequence[Any]) -> list[Any]:
    """``values`` as the ORM binds them for ``model``'s fields ``names`` (in order), the connection and the plan
    looked up once per call, by model and field names (a lookup per value, the connection handler's per-thread
    lookup and the hash of the field, was most of the cost before)."""
    conn = connections[DEFAULT_DB_ALIAS]
    return [value if same(value) else field.get_db_prep_save(value, conn)
            for (field, _, same, _), value in zip(_named_plan(model, names, conn.vendor), values, strict=True)]


def rows_db_values(rows: Sequence[Model], names: tuple[str, ...], *, pk_first: bool) -> list[Any]:
    """``db_values`` of ``names`` of each of ``rows`` (their model's fields), one row after the other, each row's pk
    before (``pk_first``) or after its values: ``rows.save_statement``'s parameters."""
    conn = connections[DEFAULT_DB_ALIAS]
    plan = _named_plan(type(rows[0]), names, conn.vendor)
    params: list[Any] = []
    append = params.append
    for row in rows:
        if pk_first:
            append(row.pk)
        for field, attname, same, _ in plan:
            value = getattr(row, attname)
            append(value if same(value) else field.get_db_prep_save(value, conn))
        if not pk_first:
            append(row.pk)
    return params


@functools.lru_cache(maxsize=256)
def _named_plan(model: type[Model], names: tuple[str, ...], vendor: str
                ) -> tuple[tuple[Field, str, Callable[[Any], bool], bool], ...]:
    """``_value_plan`` of ``model``'s fields ``names`` (a key of strings: cheaper to hash than the fields)."""
    return _value_plan(tuple(cast(Field, model._meta.get_field(name)) for name in names), vendor)


def _is_str(value: Any) -> bool:
    return value is None or type(value) is str


def _is_int(value: Any) -> bool:
    return value is None or type(value) is int


def _is_bool(value: Any) -> bool:
    return value is None or type(value) is bool


def _is_finite_decimal(value: Any) -> bool:
    return value is None or (type(value) is Decimal and value.is_finite())


def _is_aware_datetime(value: Any) -> bool:
    return value is None or (type(value) is datetime and value.tzinfo is not None)


def _never(value: Any) -> bool:
    return False


_UNCHANGED: dict[type[Field], Callable[[Any], bool]] = {
    models.CharField: _is_str, models.TextField: _is_str,
    models.IntegerField: _is_int, models.BigIntegerField: _is_int, models.SmallIntegerField: _is_int,
    models.PositiveIntegerField: _is_int, models.PositiveBigIntegerField: _is_int,
    models.PositiveSmallIntegerField: _is_int, models.ForeignKey: _is_int,
    models.BooleanField: _is_bool, models.DecimalField: _is_finite_decimal, models.DateTimeField: _is_aware_datetime,
}
"""On Postgres, values of these types pass Django's ``get_db_prep_save`` of these exact field classes unchanged
(``to_python`` of a str, an int, a bool, a finite Decimal gives it back; an aware datetime and a decimal are not
adapted by the backend). A foreign key's value is its target's integer pk."""


@functools.lru_cache(maxsize=256)
def _value_plan(fields: tuple[Field, ...], vendor: str) -> tuple[tuple[Field, str, Callable[[Any], bool], bool], ...]:
    """Per field: (field, attname, whether a value passes unchanged, whether ``pre_save`` stamps it). The ORM's
    per-value path (``get_db_prep_save``: the field's conversions and the backend's, each through the connection
    proxy) was ~10 % of a pool cycle's CPU in a profile of the engine's fill syncs and re-quotes; values of the
    plain types skip it (elsewhere than Postgres, or without time zones, every value takes it)."""
    postgres = vendor == "postgresql" and settings.USE_TZ
    plan = []
    for field in fields:
        same = _UNCHANGED.get(type(field), _never) if postgres else _never
        stamped = isinstance(field, models.DateTimeField) and bool(field.auto_now or field.auto_now_add)
        plan.append((field, field.attname, same, stamped))
    return tuple(plan)


def mark_stored(row: Model, pk: Any) -> None:
    """The row is in the database now, under ``pk`` (what ``save`` leaves on an instance)."""
    row.pk = pk
    row._state.adding = False
    row._state.db = connection.alias
