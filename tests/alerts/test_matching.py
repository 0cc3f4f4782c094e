"""The pure parts: which events are alerts (and of what kind), webhook signatures, where a webhook may
point. No database."""

from __future__ import annotations

import ipaddress

import pytest

from alerts import matching, signing
from alerts.urls_check import WebhookURLError, check_webhook_url

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.mark.parametrize(("event_type", "payload", "kind", "severity"), [
    ("RiskEventHandled", {"event_type": "DAILY_LOSS_LIMIT", "trading_pair": "BTC/USDT"}, "risk_event", "critical"),
    ("RiskEventHandled", {"event_type": "MARKET_VOLATILITY"}, "risk_event", "warning"),
    ("RiskEventHandled", {"event_type": "HEDGE_FAILED", "trading_pair": "BTC/USDT"}, "risk_event", "error"),
    ("RiskEventHandled", {"event_type": "HEDGE_SLIPPAGE", "trading_pair": "BTC/USDT"}, "risk_event", "error"),
    ("SlaBreached", {"sla_id": 3, "trading_pair": "BTC/USDT", "metric": "uptime_bid"}, "sla_breach", "error"),
    ("SlaAtRisk", {"sla_id": 3}, "sla_at_risk", "warning"),
    ("BotError", {"error": "no exchange could be connected"}, "bot_error", "critical"),
    ("KillSwitchEngaged", {"reason": "kill switch engaged by ops"}, "kill_switch", "critical"),
    ("CyclesStale", {"silent_secs": 42}, "stale_cycles", "error"),
    ("VenueDisconnected", {"venue": "7", "error": "timeout"}, "venue_disconnected", "error"),
])
def test_alerting_events_are_classified(event_type: str, payload: dict, kind: str, severity: str) -> None:
    signal = matching.classify(event_type, payload)
    assert signal is not None and (signal.kind, signal.severity) == (kind, severity)
    assert signal.title


@pytest.mark.parametrize("event_type", ["OrdersAdjusted", "OrdersPlaced", "OrderFilled", "MarketMakingStarted",
                                        "KillSwitchReleased", "Reconciled", "SomethingNew"])
def test_routine_and_unknown_events_are_not_alerts(event_type: str) -> None:
    assert matching.classify(event_type, {"new_order_count": 4}) is None


def test_two_breaches_of_one_sla_on_different_pairs_are_different_alerts() -> None:
    one = matching.classify("SlaBreached", {"sla_id": 1, "trading_pair": "BTC/USDT"})
    two = matching.classify("SlaBreached", {"sla_id": 1, "trading_pair": "ETH/USDT"})
    again = matching.classify("SlaBreached", {"sla_id": 1, "trading_pair": "BTC/USDT", "value": 0.8})
    assert one and two and again
    assert one.subject != two.subject and one.subject == again.subject


def test_severity_order() -> None:
    assert matching.at_least("critical", "warning") and matching.at_least("warning", "warning")
    assert not matching.at_least("warning", "error")


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    body = b'{"alert_id":1}'
    header = signing.signature_header("s3cret-s3cret-s3cret", 1_800_000_000, body)
    assert signing.verify("s3cret-s3cret-s3cret", header, body, now=1_800_000_010)
    assert not signing.verify("s3cret-s3cret-s3cret", header, body + b" ", now=1_800_000_010)
    assert not signing.verify("another-secret-value", header, body, now=1_800_000_010)
    assert not signing.verify("s3cret-s3cret-s3cret", header, body, now=1_800_000_000 + 3600)  # replayed late
    forged = header.replace("t=1800000000", "t=1800003600")
    assert not signing.verify("s3cret-s3cret-s3cret", forged, body, now=1_800_003_600)


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.com/x", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("hooks.example.com/x", "scheme"),
    ("http:///nohost", "no host"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10:8080/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://127.0.0.1:9000/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://0.0.0.0/hook", "reserved"),
    ("http://localhost:9000/hook", "loopback"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
])
def test_webhook_urls_refused(url: str, why: str) -> None:
    with pytest.raises(WebhookURLError, match=why):
        check_webhook_url(url, [])


def test_loopback_is_accepted_only_when_the_operator_allows_it() -> None:
    check_webhook_url("http://127.0.0.1:9000/hook", LOOPBACK)
    check_webhook_url("http://localhost:9000/hook", [*LOOPBACK, ipaddress.ip_network("::1/128")])
    with pytest.raises(WebhookURLError):
        check_webhook_url("http://10.0.0.1/hook", LOOPBACK)


def test_public_addresses_pass() -> None:
    check_webhook_url("https://8.8.8.8/hook", [])
    check_webhook_url("https://[2001:4860:4860::8888]/hook", [])
