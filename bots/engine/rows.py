"""Rows read and written in one statement each on the engine's hot paths (a fill sync, a re-quote).

The ORM spends several round trips on what the engine needs in one: ``bulk_create`` opens a
transaction (BEGIN, a savepoint for the duplicate-id fallback, INSERT, RELEASE, COMMIT) and
``save``/``bulk_update`` write one row per statement or wrap a CASE statement in a transaction. A
re-quote stores two new orders and saves four venue answers; these helpers make that two statements.
And every ORM query is built and compiled to SQL again on each call: ~0.4 ms of CPU for a one-line
filter, as much as its round trip, and a fill sync ran ten of them. The helpers here build each
statement's SQL once per shape (``functools.lru_cache``) and only bind the new values.

* ``insert_orders``: one ``INSERT ... ON CONFLICT (client_order_id) DO NOTHING RETURNING``; a row whose
  client order id exists already is skipped (the stored row wins: a retried cycle never stores or
  sends an order twice).
* ``insert_rows``: one ``INSERT ... RETURNING`` for new rows of one model, their pks set (a sync's Fill
  rows, an event's row; Postgres, elsewhere ``bulk_create``). Both insert several rows on Postgres as one
  array per column (``insert_statement``: ``UNNEST``), so the statement is the same whatever their number.
* ``save_fields`` (Order rows, a position's accounting): one
  ``UPDATE ... FROM (VALUES ...)`` for several rows (Postgres), one ``UPDATE ... WHERE id`` for one row.
* ``select_rows``: model instances of one ``SELECT`` of every column (optionally ``FOR UPDATE``),
  converted as the ORM would (``from_db``, the backend's and the fields' converters).
* ``mark_cancel_pending``: the rows whose cancels leave, CANCEL_PENDING (Postgres: ``= ANY(array)``).
* ``other_bots_open_orders``: the open rows of the account's other bots on a pair, one ``SELECT`` that
  walks the (bot, status) index of each bot linked to the account (the no-self-trade check).
* ``open_rows``: a bot's open rows (of one position), ``select_rows`` on the (bot, status) index.
* ``raise_high_water``: the flush's equity high-water marks, one ``UPDATE ... FROM unnest(...)`` (Postgres).
* ``fence_row``: a cycle's fence alone (a re-quote's number where no other statement carries it).
* ``fence_and_open_rows``: a fill sync's first statement, the cycle's fence and the position's open rows.
* ``fence_and_other_bots``: a re-quote's first statement under the quote guard, the cycle's fence and the
  account's other bots' open rows on the pair.
* ``save_fields_then``: ``save_fields`` as a WITH of another statement (a re-quote's answers and its event).
* ``bots_fingerprint``: one value that moves when anything the driver reads of the running bots does.
(A fill sync's booking statements are in ``bots/engine/booking.py``.)
* ``count_cycles``: the driver's once-a-second bot rows (each quiet bot's cycle count and last cycle
  time), one ``UPDATE ... FROM unnest(...)`` with three parameters whatever the number of bots (Postgres).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.db import connection
from django.db.models import F, Field, Model
from django.utils import timezone

from bots.engine.row_values import insert_params, mark_stored, rows_db_values
from bots.models import OPEN_ORDER_STATUSES, Bot, Order, OrderStatus

M = TypeVar("M", bound=Model)

ACK_FIELDS = ["exchange_order_id", "status", "filled", "average_price", "acknowledged_at", "missing_count",
              "closed_at", "updated_at"]
"""The Order columns an answer of the venue can change."""


def insert_orders(rows: Sequence[Order]) -> list[Order]:
    """Store new Order rows in one statement; returns the rows stored (their pk set), in order. Rows
    whose client order id is already stored are left out and keep ``pk`` None."""
    if not rows:
        return []
    sql, params = insert_statement(rows, "client_order_id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        stored = {client_id: pk for pk, client_id in cursor.fetchall()}
    kept = [row for row in rows if row.client_order_id in stored]
    for row in kept:
        mark_stored(row, stored[row.client_order_id])
    return kept


def other_bots_open_orders(bot_id: int, account_id: int, pair: str) -> list[tuple[str, object, int]]:
    """(side, price, bot id) of the open rows on ``pair`` and the exchange account ``account_id`` of every
    bot linked to that account but ``bot_id`` (run under the quote guard: ``_other_bots_sql``)."""
    with connection.cursor() as cursor:
        cursor.execute(_other_bots_sql(connection.vendor), [account_id, bot_id, account_id, pair])
        return list(cursor.fetchall())


@functools.lru_cache(maxsize=4)
def _other_bots_sql(vendor: str) -> str:
    """The open statuses are written into the SQL as literals, not bound: only then can Postgres's generic plan of
    the prepared statement use the partial index of open rows (``order_open_account_pair``, whose predicate is
    those literals). With them bound, every execution was planned again (a custom plan kept winning): at active
    N=600 (pg_stat_statements) 0.33 ms of planning against 0.18 ms of execution per call, under the guard."""
    quote = connection.ops.quote_name
    link = Bot.exchange_accounts.through._meta
    link_bot = quote(link.get_field("bot").column)
    link_account = quote(link.get_field("exchangeaccount").column)
    statuses = [str(status) for status in OPEN_ORDER_STATUSES]
    assert all(s.isidentifier() for s in statuses)  # code constants (lower-case words): safe as SQL literals
    return (f"SELECT {quote('side')}, {quote('price')}, {quote('bot_id')} FROM {quote(Order._meta.db_table)} "
            f"WHERE {quote('bot_id')} IN (SELECT {link_bot} FROM {quote(link.db_table)} "
            f"WHERE {link_account} = %s AND {link_bot} <> %s) "
            f"AND {quote('status')} IN ({', '.join(repr(s) for s in statuses)}) "
            f"AND {quote('exchange_account_id')} = %s AND {quote('trading_pair')} = %s")


def save_fields(rows: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write ``field_names`` of every row (``updated_at`` stamped now when listed) in one statement. The rows
    are of one model (Order rows on the quoting path; a LiquidityPosition's accounting in a fill sync)."""
    if not rows:
        return
    if connection.vendor == "postgresql" or len(rows) == 1:
        sql, params = save_statement(rows, field_names)  # (one row: the same statement on both databases)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    _stamp(rows, field_names)
    for row in rows:
        row.save(update_fields=list(field_names))


