"""Order rows written in one statement each on the quoting path.

The ORM spends several round trips on what the engine needs in one: ``bulk_create`` opens a
transaction (BEGIN, a savepoint for the duplicate-id fallback, INSERT, RELEASE, COMMIT) and
``save``/``bulk_update`` write one row per statement or wrap a CASE statement in a transaction. A
re-quote stores two new orders and saves four venue answers; these helpers make that two statements.

* ``insert_orders``: one ``INSERT ... ON CONFLICT (client_order_id) DO NOTHING RETURNING``; a row whose
  client order id exists already is skipped (the stored row wins: a retried cycle never stores or
  sends an order twice).
* ``save_order_fields``: one ``UPDATE ... FROM (VALUES ...)`` for any number of rows (Postgres); other
  databases save row by row.
* ``other_bots_open_orders``: the open rows of the account's other bots on a pair, one ``SELECT`` that
  walks the (bot, status) index of each bot linked to the account (the no-self-trade check).
* ``count_cycles``: the driver's once-a-second bot rows (each quiet bot's cycle count and last cycle
  time), one ``UPDATE ... FROM unnest(...)`` with three parameters whatever the number of bots (Postgres).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.db import connection
from django.db.models import F, Field
from django.utils import timezone

from bots.models import OPEN_ORDER_STATUSES, Bot, Order

ACK_FIELDS = ["exchange_order_id", "status", "filled", "average_price", "acknowledged_at", "missing_count",
              "closed_at", "updated_at"]
"""The Order columns an answer of the venue can change."""


def insert_orders(rows: Sequence[Order]) -> list[Order]:
    """Store new Order rows in one statement; returns the rows stored (their pk set), in order. Rows
    whose client order id is already stored are left out and keep ``pk`` None."""
    if not rows:
        return []
    meta = Order._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    params: list[Any] = []
    for row in rows:
        params.extend(f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)}) "
           f"VALUES {', '.join([one] * len(rows))} "
           f"ON CONFLICT ({quote('client_order_id')}) DO NOTHING "
           f"RETURNING {quote('id')}, {quote('client_order_id')}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        stored = {client_id: pk for pk, client_id in cursor.fetchall()}
    kept = []
    for row in rows:
        pk = stored.get(row.client_order_id)
        if pk is None:
            continue
        row.pk = pk
        row._state.adding = False
        row._state.db = connection.alias
        kept.append(row)
    return kept


def other_bots_open_orders(bot_id: int, account_id: int, pair: str) -> list[tuple[str, object, int]]:
    """(side, price, bot id) of the open rows on ``pair`` and the exchange account ``account_id`` of every
    bot linked to that account but ``bot_id``."""
    quote = connection.ops.quote_name
    link = Bot.exchange_accounts.through._meta
    link_bot = quote(link.get_field("bot").column)
    link_account = quote(link.get_field("exchangeaccount").column)
    statuses = [str(status) for status in OPEN_ORDER_STATUSES]
    sql = (f"SELECT {quote('side')}, {quote('price')}, {quote('bot_id')} FROM {quote(Order._meta.db_table)} "
           f"WHERE {quote('bot_id')} IN (SELECT {link_bot} FROM {quote(link.db_table)} "
           f"WHERE {link_account} = %s AND {link_bot} <> %s) "
           f"AND {quote('status')} IN ({', '.join(['%s'] * len(statuses))}) "
           f"AND {quote('exchange_account_id')} = %s AND {quote('trading_pair')} = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [account_id, bot_id, *statuses, account_id, pair])
        return list(cursor.fetchall())


def save_order_fields(rows: Sequence[Order], field_names: Sequence[str]) -> None:
    """Write ``field_names`` of every row (``updated_at`` stamped now when listed) in one statement."""
    if not rows:
        return
    if "updated_at" in field_names:
        now = timezone.now()
        for row in rows:
            row.updated_at = now
    if len(rows) == 1 or connection.vendor != "postgresql":
        for row in rows:
            row.save(update_fields=list(field_names))
        return
    meta = Order._meta
    fields = [cast(Field, meta.get_field(name)) for name in field_names]  # concrete columns only
    quote = connection.ops.quote_name
    params: list[Any] = []
    for row in rows:
        params.append(row.pk)
        params.extend(f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields)
    one = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    columns = ", ".join(["id", *(f"c{i}" for i in range(len(fields)))])
    assignments = ", ".join(f"{quote(str(f.column))} = v.c{i}::{f.db_type(connection)}" for i, f in enumerate(fields))
    table = quote(meta.db_table)
    sql = (f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([one] * len(rows))}) AS v({columns}) "
           f"WHERE {table}.{quote('id')} = v.id::bigint")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
