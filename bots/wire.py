"""Every payload the dashboard's browser gets, built in one place: events (server-rendered rows, pushes
and catch-up frames alike), orders, fills, risk events, and the decimal formatting the pages show.

An event reaches the browser as ``event_json``: its bot's name, a one-line human-readable summary
(``event_summary``), whether it is routine (``ROUTINE_EVENTS``: aggregated in the logs), and the raw
payload (shown on demand). ``bots.events.publish_event`` pushes exactly this dict, the views and
the websocket catch-up send exactly this dict, so a pushed row and a rendered row cannot differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

ROUTINE_EVENTS = frozenset({"OrdersAdjusted"})
"""Event types that happen every few seconds while a bot quotes: the logs aggregate runs of them."""

MAX_PLACES = 8
"""Places shown for an exact decimal (amounts, prices, fees) when no precision is asked for."""

MONEY_PLACES = 2
"""Places shown for quote-currency money (P&L, volume)."""

EMPTY = "—"


# --- decimals --------------------------------------------------------------------------------------


def to_decimal(value: Any) -> Decimal | None:
    """A Decimal from a Decimal, an int, a float (its shortest repr) or a numeric string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def format_decimal(value: Any, places: int | None = None, *, grouping: bool = False) -> str:
    """A number as a person reads it: never exponent notation (``0E-12`` is ``0``), no trailing zeros
    beyond ``places``, no negative zero. ``places`` fixes the number of decimals (money: 2); without it
    the exact value is shown with at most ``MAX_PLACES`` decimals (amounts, prices, fees).
    ``grouping`` adds thousands separators. Not a number: the text itself; nothing: an em dash."""
    number = to_decimal(value)
    if number is None:
        return EMPTY if value is None or value == "" else str(value)
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    else:
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_PLACES:
            number = number.quantize(Decimal(1).scaleb(-MAX_PLACES), rounding=ROUND_HALF_EVEN)
        number = number.normalize() if number else Decimal(0)
    if number.is_zero():
        number = abs(number)
    text = format(number, ",f" if grouping else "f")
    if places is None and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_money(value: Any) -> str:
    """Quote-currency money: two decimals with thousands separators (``-1,234.50``)."""
    return format_decimal(value, MONEY_PLACES, grouping=True)