def _stamp(rows: Sequence[Model], field_names: Sequence[str]) -> None:
    """``updated_at`` = now on every row when it is among the fields written (one time for them all)."""
    if "updated_at" in field_names:
        now = timezone.now()
        for row in rows:
            row.updated_at = now  # type: ignore[attr-defined]


def save_fields_then(rows: Sequence[Model], field_names: Sequence[str], statement: str, params: Sequence[Any]
                     ) -> tuple[Any, ...]:
    """``save_fields`` and then ``statement`` (one that returns a row: an INSERT ... RETURNING) in one round trip:
    the UPDATE goes as a data-modifying WITH of the statement (Postgres; elsewhere, two statements). Returns
    the statement's row."""
    if rows and connection.vendor == "postgresql":
        update_sql, update_params = save_statement(rows, field_names)
        statement, params = f"WITH saved AS ({update_sql}) {statement}", [*update_params, *params]
    else:
        save_fields(rows, field_names)
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))
        return tuple(cursor.fetchone())


def save_statement(rows: Sequence[Model], field_names: Sequence[str]) -> tuple[str, list[Any]]:
    """``save_fields``'s one statement and its parameters (one row on any database, several on Postgres;
    ``updated_at`` stamped now when listed)."""
    _stamp(rows, field_names)
    model = type(rows[0])
    names = tuple(field_names)
    vendor = connection.vendor
    if len(rows) == 1:
        return _update_one_sql(model, names, vendor), rows_db_values(rows, names, pk_first=False)
    return _update_many_sql(model, names, len(rows), vendor), rows_db_values(rows, names, pk_first=True)


@functools.lru_cache(maxsize=64)
def _update_many_sql(model: type[Model], field_names: tuple[str, ...], count: int, vendor: str) -> str:
    """Postgres: ``count`` rows' ``field_names`` from one ``VALUES`` list of (id, values...)."""
    fields = [cast(Field, model._meta.get_field(name)) for name in field_names]
    quote = connection.ops.quote_name
    one = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    columns = ", ".join(["id", *(f"c{i}" for i in range(len(fields)))])
    assignments = ", ".join(f"{quote(str(f.column))} = v.c{i}::{f.db_type(connection)}" for i, f in enumerate(fields))
    table = quote(model._meta.db_table)
    return (f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([one] * count)}) AS v({columns}) "
            f"WHERE {table}.{quote('id')} = v.id::bigint")


