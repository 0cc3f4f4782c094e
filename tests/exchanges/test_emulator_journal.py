"""The emulator's order journal (``GET /admin/journal``): the venue's own times of every accept, fill,
partial fill, cancel and expiry, the ground truth the SLA tests recompute uptime and depth from.
Driven through ccxt's real ``binance`` class; the clock is the emulator's."""

from __future__ import annotations

import time
from decimal import Decimal as D

import ccxt
from exchanges_testkit import API_KEY, API_SECRET, admin

from exchanges.ccxt_config import binance_config_for
from exchanges.emulator.engine import MarketSpec, MatchingEngine
from exchanges.emulator.server import AccountConfig, EmulatorServer

BTC = "BTC/USDT"


def test_journal_lists_every_step_with_the_venue_time_and_cancels_carry_their_own_time(fresh_emulator: EmulatorServer):
    fresh_emulator.add_account(AccountConfig("taker-key", "taker-secret", {"USDT": D("100000"), "BTC": D("10")}))
    maker = ccxt.binance(binance_config_for(fresh_emulator.base_url, API_KEY, API_SECRET))
    taker = ccxt.binance(binance_config_for(fresh_emulator.base_url, "taker-key", "taker-secret"))
    mid = float(fresh_emulator.market.mid(BTC))
    bid = maker.create_order(BTC, "limit", "buy", 0.01, round(mid * 0.95, 2), params={"newClientOrderId": "j-bid"})
    ask_price = round(mid * 1.0005, 2)  # inside the synthetic book's liquidity (8 bps out): takers meet it first
    maker.create_order(BTC, "limit", "sell", 0.02, ask_price, params={"newClientOrderId": "j-ask"})
    time.sleep(0.05)
    cancelled = maker.cancel_order(bid["id"], BTC)
    # the cancel is stamped when it happened, not with the order's acceptance time
    assert cancelled["timestamp"] >= bid["timestamp"] + 40
    taker.create_order(BTC, "limit", "buy", 0.005, ask_price, params={"timeInForce": "IOC"})
    taker.create_order(BTC, "limit", "buy", 0.015, ask_price, params={"timeInForce": "IOC"})
    taker.create_order(BTC, "limit", "buy", 0.01, ask_price, params={"timeInForce": "IOC"})  # nothing left: expires
    status, body = admin(fresh_emulator.base_url, "GET", f"/admin/journal?account={API_KEY}")
    assert status == 200, body
    steps = [(e["client_order_id"], e["event"], D(e["remaining"])) for e in body["entries"]]
    assert steps == [("j-bid", "accept", D("0.01")), ("j-ask", "accept", D("0.02")), ("j-bid", "cancel", 0),
                     ("j-ask", "partial_fill", D("0.015")), ("j-ask", "fill", 0)]
    entries = body["entries"]
    assert entries[2]["time_ms"] == cancelled["timestamp"] and entries[0]["time_ms"] == bid["timestamp"]
    assert entries[3]["is_maker"] and D(entries[3]["fill_quantity"]) == D("0.005") and entries[3]["pair"] == BTC
    assert [e["time_ms"] for e in entries] == sorted(e["time_ms"] for e in entries)
    # the taker's journal: its IOC orders, filled and expired
    status, taker_journal = admin(fresh_emulator.base_url, "GET", "/admin/journal?account=taker-key")
    assert [e["event"] for e in taker_journal["entries"]][-2:] == ["accept", "expire"]
    # since=MS keeps the later entries only
    since = entries[3]["time_ms"]
    _, later = admin(fresh_emulator.base_url, "GET", f"/admin/journal?account={API_KEY}&since={since}")
    assert [e["event"] for e in later["entries"]] == ["partial_fill", "fill"]
    assert admin(fresh_emulator.base_url, "GET", "/admin/journal?account=nobody")[0] == 400
    assert admin(fresh_emulator.base_url, "GET", f"/admin/journal?account={API_KEY}", token=None)[0] == 401


def test_cancel_all_is_stamped_and_accounts_without_a_journal_keep_none():
    engine = MatchingEngine([MarketSpec(BTC, "BTC", "USDT", D("0.01"), D("0.001"), D("0.001"), D("5"))],
                            D("0"), D("0"), first_id=1)
    engine.create_account("mm", {"USDT": D("10000"), "BTC": D("1")})
    engine.create_account("plain", {"USDT": D("10000")})
    engine.enable_journal("mm")
    engine.place_order("mm", BTC, "BUY", "LIMIT", D("0.01"), D("900"), client_order_id="a", now_ms=1_000)
    engine.place_order("mm", BTC, "SELL", "LIMIT_MAKER", D("0.01"), D("1100"), client_order_id="b", now_ms=1_010)
    engine.place_order("plain", BTC, "BUY", "LIMIT", D("0.01"), D("901"), now_ms=1_020)
    cancelled = engine.cancel_all("mm", BTC, now_ms=5_000)
    assert [o.updated_ms for o in cancelled] == [5_000, 5_000]
    assert [(e.event, e.time_ms) for e in engine.journal("mm")] == [
        ("accept", 1_000), ("accept", 1_010), ("cancel", 5_000), ("cancel", 5_000)]
    assert engine.journal("plain") == []
