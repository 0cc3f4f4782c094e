"""Issue 15's multi-venue bot end to end: one bot quotes BTC/USDT on three venues at once — three emulator
processes (``run_exchange_emulator --venue binance|okx|bybit``, ccxt's real classes on our side) — run by
a real Celery worker. Fills on each venue; one venue's outage (its fault options: every request fails)
halts only its quotes, with its reason, while the other two keep re-quoting; a stop's final inventory is
one aggregate per pair equal to the sum of the three accounts' balances as the emulators report them;
the kill switch leaves no open order on any venue."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from bots import quoting, services
from bots.engine.gateways import warm_up
from bots.models import Bot, BotEvent, BotStatus, Fill, LiquidityPosition, Order
from exchanges.models import ExchangeAccount
from exchanges.registry import clear_gateway_cache
from mmplatform.ports import free_port
from tests.processes import Proc, process_env, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VENUES = ("binance", "okx", "bybit")
PASSPHRASE = "Worker-Phrase-1"
ADMIN_TOKEN = "multi-venue-admin"
PAIR = "BTC/USDT"


class VenueProcess:
    """One emulator process speaking one venue's dialect, and its admin API (the independent view)."""

    def __init__(self, venue: str, *, market_step_ms: int = 50):
        self.venue = venue
        self.api_key, self.secret = f"{venue}-mvw-key-0001", f"{venue}-mvw-secret-0001-abcdef"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "manage.py", "run_exchange_emulator", "--venue", venue, "--port", str(self.port),
                "--seed", str(VENUES.index(venue) + 11), "--symbols", PAIR, "--market-step-ms", str(market_step_ms),
                "--admin-token", ADMIN_TOKEN, "--account", f"{self.api_key}:{self.secret}:BTC=1,USDT=60000"]
        if venue == "okx":
            argv += ["--passphrase", PASSPHRASE]
        self.proc = Proc(f"emulator-{venue}", argv, process_env())
        wait_until(self._up, 30, 0.2, message=f"{venue} emulator did not start: {self.base_url}")

    def _up(self) -> bool:
        try:
            return self.admin("GET", "state").get("symbols") is not None
        except requests.RequestException:
            return False

    def admin(self, method: str, path: str, **payload: Any) -> dict[str, Any]:
        response = requests.request(method, f"{self.base_url}/admin/{path}", headers={"X-Emulator-Admin": ADMIN_TOKEN},
                                    json=payload if method == "POST" else None,
                                    params={"api_key": self.api_key} if method == "GET" else None, timeout=5)
        response.raise_for_status()
        return response.json()

    def open_orders(self) -> list[dict[str, Any]]:
        return self.admin("GET", "orders")["orders"]

    def balance(self, asset: str) -> Decimal:
        accounts = self.admin("GET", "state")["accounts"]
        (held,) = accounts.values()
        entry = held.get(asset, {"free": "0", "locked": "0"})
        return Decimal(entry["free"]) + Decimal(entry["locked"])

    def account(self, world: Any) -> ExchangeAccount:
        account = ExchangeAccount(tenant=world.tenant, label=f"{self.venue}-desk", exchange_id=self.venue,
                                  api_base_url=self.base_url, rate_limit_per_sec=500.0)
        account.set_credentials(api_key=self.api_key, api_secret=self.secret,
                                passphrase=PASSPHRASE if self.venue == "okx" else "")
        account.save()
        return account


@pytest.fixture
def venues() -> Iterator[dict[str, VenueProcess]]:
    started: dict[str, VenueProcess] = {}
    try:
        for venue in VENUES:
            started[venue] = VenueProcess(venue)
        yield started
    finally:
        for process in started.values():
            process.proc.stop()
        clear_gateway_cache()


def status_of(bot: Bot) -> str:
    return Bot.objects.values_list("status", flat=True).get(pk=bot.pk)


def mine(process: VenueProcess, bot: Bot) -> list[dict[str, Any]]:
    """The open orders of the bot's account on the venue (the account is the bot's alone; client ids are
    in each venue's own spelling, OKX's without dashes)."""
    return process.open_orders()


