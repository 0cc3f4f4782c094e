"""The hot paths' statements without the ORM's query building (bots/engine/rows.py): each gives exactly what the
ORM gives for the same rows, in one statement, on Postgres and on SQLite (CI runs both)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from bots.engine.booking import ACCOUNTING_FIELDS, book_fills_if_unchanged, booked_fills, booked_trade_ids
from bots.engine.rows import (
    OPEN_WHERE,
    bots_fingerprint,
    fence_and_open_rows,
    insert_orders,
    insert_rows,
    mark_cancel_pending,
    open_rows,
    raise_high_water,
    save_fields,
    select_rows,
)
from bots.events import event_row
from bots.models import (
    OPEN_ORDER_STATUSES,
    Bot,
    BotEvent,
    BotEventType,
    BotStatus,
    Fill,
    LiquidityPosition,
    Order,
    OrderStatus,
)
from tests.conftest import TenantWorld, make_account

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)
AT = datetime(2026, 12, 5, 12, 30, 15, 123456, tzinfo=UTC)


def columns(row: Any) -> dict[str, Any]:
    """Every concrete column's value and type, as the instance holds it."""
    return {f.attname: (getattr(row, f.attname), type(getattr(row, f.attname))) for f in row._meta.concrete_fields}


@pytest.fixture
def position(world_a: TenantWorld) -> LiquidityPosition:
    return LiquidityPosition.objects.create(
        tenant=world_a.tenant, bot=world_a.bot, exchange_account=world_a.account, trading_pair="BTC/USDT",
        base_position=Decimal("0.60000001"), cost_basis_quote=Decimal("60.3"), realised_pnl_quote=Decimal("-1.25"),
        fees_paid_quote=Decimal("0.06"), volume_quote=Decimal("60.3"), fill_count=2)


def order(world: TenantWorld, position: LiquidityPosition | None, status: str, **fields: Any) -> Order:
    return Order.objects.create(
        tenant=world.tenant, bot=world.bot, position=position, exchange_account=world.account,
        trading_pair="BTC/USDT", client_order_id=f"mm-rows-{next(_ids)}", side="buy", price=Decimal("100.01"),
        amount=Decimal("0.12345678"), status=status, **fields)


def fill(world: TenantWorld, position: LiquidityPosition, of: Order | None, trade_id: str) -> Fill:
    return Fill(tenant=world.tenant, bot=world.bot, order=of, position=position, exchange_account=world.account,
                exchange_trade_id=trade_id, trading_pair="BTC/USDT", side="sell", price=Decimal("100.5"),
                amount=Decimal("0.3"), fee=Decimal("0.0003"), fee_currency="BTC", fee_quote=Decimal("0.03015"),
                is_maker=True, mid_at_fill=None, executed_at=AT)


