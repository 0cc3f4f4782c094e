"""Liquidity agreements: computing and storing the figures, evaluating agreements, recording their
breaches as bot events. Reads of other tenants never happen here: every entry point takes a bot (or
runs for all bots from beat, writing each row under its bot's tenant).

The figures come from the order lifecycle on the venue's clock: an order rests from its acceptance
(``Order.acknowledged_at``: the venue's time in the placement answer) to its cancel (``closed_at``: the
time in the cancel answer, ``exchanges.emulator`` stamps it) or its last fill (``Fill.executed_at``),
with its remaining size lowered by each fill. Minutes are computed once closed (beat, every minute) and
summed into hours and days; the minutes since the last stored one are computed on demand.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from bots.engine.market_data import cached_book, mid_history
from bots.engine.venues import exchange_key
from bots.events import publish_event
from bots.models import OPEN_ORDER_STATUSES, Bot, BotStatus, Fill, LiquidityPosition, Order, OrderPurpose, OrderStatus
from exchanges.models import ExchangeAccount
from liquidity import metrics
from liquidity.models import LiquidityStats, Resolution, Sla, SlaExclusion, SlaState, SlaWindow, VenueOutage

logger = logging.getLogger(__name__)

Key = tuple[int, str]
"""(exchange account id, pair)."""

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CATCH_UP_MINUTES = 60
"""A bot's minutes older than this that were never computed (beat was down) are left out."""
ENDED_STATUSES = [s for s in OrderStatus.values if s not in OPEN_ORDER_STATUSES and s != OrderStatus.REJECTED]
"""Statuses of orders that rested and ended (a rejected order never rested)."""
SLA_EVENT_TYPES = {metrics.RED: "SlaBreached", metrics.AMBER: "SlaAtRisk"}
SLA_RECOVERED = "SlaRecovered"  # green again after red or amber: resolves the alerts of both


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


# --- the lifecycle ---------------------------------------------------------------------------------


@dataclass
class Extras:
    """What the figures do not hold: fills, volume (quote), maker volume, venue-share samples."""

    fills: int = 0
    volume_quote: Decimal = Decimal(0)
    maker_volume_quote: Decimal = Decimal(0)
    venue_share_sum: float = 0.0
    venue_share_samples: int = 0

    def add(self, other: Extras) -> Extras:
        self.fills += other.fills
        self.volume_quote += other.volume_quote
        self.maker_volume_quote += other.maker_volume_quote
        self.venue_share_sum += other.venue_share_sum
        self.venue_share_samples += other.venue_share_samples
        return self


BotKey = tuple[int, int, str]
"""(bot id, exchange account id, pair)."""
Interval = tuple[datetime, datetime]


def resting_orders(bot_ids: Iterable[int], start: datetime, end: datetime) -> dict[BotKey, list[metrics.RestingOrder]]:
    """The quotes of these bots that rested on their venues in ``[start, end)``, per (bot, account, pair)."""
    # two reads: the orders that ended in or after the span, of every bot asked at once, through the
    # (status, closed_at) index (recent ends only: selective); the open ones through (bot, status)
    fields = ("pk", "bot_id", "exchange_account_id", "trading_pair", "side", "price", "amount", "status",
              "acknowledged_at", "closed_at")
    quotes = Order.objects.filter(bot_id__in=list(bot_ids), purpose=OrderPurpose.QUOTE, acknowledged_at__isnull=False,
                                  acknowledged_at__lt=end).order_by()
    rows = list(quotes.filter(status__in=ENDED_STATUSES, closed_at__gte=start).values_list(*fields))
    rows += quotes.filter(status__in=OPEN_ORDER_STATUSES).values_list(*fields)
    fills: dict[int, list[tuple[int, float]]] = defaultdict(list)
    if rows:
        for order_id, executed_at, amount in Fill.objects.filter(order_id__in=[r[0] for r in rows]).values_list(
                "order_id", "executed_at", "amount"):
            fills[order_id].append((ms(executed_at), float(amount)))
    found: dict[tuple[int, int, str], list[metrics.RestingOrder]] = defaultdict(list)
    for pk, bot_id, account_id, pair, side, price, amount, status, accepted, closed in rows:
        own = tuple(sorted(fills.get(pk, ())))
        if status == OrderStatus.FILLED and own:
            end_ms: int | None = own[-1][0]
        elif closed is not None:
            end_ms = ms(closed)
        else:  # open (an ended order is read only with its end)
            end_ms = None
        found[(bot_id, account_id, pair)].append(
            metrics.RestingOrder(side=side, price=float(price), amount=float(amount), start_ms=ms(accepted),
                                 end_ms=end_ms, fills=own))
    return found