@functools.lru_cache(maxsize=64)
def _update_one_sql(model: type[Model], field_names: tuple[str, ...], vendor: str) -> str:
    quote = connection.ops.quote_name
    columns = [str(cast(Field, model._meta.get_field(name)).column) for name in field_names]
    return (f"UPDATE {quote(model._meta.db_table)} SET {', '.join(f'{quote(c)} = %s' for c in columns)} "
            f"WHERE {quote('id')} = %s")


Converter = Callable[[Any, Any, Any], Any]


@functools.lru_cache(maxsize=64)
def _select_sql(model: type[Model], where: str, order_by: str, for_update: bool, vendor: str
                ) -> tuple[str, tuple[str, ...], tuple[tuple[int, tuple[Converter, ...], Any], ...]]:
    """The SELECT of every concrete column of ``model``, the attribute names in column order and, per column
    that has any, the converters the ORM's compiler would apply (the backend's, then the field's)."""
    meta = model._meta
    quote = connection.ops.quote_name
    fields = list(meta.concrete_fields)
    sql = (f"SELECT {', '.join(quote(str(f.column)) for f in fields)} FROM {quote(meta.db_table)} WHERE {where}"
           + (f" ORDER BY {order_by}" if order_by else "")
           + (" FOR UPDATE" if for_update and connection.features.has_select_for_update else ""))
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(meta.db_table)
        found = tuple(connection.ops.get_db_converters(col)) + tuple(col.get_db_converters(connection))
        if found:
            converters.append((index, found, col))
    return sql, tuple(f.attname for f in fields), tuple(converters)


