"""Tenant-scoped reads for the operator dashboard: bot summaries, the tenant overview, a bot's
orders, fills, events, risk log, chart series and the cached order book.

Every function takes the tenant (or a bot already fetched through the tenant) and runs a fixed
number of queries whatever the number of bots: aggregates are subqueries, never a loop of queries.
Money stays ``Decimal``; chart series are floats (display only).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from bots import quoting
from bots.engine import keys, market_data
from bots.engine.core import exchange_key
from bots.engine.market_data import mid_history
from bots.engine.metrics import order_flow_metrics
from bots.models import (
    OPEN_HEDGE_STATUSES,
    OPEN_ORDER_STATUSES,
    Bot,
    BotEvent,
    BotStatus,
    Fill,
    Hedge,
    HedgeStatus,
    InventorySnapshot,
    LiquidityPosition,
    Order,
    OrderPurpose,
    OrderStatus,
    PerformanceSnapshot,
)
from bots.wire import (
    ROUTINE_EVENTS,
    bot_event_json,
    configured_reasons,
    fill_json,
    hedging_json,
    jsonable,
    not_quoting_text,
    order_json,
    risk_event_json,
    venues_json,
)
from mmplatform.redis_client import get_redis
from mmplatform.tenancy.models import Tenant
from mmplatform.tenancy.scoping import for_tenant, get_for_tenant_or_404
from risk.models import RiskEvent

ZERO = Decimal(0)
ON_BOOK = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
RECENT_RISK_WINDOW = timedelta(hours=24)
CATCH_UP_LIMIT = 200
RECENT_EVENTS = 50
CHART_POINTS = 600
STALE_CYCLE_FACTOR = 3.0


@dataclass(frozen=True)
class PairInventoryView:
    """One pair's inventory against its target, as last recorded."""

    trading_pair: str
    base_position: Decimal
    ratio: float | None
    target_ratio: float
    mid: Decimal | None
    venues: tuple[tuple[str, Decimal], ...] = ()
    """A pair quoted on several accounts: (account label, the bot's base position there) each; the
    other fields are the pair's aggregate across them."""

    @property
    def deviation(self) -> float | None:
        return None if self.ratio is None else self.ratio - self.target_ratio


@dataclass(frozen=True)
class BotSummary:
    """What the bots table shows for one bot."""

    bot: Bot
    exchanges: list[str]
    open_orders: int
    pnl_total_quote: Decimal
    pnl_today_quote: Decimal
    realised_pnl_quote: Decimal
    unrealised_pnl_quote: Decimal
    fees_paid_quote: Decimal
    inventory: list[PairInventoryView]
    last_cycle_age_secs: float | None
    cycle_is_stale: bool
    risk_state: str
    risk_level: str  # "ok" | "warn" | "danger"
    not_quoting: dict[str, str] = field(default_factory=dict)
    """pair -> why the running bot does not quote it now (``bots.quoting``); empty otherwise."""

    @property
    def not_quoting_text(self) -> str:
        return not_quoting_text(self.not_quoting)

    @property
    def needs_attention(self) -> bool:
        return (self.bot.status == BotStatus.ERROR or self.risk_level == "danger" or self.cycle_is_stale
                or bool(self.not_quoting))

    def as_json(self) -> dict[str, Any]:
        bot = self.bot
        return jsonable({
            "id": bot.pk,
            "name": bot.name,
            "status": bot.status,
            "status_label": bot.get_status_display(),
            "status_reason": bot.status_reason,
            "last_error": bot.last_error,
            "kill_switch_engaged": bot.kill_switch_engaged,
            "pairs": bot.pairs,
            "exchanges": self.exchanges,
            "open_orders": self.open_orders,
            "pnl_total_quote": self.pnl_total_quote,
            "pnl_today_quote": self.pnl_today_quote,
            "realised_pnl_quote": self.realised_pnl_quote,
            "unrealised_pnl_quote": self.unrealised_pnl_quote,
            "fees_paid_quote": self.fees_paid_quote,
            "inventory": [
                {"trading_pair": i.trading_pair, "base_position": i.base_position, "ratio": i.ratio,
                 "target_ratio": i.target_ratio, "mid": i.mid,
                 "venues": [{"venue": label, "base_position": base} for label, base in i.venues]}
                for i in self.inventory
            ],
            "last_cycle_age_secs": self.last_cycle_age_secs,
            "cycle_is_stale": self.cycle_is_stale,
            "cycle_count": bot.cycle_count,
            "risk_state": self.risk_state,
            "risk_level": self.risk_level,
            "not_quoting": self.not_quoting,
            "not_quoting_text": self.not_quoting_text,
        })