def mid_points(venue: str, pair: str, start_ms: int, end_ms: int) -> list[tuple[int, float]]:
    """The shared mid history of (venue, pair) in ``[start_ms, end_ms)`` plus the last point before it."""
    times, mids = mid_history(venue, pair)
    points: list[tuple[int, float]] = []
    for t, m in zip(times, mids, strict=True):
        point_ms = int(t * 1000)
        if point_ms < start_ms:
            points = [(point_ms, m)]
        elif point_ms < end_ms:
            points.append((point_ms, m))
    return points


def fill_extras(bot_ids: Iterable[int], start: datetime, end: datetime) -> dict[tuple[int, int, str], Extras]:
    """Fills, volume and maker volume (quote) per (bot, account, pair) executed in ``[start, end)``."""
    found: dict[tuple[int, int, str], Extras] = defaultdict(Extras)
    for bot_id, account_id, pair, price, amount, is_maker in Fill.objects.filter(
            bot_id__in=list(bot_ids), executed_at__gte=start, executed_at__lt=end).values_list(
            "bot_id", "exchange_account_id", "trading_pair", "price", "amount", "is_maker"):
        extras = found[(bot_id, account_id, pair)]
        notional = price * amount
        extras.fills += 1
        extras.volume_quote += notional
        if is_maker:
            extras.maker_volume_quote += notional
    return found


def venue_share(venue: str, pair: str, bot_depth_quote: float) -> float | None:
    """The bot's share of the venue's visible depth within +-2 % of the mid, on the last shared book
    (which holds the bot's own orders too). None without a two-sided book."""
    book = cached_book(venue, pair)
    if book is None or not book.bids or not book.asks:
        return None
    mid = (book.bids[0][0] + book.asks[0][0]) / 2
    visible = sum(p * a for p, a in book.bids if p >= mid * 0.98) + sum(p * a for p, a in book.asks if p <= mid * 1.02)
    return min(bot_depth_quote / visible, 1.0) if visible > 0 else None


def _venues(account_ids: Iterable[int]) -> dict[int, str]:
    return {a.pk: exchange_key(a) for a in ExchangeAccount.objects.filter(pk__in=set(account_ids))}


def compute(bots: list[Bot], start: datetime, end: datetime, *, keys: dict[int, set[Key]] | None = None,
            ) -> dict[tuple[int, int, str], tuple[metrics.Figures, Extras]]:
    """The figures of ``[start, end)`` per (bot, account, pair), from the lifecycle; ``keys`` adds the
    (account, pair)s of each bot to report even without orders."""
    lifecycles = resting_orders([b.pk for b in bots], start, end)
    extras = fill_extras([b.pk for b in bots], start, end)
    wanted: set[tuple[int, int, str]] = set(lifecycles) | set(extras)
    for bot_id, bot_keys in (keys or {}).items():
        wanted.update((bot_id, account_id, pair) for account_id, pair in bot_keys)
    venues = _venues(k[1] for k in wanted)
    start_ms, end_ms = ms(start), ms(end)
    mids: dict[tuple[int, str], list[tuple[int, float]]] = {}
    found = {}
    for key in sorted(wanted):
        _, account_id, pair = key
        if (account_id, pair) not in mids:
            mids[(account_id, pair)] = mid_points(venues[account_id], pair, start_ms, end_ms)
        found[key] = (metrics.figures(lifecycles.get(key, ()), mids[(account_id, pair)], start_ms, end_ms),
                      extras.get(key) or Extras())
    return found


# --- storing minutes, hours, days ------------------------------------------------------------------