def test_select_rows_gives_what_the_orm_gives_in_one_statement(world_a: TenantWorld,
                                                              position: LiquidityPosition) -> None:
    """Open rows of the bot (of one position), oldest first: the same instances, value and type of every
    column (decimals, times, nulls, booleans), as the ORM's query; closed rows and another bot's are not listed."""
    from tests.conftest import make_bot

    other = LiquidityPosition.objects.create(tenant=world_a.tenant, bot=world_a.bot, exchange_account=world_a.account,
                                             trading_pair="ETH/USDT")
    rows = [
        order(world_a, position, OrderStatus.OPEN, exchange_order_id="X1", filled=Decimal("0.1"),
              average_price=Decimal("100.01"), acknowledged_at=AT, post_only=False, level=2),
        order(world_a, position, OrderStatus.PENDING),
        order(world_a, other, OrderStatus.PARTIALLY_FILLED, filled=Decimal("0.00000001")),
        order(world_a, None, OrderStatus.CANCEL_PENDING, error="timeout"),
        order(world_a, position, OrderStatus.FILLED, closed_at=AT + timedelta(seconds=1)),
    ]
    someone_else = make_bot(world_a.tenant, world_a.account, name="rows-other")
    Order.objects.create(tenant=world_a.tenant, bot=someone_else, exchange_account=world_a.account,
                         trading_pair="BTC/USDT", client_order_id="mm-rows-other", side="sell",
                         price=Decimal("101"), amount=Decimal("1"), status=OrderStatus.OPEN)

    orm_all = list(Order.objects.filter(bot=world_a.bot, status__in=OPEN_ORDER_STATUSES).order_by("pk"))
    orm_one = list(Order.objects.filter(bot=world_a.bot, status__in=OPEN_ORDER_STATUSES, position=position)
                   .order_by("pk"))
    with CaptureQueriesContext(connection) as queries:
        raw_all = select_rows(Order, OPEN_WHERE, [world_a.bot.pk, *OPEN_ORDER_STATUSES], order_by="id")
        raw_one = select_rows(Order, OPEN_WHERE + " AND position_id = %s",
                              [world_a.bot.pk, *OPEN_ORDER_STATUSES, position.pk], order_by="id")
    assert len(queries) == 2
    assert [o.pk for o in open_rows(world_a.bot.pk)] == [o.pk for o in raw_all]
    assert [o.pk for o in open_rows(world_a.bot.pk, position.pk)] == [o.pk for o in raw_one]
    assert [o.pk for o in raw_all] == [o.pk for o in rows[:4]]
    assert [o.pk for o in raw_one] == [rows[0].pk, rows[1].pk]
    assert [columns(o) for o in raw_all] == [columns(o) for o in orm_all]
    assert [columns(o) for o in raw_one] == [columns(o) for o in orm_one]
    assert all(not o._state.adding and o._state.db == "default" for o in raw_all)
    assert raw_all[0].acknowledged_at == AT and raw_all[0].filled == Decimal("0.1")

    with transaction.atomic():
        locked = select_rows(LiquidityPosition, "id = %s", [position.pk], for_update=True)
    assert [columns(p) for p in locked] == [columns(LiquidityPosition.objects.get(pk=position.pk))]
    assert select_rows(LiquidityPosition, "id = %s", [0]) == []