@dataclass(frozen=True)
class TenantOverview:
    """Totals across a tenant's bots for the overview page."""

    tenant: Tenant
    bots: list[BotSummary]
    status_counts: dict[str, int]
    pnl_total_quote: Decimal
    pnl_today_quote: Decimal
    open_orders: int
    fills_today: int
    volume_today_quote: Decimal
    risk_events_24h: int
    recent_events: list[dict[str, Any]] = field(default_factory=list)


def _bots_queryset(tenant: Tenant) -> QuerySet[Bot]:
    """The tenant's bots with open-order counts and their latest risk event, in one query."""
    open_orders = (
        Order.objects.filter(bot=OuterRef("pk"), status__in=OPEN_ORDER_STATUSES)
        .order_by().values("bot").annotate(n=Count("pk")).values("n")
    )
    recent_risk = RiskEvent.objects.filter(bot=OuterRef("pk"), created_at__gte=timezone.now() - RECENT_RISK_WINDOW)
    recent_risk = recent_risk.order_by("-created_at", "-id")
    return (
        for_tenant(Bot, tenant)
        .select_related("tenant")
        .prefetch_related("exchange_accounts")
        .annotate(
            open_orders_count=Coalesce(Subquery(open_orders, output_field=IntegerField()), Value(0)),
            risk_event_type=Subquery(recent_risk.values("event_type")[:1]),
            risk_event_message=Subquery(recent_risk.values("message")[:1]),
            risk_event_pair=Subquery(recent_risk.values("trading_pair")[:1]),
            risk_event_at=Subquery(recent_risk.values("created_at")[:1]),
        )
        .order_by("name")
    )


def _positions(tenant: Tenant, bot_ids: list[int]) -> list[LiquidityPosition]:
    """Active positions of the bots, each with its latest inventory snapshot (ratio, target, mid)."""
    latest = InventorySnapshot.objects.filter(
        bot=OuterRef("bot"), trading_pair=OuterRef("trading_pair")).order_by("-taken_at", "-id")
    return list(
        for_tenant(LiquidityPosition, tenant)
        .filter(bot_id__in=bot_ids, is_active=True)
        .select_related("exchange_account")
        .annotate(
            snapshot_ratio=Subquery(latest.values("ratio")[:1]),
            snapshot_target=Subquery(latest.values("target_ratio")[:1]),
            snapshot_mid=Subquery(latest.values("mid_price")[:1]),
        )
        .order_by("bot_id", "trading_pair")
    )


def _pair_inventory(bot: Bot, pair: str, held: list[tuple[LiquidityPosition, Decimal | None]]) -> PairInventoryView:
    """One pair's inventory view: its positions on every account summed (the engine records the pair's
    ratio aggregated across venues), with the split per account when there are several."""
    first = held[0][0]
    target = first.snapshot_target
    if target is None:
        target = float(bot.target_ratios.get(pair, bot.inventory_target_ratio))
    known = [mid for _, mid in held if mid is not None]
    mid = known[0] if len(known) == 1 else (sum(known, ZERO) / len(known) if known else None)
    venues = tuple((p.exchange_account.label, p.base_position) for p, _ in held) if len(held) > 1 else ()
    return PairInventoryView(pair, sum((p.base_position for p, _ in held), ZERO), first.snapshot_ratio, target, mid,
                             venues)