def _row_values(figures: metrics.Figures, extras: Extras) -> dict[str, object]:
    return {
        "duration_ms": figures.duration_ms, "bid_ms": figures.bid_ms, "ask_ms": figures.ask_ms,
        "two_sided_ms": figures.two_sided_ms, "spread_bps_ms": figures.spread_bps_ms,
        "spread_histogram": figures.spread_histogram, "bid_distance_histogram": figures.bid_distance_histogram,
        "ask_distance_histogram": figures.ask_distance_histogram, "depth_quote_ms": figures.depth_quote_ms,
        "fills": extras.fills, "volume_quote": extras.volume_quote, "maker_volume_quote": extras.maker_volume_quote,
        "venue_share_sum": extras.venue_share_sum, "venue_share_samples": extras.venue_share_samples,
    }


def figures_of(row: LiquidityStats) -> tuple[metrics.Figures, Extras]:
    """A stored row back as figures."""
    return (metrics.Figures(
        duration_ms=row.duration_ms, bid_ms=row.bid_ms, ask_ms=row.ask_ms, two_sided_ms=row.two_sided_ms,
        spread_bps_ms=row.spread_bps_ms,
        spread_histogram={int(k): int(v) for k, v in row.spread_histogram.items()},
        bid_distance_histogram={int(k): int(v) for k, v in row.bid_distance_histogram.items()},
        ask_distance_histogram={int(k): int(v) for k, v in row.ask_distance_histogram.items()},
        depth_quote_ms=dict(row.depth_quote_ms)),
        Extras(row.fills, row.volume_quote, row.maker_volume_quote, row.venue_share_sum, row.venue_share_samples))


def _quoted_keys(bots: list[Bot]) -> dict[int, set[Key]]:
    keys: dict[int, set[Key]] = defaultdict(set)
    for bot_id, account_id, pair in LiquidityPosition.objects.filter(
            bot__in=bots, is_active=True).values_list("bot_id", "exchange_account_id", "trading_pair"):
        keys[bot_id].add((account_id, pair))
    return keys


STATS_FIELDS = ["tenant_id", "duration_ms", "bid_ms", "ask_ms", "two_sided_ms", "spread_bps_ms", "spread_histogram",
                "bid_distance_histogram", "ask_distance_histogram", "depth_quote_ms", "fills", "volume_quote",
                "maker_volume_quote", "venue_share_sum", "venue_share_samples", "computed_at"]


def _upsert(rows: list[LiquidityStats]) -> None:
    """Insert or replace stats rows in one statement per batch (unique per key, resolution, bucket)."""
    if rows:
        LiquidityStats.objects.bulk_create(
            rows, batch_size=500, update_conflicts=True, update_fields=STATS_FIELDS,
            unique_fields=["bot", "exchange_account", "trading_pair", "resolution", "bucket_start"])


def _stats_row(key: BotKey, tenant_id: int, resolution: str, bucket: datetime, figures: metrics.Figures,
               extras: Extras) -> LiquidityStats:
    bot_id, account_id, pair = key
    return LiquidityStats(bot_id=bot_id, exchange_account_id=account_id, trading_pair=pair, resolution=resolution,
                          bucket_start=bucket, tenant_id=tenant_id, **_row_values(figures, extras))


def store_minutes(bots: list[Bot], start: datetime, end: datetime, *, sample_venue: bool = False) -> int:
    """Compute and upsert the minute rows of ``[start, end)`` (whole minutes) for these bots, then the
    hours this completes (an hour row is written once its last minute is) and the days those complete.
    Returns the minute rows written."""
    keys = _quoted_keys(bots)
    tenants = {b.pk: b.tenant_id for b in bots}
    rows: list[LiquidityStats] = []
    touched: set[tuple[int, int, str, datetime]] = set()
    minute = minute_floor(start)
    while minute + MINUTE <= end:
        computed = compute(bots, minute, minute + MINUTE, keys=keys)
        venues = _venues(k[1] for k in computed) if sample_venue else {}
        for key, (figures, extras) in computed.items():
            if sample_venue:
                depth = (figures.depth_quote_ms.get("bid_2", 0.0) + figures.depth_quote_ms.get("ask_2", 0.0)) / 60_000
                share = venue_share(venues[key[1]], key[2], depth)
                if share is not None:
                    extras.venue_share_sum, extras.venue_share_samples = share, 1
            rows.append(_stats_row(key, tenants[key[0]], Resolution.MINUTE, minute, figures, extras))
            touched.add((*key, minute))
        minute += MINUTE
    _upsert(rows)
    hours = {(b, a, p, m.replace(minute=0)) for b, a, p, m in touched if m.replace(minute=0) + HOUR <= end}
    roll_up(hours, Resolution.HOUR, tenants)
    days = {(b, a, p, h.replace(hour=0)) for b, a, p, h in hours if h.replace(hour=0) + DAY <= end}
    roll_up(days, Resolution.DAY, tenants)
    return len(rows)


