"""A fill sync's booking: a position's accounting columns, which of an account's trades are booked already, and
the one statement that stores new fills (and their events) with the position's new accounting.

* ``ACCOUNTING_FIELDS``, ``account_of``, ``accounting_columns``: the ``LiquidityPosition`` columns that mirror
  ``bots.accounting.PositionAccount``, read into one and written from one.
* ``booked_trade_ids`` / ``booked_fills``: which trades of an account are booked already, and the fills of given
  orders (Postgres: ``= ANY(array)``, one statement whatever the number of ids); ``owing_positions``: the other
  bots' positions with a trade of a pair's shared safety read unbooked (``bots/engine/trade_marks.py``);
  ``settle_filled_orders``: orders whose booked fills add up to more than they show.
* ``book_fills_if_unchanged``: the Fill rows, their events and the position's new accounting in one statement, a
  compare-and-set on the accounting the engine holds (Postgres, outside a transaction); the caller books under
  the row's lock when it answers False (``bots.engine.fills.FillSyncMixin._book``).

Like ``bots/engine/rows.py``, each statement's SQL is built once per shape.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.db import IntegrityError, connection
from django.db.models import Field, Model, Q, Sum
from django.utils import timezone

from bots.accounting import PositionAccount
from bots.engine.market_data import AccountView
from bots.engine.row_values import insert_params, mark_stored
from bots.engine.rows import save_statement
from bots.models import OPEN_ORDER_STATUSES, Fill, LiquidityPosition, Order, OrderStatus
from exchanges.gateway import Trade

ACCOUNTING_FIELDS = ("base_position", "cost_basis_quote", "realised_pnl_quote", "fees_paid_quote", "volume_quote",
                     "fill_count")
"""LiquidityPosition columns that mirror bots.accounting.PositionAccount (``average_cost`` is derived)."""


@dataclass(frozen=True)
class Booking:
    """A reconciled pair whose trades are to be read and booked (``FillSyncMixin.book_position``)."""

    position: LiquidityPosition
    view: AccountView | None
    safety_read: bool  # the periodic REST read of the trades is due
    mark_ms: int | None = None  # the pair's check mark (a live order stream: ``trade_marks.TradeSyncState``)
    owed_ms: int | None = None  # another bot's check found a trade of the position unbooked: read from here


def account_of(row: LiquidityPosition) -> PositionAccount:
    """The accounting a position row (or the engine's copy of it) holds."""
    return PositionAccount(**{name: getattr(row, name) for name in ACCOUNTING_FIELDS})


def accounting_columns(account: PositionAccount, with_average: bool = False) -> dict[str, Any]:
    """The position's accounting columns as ``account`` has them (and the derived average cost)."""
    values = {name: getattr(account, name) for name in ACCOUNTING_FIELDS}
    if with_average:
        values["average_cost"] = account.average_cost
    return values


def booked_trade_ids(account_id: int, trade_ids: Sequence[str]) -> set[str]:
    """Which of the exchange account's trades ``trade_ids`` have a Fill row already."""
    if not trade_ids:
        return set()
    if connection.vendor != "postgresql":
        return set(Fill.objects.filter(exchange_account_id=account_id, exchange_trade_id__in=trade_ids)
                   .values_list("exchange_trade_id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(_BOOKED_SQL, [account_id, list(trade_ids)])
        return {trade_id for (trade_id,) in cursor.fetchall()}


_BOOKED_SQL = (f"SELECT exchange_trade_id FROM {Fill._meta.db_table} WHERE"
               " exchange_account_id = %s AND exchange_trade_id = ANY(%s)")
_FILLS_SQL = (f"SELECT order_id, exchange_trade_id, amount FROM {Fill._meta.db_table} "
              "WHERE order_id = ANY(%s) OR (exchange_account_id = %s AND exchange_trade_id = ANY(%s))")


def owing_positions(bot_id: int, account_id: int, trades: Sequence[Trade], before_ms: int) -> set[int]:
    """The positions of the account's other bots that owe a REST read of their trades: one of ``trades`` (a REST
    read of one pair) made before ``before_ms`` is of an order of theirs and has no Fill row. One statement on
    Postgres whatever the number of trades."""
    judged = [t for t in trades if t.timestamp_ms < before_ms and t.exchange_order_id]
    if not judged:
        return set()
    if connection.vendor != "postgresql":
        booked = booked_trade_ids(account_id, [t.trade_id for t in judged])
        unbooked = {t.exchange_order_id for t in judged if t.trade_id not in booked}
        return set(Order.objects.filter(exchange_account_id=account_id, exchange_order_id__in=list(unbooked),
                                        position_id__isnull=False).exclude(bot_id=bot_id)
                   .values_list("position_id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(_OWING_SQL, [[t.exchange_order_id for t in judged], [t.trade_id for t in judged],
                                    account_id, bot_id, account_id])
        return {position_id for (position_id,) in cursor.fetchall()}


_OWING_SQL = (f"SELECT DISTINCT o.position_id FROM {Order._meta.db_table} o"
              " JOIN unnest(%s::text[], %s::text[]) AS t(order_id, trade_id) ON o.exchange_order_id = t.order_id"
              " WHERE o.exchange_account_id = %s AND o.bot_id <> %s AND o.position_id IS NOT NULL AND NOT EXISTS"
              f" (SELECT 1 FROM {Fill._meta.db_table} f WHERE f.exchange_account_id = %s"
              " AND f.exchange_trade_id = t.trade_id)")


def settle_filled_orders(order_ids: set[int]) -> list[Order]:
    """The orders ``order_ids`` whose Fill rows add up to more than their ``filled``: that much filled now (FILLED
    at their amount, else PARTIALLY_FILLED), saved; returns them."""
    if not order_ids:
        return []
    totals = dict(Fill.objects.filter(order_id__in=order_ids).values("order_id").annotate(
        total=Sum("amount")).values_list("order_id", "total"))
    updated = []
    for order in Order.objects.filter(pk__in=order_ids):
        total = totals.get(order.pk) or Decimal(0)
        if total <= order.filled:
            continue
        order.filled = min(total, order.amount)
        fields = ["filled", "updated_at"]
        if order.filled >= order.amount and order.status in OPEN_ORDER_STATUSES:
            order.status = OrderStatus.FILLED
            order.closed_at = timezone.now()
            fields += ["status", "closed_at"]
        elif order.status == OrderStatus.OPEN:
            order.status = OrderStatus.PARTIALLY_FILLED
            fields.append("status")
        order.save(update_fields=fields)
        updated.append(order)
    return updated


def booked_fills(order_ids: Sequence[int], account_id: int, trade_ids: Sequence[str]
                 ) -> list[tuple[int | None, str, Decimal]]:
    """(order id, trade id, amount) of every Fill row of the orders ``order_ids`` and of the exchange account's
    trades ``trade_ids``."""
    if not order_ids and not trade_ids:
        return []
    if connection.vendor != "postgresql":
        return list(Fill.objects.filter(
            Q(order_id__in=list(order_ids)) | Q(exchange_account_id=account_id, exchange_trade_id__in=list(trade_ids))
        ).values_list("order_id", "exchange_trade_id", "amount"))
    with connection.cursor() as cursor:
        cursor.execute(_FILLS_SQL, [list(order_ids), account_id, list(trade_ids)])
        return list(cursor.fetchall())



def book_fills_if_unchanged(position: LiquidityPosition, before: dict[str, Any], after: dict[str, Any],
                            fills: Sequence[Fill], sync_ms: int | None = None, events: Sequence[Model] = (),
                            also_save: tuple[Sequence[Model], Sequence[str]] | None = None) -> bool:
    """Store ``fills`` and move the position's accounting columns from ``before`` to ``after`` (and its
    ``last_trade_sync_ms`` up to ``sync_ms`` when given) in one statement, only if the row still holds
    ``before``: a compare-and-set instead of BEGIN, the row's lock, the booked-trades check, the INSERT, the
    UPDATE and COMMIT (six round trips). The fills are inserted only when the row matched, and a fill booked
    already (the account's unique trade id) fails the whole statement, so either everything is written or
    nothing. ``events``: rows of another model (the fills' ``OrderFilled`` events) stored with them, and only
    with them; ``also_save``: (rows, fields) saved as ``rows.save_fields`` would, with them too (a fill sync's
    venue answers). True: written; the fills' and events' pks and the position's stored values are set. False:
    nothing written (the row moved: another booking, an edit; or a trade is booked already; or not Postgres, or inside a
    transaction, where a failed statement would break it): the caller books under the row's lock."""
    if not fills or connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    compared, assigned = tuple(before), tuple(after)
    event_model = type(events[0]) if events else None
    sql, select, fill_fields, event_fields, returned = _booking_sql(
        compared, assigned, sync_ms is not None, len(fills), event_model, len(events))
    params: list[Any] = [*after.values(), *([sync_ms] if sync_ms is not None else []), position.pk,
                         *before.values(), *insert_params(fills, fill_fields), *insert_params(events, event_fields)]
    if also_save is not None and also_save[0]:  # (both forms of the UPDATE end with their WHERE clause)
        saved_sql, saved_params = save_statement(*also_save)
        sql += f", saved AS ({saved_sql} AND EXISTS (SELECT 1 FROM pos))"
        params += saved_params
    sql += select
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    except IntegrityError:  # a trade of these booked meanwhile: nothing was written
        return False
    if not rows:
        return False
    width = len(returned)
    for name, value in zip(returned, rows[0][:width], strict=True):  # (then the fill's id and trade id)
        setattr(position, name, value)
    pks = {row[width + 1]: row[width] for row in rows}
    for fill in fills:
        mark_stored(fill, pks[fill.exchange_trade_id])
    if events:  # their ids in the VALUES' order, as RETURNING gives them (insert_rows relies on it too)
        for event, pk in zip(events, rows[0][width + 2], strict=True):
            mark_stored(event, pk)
    return True


@functools.lru_cache(maxsize=64)
def _booking_sql(compared: tuple[str, ...], assigned: tuple[str, ...], with_sync: bool, count: int,
                 event_model: type[Model] | None = None, event_count: int = 0
                 ) -> tuple[str, str, list[Field], list[Field], tuple[str, ...]]:
    """``book_fills_if_unchanged``'s statement: the position's UPDATE ... WHERE its columns ``compared`` hold
    the old values, RETURNING the stored ones; the fills' (and the events') INSERT ... SELECT from typed VALUES
    when the UPDATE matched; one result row per fill (none when the row did not match), each with the events'
    ids as an array (in the VALUES' order). As (the WITH part, the final SELECT): more can go between."""
    quote = connection.ops.quote_name
    meta = LiquidityPosition._meta
    column = {name: str(cast(Field, meta.get_field(name)).column) for name in (*compared, *assigned)}
    sets = [f"{quote(column[name])} = %s" for name in assigned]
    returned = [*assigned]
    if with_sync:
        sync = quote(str(cast(Field, meta.get_field("last_trade_sync_ms")).column))
        sets.append(f"{sync} = GREATEST({sync}, %s)")
        returned.append("last_trade_sync_ms")
    table = quote(meta.db_table)

    def inserted(model: type[Model], rows: int, returning: str) -> tuple[str, list[Field]]:
        """INSERT ... SELECT from typed VALUES, only when the position's UPDATE matched."""
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        one = "(" + ", ".join(f"%s::{f.db_type(connection)}" for f in fields) + ")"
        names = ", ".join(quote(str(f.column)) for f in fields)
        return (f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT * FROM (VALUES "
                f"{', '.join([one] * rows)}) AS v({names}) WHERE EXISTS (SELECT 1 FROM pos) "
                f"RETURNING {returning}"), fields

    fills_sql, fields = inserted(Fill, count, f"{quote('id')}, {quote('exchange_trade_id')}")
    sql = (f"WITH pos AS (UPDATE {table} SET {', '.join(sets)} WHERE {quote('id')} = %s AND "
           + " AND ".join(f"{quote(column[name])} = %s" for name in compared)
           + f" RETURNING {', '.join(quote(str(cast(Field, meta.get_field(n)).column)) for n in returned)}), "
           f"ins AS ({fills_sql})")
    event_fields: list[Field] = []
    if event_model is not None and event_count:
        events_sql, event_fields = inserted(event_model, event_count, quote("id"))
        sql += f", ev AS ({events_sql})"
        select = (f" SELECT pos.*, ins.*, (SELECT ARRAY_AGG({quote('id')} ORDER BY {quote('id')}) FROM ev) "
                  "FROM pos CROSS JOIN ins")
    else:
        select = " SELECT pos.*, ins.*, NULL FROM pos CROSS JOIN ins"
    return sql, select, fields, event_fields, tuple(returned)


