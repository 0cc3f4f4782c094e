"""Which bot events are alerts, of what kind and how severe: pure (no Django), a dict lookup per event.

``classify`` is the first half of the rule matcher: every event ``bots.events.publish_event`` records (and
the synthetic ones the watchdog and the feeder report) passes through it on the engine's thread; the
routine flood (``OrdersAdjusted``, fills, ...) ends here with one lookup. What it returns is matched
against the tenant's rules in a Celery task (``alerts.services.alerts_raise``), never on the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INFO, WARNING, ERROR, CRITICAL = "info", "warning", "error", "critical"
SEVERITIES = (INFO, WARNING, ERROR, CRITICAL)
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

RISK_EVENT = "risk_event"
SLA_BREACH = "sla_breach"
SLA_AT_RISK = "sla_at_risk"
BOT_ERROR = "bot_error"
STALE_CYCLES = "stale_cycles"
VENUE_DISCONNECTED = "venue_disconnected"
KILL_SWITCH = "kill_switch"
KINDS = (RISK_EVENT, SLA_BREACH, SLA_AT_RISK, BOT_ERROR, STALE_CYCLES, VENUE_DISCONNECTED, KILL_SWITCH)

# Event types that are not BotEvent types of their own: reported by the watchdog (cycles older than the
# bot's deadline, and cycling again) and by the engine's feeder (an account unreadable for
# ALERTS_VENUE_DOWN_SECS, and read again).
CYCLES_STALE_EVENT = "CyclesStale"
VENUE_DISCONNECTED_EVENT = "VenueDisconnected"
CYCLES_RESUMED_EVENT = "CyclesResumed"
VENUE_RECONNECTED_EVENT = "VenueReconnected"

RISK_SEVERITY = {"DAILY_LOSS_LIMIT": CRITICAL, "MAX_DRAWDOWN": CRITICAL, "POSITION_LIMIT_EXCEEDED": ERROR,
                 "INVENTORY_IMBALANCE": WARNING, "MARKET_VOLATILITY": WARNING, "ORDER_DENIED": WARNING,
                 # an unhedged position and a maker venue that stopped quoting: a person should look now
                 "HEDGE_FAILED": ERROR, "HEDGE_SLIPPAGE": ERROR, "HEDGE_RESOLVED": INFO}

EVENT_KINDS: dict[str, str] = {
    "RiskEventHandled": RISK_EVENT,
    "SlaBreached": SLA_BREACH,
    "SlaAtRisk": SLA_AT_RISK,
    "BotError": BOT_ERROR,
    CYCLES_STALE_EVENT: STALE_CYCLES,
    VENUE_DISCONNECTED_EVENT: VENUE_DISCONNECTED,
    "KillSwitchEngaged": KILL_SWITCH,
}
"""Bot event type -> alert kind. Any other event type raises no alert."""

RESOLVING_EVENTS: dict[str, tuple[str, ...]] = {
    "SlaRecovered": ("SlaBreached", "SlaAtRisk"),
    VENUE_RECONNECTED_EVENT: (VENUE_DISCONNECTED_EVENT,),
    CYCLES_RESUMED_EVENT: (CYCLES_STALE_EVENT,),
    "KillSwitchReleased": ("KillSwitchEngaged",),
}
"""Event type that says a condition cleared -> the event types that alerted on it. Its payload carries what
theirs did (the SLA, account and pair; the account), so it names the same alerts (``resolutions``)."""

ALERT_TASKS: dict[str, str] = {**{event_type: "raise_alerts" for event_type in EVENT_KINDS},
                               **{event_type: "resolve_alerts" for event_type in RESOLVING_EVENTS}}
"""Event type -> the alerts task it goes to (``alerts.hooks.notice``: one lookup per event)."""


@dataclass(frozen=True)
class Signal:
    """An event that is an alert: its kind, default severity, what makes two of them the same alert
    (``subject``, within one bot and kind) and the words a person reads."""

    kind: str
    severity: str
    subject: str
    title: str
    message: str


def _text(payload: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = payload.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def classify(event_type: str, payload: Mapping[str, Any] | None) -> Signal | None:
    """The alert an event stands for, or None (most events)."""
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        return None
    payload = payload or {}
    pair = _text(payload, "trading_pair", "pair")
    on_pair = f" on {pair}" if pair else ""
    if kind == RISK_EVENT:
        risk = _text(payload, "event_type") or "risk event"
        action = _text(payload, "action_taken")
        return Signal(kind, RISK_SEVERITY.get(risk, WARNING), f"{risk}:{pair}", f"Risk: {risk}{on_pair}",
                      _text(payload, "message") + (f" (action: {action})" if action else ""))
    if kind in (SLA_BREACH, SLA_AT_RISK):
        sla = _text(payload, "sla_id", "sla", "sla_name", "name")
        venue = _text(payload, "venue", "exchange", "exchange_account_id", "account")
        metric = _text(payload, "metric", "measure")
        subject = ":".join((sla, venue, pair, metric))
        what = "SLA breached" if kind == SLA_BREACH else "SLA at risk"
        label = _text(payload, "sla_name", "name", "sla") or "SLA"
        detail = _text(payload, "message", "reason")
        if not detail and metric:
            value, target = _text(payload, "value", "figure", "current"), _text(payload, "threshold", "target")
            detail = f"{metric}: {value} vs {target}"
        return Signal(kind, ERROR if kind == SLA_BREACH else WARNING, subject,
                      f"{what}: {label}{on_pair}" + (f" ({venue})" if venue else ""), detail)
    if kind == BOT_ERROR:
        return Signal(kind, CRITICAL, "", "Bot in ERROR", _text(payload, "error", "message", "reason"))
    if kind == KILL_SWITCH:
        return Signal(kind, CRITICAL, "", "Kill switch engaged", _text(payload, "reason", "message"))
    if kind == STALE_CYCLES:
        silent = _text(payload, "silent_secs")
        return Signal(kind, ERROR, "", "Bot cycles stale",
                      f"no cycle for {silent} s" if silent else _text(payload, "message"))
    # VENUE_DISCONNECTED
    venue = _text(payload, "venue", "exchange_account_id")
    return Signal(kind, ERROR, venue, f"Venue disconnected: {_text(payload, 'account', 'venue')}".rstrip(": "),
                  _text(payload, "error", "message"))


def resolutions(event_type: str, payload: Mapping[str, Any] | None) -> list[Signal]:
    """The alerts a clearing event resolves, as the events that raised them classify (kind and subject are
    what identify an alert within a bot); empty for any other event."""
    signals = (classify(fired, payload) for fired in RESOLVING_EVENTS.get(event_type, ()))
    return [signal for signal in signals if signal is not None]


def at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, 0)