def roll_up(buckets: set[tuple[int, int, str, datetime]], resolution: str, tenants: dict[int, int]) -> None:
    """(Re-)sum these hour or day buckets from their minute or hour rows (one read, one upsert)."""
    if not buckets:
        return
    finer, span = (Resolution.MINUTE, HOUR) if resolution == Resolution.HOUR else (Resolution.HOUR, DAY)
    totals: dict[tuple[int, int, str, datetime], tuple[metrics.Figures, Extras]] = {
        b: (metrics.Figures(), Extras()) for b in buckets}
    first, last = min(b[3] for b in buckets), max(b[3] for b in buckets) + span
    for row in LiquidityStats.objects.filter(bot_id__in={b[0] for b in buckets}, resolution=finer,
                                             bucket_start__gte=first, bucket_start__lt=last):
        bucket = row.bucket_start.replace(minute=0) if resolution == Resolution.HOUR else row.bucket_start.replace(
            hour=0, minute=0)
        target = totals.get((row.bot_id, row.exchange_account_id, row.trading_pair, bucket))
        if target is not None:
            figures, extras = figures_of(row)
            target[0].add(figures)
            target[1].add(extras)
    # duration_ms: the stored span (the whole hour or day when every minute of it was stored)
    _upsert([_stats_row((b, a, p), tenants[b], resolution, bucket, figures, extras)
             for (b, a, p, bucket), (figures, extras) in totals.items()])


def bots_to_measure(now: datetime) -> list[Bot]:
    """Bots quoting now or stopped within the catch-up horizon."""
    recent = now - timedelta(minutes=CATCH_UP_MINUTES)
    return list(Bot.objects.filter(
        Q(status__in=[BotStatus.RUNNING, BotStatus.PAUSED, BotStatus.STOPPING]) | Q(stopped_at__gte=recent)))


def collect(now: datetime | None = None) -> dict[str, object]:
    """Beat's minute: store every closed minute not yet stored of each bot to measure (at most the last
    ``CATCH_UP_MINUTES``), record venue outages, evaluate the agreements. Returns counts and cost."""
    now = now or timezone.now()
    started = time.process_time()
    bots = bots_to_measure(now)
    last_closed = minute_floor(now)
    written = 0
    horizon = last_closed - timedelta(minutes=CATCH_UP_MINUTES)
    latest = dict(LiquidityStats.objects.filter(bot__in=bots, resolution=Resolution.MINUTE,
                                                bucket_start__gte=horizon).values_list("bot_id").annotate(
        last=Max("bucket_start")).values_list("bot_id", "last"))
    by_start: dict[datetime, list[Bot]] = defaultdict(list)
    for bot in bots:
        first = latest[bot.pk] + MINUTE if bot.pk in latest else max(
            horizon, minute_floor(bot.started_at) if bot.started_at else last_closed - MINUTE)
        if first < last_closed:
            by_start[first].append(bot)
    for first, group in by_start.items():
        written += store_minutes(group, first, last_closed, sample_venue=True)
    outages = record_outages(bots, now)
    evaluated = evaluate_all(now=now)
    return {"bots": len(bots), "minutes": written, "outages": outages, "evaluated": evaluated,
            "cpu_ms": round((time.process_time() - started) * 1000, 2)}


def prune_minutes(now: datetime | None = None) -> int:
    """Delete minute rows older than ``SLA_MINUTE_RETENTION_DAYS`` (hours and days stay)."""
    days = settings.SLA_MINUTE_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = LiquidityStats.objects.filter(resolution=Resolution.MINUTE, bucket_start__lt=cutoff).delete()
    return deleted


# --- venue outages ---------------------------------------------------------------------------------