def test_save_fields_writes_one_row_in_one_statement_and_several_in_one(world_a: TenantWorld,
                                                                             position: LiquidityPosition) -> None:
    """One row (an acknowledgement, a position's accounting): one UPDATE of the listed columns only; several
    rows: one statement on Postgres. ``updated_at`` is stamped when listed."""
    first, second = order(world_a, position, OrderStatus.PENDING), order(world_a, position, OrderStatus.PENDING)
    first.status, first.exchange_order_id, first.acknowledged_at = OrderStatus.OPEN, "E1", AT
    first.price = Decimal("1")  # not listed: not written
    with CaptureQueriesContext(connection) as queries:
        save_fields([first], ["status", "exchange_order_id", "acknowledged_at", "updated_at"])
    assert len(queries) == 1
    stored = Order.objects.get(pk=first.pk)
    assert (stored.status, stored.exchange_order_id, stored.acknowledged_at, stored.price) == (
        OrderStatus.OPEN, "E1", AT, Decimal("100.01"))
    assert stored.updated_at == first.updated_at

    position.base_position, position.realised_pnl_quote, position.fill_count = Decimal("-0.5"), Decimal("2.5"), 3
    position.trading_pair = "not written"
    save_fields([position], ["base_position", "realised_pnl_quote", "fill_count"])
    again = LiquidityPosition.objects.get(pk=position.pk)
    assert (again.base_position, again.realised_pnl_quote, again.fill_count, again.trading_pair) == (
        Decimal("-0.5"), Decimal("2.5"), 3, "BTC/USDT")

    first.filled, second.filled = Decimal("0.01"), Decimal("0.02")
    with CaptureQueriesContext(connection) as queries:
        save_fields([first, second], ["filled"])
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert list(Order.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk").values_list("filled", flat=True)) \
        == [Decimal("0.01"), Decimal("0.02")]

    third = order(world_a, position, OrderStatus.OPEN)
    with CaptureQueriesContext(connection) as queries:
        mark_cancel_pending([first.pk, third.pk])
        mark_cancel_pending([])
    assert len(queries) == 1
    assert dict(Order.objects.filter(pk__in=[first.pk, second.pk, third.pk]).values_list("pk", "status")) == {
        first.pk: OrderStatus.CANCEL_PENDING, second.pk: OrderStatus.PENDING, third.pk: OrderStatus.CANCEL_PENDING}


def test_save_fields_then_saves_the_rows_and_runs_the_statement_in_one_round_trip(
        world_a: TenantWorld, position: LiquidityPosition) -> None:
    """A re-quote's venue answers and its OrdersAdjusted summary: the rows' UPDATE as a WITH of the event's upsert,
    one statement on Postgres whatever the number of rows (none, one, several); the statement's row comes back."""
    from bots.events import publish_routine_with_saved

    first, second = order(world_a, position, OrderStatus.PENDING), order(world_a, position, OrderStatus.PENDING)
    for rows in ([], [first], [first, second]):
        for n, row in enumerate(rows):
            row.status, row.exchange_order_id = OrderStatus.OPEN, f"E{n}-{len(rows)}"
        with CaptureQueriesContext(connection) as queries:
            event = publish_routine_with_saved(
                bot=world_a.bot, event_type=BotEventType.ORDERS_ADJUSTED, rows=rows,
                fields=["status", "exchange_order_id", "updated_at"],
                payload={"trading_pair": "BTC/USDT", "new_order_count": len(rows), "cancelled": 1, "kept": 0})
        if connection.vendor == "postgresql":
            assert len(queries) == 1
        for row in rows:
            assert Order.objects.filter(pk=row.pk, status=OrderStatus.OPEN,
                                        exchange_order_id=row.exchange_order_id).exists()
    summary = BotEvent.objects.get(bot=world_a.bot, event_type=BotEventType.ORDERS_ADJUSTED)
    assert summary.pk == event.pk and summary.occurrences == event.occurrences == 3
    assert summary.payload["totals"] == {"new_order_count": 3, "cancelled": 3, "kept": 0}


def test_insert_rows_sets_their_pks_and_the_booked_reads_find_them(world_a: TenantWorld,
                                                                  position: LiquidityPosition) -> None:
    """New fills in one statement (Postgres) with their pks set (the hedges refer to them); the stored rows are
    what the ORM reads back; a trade booked twice is refused; the booked reads find fills by trade and by order."""
    of = order(world_a, position, OrderStatus.OPEN)
    rows = [fill(world_a, position, of, "T-1"), fill(world_a, position, None, "T-2")]
    with CaptureQueriesContext(connection) as queries:
        insert_rows(rows)
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert all(r.pk is not None and not r._state.adding for r in rows)
    assert [columns(r) for r in rows] == [columns(Fill.objects.get(pk=r.pk)) for r in rows]

    assert booked_trade_ids(world_a.account.pk, ["T-1", "T-2", "T-3"]) == {"T-1", "T-2"}
    assert booked_trade_ids(world_a.account.pk, []) == set()
    assert sorted(booked_fills([of.pk], world_a.account.pk, [])) == [(of.pk, "T-1", Decimal("0.3"))]
    assert sorted(booked_fills([], world_a.account.pk, ["T-2", "T-9"])) == [(None, "T-2", Decimal("0.3"))]
    assert sorted(booked_fills([of.pk], world_a.account.pk, ["T-2"]), key=str) == sorted(
        [(of.pk, "T-1", Decimal("0.3")), (None, "T-2", Decimal("0.3"))], key=str)
    assert booked_fills([], world_a.account.pk, []) == []

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows([fill(world_a, position, of, "T-1")])
    assert Fill.objects.filter(exchange_trade_id="T-1").count() == 1


def test_several_rows_go_as_one_array_per_column_whatever_their_number(world_a: TenantWorld,
                                                                       position: LiquidityPosition) -> None:
    """Several rows (Postgres): the same statement for 2 and 5 rows, one parameter per column (under the 50 up to
    which psycopg caches a statement's parsing), the rows stored in their order with what they hold, JSON
    payloads and NULLs included; one row keeps its plain VALUES."""
    from bots.engine.rows import insert_statement

    def events(count: int) -> list[BotEvent]:
        return [event_row(bot=world_a.bot, event_type=BotEventType.ORDER_FILLED,
                          payload={"n": n, "price": "100.5", "nested": {"ok": [1, None]}}) for n in range(count)]

    two, five = events(2), events(5)
    if connection.vendor == "postgresql":
        width = len([f for f in BotEvent._meta.concrete_fields if not f.primary_key])
        (sql_two, params_two), (sql_five, params_five) = insert_statement(two), insert_statement(five)
        assert sql_two == sql_five and "UNNEST" in sql_two
        assert len(params_two) == len(params_five) == width <= 50
        assert "UNNEST" not in insert_statement(events(1))[0]
    insert_rows(two)
    insert_rows(five)
    stored = {e.pk: e for e in BotEvent.objects.filter(pk__in=[e.pk for e in two + five])}
    assert [stored[e.pk].payload["n"] for e in two + five] == [0, 1, 0, 1, 2, 3, 4]
    assert all(stored[e.pk].payload["nested"] == {"ok": [1, None]} for e in two + five)
    assert [{k: v for k, (v, _) in columns(e).items()} for e in five] == [  # (the instances keep their enum members)
        {k: v for k, (v, _) in columns(stored[e.pk]).items()} for e in five]


def test_fence_and_open_rows_numbers_the_cycle_and_reads_the_positions_open_rows_in_one_statement(
        world_a: TenantWorld, position: LiquidityPosition) -> None:
    """A fill sync's first statement: the fence's row (``begin_fenced_cycle``'s) and exactly the rows ``open_rows``
    gives, oldest first (one statement on Postgres); the fence alone when nothing is open; nothing for a bot that
    is gone."""
    bot = world_a.bot
    count = Bot.objects.get(pk=bot.pk).cycle_count
    assert fence_and_open_rows(bot.pk, AT, position.pk) == ((count + 1, bot.epoch, bot.status, False, False), [])
    rows = [order(world_a, position, status) for status in (OrderStatus.OPEN, OrderStatus.FILLED,
                                                            OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCEL_PENDING)]
    other = LiquidityPosition.objects.create(tenant=world_a.tenant, bot=bot, exchange_account=world_a.account,
                                             trading_pair="ETH/USDT")
    order(world_a, other, OrderStatus.OPEN)
    with CaptureQueriesContext(connection) as queries:
        fence, found = fence_and_open_rows(bot.pk, AT, position.pk)
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert fence == (count + 2, bot.epoch, bot.status, False, False)
    stored = Bot.objects.get(pk=bot.pk)
    assert stored.cycle_count == count + 2 and stored.last_cycle_started_at == AT
    expected = open_rows(bot.pk, position.pk)
    assert [r.pk for r in expected] == [r.pk for r in rows if r.status != OrderStatus.FILLED]
    assert [columns(r) for r in found] == [columns(r) for r in expected]
    type(world_a.tenant).objects.filter(pk=world_a.tenant.pk).update(kill_switch_engaged=True)
    assert fence_and_open_rows(bot.pk, AT, position.pk)[0][-1] is True
    assert fence_and_open_rows(bot.pk + 10_000, AT, position.pk) == (None, [])


def test_raise_high_water_only_raises_in_one_statement(world_a: TenantWorld) -> None:
    """The driver's flush of the equity high-water marks: a bot's mark moves only up; one statement (Postgres)."""
    from bots.models import Bot
    from tests.conftest import make_bot

    low, high = world_a.bot, make_bot(world_a.tenant, world_a.account, name="rows-high")
    Bot.objects.filter(pk=low.pk).update(equity_high_water_quote=Decimal("100"))
    Bot.objects.filter(pk=high.pk).update(equity_high_water_quote=Decimal("500"))
    with CaptureQueriesContext(connection) as queries:
        raise_high_water({low.pk: Decimal("150.12345678"), high.pk: Decimal("400")})
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert dict(Bot.objects.filter(pk__in=[low.pk, high.pk]).values_list("pk", "equity_high_water_quote")) == {
        low.pk: Decimal("150.12345678"), high.pk: Decimal("500")}


def test_insert_orders_stores_new_rows_in_one_statement_and_skips_a_stored_client_id(
        world_a: TenantWorld, position: LiquidityPosition) -> None:
    """A retried cycle's order (its client order id stored already) is left out with pk None, the stored row
    untouched; the new rows are stored with their pks, in one statement on both databases."""
    stored = order(world_a, position, OrderStatus.OPEN)

    def new(client_id: str, price: str) -> Order:
        return Order(tenant=world_a.tenant, bot=world_a.bot, position=position, exchange_account=world_a.account,
                     trading_pair="BTC/USDT", client_order_id=client_id, side="sell", price=Decimal(price),
                     amount=Decimal("0.5"), status=OrderStatus.PENDING)

    rows = [new("mm-rows-new-1", "101"), new(stored.client_order_id, "999"), new("mm-rows-new-2", "102")]
    with CaptureQueriesContext(connection) as queries:
        kept = insert_orders(rows)
    assert len(queries) == 1
    assert kept == [rows[0], rows[2]] and rows[1].pk is None
    assert all(r.pk is not None and not r._state.adding for r in kept)
    # (the instances keep the choices' enum members they were made with; the values are what was stored)
    assert [{k: v for k, (v, _) in columns(r).items()} for r in kept] == [
        {k: v for k, (v, _) in columns(Order.objects.get(pk=r.pk)).items()} for r in kept]
    assert Order.objects.get(pk=stored.pk).price == Decimal("100.01")


ACCOUNTING = ACCOUNTING_FIELDS


def accounting(row: LiquidityPosition) -> dict[str, Any]:
    return {name: getattr(row, name) for name in ACCOUNTING}


@pytest.mark.django_db(transaction=True)  # the statement runs outside a transaction, as a fill sync's does
def test_book_fills_if_unchanged_writes_everything_in_one_statement_or_nothing(world_a: TenantWorld,
                                                                               position: LiquidityPosition) -> None:
    """A fill sync's booking as a compare-and-set (Postgres): the fills, their events and the position's new
    accounting in one statement when the row holds the values the engine booked last; nothing at all when the row
    moved or a trade of the batch is booked already (the caller then books under the row's lock); never inside a
    transaction."""
    of = order(world_a, position, OrderStatus.OPEN)
    before = accounting(position)
    after = {**before, "base_position": Decimal("0.29970001"), "cost_basis_quote": Decimal("30.150000005"),
             "realised_pnl_quote": Decimal("-1.1"), "fill_count": 4, "average_cost": Decimal("100.600600934")}
    sync_ms = 1_733_400_000_000
    rows = [fill(world_a, position, of, "B-1"), fill(world_a, position, None, "B-2")]
    events = [event_row(bot=world_a.bot, event_type=BotEventType.ORDER_FILLED,
                        payload={"trade_id": r.exchange_trade_id, "price": r.price}) for r in rows]
    answered = order(world_a, position, OrderStatus.OPEN)  # a venue answer the sync saves with the booking
    answered.status, answered.filled = OrderStatus.FILLED, answered.amount
    also = ([answered, of], ["status", "filled", "updated_at"])

    def answer_saved() -> bool:
        return Order.objects.filter(pk=answered.pk, status=OrderStatus.FILLED).exists()
    if connection.vendor != "postgresql":
        assert not book_fills_if_unchanged(position, before, after, rows, sync_ms, events)
        assert Fill.objects.count() == 0 and accounting(LiquidityPosition.objects.get(pk=position.pk)) == before
        assert BotEvent.objects.count() == 0
        return

    moved = {**before, "fill_count": 3}  # the row holds another booking than the one the engine last made
    with CaptureQueriesContext(connection) as queries:
        assert not book_fills_if_unchanged(position, moved, after, rows, sync_ms, events, also_save=also)
    assert len(queries) == 1 and not answer_saved()
    assert Fill.objects.count() == 0 and all(r.pk is None for r in rows)
    assert BotEvent.objects.count() == 0 and all(e.pk is None for e in events)
    assert accounting(LiquidityPosition.objects.get(pk=position.pk)) == before

    insert_rows([fill(world_a, position, None, "B-2")])  # booked by someone else meanwhile
    assert not book_fills_if_unchanged(position, before, after, rows, sync_ms, events, also_save=also)
    assert not answer_saved()
    assert list(Fill.objects.values_list("exchange_trade_id", flat=True)) == ["B-2"]
    assert accounting(LiquidityPosition.objects.get(pk=position.pk)) == before
    assert BotEvent.objects.count() == 0
    Fill.objects.all().delete()

    with transaction.atomic():  # a failed statement would break the caller's transaction: not tried there
        assert not book_fills_if_unchanged(position, before, after, rows, sync_ms, events)
    assert Fill.objects.count() == 0

    with CaptureQueriesContext(connection) as queries:
        assert book_fills_if_unchanged(position, before, after, rows, sync_ms, events, also_save=also)
    assert len(queries) == 1 and answer_saved()
    # the events are stored with the fills, in their order, as the ORM reads them back
    assert all(e.pk is not None and not e._state.adding for e in events)
    assert [(e.pk, e.payload["trade_id"], e.event_type, e.bot_id) for e in events] == [
        (e.pk, e.payload["trade_id"], e.event_type, e.bot_id) for e in BotEvent.objects.order_by("pk")]
    assert [e.payload["trade_id"] for e in events] == ["B-1", "B-2"]
    assert [{k: value for k, (value, _) in columns(e).items()} for e in events] == [  # (event_type: an enum member)
        {k: value for k, (value, _) in columns(BotEvent.objects.get(pk=e.pk)).items()} for e in events]
    stored = LiquidityPosition.objects.get(pk=position.pk)
    assert accounting(stored) == {name: after[name] for name in ACCOUNTING}
    assert stored.average_cost == after["average_cost"] and stored.last_trade_sync_ms == sync_ms
    assert accounting(position) == accounting(stored) and position.last_trade_sync_ms == sync_ms
    assert all(r.pk is not None and not r._state.adding for r in rows)
    assert [columns(r) for r in rows] == [columns(Fill.objects.get(pk=r.pk)) for r in rows]

    # the sync mark only moves forward
    later = [fill(world_a, position, of, "B-3")]
    assert book_fills_if_unchanged(position, accounting(stored), {**accounting(stored), "fill_count": 5}, later,
                                   sync_ms - 1)
    assert LiquidityPosition.objects.get(pk=position.pk).last_trade_sync_ms == sync_ms


def test_bots_fingerprint_moves_with_everything_the_driver_reads_of_a_bot_and_nothing_else(
        world_a: TenantWorld, world_b: TenantWorld) -> None:
    """The driver re-reads the running bots only when this value moves (``ShardsMixin._refresh_bots``): each
    column its runners are built from, the tenant's kill switch and the bot's first account move it; a cycle's
    counters and the other statuses' bots do not. One statement, on both databases."""
    running = (BotStatus.RUNNING, BotStatus.PAUSED)
    Bot.objects.filter(pk__in=[world_a.bot.pk, world_b.bot.pk]).update(status=BotStatus.RUNNING)
    with CaptureQueriesContext(connection) as queries:
        first = bots_fingerprint(running)
    assert len(queries) == 1
    assert first == bots_fingerprint(running)
    bot = world_a.bot

    def moved(**fields: Any) -> bool:
        nonlocal first
        Bot.objects.filter(pk=bot.pk).update(**fields)
        now = bots_fingerprint(running)
        changed, first = now != first, now
        return changed

    # a cycle's own bookkeeping is not the driver's business
    assert not moved(cycle_count=7, last_cycle_started_at=AT, last_cycle_finished_at=AT)
    assert moved(epoch=bot.epoch + 1)
    assert moved(status=BotStatus.PAUSED)
    assert moved(monitoring_interval_secs=3)
    assert moved(error_recovery_delay_secs=9)
    assert moved(kill_switch_engaged=True)
    assert moved(daily_pnl_baseline_quote=Decimal("12.5"))
    assert moved(updated_at=AT)
    type(world_a.tenant).objects.filter(pk=world_a.tenant.pk).update(kill_switch_engaged=True)
    assert bots_fingerprint(running) != first
    first = bots_fingerprint(running)
    second = make_account(world_a.tenant, "second")
    bot.exchange_accounts.add(second)
    assert bots_fingerprint(running) == first  # its shard follows its first account, which did not change
    bot.exchange_accounts.remove(world_a.account)  # now it did
    assert bots_fingerprint(running) != first
    first = bots_fingerprint(running)
    # a bot leaving the statuses moves it; a change to a bot of another status does not
    assert moved(status=BotStatus.STOPPED)
    assert not moved(epoch=bot.epoch + 5)
    Bot.objects.filter(pk=world_b.bot.pk).update(status=BotStatus.STOPPED)
    assert bots_fingerprint(running) != first
    assert bots_fingerprint(running) == bots_fingerprint((BotStatus.ERROR,))  # no bot: the value of none