def select_rows(model: type[M], where: str, params: Sequence[Any], *, order_by: str = "",
                for_update: bool = False) -> list[M]:
    """``model``'s rows matching ``where`` (SQL over its columns, ``%s`` placeholders bound to ``params``),
    as the ORM would hand them out, without building and compiling a query on each call."""
    sql, names, converters = _select_sql(model, where, order_by, for_update, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        rows: Iterable[Sequence[Any]] = cursor.fetchall()
    if converters:
        rows = [_converted(row, converters) for row in rows]
    return [model.from_db(connection.alias, list(names), row) for row in rows]


def _converted(row: Sequence[Any], converters: tuple[tuple[int, tuple[Converter, ...], Any], ...]) -> list[Any]:
    values = list(row)
    for index, functions, col in converters:
        value = values[index]
        for function in functions:
            value = function(value, col, connection)
        values[index] = value
    return values


def rows_by_exchange_ids(bot_id: int, account_id: int, exchange_ids: Iterable[str]) -> list[Order]:
    """The bot's Order rows on the account with these exchange order ids (a REST trade read's orders: one
    statement with an array on Postgres, whatever the number of ids; the ORM's queryset was ~1 % of an engine
    worker's GIL at active N=800)."""
    ids = list(exchange_ids)
    if connection.vendor != "postgresql":
        return list(Order.objects.filter(bot_id=bot_id, exchange_account_id=account_id, exchange_order_id__in=ids))
    return select_rows(Order, "bot_id = %s AND exchange_account_id = %s AND exchange_order_id = ANY(%s)",
                       [bot_id, account_id, ids])


def mark_cancel_pending(pks: Sequence[int]) -> None:
    """The Order rows ``pks`` are CANCEL_PENDING (their cancels are about to leave), in one statement."""
    if not pks:
        return
    if connection.vendor != "postgresql":
        Order.objects.filter(pk__in=list(pks)).update(status=OrderStatus.CANCEL_PENDING)
        return
    with connection.cursor() as cursor:
        cursor.execute(_CANCEL_PENDING_SQL, [str(OrderStatus.CANCEL_PENDING), list(pks)])


_CANCEL_PENDING_SQL = f"UPDATE {Order._meta.db_table} SET status = %s WHERE id = ANY(%s)"


OPEN_WHERE = f"bot_id = %s AND status IN ({', '.join(['%s'] * len(OPEN_ORDER_STATUSES))})"
"""A bot's open rows (``Order.status`` in ``OPEN_ORDER_STATUSES``): the (bot, status) index."""


def open_rows(bot_id: int, position_id: int | None = None) -> list[Order]:
    """The bot's open Order rows (of one position), oldest first."""
    if position_id is None:
        return select_rows(Order, OPEN_WHERE, [bot_id, *OPEN_ORDER_STATUSES], order_by="id")
    return select_rows(Order, OPEN_WHERE + " AND position_id = %s", [bot_id, *OPEN_ORDER_STATUSES, position_id],
                       order_by="id")


@functools.lru_cache(maxsize=4)
def fence_sql(vendor: str) -> str:
    """A cycle's number and fence (``bots.engine.cycle.begin_fenced_cycle``): ``cycle_count`` + 1 and
    ``last_cycle_started_at`` (parameters: the time, the bot's id), returning the new count, the epoch, the status
    and the bot's and its tenant's kill switches."""
    from mmplatform.tenancy.models import Tenant

    quote = connection.ops.quote_name
    table, tenants = quote(Bot._meta.db_table), quote(Tenant._meta.db_table)
    return (f"UPDATE {table} SET cycle_count = cycle_count + 1, last_cycle_started_at = %s WHERE id = %s "
            f"RETURNING cycle_count, epoch, status, kill_switch_engaged, "
            f"(SELECT t.kill_switch_engaged FROM {tenants} t WHERE t.id = {table}.tenant_id)")


def fence_row(bot_id: int, now: Any) -> tuple[Any, ...] | None:
    """The cycle's fence alone (``fence_sql``, one statement): its row, None when the bot is gone."""
    with connection.cursor() as cursor:
        cursor.execute(fence_sql(connection.vendor), [now, bot_id])
        fence = cursor.fetchone()
    return tuple(fence) if fence else None


def fence_and_other_bots(bot_id: int, now: Any, account_id: int,
                          pair: str) -> tuple[tuple[Any, ...] | None, list[tuple[str, object, int]]]:
    """A re-quote's fence (``fence_sql``) and the account's other bots' open rows on ``pair``
    (``other_bots_open_orders``) in one round trip on Postgres (two elsewhere), run under the quote guard: (the
    fence's row, None when the bot is gone; (side, price, bot id) of each other bot's open row)."""
    if connection.vendor != "postgresql":
        fence = fence_row(bot_id, now)
        return (fence, other_bots_open_orders(bot_id, account_id, pair)) if fence else (None, [])
    sql = (f"WITH f AS ({fence_sql(connection.vendor)}) SELECT f.*, o.* FROM f "
           f"LEFT JOIN ({_other_bots_sql(connection.vendor)}) o ON TRUE")
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, bot_id, account_id, bot_id, account_id, pair])
        found = cursor.fetchall()
    if not found:
        return None, []
    width = len(found[0]) - 3
    return tuple(found[0][:width]), [(side, price, other) for *_, side, price, other in found if other is not None]


def fence_and_open_rows(bot_id: int, now: Any, position_id: int) -> tuple[tuple[Any, ...] | None, list[Order]]:
    """A fill sync's first statement: the cycle's fence (``fence_sql``) and the position's open rows
    (``open_rows``) in one round trip on Postgres (two elsewhere). (The fence's row, None when the bot is gone;
    the rows, oldest first.)"""
    if connection.vendor != "postgresql":
        fence = fence_row(bot_id, now)
        return (fence, open_rows(bot_id, position_id)) if fence else (None, [])
    select, names, converters = _select_sql(Order, OPEN_WHERE + " AND position_id = %s", "", False, connection.vendor)
    quote = connection.ops.quote_name
    sql = (f"WITH f AS ({fence_sql(connection.vendor)}) SELECT f.*, o.* FROM f LEFT JOIN ({select}) o ON TRUE "
           f"ORDER BY o.{quote('id')}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, bot_id, bot_id, *OPEN_ORDER_STATUSES, position_id])
        found = cursor.fetchall()
    if not found:
        return None, []
    width = len(found[0]) - len(names)
    pk_at = names.index("id")
    orders: list[Order] = []
    for row in found:
        values: Sequence[Any] = row[width:]
        if values[pk_at] is None:
            continue  # no open row: the fence's row alone
        if converters:
            values = _converted(values, converters)
        orders.append(Order.from_db(connection.alias, list(names), values))
    return tuple(found[0][:width]), orders


def raise_high_water(values: dict[int, Decimal]) -> None:
    """Each bot's ``equity_high_water_quote`` to its value where that is higher (never lowered), in one
    statement on Postgres (the driver's flush: one ORM update per bot was 11 % of its thread at calm N=1,500)."""
    if not values:
        return
    if connection.vendor != "postgresql":
        for bot_id, value in values.items():
            Bot.objects.filter(pk=bot_id, equity_high_water_quote__lt=value).update(equity_high_water_quote=value)
        return
    table = Bot._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET equity_high_water_quote = v.value FROM unnest(%s::bigint[], %s::numeric[]) "
            f"AS v(id, value) WHERE {table}.id = v.id AND {table}.equity_high_water_quote < v.value",
            [list(values), list(values.values())])