def record_outages(bots: list[Bot], now: datetime) -> int:
    """Gaps longer than ``STALE_BOOK_SECS`` in the shared mid history of the (venue, pair)s running bots
    quote, within the last two minutes: the platform could not read the venue. Merged with an outage that
    ends where the gap starts. Returns the outages written."""
    running = [b for b in bots if b.status == BotStatus.RUNNING and b.started_at]
    if not running:
        return 0
    gap_secs = settings.STALE_BOOK_SECS
    keys = _quoted_keys(running)
    started = {b.pk: b.started_at.timestamp() for b in running}
    accounts = _venues(a for bot_keys in keys.values() for a, _ in bot_keys)
    seen: dict[tuple[str, str], float] = {}
    for bot_id, bot_keys in keys.items():
        for account_id, pair in bot_keys:
            venue = (accounts[account_id], pair)
            seen[venue] = min(seen.get(venue, started[bot_id]), started[bot_id])
    written = 0
    horizon = now.timestamp() - 120
    for (venue, pair), since in seen.items():
        times, _ = mid_history(venue, pair)
        points = [t for t in times if t >= max(horizon, since) - gap_secs] + [now.timestamp()]
        for before, after in itertools.pairwise(points):
            if after - before > gap_secs and after > max(horizon, since):
                written += _note_outage(venue, pair, datetime.fromtimestamp(max(before, since), tz=UTC),
                                        datetime.fromtimestamp(after, tz=UTC))
    return written


def _note_outage(venue: str, pair: str, start: datetime, end: datetime) -> int:
    touching = VenueOutage.objects.filter(venue=venue, trading_pair=pair, started_at__lte=end,
                                          ended_at__gte=start - timedelta(seconds=1)).first()
    if touching is not None:
        touching.started_at, touching.ended_at = min(touching.started_at, start), max(touching.ended_at, end)
        touching.save(update_fields=["started_at", "ended_at"])
        return 0
    VenueOutage.objects.create(venue=venue, trading_pair=pair, started_at=start, ended_at=end)
    return 1


# --- windows ---------------------------------------------------------------------------------------


def window_bounds(window: str, now: datetime) -> tuple[datetime, datetime]:
    """The current calendar day or month (UTC) around ``now``."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if window == SlaWindow.MONTH:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    return day, day + DAY


def _merge(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _touched_minutes(exclusions: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Exclusions widened to whole minutes (a minute they touch is left out)."""
    widened = []
    for start, end in exclusions:
        last = minute_floor(end) if end == minute_floor(end) else minute_floor(end) + MINUTE
        widened.append((minute_floor(start), last))
    return _merge(widened)