def test_one_bot_on_three_venues_through_a_real_worker(world_a: Any, venues: dict[str, VenueProcess],
                                                       celery_queue: str) -> None:
    accounts = {venue: process.account(world_a) for venue, process in venues.items()}
    bot = world_a.bot
    bot.exchange_accounts.set(accounts.values())
    for name, value in {"trading_pairs": PAIR, "grid_levels": 1, "order_size_quote": Decimal("500"),
                        "spread_bps": 10.0, "min_spread_bps": 2.0, "maker_fee_bps": 0.0,
                        "monitoring_interval_secs": 0.5, "error_recovery_delay_secs": 0.5,
                        "adaptation_enabled": False, "metrics_interval_secs": 1.0,
                        "max_position_quote": Decimal("1000000"), "reference_price": "median"}.items():
        setattr(bot, name, value)
    bot.save()
    worker = start_worker("worker-mv")
    try:
        services.bot_request_start(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.RUNNING, 60, message="bot never reached RUNNING")
        assert LiquidityPosition.objects.filter(bot=bot, is_active=True).count() == 3, "one position per venue"
        for venue, process in venues.items():
            wait_until(lambda p=process: len(mine(p, bot)) == 2, 30, message=f"{venue}: no bid and ask resting")
        for venue, account in accounts.items():
            wait_until(lambda a=account: Fill.objects.filter(bot=bot, exchange_account=a).exists(), 120,
                       message=f"no fill on {venue}")

        # one venue's outage: every request to bybit fails; binance and okx quote on
        venues["bybit"].admin("POST", "faults", error_rate=1.0)
        outage = f"{PAIR} @ bybit-desk"
        # (the slot may already carry another reason, e.g. its balances after the fills: wait for this one)
        wait_until(lambda: "bybit" in quoting.current([bot.pk]).get(bot.pk, {}).get(outage, ""), 30,
                   message="no per-venue reason for the venue that is down")
        assert set(quoting.current([bot.pk])[bot.pk]) == {outage}, "only the failing venue has a reason"
        since = time.time()
        for venue in ("binance", "okx"):
            wait_until(lambda a=accounts[venue]: Order.objects.filter(
                bot=bot, exchange_account=a, acknowledged_at__gt=_aware(since)).exists(), 60,
                message=f"{venue} stopped quoting during bybit's outage")
            wait_until(lambda v=venue: len(mine(venues[v], bot)) == 2, 30,  # (a re-quote may be mid-way)
                       message=f"{venue}: no bid and ask resting during bybit's outage")
        venues["bybit"].admin("POST", "faults", error_rate=0.0)
        wait_until(lambda: outage not in quoting.current([bot.pk]).get(bot.pk, {}), 60,
                   message="bybit did not resume after its outage")
        wait_until(lambda: len(mine(venues["bybit"], bot)) == 2, 30, message="bybit: quotes did not come back")

        # a stop: the final inventory is one per pair, the sum of the three accounts as the venues hold them
        services.bot_request_stop(bot=bot, user=world_a.operator)
        wait_until(lambda: status_of(bot) == BotStatus.STOPPED, 60, message="bot never stopped")
        for venue, process in venues.items():
            assert mine(process, bot) == [], f"{venue}: orders left after the stop"
        final = BotEvent.objects.get(bot=bot, event_type="MarketMakingStopped").payload["final_inventory"][PAIR]
        base = sum(process.balance("BTC") for process in venues.values())
        quote = sum(process.balance("USDT") for process in venues.values())
        assert Decimal(repr(final["base"])) == pytest.approx(base, abs=Decimal("1e-9"))
        assert Decimal(repr(final["quote"])) == pytest.approx(quote, abs=Decimal("1e-6"))
        assert base != 3 or quote != 180000, "fills moved the balances"
        assert set(final["venues"]) == {f"{v}-desk" for v in VENUES}
        for venue, process in venues.items():
            assert Decimal(repr(final["venues"][f"{venue}-desk"]["base"])) == process.balance("BTC")

        # started again, then killed: no open order on any venue when the kill returns
        services.bot_request_start(bot=bot, user=world_a.operator)
        for venue, process in venues.items():
            wait_until(lambda p=process: len(mine(p, bot)) == 2, 60, message=f"{venue}: no quotes after restart")
        warm_up()  # as daphne does at start: the kill runs in the web process
        services.bot_kill(bot=bot, user=world_a.operator)
        for venue, process in venues.items():
            assert mine(process, bot) == [], f"{venue}: orders left after the kill"
    finally:
        worker.stop()
        quoting.forget(bot)


def _aware(timestamp: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)