def insert_rows(rows: Sequence[Model]) -> None:
    """Store new rows of one model in one ``INSERT ... RETURNING`` and set their pks, as ``bulk_create`` does
    (Postgres; elsewhere ``bulk_create`` itself). The SQL is built once per model and row count."""
    if not rows:
        return
    model = type(rows[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(rows)
        return
    sql, params = insert_statement(rows)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pks = [pk for (pk,) in cursor.fetchall()]
    for row, pk in zip(rows, pks, strict=True):  # RETURNING gives the VALUES' order (bulk_create relies on it too)
        mark_stored(row, pk)


def insert_statement(rows: Sequence[Model], skip_conflicts_on: str = "") -> tuple[str, list[Any]]:
    """The ``INSERT`` of new ``rows`` of one model and its parameters (``_insert_sql``). Several rows on Postgres:
    one array per column, unnested (``_unnest_insert_sql``): the statement and its parameter count stay the same
    whatever the number of rows. With one placeholder per value, two Order rows were 52 parameters, past the 50
    up to which psycopg caches its parsing of a statement (``MAX_CACHED_STATEMENT_PARAMS``): re-parsing the
    statement of every re-quote's orders and of each batch of performance snapshots was ~3 % of an engine
    worker's GIL at active N=1,000."""
    model = type(rows[0])
    if len(rows) > 1 and connection.vendor == "postgresql":
        unnested = _unnest_insert_sql(model, skip_conflicts_on)
        if unnested is not None:
            sql, fields = unnested
            flat = insert_params(rows, fields)
            width = len(fields)
            return sql, [flat[column::width] for column in range(width)]
    sql, fields = _insert_sql(model, len(rows), connection.vendor, skip_conflicts_on)
    return sql, insert_params(rows, fields)


@functools.lru_cache(maxsize=64)
def _unnest_insert_sql(model: type[Model], skip_conflicts_on: str = "") -> tuple[str, list[Field]] | None:
    """``_insert_sql`` for any number of rows on Postgres: ``INSERT ... SELECT * FROM UNNEST(%s::type[], ...)``,
    one typed array per column (as Django's ``bulk_create`` does on Postgres: the rows come back in the arrays'
    order). None where a column cannot go in an array as Django decides it (a field that builds its own
    placeholder, a type the backend does not name)."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    if any(hasattr(f, "get_placeholder") or (cast(Any, f).target_field if f.is_relation else f).get_internal_type()
           not in connection.data_types for f in fields):
        return None
    quote = connection.ops.quote_name
    arrays = ", ".join(f"%s::{str(f.db_type(connection)).split('(')[0]}[]" for f in fields)
    returning = quote(str(meta.pk.column)) + (f", {quote(skip_conflicts_on)}" if skip_conflicts_on else "")
    conflict = f"ON CONFLICT ({quote(skip_conflicts_on)}) DO NOTHING " if skip_conflicts_on else ""
    return (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)}) "
            f"SELECT * FROM UNNEST({arrays}) {conflict}RETURNING {returning}"), fields


@functools.lru_cache(maxsize=64)
def _insert_sql(model: type[Model], count: int, vendor: str, skip_conflicts_on: str = "") -> tuple[str, list[Field]]:
    """``INSERT`` of ``count`` rows of every concrete column but the pk, returning the pk (and
    ``skip_conflicts_on``, a unique column whose existing value makes a row be skipped: ``ON CONFLICT DO
    NOTHING``); the fields in column order."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    returning = quote(str(meta.pk.column)) + (f", {quote(skip_conflicts_on)}" if skip_conflicts_on else "")
    conflict = f"ON CONFLICT ({quote(skip_conflicts_on)}) DO NOTHING " if skip_conflicts_on else ""
    return (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)}) "
            f"VALUES {', '.join([one] * count)} {conflict}RETURNING {returning}"), fields