def _overlaps(exclusions: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    return any(s < end and e > start for s, e in exclusions)


def _plan(start: datetime, end: datetime, exclusions: list[Interval], *,
          coarsest: str = Resolution.DAY) -> Iterator[tuple[str, datetime]]:
    """(resolution, bucket) covering ``[start, end)`` (whole minutes) with the coarsest stored rows that
    no exclusion touches (days, hours, then minutes; at most ``coarsest``); excluded minutes are skipped."""
    levels = {Resolution.DAY: [(Resolution.DAY, DAY), (Resolution.HOUR, HOUR)],
              Resolution.HOUR: [(Resolution.HOUR, HOUR)], Resolution.MINUTE: []}[coarsest]
    t = start
    while t < end:
        for resolution, span in levels:
            aligned = t == (t.replace(hour=0, minute=0) if resolution == Resolution.DAY else t.replace(minute=0))
            if aligned and t + span <= end and not _overlaps(exclusions, t, t + span):
                yield resolution, t
                t += span
                break
        else:
            if not _overlaps(exclusions, t, t + MINUTE):
                yield Resolution.MINUTE, t
            t += MINUTE


def _stored(bot: Bot, account_id: int, pair: str, start: datetime, end: datetime,
            exclusions: list[Interval]) -> tuple[metrics.Figures, Extras]:
    """The sums of the stored rows covering ``[start, end)`` minus the excluded minutes: days and hours
    where their rows exist, their hours and minutes where not (a bucket the minute task never closed)."""
    totals, extras = metrics.Figures(), Extras()
    plan = list(_plan(start, end, exclusions))
    while plan:
        wanted: dict[str, list[datetime]] = defaultdict(list)
        for resolution, bucket in plan:
            wanted[resolution].append(bucket)
        found: set[tuple[str, datetime]] = set()
        for resolution, buckets in wanted.items():
            for row in LiquidityStats.objects.filter(bot=bot, exchange_account_id=account_id, trading_pair=pair,
                                                     resolution=resolution, bucket_start__in=buckets):
                figures, more = figures_of(row)
                totals.add(figures)
                extras.add(more)
                found.add((resolution, row.bucket_start))
        plan = [step for resolution, bucket in plan if resolution != Resolution.MINUTE
                and (resolution, bucket) not in found
                for step in _plan(bucket, bucket + (DAY if resolution == Resolution.DAY else HOUR), exclusions,
                                  coarsest=Resolution.HOUR if resolution == Resolution.DAY else Resolution.MINUTE)]
    return totals, extras


@dataclass
class WindowFigures:
    """One (venue, pair)'s figures over a window: the summary, its sums and what was left out."""

    exchange_account_id: int
    trading_pair: str
    start: datetime
    end: datetime
    counted_ms: int
    excluded_ms: int
    totals: metrics.Figures
    extras: Extras
    summary: metrics.Summary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = metrics.summarize(self.totals, self.counted_ms)

    @property
    def maker_share(self) -> float | None:
        return float(self.extras.maker_volume_quote / self.extras.volume_quote) if self.extras.volume_quote else None

    @property
    def venue_share(self) -> float | None:
        e = self.extras
        return e.venue_share_sum / e.venue_share_samples if e.venue_share_samples else None


def exclusions_for(*, sla: Sla | None, venue: str, pair: str, start: datetime, end: datetime) -> list[Interval]:
    """The planned exclusions of ``sla`` and (if it asks) the venue's observed outages in the window."""
    found: list[tuple[datetime, datetime]] = []
    if sla is not None:
        found += list(SlaExclusion.objects.filter(sla=sla, starts_at__lt=end, ends_at__gt=start).values_list(
            "starts_at", "ends_at"))
        if sla.exclude_venue_outages:
            found += list(VenueOutage.objects.filter(venue=venue, trading_pair=pair, started_at__lt=end,
                                                     ended_at__gt=start).values_list("started_at", "ended_at"))
    return _touched_minutes(found)


def window_figures(bot: Bot, start: datetime, end: datetime, *, sla: Sla | None = None,
                   now: datetime | None = None) -> list[WindowFigures]:
    """Each (venue, pair) of the bot (narrowed by ``sla``) over ``[start, min(end, now))`` (minutes):
    stored rows where they exist, the rest computed from the lifecycle now."""
    now = now or timezone.now()
    start, stop = minute_floor(start), min(end, now)
    keys = set(_quoted_keys([bot]).get(bot.pk, set()))
    keys.update(LiquidityStats.objects.filter(bot=bot, bucket_start__gte=start - DAY, bucket_start__lt=stop)
                .values_list("exchange_account_id", "trading_pair").distinct())
    if sla is not None:
        keys = {(a, p) for a, p in keys if (sla.exchange_account_id in (None, a)) and sla.trading_pair in ("", p)}
    venues = _venues(a for a, _ in keys)
    stored_until = LiquidityStats.objects.filter(bot=bot, resolution=Resolution.MINUTE).aggregate(
        last=Max("bucket_start"))["last"]
    boundary = min(max(stored_until + MINUTE, start), minute_floor(stop)) if stored_until else start
    live = compute([bot], boundary, stop, keys={bot.pk: keys}) if stop > boundary else {}
    results = []
    for account_id, pair in sorted(keys):
        exclusions = exclusions_for(sla=sla, venue=venues[account_id], pair=pair, start=start, end=stop)
        totals, extras = _stored(bot, account_id, pair, start, boundary, exclusions)
        excluded = sum(int((min(e, stop) - max(s, start)).total_seconds() * 1000)
                       for s, e in exclusions if s < stop and e > start)
        if (bot.pk, account_id, pair) in live and not _overlaps(exclusions, boundary, stop):
            figures, more = live[(bot.pk, account_id, pair)]
            totals.add(figures)
            extras.add(more)
        elapsed = int((stop - start).total_seconds() * 1000)
        totals.duration_ms = elapsed - excluded
        results.append(WindowFigures(account_id, pair, start, stop, max(elapsed - excluded, 0), excluded,
                                     totals, extras))
    return results


# --- agreements ------------------------------------------------------------------------------------


@dataclass
class SlaStatus:
    """An agreement on one (venue, pair) now: its checks, the worst of them, the window's figures."""

    sla: Sla
    figures: WindowFigures
    checks: list[metrics.Check]
    window_start: datetime
    window_end: datetime

    @property
    def status(self) -> str:
        return metrics.worst(c.status for c in self.checks)


def evaluate(sla: Sla, *, now: datetime | None = None) -> list[SlaStatus]:
    """The agreement's checks on each of its (venue, pair)s over the current window."""
    now = now or timezone.now()
    start, end = window_bounds(sla.window, now)
    start = max(start, minute_floor(sla.effective_from))  # a window the agreement starts in counts from then
    if start >= now:
        return []  # not in force yet
    statuses = []
    for figures in window_figures(sla.bot, start, end, sla=sla, now=now):
        summary = figures.summary
        window_ms = int((end - start).total_seconds() * 1000) - figures.excluded_ms
        checks: list[metrics.Check] = []
        if sla.min_uptime_pct is not None:
            target = float(sla.min_uptime_pct) / 100
            bid, ask = summary.uptime_bid, summary.uptime_ask
            if sla.max_spread_bps is not None:
                bid, ask, _ = metrics.uptime_within(figures.totals, figures.counted_ms, float(sla.max_spread_bps))
            for side, figure in (("uptime_bid", bid), ("uptime_ask", ask)):
                checks.append(metrics.uptime_check(side, figure, target, counted_ms=figures.counted_ms,
                                                   window_ms=window_ms))
        if sla.max_spread_bps is not None:
            checks.append(metrics.ceiling_check("avg_spread_bps", summary.avg_spread_bps, float(sla.max_spread_bps),
                                                "bps"))
        if sla.min_depth_quote is not None:
            band = sla.depth_band_pct
            for side in ("bid", "ask"):
                checks.append(metrics.floor_check(f"depth_{side}_{band}pct_quote",
                                                  summary.depth_quote[f"{side}_{band}"],
                                                  float(sla.min_depth_quote), "quote"))
        statuses.append(SlaStatus(sla, figures, checks, start, end))
    return statuses


def evaluate_all(*, now: datetime | None = None, bots: list[Bot] | None = None) -> int:
    """Evaluate every active agreement (of ``bots``) and record a bot event when one turns red
    (``SlaBreached``) or amber (``SlaAtRisk``) on a (venue, pair), once per change and window."""
    now = now or timezone.now()
    slas = Sla.objects.filter(is_active=True).select_related("bot")
    if bots is not None:
        slas = slas.filter(bot__in=bots)
    count = 0
    for sla in slas:
        for status in evaluate(sla, now=now):
            note_status(status, now=now)
            count += 1
    return count


def note_status(status: SlaStatus, *, now: datetime) -> str | None:
    """Store the status; returns the event type recorded: ``SlaBreached`` / ``SlaAtRisk`` when it turned red /
    amber in its window, ``SlaRecovered`` when it is green again after red or amber (in that window or the
    one before: a new window that starts green clears the last one's breach), else None."""
    sla, figures = status.sla, status.figures
    summary = {c.name: {"status": c.status, "figure": c.figure, "target": c.target, "needs": c.needs}
               for c in status.checks}
    with transaction.atomic():
        state, _ = SlaState.objects.select_for_update().get_or_create(
            sla=sla, exchange_account_id=figures.exchange_account_id, trading_pair=figures.trading_pair,
            defaults={"tenant_id": sla.tenant_id, "window_start": status.window_start, "status": metrics.GREEN,
                      "changed_at": now})
        stored = state.status
        previous = stored if state.window_start == status.window_start else metrics.GREEN
        state.window_start, state.figures = status.window_start, summary
        changed = status.status != previous
        recovered = status.status == metrics.GREEN and stored != metrics.GREEN
        if changed or recovered:
            state.status, state.changed_at = status.status, now
        state.save()
        event_type = SLA_EVENT_TYPES.get(status.status) if changed else None
        if recovered:
            event_type = SLA_RECOVERED
        if event_type is not None:
            failing = [c for c in status.checks if c.status == status.status]
            publish_event(bot=sla.bot, event_type=event_type, payload={
                "sla_id": sla.pk, "sla": sla.name, "exchange_account_id": figures.exchange_account_id,
                "pair": figures.trading_pair, "status": status.status, "previous": stored if recovered else previous,
                "window_start": status.window_start.isoformat(),
                "checks": {c.name: {"figure": c.figure, "target": c.target, "needs": c.needs} for c in failing},
            })
    return event_type