def format_percent(value: Any, places: int = 1) -> str:
    """A ratio as a percentage: 0.128 -> ``12.8 %``."""
    number = to_decimal(value)
    if number is None:
        return EMPTY
    return f"{format_decimal(number * 100, places)} %"


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Decimals become exact fixed-point strings (``0`` rather than ``0E-12``), datetimes ISO strings;
    containers recursively. (Plain values and dicts are told by their exact type first: the ABC checks below
    were most of the time the engine's pushes spent here.)"""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if kind is list:
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return "0" if value.is_zero() else format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# --- events ---------------------------------------------------------------------------------------


def _pair(payload: Mapping[str, Any]) -> str:
    pair = payload.get("trading_pair")
    return f"{pair}: " if pair else ""


def _rounded(value: Any) -> str:
    """A figure of an SLA event to 4 decimals at most, without padding."""
    number = to_decimal(value)
    return format_decimal(round(number, 4) if number is not None else None)


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _generic(payload: Mapping[str, Any]) -> str:
    parts = []
    for key, value in payload.items():
        if isinstance(value, (dict, list)):
            continue
        shown = format_decimal(value) if to_decimal(value) is not None and not isinstance(value, bool) else value
        parts.append(f"{key.replace('_', ' ')} {shown}")
    return ", ".join(parts)


def _stopped(payload: Mapping[str, Any]) -> str:
    performance = payload.get("performance") or {}
    if not isinstance(performance, Mapping) or not performance:
        return "stopped quoting"
    bits = []
    for key, label in (("realised_pnl_quote", "realised"), ("fees_paid_quote", "fees"),
                       ("net_pnl_quote", "net"), ("fill_count", "fills")):
        if key in performance:
            shown = performance[key] if key == "fill_count" else format_money(performance[key])
            bits.append(f"{label} {shown}")
    return "stopped quoting" + (f" ({', '.join(bits)})" if bits else "")


def _adapted(payload: Mapping[str, Any]) -> str:
    if not payload.get("to"):
        return _generic(payload)
    text = f"{_pair(payload)}{payload.get('from') or '?'} → {payload['to']}"
    if payload.get("spread_bps") is not None:
        text += f", spread {format_decimal(payload['spread_bps'], 1)} bps"
    if payload.get("volatility_daily") is not None:
        text += f", daily volatility {format_percent(payload['volatility_daily'])}"
    return text


def event_summary(event_type: str, payload: Mapping[str, Any] | None) -> str:
    """One human-readable line for an event (the raw payload stays available beside it)."""
    p: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    match event_type:
        case "ExchangeConnected":
            return f"connected to {p.get('exchange_id', '?')} (account {p.get('account', '?')})"
        case "MarketMakingStarted":
            pairs = p.get("trading_pairs") or []
            return "started quoting " + (", ".join(map(str, pairs)) if pairs else "no pair")
        case "MarketMakingStopped":
            return _stopped(p)
        case "OrdersPlaced":
            return f"{_pair(p)}{_plural(p.get('order_count', 0), 'order')} placed"
        case "OrdersAdjusted":
            return (f"{_pair(p)}{p.get('new_order_count', 0)} placed, {p.get('cancelled', 0)} cancelled, "
                    f"{p.get('kept', 0)} kept")
        case "OrderFilled":
            return (f"{_pair(p)}{'hedge ' if p.get('is_hedge') else ''}{p.get('side', '?')} "
                    f"{format_decimal(p.get('amount'))} @ "
                    f"{format_decimal(p.get('price'))}" + (f" on {p['venue']}" if p.get("venue") else ""))
        case "InventoryRebalanced":
            return f"{_plural(p.get('trades_executed', 0), 'rebalancing trade')} executed"
        case "RiskEventHandled":
            action = p.get("action_taken")
            return (f"{p.get('event_type', 'risk')}: {p.get('message', '')}"
                    + (f" → {str(action).replace('_', ' ')}" if action else ""))
        case "StrategyAdapted":
            return _adapted(p)
        case "BotError":
            return str(p.get("error") or "error")
        case "KillSwitchEngaged":
            return f"kill switch engaged: {p.get('reason') or 'no reason given'}"
        case "KillSwitchReleased":
            return f"kill switch released: {p.get('reason') or 'no reason given'}"
        case "Reconciled":
            return f"reconciled with the exchange: {_plural(p.get('fills_recovered', 0), 'missed fill')} recovered"
        case "SlaBreached" | "SlaAtRisk":
            failing = ", ".join(f"{name} {_rounded(c.get('figure'))} (target {_rounded(c.get('target'))})"
                                for name, c in (p.get("checks") or {}).items() if isinstance(c, Mapping))
            verb = "breached" if event_type == "SlaBreached" else "at risk"
            pair = f"{p['pair']}: " if p.get("pair") else ""
            return f"{pair}SLA {p.get('sla', '?')} {verb}" + (f": {failing}" if failing else "")
        case "SlaRecovered":
            pair = f"{p['pair']}: " if p.get("pair") else ""
            was = {"red": "breached", "amber": "at risk"}.get(str(p.get("previous")), str(p.get("previous") or ""))
            return f"{pair}SLA {p.get('sla', '?')} back to green" + (f" (was {was})" if was else "")
        case _:
            return _generic(p)


def event_json(*, event_id: int | None, bot_id: int | None, bot_name: str, event_type: str,
               payload: Mapping[str, Any] | None, created_at: datetime | str | None, count: int = 1,
               first_at: datetime | str | None = None) -> dict[str, Any]:
    """The one shape of an event in the browser: rendered rows, pushes and catch-up frames. A stored
    summary of routine events (bots/events.py) is ``count`` events from ``first_at`` to ``created_at``
    (the latest), its payload the latest event's (with the minute's ``totals``)."""
    data = jsonable(dict(payload or {}))
    return {
        "count": count,
        "first_at": jsonable(first_at if first_at is not None else created_at),
        "event_id": event_id,
        "bot_id": bot_id,
        "bot_name": bot_name,
        "event_type": event_type,
        "summary": event_summary(event_type, data),
        "routine": event_type in ROUTINE_EVENTS,
        "payload": data,
        "created_at": jsonable(created_at),
    }


def bot_event_json(event: Any, bot_name: str | None = None) -> dict[str, Any]:
    """``event_json`` of a BotEvent row (its bot's name from ``event.bot`` unless given)."""
    return event_json(event_id=event.pk, bot_id=event.bot_id,
                      bot_name=bot_name if bot_name is not None else event.bot.name,
                      event_type=event.event_type, payload=event.payload,
                      created_at=event.last_at or event.created_at, count=event.occurrences,
                      first_at=event.created_at)


# --- rows of the bot page ------------------------------------------------------------------------------


def order_json(order: Any) -> dict[str, Any]:
    return jsonable({
        "client_order_id": order.client_order_id, "pair": order.trading_pair, "side": order.side,
        "exchange_account_id": order.exchange_account_id,  # the page names it (state's "venues")
        "price": order.price, "amount": order.amount, "filled": order.filled, "status": order.status,
        "level": order.level, "purpose": order.purpose, "created_at": order.created_at,
    })


def fill_json(fill: Any) -> dict[str, Any]:
    return jsonable({
        "trade_id": fill.exchange_trade_id, "pair": fill.trading_pair, "side": fill.side, "price": fill.price,
        "exchange_account_id": fill.exchange_account_id,
        "amount": fill.amount, "fee": fill.fee, "fee_currency": fill.fee_currency, "executed_at": fill.executed_at,
        "is_hedge": fill.is_hedge, "is_maker": fill.is_maker,
        # the fills table's kind column: a hedge (cross-venue hedging), else as the venue matched it
        "kind": "hedge" if fill.is_hedge else ("maker" if fill.is_maker else "taker"),
    })


HEDGE_STATUS_TEXT = {"off": "Hedging is off", "ok": "Hedged: nothing owed", "pending": "Hedging",
                     "halted": "Halted: a hedge is unresolved"}


def hedge_row_json(row: Any, venues: Mapping[str, str]) -> dict[str, Any]:
    """One hedge still owed (pending, a slippage breach or a failure) as the bot page lists it."""
    base = row.trading_pair.split("/")[0]
    owed = row.open_base
    return jsonable({
        "id": row.pk, "pair": row.trading_pair, "status": row.status, "status_label": row.get_status_display(),
        "maker": venues.get(str(row.maker_account_id), str(row.maker_account_id)), "side": row.side or (
            "buy" if owed > 0 else "sell"), "unhedged_base": owed, "asset": base,
        "unhedged_text": f"{format_decimal(abs(owed))} {base} to {'buy' if owed > 0 else 'sell'}",
        "limit_price": row.limit_price, "reason": row.reason, "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at, "created_at": row.created_at,
    })


def hedging_json(*, bot: Any, venues: Mapping[str, str], rows: list[Any],
                 carried: Mapping[str, Decimal]) -> dict[str, Any]:
    """The bot page's hedging panel: the setting, the status, the unhedged exposure per pair (what is
    owed: unsent or unresolved hedges and the remainders carried below the hedge venue's lot), the open
    hedges. ``rows``: hedges pending, in a slippage breach or failed; ``carried``: pair -> signed carry."""
    unresolved = [r for r in rows if r.status in ("slippage", "failed")]
    exposure: dict[str, Decimal] = {pair: Decimal(amount) for pair, amount in carried.items() if amount}
    for row in rows:
        exposure[row.trading_pair] = exposure.get(row.trading_pair, Decimal(0)) + row.open_base
    enabled = bool(bot.hedge_enabled and bot.hedge_account_id)
    status = "halted" if unresolved else "pending" if any(r.status == "pending" for r in rows) else (
        "ok" if enabled else "off")
    return jsonable({
        "enabled": enabled, "status": status, "status_text": HEDGE_STATUS_TEXT[status],
        "hedge_account": venues.get(str(bot.hedge_account_id)) if bot.hedge_account_id else None,
        "max_slippage_bps": bot.hedge_max_slippage_bps,
        "unhedged": [{"pair": pair, "base": amount, "asset": pair.split("/")[0],
                      "text": f"{format_decimal(abs(amount))} {pair.split('/')[0]} to "
                              f"{'buy' if amount > 0 else 'sell'}"}
                     for pair, amount in sorted(exposure.items()) if amount],
        "open": [hedge_row_json(r, venues) for r in rows],
    })


def risk_event_json(event: Any) -> dict[str, Any]:
    return jsonable({
        "id": event.pk, "event_type": event.event_type, "trading_pair": event.trading_pair,
        "message": event.message, "action_taken": event.action_taken, "created_at": event.created_at,
    })


def counters_json(bot: Any, *, open_orders: int, reasons: Mapping[str, str]) -> dict[str, Any]:
    """What moves every cycle, for the live counters of the pages (sent only when it changed): the last
    cycle as a Unix time (the page ages it itself), and the current "not quoting" reasons of a
    running bot (of its configured pairs)."""
    last = bot.last_cycle_finished_at or bot.last_cycle_started_at
    running = bot.status == "running"
    mine = configured_reasons(reasons, bot.pairs or []) if running else {}
    return {
        "id": bot.pk,
        "tenant_id": bot.tenant_id,
        "status": bot.status,
        "cycle_count": bot.cycle_count,
        "last_cycle_at": round(last.timestamp(), 3) if last else None,
        "stale_after_secs": 3.0 * max(float(bot.monitoring_interval_secs), 1.0) + 5,
        "open_orders": open_orders,
        "not_quoting": mine,
        "not_quoting_text": not_quoting_text(mine),
    }


VENUE_SEPARATOR = " @ "


def slot_name(pair: str, account_label: str) -> str:
    """The name of a pair on one account of a bot that quotes it on several (its "not quoting" reason's
    key, its ladder tab): ``BTC/USDT @ okx-desk``. A bot on one account names the pair alone."""
    return f"{pair}{VENUE_SEPARATOR}{account_label}"


def pair_of(name: str) -> str:
    """The pair a ``slot_name`` (or a plain pair) is about."""
    return name.split(VENUE_SEPARATOR, 1)[0]


def venues_json(accounts: Any) -> dict[str, str]:
    """account id -> "label (exchange)": how the bot page names the venue of an order, a fill, a ladder."""
    return {str(a.pk): f"{a.label} ({a.exchange_id})" for a in accounts}


def configured_reasons(reasons: Mapping[str, str], pairs: list[str]) -> dict[str, str]:
    """The reasons about the bot's configured pairs (on any of its venues: ``BTC/USDT @ okx-desk``)."""
    return {name: why for name, why in reasons.items() if pair_of(name) in pairs}


def not_quoting_text(reasons: Mapping[str, str]) -> str:
    """The banner line for a running bot that does not quote: every pair's reason, one sentence."""
    if not reasons:
        return ""
    return "Running — not quoting: " + "; ".join(reasons[pair] for pair in sorted(reasons))


# --- liquidity agreements (liquidity/): the SLA pages of members and clients -------------------------

SLA_CHECK_LABELS = {"uptime_bid": "Uptime, bid side", "uptime_ask": "Uptime, ask side",
                    "avg_spread_bps": "Average spread"}


def _sla_figure(name: str, value: float | None) -> str:
    if value is None:
        return EMPTY
    if name.startswith("uptime"):
        return format_percent(value, 2)
    if name.endswith("_bps"):
        return f"{format_decimal(Decimal(repr(value)), 2)} bps"
    return format_money(Decimal(repr(value)))


def sla_check_json(check: Any) -> dict[str, Any]:
    """One term of an agreement: status, the figure and target as numbers and as text, what it needs."""
    label = SLA_CHECK_LABELS.get(check.name) or check.name.replace("_", " ").replace("pct quote", "% depth")
    return {"name": check.name, "label": label, "status": check.status, "figure": check.figure,
            "target": check.target, "figure_text": _sla_figure(check.name, check.figure),
            "target_text": _sla_figure(check.name, check.target), "needs": check.needs}


def sla_figures_json(figures: Any, venue: str) -> dict[str, Any]:
    """A (venue, pair)'s figures over a window: aggregates only (no order is ever named)."""
    summary = figures.summary
    return jsonable({
        "venue": venue, "pair": figures.trading_pair, "from": figures.start, "to": figures.end,
        "counted_minutes": round(figures.counted_ms / 60_000, 1),
        "excluded_minutes": round(figures.excluded_ms / 60_000, 1),
        "uptime_bid": summary.uptime_bid, "uptime_ask": summary.uptime_ask,
        "uptime_two_sided": summary.uptime_two_sided,
        "uptime_bid_text": format_percent(summary.uptime_bid, 2),
        "uptime_ask_text": format_percent(summary.uptime_ask, 2),
        "uptime_two_sided_text": format_percent(summary.uptime_two_sided, 2),
        "avg_spread_bps": summary.avg_spread_bps, "p50_spread_bps": summary.p50_spread_bps,
        "p95_spread_bps": summary.p95_spread_bps,
        "avg_spread_text": _sla_figure("avg_spread_bps", summary.avg_spread_bps),
        "depth_quote": {key: Decimal(repr(value)).quantize(Decimal("0.01"))
                        for key, value in summary.depth_quote.items()},
        "depth_bid_2pct_text": format_money(Decimal(repr(summary.depth_quote["bid_2"]))),
        "depth_ask_2pct_text": format_money(Decimal(repr(summary.depth_quote["ask_2"]))),
        "venue_share_2pct": figures.venue_share, "venue_share_text": format_percent(figures.venue_share),
        "fills": figures.extras.fills, "volume_quote": figures.extras.volume_quote,
        "maker_share": figures.maker_share, "maker_share_text": format_percent(figures.maker_share),
    })


def sla_status_json(status: Any, venue: str) -> dict[str, Any]:
    """An agreement on one (venue, pair) now: green / amber / red, each term, the window's figures."""
    sla = status.sla
    return jsonable({
        "sla_id": sla.pk, "sla": sla.name, "bot_id": sla.bot_id, "status": status.status, "window": sla.window,
        "window_start": status.window_start, "window_end": status.window_end,
        "checks": [sla_check_json(c) for c in status.checks],
        "figures": sla_figures_json(status.figures, venue),
    })


SLA_STATUS_ORDER = ("green", "amber", "red")


def sla_bot_json(*, bot: Any, at: datetime, statuses: list[dict[str, Any]],
                 today: list[dict[str, Any]]) -> dict[str, Any]:
    """A bot's SLA page state: each agreement's status per (venue, pair), the worst of them, today's figures."""
    worst = max((st["status"] for st in statuses), key=SLA_STATUS_ORDER.index, default=None)
    return jsonable({"bot_id": bot.pk, "bot": bot.name, "at": at, "statuses": statuses, "today": today,
                     "status": worst})


def sla_series_json(*, bot: Any, hours: int, series: Mapping[str, list[dict[str, Any]]],
                    venues: Mapping[int, str]) -> dict[str, Any]:
    """Chart points per (venue, pair) (``liquidity.reports.series``: "account id:pair" -> points)."""
    return jsonable({"bot_id": bot.pk, "hours": hours, "series": [
        {"key": key, "venue": venues.get(int(key.split(":", 1)[0]), "?"), "pair": key.split(":", 1)[1],
         "points": points} for key, points in sorted(series.items())]})