def latest_mids(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
    """The last mid the engine recorded per (exchange key, pair): one Redis round trip."""
    try:
        recorded = market_data.latest_mids(keys)
    except Exception:  # Redis down: fall back to the snapshots in the database
        return {}
    return {key: Decimal(repr(mid)) for key, mid in recorded.items()}


DENIAL_SHOWN = timedelta(minutes=10)
"""An ORDER_DENIED risk event (recorded once per change of the reasons) stays in the risk state this long."""


def active_risks(bot_ids: list[int]) -> dict[int, set[str]]:
    """bot -> the risk statuses its engine holds active now (``TYPE|pair``, the engine's
    ``mm:risk:active:<bot>`` set): one Redis round trip. Redis unreachable: none."""
    if not bot_ids:
        return {}
    try:
        pipe = get_redis().pipeline()
        for bot_id in bot_ids:
            pipe.smembers(keys.risk_active(bot_id))
        rows = pipe.execute()
    except Exception:
        return {}
    return {bot_id: {m.decode() for m in row} for bot_id, row in zip(bot_ids, rows, strict=True)}


def _risk_state(bot: Bot, active: set[str], now: datetime) -> tuple[str, str]:
    """A one-line risk state and its severity. The latest risk event counts only while it holds: the
    engine still has it active (a limit or threshold changed since ends it at the next cycle), or it
    is a recent order denial; otherwise the state says when the last one was."""
    if bot.tenant.kill_switch_engaged:
        return "tenant kill switch engaged", "danger"
    if bot.kill_switch_engaged:
        return "kill switch engaged", "danger"
    if bot.status == BotStatus.PAUSED:
        return f"paused: {bot.status_reason}" if bot.status_reason else "paused", "warn"
    event_type = getattr(bot, "risk_event_type", None)
    if event_type:
        pair = getattr(bot, "risk_event_pair", "") or ""
        created = getattr(bot, "risk_event_at", None)
        current = f"{event_type}|{pair}" in active or (
            event_type == "ORDER_DENIED" and created is not None and now - created <= DENIAL_SHOWN)
        if current:
            return f"{event_type}: {getattr(bot, 'risk_event_message', '')}", "warn"
        if created is not None:
            return f"within limits (last: {event_type} at {created:%H:%M} UTC)", "ok"
    return "within limits", "ok"


def bot_summaries(*, tenant: Tenant, bot_id: int | None = None) -> list[BotSummary]:
    """Summaries of the tenant's bots (or of one of them). Four queries and one Redis call in all."""
    queryset = _bots_queryset(tenant)
    if bot_id is not None:
        queryset = queryset.filter(pk=bot_id)
    bots = list(queryset)
    if not bots:
        return []
    positions = _positions(tenant, [b.pk for b in bots])
    mids = latest_mids(sorted({(exchange_key(p.exchange_account), p.trading_pair) for p in positions}))
    reasons = quoting.current(b.pk for b in bots if b.status == BotStatus.RUNNING)
    risks = active_risks([b.pk for b in bots])
    by_bot: dict[int, list[LiquidityPosition]] = {}
    for position in positions:
        by_bot.setdefault(position.bot_id, []).append(position)
    now = timezone.now()
    summaries = []
    for bot in bots:
        realised = fees = unrealised = ZERO
        per_pair: dict[str, list[tuple[LiquidityPosition, Decimal | None]]] = {}
        for p in by_bot.get(bot.pk, []):
            mid = mids.get((exchange_key(p.exchange_account), p.trading_pair), p.snapshot_mid)
            realised += p.realised_pnl_quote
            fees += p.fees_paid_quote
            if mid is not None and p.base_position:
                unrealised += p.unrealised_pnl_quote(mid)
            per_pair.setdefault(p.trading_pair, []).append((p, mid))
        inventory = [_pair_inventory(bot, pair, held) for pair, held in per_pair.items()]
        total = realised + unrealised - fees
        last_cycle = bot.last_cycle_finished_at or bot.last_cycle_started_at
        age = (now - last_cycle).total_seconds() if last_cycle else None
        stale = bool(bot.status == BotStatus.RUNNING and age is not None
                     and age > STALE_CYCLE_FACTOR * max(bot.monitoring_interval_secs, 1.0) + 5)
        risk_state, risk_level = _risk_state(bot, risks.get(bot.pk, set()), now)
        summaries.append(BotSummary(
            bot=bot,
            exchanges=[f"{a.label} ({a.exchange_id})" for a in bot.exchange_accounts.all()],
            open_orders=bot.open_orders_count,
            pnl_total_quote=total,
            pnl_today_quote=total - bot.daily_pnl_baseline_quote,
            realised_pnl_quote=realised,
            unrealised_pnl_quote=unrealised,
            fees_paid_quote=fees,
            inventory=inventory,
            last_cycle_age_secs=age,
            cycle_is_stale=stale,
            risk_state=risk_state,
            risk_level=risk_level,
            not_quoting=configured_reasons(reasons.get(bot.pk, {}), bot.pairs),
        ))
    return summaries


def start_of_day(now: datetime | None = None) -> datetime:
    """Midnight UTC of the current day (the daily risk reset's day)."""
    now = now or timezone.now()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def tenant_overview(*, tenant: Tenant) -> TenantOverview:
    """Totals across the tenant's bots plus its latest events."""
    summaries = bot_summaries(tenant=tenant)
    counts: dict[str, int] = {status: 0 for status in BotStatus.values}
    for summary in summaries:
        counts[summary.bot.status] += 1
    fills = for_tenant(Fill, tenant).filter(executed_at__gte=start_of_day()).order_by()
    volume_field = DecimalField(max_digits=40, decimal_places=12)
    fill_totals = fills.aggregate(n=Count("pk"), volume=Sum(F("price") * F("amount"), output_field=volume_field))
    volume = fill_totals["volume"] or ZERO
    return TenantOverview(
        tenant=tenant,
        bots=summaries,
        status_counts=counts,
        pnl_total_quote=sum((s.pnl_total_quote for s in summaries), ZERO),
        pnl_today_quote=sum((s.pnl_today_quote for s in summaries), ZERO),
        open_orders=sum(s.open_orders for s in summaries),
        fills_today=fill_totals["n"] or 0,
        volume_today_quote=volume,
        risk_events_24h=for_tenant(RiskEvent, tenant).filter(created_at__gte=timezone.now() - RECENT_RISK_WINDOW)
        .count(),
        recent_events=[bot_event_json(e) for e in recent_events(for_tenant(BotEvent, tenant), RECENT_EVENTS)],
    )


def bot_for_tenant(*, tenant: Tenant, bot_id: Any) -> Bot:
    """One bot of the tenant, or 404 (also for another tenant's bot)."""
    return get_for_tenant_or_404(Bot.objects.select_related("tenant"), tenant, pk=bot_id)


# --- rows for the bot page ---------------------------------------------------------------------


def event_json(event: BotEvent) -> dict[str, Any]:
    """``bots.wire.event_json`` of a row (its bot selected with it)."""
    return bot_event_json(event)


def bot_open_orders(*, bot: Bot, limit: int = 200) -> list[Order]:
    return list(for_tenant(Order, bot.tenant_id).filter(bot=bot, status__in=OPEN_ORDER_STATUSES)
                .order_by("trading_pair", "side", "-price")[:limit])


def bot_recent_orders(*, bot: Bot, limit: int = 50) -> list[Order]:
    return list(for_tenant(Order, bot.tenant_id).filter(bot=bot).order_by("-created_at", "-id")[:limit])


def bot_recent_fills(*, bot: Bot, limit: int = 100) -> list[Fill]:
    return list(for_tenant(Fill, bot.tenant_id).filter(bot=bot).order_by("-executed_at", "-id")[:limit])


def recent_events(queryset: QuerySet[BotEvent], limit: int) -> list[BotEvent]:
    """The latest ``limit`` events and, besides them, the latest ``limit`` non-routine ones (a bot that
    re-quotes several times a second would otherwise push its fills and lifecycle out of any log),
    newest first: two queries."""
    queryset = queryset.select_related("bot").order_by("-id")
    rows = {e.pk: e for e in queryset[:limit]}
    rows.update({e.pk: e for e in queryset.exclude(event_type__in=ROUTINE_EVENTS)[:limit]})
    return [rows[pk] for pk in sorted(rows, reverse=True)]


def bot_recent_events(*, bot: Bot, limit: int = 100) -> list[BotEvent]:
    return recent_events(for_tenant(BotEvent, bot.tenant_id).filter(bot=bot), limit)


def bot_has_unresolved_hedges(*, bot: Bot) -> bool:
    """A hedge of the bot failed or breached its slippage and is neither retried into place nor accepted, or
    one is owed while the bot does not run (it would be sent at the next start)."""
    owed = for_tenant(Hedge, bot.tenant_id).filter(bot=bot)
    if bot.status != BotStatus.RUNNING:
        return owed.filter(status__in=(HedgeStatus.PENDING, *OPEN_HEDGE_STATUSES)).exists()
    return owed.filter(status__in=OPEN_HEDGE_STATUSES).exists()


def bot_hedging(*, bot: Bot, venues: dict[str, str]) -> dict[str, Any]:
    """The bot page's hedging panel (``wire.hedging_json``): two queries."""
    hedges = for_tenant(Hedge, bot.tenant_id).filter(bot=bot)
    rows = list(hedges.filter(status__in=(HedgeStatus.PENDING, *OPEN_HEDGE_STATUSES)).order_by("pk")[:100])
    carried = dict(hedges.filter(carried_into__isnull=True).exclude(carry_base=0).values_list("trading_pair")
                   .annotate(total=Sum("carry_base")).values_list("trading_pair", "total"))
    return hedging_json(bot=bot, venues=venues, rows=rows, carried=carried)


def bot_risk_events(*, bot: Bot, limit: int = 50) -> list[RiskEvent]:
    return list(for_tenant(RiskEvent, bot.tenant_id).filter(bot=bot).order_by("-created_at", "-id")[:limit])


def events_after(*, tenant_id: int, after_id: int, bot_id: int | None = None,
                 limit: int = CATCH_UP_LIMIT) -> tuple[list[BotEvent], bool]:
    """Events of the tenant (or of one of its bots) after ``after_id``, oldest first, bounded.
    The flag says more were left: the client should re-fetch the whole state instead."""
    queryset = for_tenant(BotEvent, tenant_id).filter(pk__gt=after_id).select_related("bot")
    if bot_id is not None:
        queryset = queryset.filter(bot_id=bot_id)
    rows = list(queryset.order_by("id")[: limit + 1])
    return rows[:limit], len(rows) > limit


def last_event_id(*, tenant_id: int, bot_id: int | None = None) -> int:
    queryset = for_tenant(BotEvent, tenant_id)
    if bot_id is not None:
        queryset = queryset.filter(bot_id=bot_id)
    return queryset.order_by("-id").values_list("id", flat=True).first() or 0


# --- charts ------------------------------------------------------------------------------------


def _ts(moment: datetime) -> float:
    return round(moment.timestamp(), 3)


def _venues(bot: Bot) -> dict[str, str]:
    """pair -> exchange key of the account its active position trades on (first account otherwise)."""
    positions = for_tenant(LiquidityPosition, bot.tenant_id).filter(bot=bot, is_active=True)
    venues = {p.trading_pair: exchange_key(p.exchange_account) for p in positions.select_related("exchange_account")}
    fallback = next(iter(bot.exchange_accounts.all()), None)
    for pair in bot.pairs:
        if pair not in venues and fallback is not None:
            venues[pair] = exchange_key(fallback)
    return venues


def bot_chart_series(*, bot: Bot, points: int = CHART_POINTS) -> dict[str, Any]:
    """Series for the bot page charts: per pair the mid, the bot's level-0 bid and ask and its fills;
    the P&L curve; per pair the inventory ratio against its target. Bounded to ``points`` each."""
    venues = _venues(bot)
    price: dict[str, dict[str, list]] = {}
    for pair in bot.pairs:
        times, mids = ([], [])
        if pair in venues:
            try:
                times, mids = mid_history(venues[pair], pair)
            except Exception:  # Redis down: the chart shows quotes and fills only
                times, mids = ([], [])
        price[pair] = {"mid": [[round(t, 3), m] for t, m in zip(times[-points:], mids[-points:], strict=True)],
                       "bid": [], "ask": [], "fills": []}
    since = timezone.now() - timedelta(hours=6)
    quotes = (for_tenant(Order, bot.tenant_id)
              .filter(bot=bot, level=0, purpose=OrderPurpose.QUOTE, created_at__gte=since)
              .order_by("-created_at", "-id").values_list("trading_pair", "side", "price", "created_at")[: points * 4])
    for pair, side, order_price, created in reversed(quotes):
        series = price.setdefault(pair, {"mid": [], "bid": [], "ask": [], "fills": []})
        series["bid" if side == "buy" else "ask"].append([_ts(created), float(order_price)])
    fills = (for_tenant(Fill, bot.tenant_id).filter(bot=bot, executed_at__gte=since)
             .order_by("-executed_at", "-id").values_list("trading_pair", "side", "price", "amount", "executed_at")
             [:points])
    for pair, side, fill_price, amount, executed in reversed(fills):
        series = price.setdefault(pair, {"mid": [], "bid": [], "ask": [], "fills": []})
        series["fills"].append([_ts(executed), float(fill_price), side, float(amount)])
    pnl_rows = (for_tenant(PerformanceSnapshot, bot.tenant_id).filter(bot=bot).order_by("-taken_at", "-id")
                .values_list("taken_at", "realised_pnl_quote", "unrealised_pnl_quote", "fees_paid_quote")[:points])
    pnl = [[_ts(t), float(r + u - f), float(r), float(u)] for t, r, u, f in reversed(pnl_rows)]
    inventory: dict[str, list] = {}
    inv_rows = (for_tenant(InventorySnapshot, bot.tenant_id).filter(bot=bot).order_by("-taken_at", "-id")
                .values_list("trading_pair", "taken_at", "ratio", "target_ratio")[: points * max(len(bot.pairs), 1)])
    for pair, taken, ratio, target in reversed(inv_rows):
        inventory.setdefault(pair, []).append([_ts(taken), ratio, target])
    return {"price": price, "pnl": pnl, "inventory": inventory}


# --- order book --------------------------------------------------------------------------------


def _price(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


def ladder(bids: list[tuple[float, float]], asks: list[tuple[float, float]], own: list[Order],
           depth: int) -> dict[str, Any]:
    """The ladder the bot page draws: the book's best ``depth`` levels a side plus every level where
    the bot has an open order, each with the book's size and the bot's own remaining size there.
    Own orders are matched to levels by exact price (Decimal); a level the cached book does not have
    yet (it was read before the order was placed) shows the bot's own size as its size (``in_book``
    false). Only orders resting on the book count (open, partially filled): not a row stored before
    its send, nor one whose cancel is under way."""
    mine: dict[tuple[str, Decimal], tuple[Decimal, int]] = {}
    for order in own:
        if getattr(order, "status", OrderStatus.OPEN) not in ON_BOOK:
            continue  # stored but not sent yet, or its cancel is under way: not resting on the book
        remaining, count = mine.get((order.side, order.price), (ZERO, 0))
        mine[(order.side, order.price)] = (remaining + order.amount - order.filled, count + 1)
    sides: dict[str, list[dict[str, Any]]] = {}
    for side, levels, best_first in (("buy", bids, True), ("sell", asks, False)):
        sizes: dict[Decimal, Decimal] = {}
        for price, size in levels[:depth]:
            sizes[_price(price)] = sizes.get(_price(price), ZERO) + _price(size)
        in_book = set(sizes)
        for (own_side, price), (remaining, _) in mine.items():
            if own_side == side:
                sizes[price] = max(sizes.get(price, ZERO), remaining)
        rows = []
        for price in sorted(sizes, reverse=best_first):
            remaining, count = mine.get((side, price), (None, 0))
            rows.append({"price": price.normalize(), "size": sizes[price].normalize(),
                         "own": None if remaining is None else remaining.normalize(), "own_orders": count,
                         "in_book": price in in_book})
        sides[side] = rows
    best_bid = sides["buy"][0]["price"] if sides["buy"] else None
    best_ask = sides["sell"][0]["price"] if sides["sell"] else None
    mid = spread_bps = None
    if best_bid is not None and best_ask is not None and best_bid < best_ask:
        mid = ((best_bid + best_ask) / 2).normalize()
        spread_bps = float((best_ask - best_bid) / mid * 10_000)
    return jsonable({"bids": sides["buy"], "asks": sides["sell"], "mid": mid, "spread_bps": spread_bps})


def bot_order_book(*, bot: Bot, depth: int = 15) -> dict[str, Any]:
    """The latest cached book per pair (the engine's shared Redis cache) and the bot's own quotes on it,
    merged into one ladder (``ladder``). A missing or old book is reported with its age so the page can
    say what is wrong."""
    venues = _venues(bot)
    accounts = list(bot.exchange_accounts.all())
    own = bot_open_orders(bot=bot)
    books: dict[str, Any] = {}
    for pair in bot.pairs:
        if len(accounts) < 2:
            pair_own = [o for o in own if o.trading_pair == pair]
            books[pair] = _book_entry(bot, venues.get(pair), pair, pair_own, depth)
            continue
        # several accounts: one ladder per venue (the page's venue tabs); the pair's own entry is the first's
        per_venue = {}
        for account in accounts:
            pair_own = [o for o in own if o.trading_pair == pair and o.exchange_account_id == account.pk]
            entry = _book_entry(bot, exchange_key(account), pair, pair_own, depth)
            entry["venue"] = f"{account.label} ({account.exchange_id})"
            entry["exchange_account_id"] = account.pk
            per_venue[account.label] = entry
        books[pair] = {**next(iter(per_venue.values())), "venues": per_venue,
                       "own": [o for entry in per_venue.values() for o in entry["own"]]}  # every venue's orders
    return {"bot_id": bot.pk, "status": bot.status, "books": books}


def _book_entry(bot: Bot, venue: str | None, pair: str, own: list[Order], depth: int) -> dict[str, Any]:
    """One venue's ladder of one pair: its cached book and the bot's own orders there."""
    entry: dict[str, Any] = {"bids": [], "asks": [], "fetched_at": None, "age_secs": None,
                             "own": [order_json(o) for o in own]}
    book = None
    if venue is not None:
        try:
            book = market_data.cached_book(venue, pair)
        except Exception:
            entry["problem"] = "The market data cache (Redis) is unreachable."
    if book is not None:
        entry.update(bids=book.bids[:depth], asks=book.asks[:depth], fetched_at=book.fetched_at,
                     age_secs=round(time.time() - book.fetched_at, 3))
    elif "problem" not in entry:
        entry["problem"] = ("No fresh order book: the bot is not running or its exchange is unreachable."
                            if bot.status == BotStatus.RUNNING else "No order book while the bot is not running.")
    entry["ladder"] = ladder(entry["bids"], entry["asks"], own, depth)
    return entry


def bot_state(*, bot: Bot) -> dict[str, Any]:
    """Everything the bot page renders, as JSON: fetched on load and after a reconnect."""
    summaries = bot_summaries(tenant=bot.tenant, bot_id=bot.pk)
    venues = venues_json(bot.exchange_accounts.all())
    return {
        "bot": summaries[0].as_json() if summaries else None,
        "venues": venues,
        "hedging": bot_hedging(bot=bot, venues=venues),
        "open_orders": [order_json(o) for o in bot_open_orders(bot=bot)],
        "orders": [order_json(o) for o in bot_recent_orders(bot=bot)],
        "fills": [fill_json(f) for f in bot_recent_fills(bot=bot)],
        "events": [event_json(e) for e in bot_recent_events(bot=bot)],
        "risk_events": [risk_event_json(r) for r in bot_risk_events(bot=bot)],
        "charts": bot_chart_series(bot=bot),
        "order_flow": asdict(order_flow_metrics(bot=bot, since=start_of_day())),
        "last_event_id": last_event_id(tenant_id=bot.tenant_id, bot_id=bot.pk),
        "server_time": time.time(),
    }