def count_cycles(counts: dict[int, list[int]], now: Any) -> None:
    """The flush's bot rows: ``cycle_count`` += n and ``last_cycle_finished_at`` = now for the bots of each
    n. On Postgres one statement with three parameters whatever the number of bots (the ORM's
    ``pk__in`` list puts one placeholder per bot into the SQL, which psycopg parses again on every
    flush: ~8 % of the driver thread at calm N=1,500); elsewhere one ORM update per n."""
    if not counts:
        return
    if connection.vendor != "postgresql":
        for n, ids in counts.items():
            Bot.objects.filter(pk__in=ids).update(cycle_count=F("cycle_count") + n, last_cycle_finished_at=now)
        return
    ids = [pk for pks in counts.values() for pk in pks]
    adds = [n for n, pks in counts.items() for _ in pks]
    quote = connection.ops.quote_name
    table = quote(Bot._meta.db_table)
    sql = (f"UPDATE {table} SET {quote('cycle_count')} = {table}.{quote('cycle_count')} + v.n, "
           f"{quote('last_cycle_finished_at')} = %s "
           f"FROM unnest(%s::bigint[], %s::integer[]) AS v(id, n) WHERE {table}.{quote('id')} = v.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, ids, adds])


class StatementCounter:
    """A database execute wrapper (``connection.execute_wrappers``) counting the statements it lets through."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        self.n += 1
        return execute(sql, params, many, context)


_FINGERPRINTED = ("id", "epoch", "status", "monitoring_interval_secs", "error_recovery_delay_secs", "updated_at",
                  "kill_switch_engaged", "daily_pnl_baseline_quote")


def bots_fingerprint(statuses: Sequence[str]) -> str:
    """One value that changes whenever anything the engine driver reads of the bots in ``statuses`` changes
    (``ShardsMixin._refresh_bots``: each bot's lifecycle columns, its tenant's kill switch, its first exchange
    account), computed by the database: the driver reads every such bot only when it moved, instead of
    parsing a thousand rows a second per process to find that nothing did."""
    from mmplatform.tenancy.models import Tenant

    quote = connection.ops.quote_name
    table, tenants = quote(Bot._meta.db_table), quote(Tenant._meta.db_table)
    links = quote(Bot.exchange_accounts.through._meta.db_table)
    cast = "::text" if connection.vendor == "postgresql" else ""
    parts = [f"COALESCE(b.{quote(name)}{cast}, '-')" for name in _FINGERPRINTED]
    parts.append(f"COALESCE(t.{quote('kill_switch_engaged')}{cast}, '-')")
    parts.append(f"COALESCE((SELECT MIN(l.{quote('exchangeaccount_id')}) FROM {links} l "
                 f"WHERE l.{quote('bot_id')} = b.{quote('id')}){cast}, '-')")
    row_text = " || ',' || ".join(parts)
    marks = ", ".join(["%s"] * len(statuses))
    source = (f"FROM {table} b JOIN {tenants} t ON t.{quote('id')} = b.{quote('tenant_id')} "
              f"WHERE b.{quote('status')} IN ({marks})")
    if connection.vendor == "postgresql":
        aggregated = f"STRING_AGG({row_text}, ';' ORDER BY b.{quote('id')})"
        sql = f"SELECT COUNT(*)::text || ':' || MD5(COALESCE({aggregated}, '')) {source}"
    else:  # SQLite: its rows in id order, hashed here
        sql = f"SELECT GROUP_CONCAT(r, ';') FROM (SELECT {row_text} AS r {source} ORDER BY b.{quote('id')})"
    with connection.cursor() as cursor:
        cursor.execute(sql, list(statuses))
        row = cursor.fetchone()
    value = str(row[0] or "") if row else ""
    if connection.vendor != "postgresql":
        import hashlib

        value = hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()
    return value
