"""The demo world the one-command run creates: a tenant, an operator, an admin, an emulator-backed
exchange account on every venue of the registry (each on its own emulator dialect, funded alike) and a
bot quoting two pairs on every one of those accounts, centred on the venues' median mid. Idempotent:
running it again changes nothing (except a demo bot left exactly as an earlier version created it, which
gets the current demo settings and venues)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from bots.models import Bot
from exchanges.emulator.market import DEMO_MAKER_FEE_RATE
from exchanges.models import ExchangeAccount
from exchanges.venues import DEFAULT_EXCHANGE_ID, VENUES
from mmplatform.tenancy.models import Membership, Role, Tenant

DEMO_OPERATOR = ("operator", "mmplatform-demo")
DEMO_ADMIN = ("admin", "mmplatform-admin")
DEMO_CLIENT = ("issuer", "mmplatform-issuer")  # a token issuer's client login: the demo bot's SLA pages only
DEMO_API_KEY = "demo-api-key-0001"
DEMO_API_SECRET = "demo-api-secret-0001-please-rotate"
DEMO_BALANCES = "BTC=1,ETH=20,USDT=60000"  # each pair starts at its 0.5 target ratio
DEMO_PAIRS = "BTC/USDT,ETH/USDT"
DEMO_PASSPHRASE = "demo-passphrase-0001"
"""Signs the demo key's requests on the venues that sign with one."""
DEMO_VENUES: tuple[str, ...] = tuple(exchange_id for exchange_id, venue in VENUES.items() if venue.emulator_dialect)
"""The venues the one-command run starts an emulator for, in the registry's order (the default first)."""


def demo_account_label(exchange_id: str) -> str:
    """``emulator`` for the default venue (the label the demo always had), ``emulator-<id>`` for the others."""
    return "emulator" if exchange_id == DEFAULT_EXCHANGE_ID else f"emulator-{exchange_id}"


def demo_passphrase(exchange_id: str) -> str:
    return DEMO_PASSPHRASE if VENUES[exchange_id].requires_passphrase else ""

# The demo bot: the defaults except where the demo market says otherwise. The emulator's resting
# liquidity starts 8 bps from the mid and its takers reach d bps with probability exp(-0.12 d), so a
# level-0 quote 6 bps each side is first in line for about half of them; its maker fee is the demo
# venue's 1.2 bps (exchanges.emulator.market.DEMO_MAKER_FEE_RATE), so a round trip at level 0 keeps
# 12 - 2 x 1.2 = 9.6 bps. Volatility (2.5-3 %/day) is below the default thresholds: nothing to override.
DEMO_BOT_SETTINGS: dict[str, object] = {
    "monitoring_interval_secs": 1.0,
    "grid_levels": 3,
    "order_size_quote": Decimal("500"),
    "spread_bps": 12.0,
    "maker_fee_bps": float(DEMO_MAKER_FEE_RATE * 10000),
    "order_refresh_tolerance_bps": 2.0,
    # one market on three venues (the demo's emulators share one mid walk): every venue's quotes centre
    # on the median of the venues' mids, so no venue's quotes can be picked off against another's
    "reference_price": "median",
    # the position limit is on the pair's inventory summed over the venues: three venues' 1 BTC each is
    # 180,000 USDT (the default 100,000 would hold every bid back from the start)
    "max_position_quote": Decimal("300000"),
}

# What earlier versions created (it lost money to fees on the 0.1 % tier and overrode the volatility
# thresholds for a market four times too volatile): a demo bot still exactly so is brought up to date.
PREVIOUS_DEMO_BOT_SETTINGS: dict[str, object] = {
    "spread_bps": 10.0, "maker_fee_bps": 10.0, "high_volatility_threshold": 0.5, "volatility_pause_threshold": 1.0,
}
PREVIOUS_OVERRIDES_RESET = {name: Bot._meta.get_field(name).get_default()
                            for name in ("high_volatility_threshold", "volatility_pause_threshold")}
ONE_VENUE_REFERENCE = Bot._meta.get_field("reference_price").get_default()
"""The reference price of the demo bot the one-venue demo created (each venue its own mid)."""
ONE_VENUE_MAX_POSITION = Bot._meta.get_field("max_position_quote").get_default()


@dataclass(frozen=True)
class DemoWorld:
    tenant: Tenant
    account: ExchangeAccount
    """The default venue's account."""
    bot: Bot
    accounts: dict[str, ExchangeAccount]
    """Every demo account by exchange id (the default venue's included): the demo bot quotes on each."""


@transaction.atomic
def ensure_demo_world(emulator_url: str, venue_urls: dict[str, str] | None = None) -> DemoWorld:
    """Create (or refresh the emulator URLs of) the demo tenant, users, accounts and bot. ``emulator_url``
    is the default venue's emulator; ``venue_urls`` the others' by exchange id (a venue without one gets
    no demo account)."""
    users = get_user_model().objects
    operator = users.filter(username=DEMO_OPERATOR[0]).first()
    if operator is None:
        operator = users.create_user(username=DEMO_OPERATOR[0], password=DEMO_OPERATOR[1], is_staff=True)
    if not users.filter(username=DEMO_ADMIN[0]).exists():
        users.create_superuser(username=DEMO_ADMIN[0], password=DEMO_ADMIN[1], email="")
    tenant, _ = Tenant.objects.get_or_create(slug="demo-desk", defaults={"name": "Demo Desk"})
    Membership.objects.get_or_create(user=operator, tenant=tenant, defaults={"role": Role.OPERATOR})
    urls = {**(venue_urls or {}), DEFAULT_EXCHANGE_ID: emulator_url}
    accounts = {exchange_id: _demo_account(tenant, exchange_id, urls[exchange_id])
                for exchange_id in DEMO_VENUES if exchange_id in urls}
    account = accounts[DEFAULT_EXCHANGE_ID]
    bot = Bot.objects.filter(tenant=tenant, name="demo-bot").first()
    if bot is None:
        bot = Bot.objects.create(tenant=tenant, name="demo-bot", trading_pairs=DEMO_PAIRS, **DEMO_BOT_SETTINGS)
        bot.exchange_accounts.add(*accounts.values())
    else:
        if all(getattr(bot, name) == value for name, value in PREVIOUS_DEMO_BOT_SETTINGS.items()):
            changes = {**PREVIOUS_OVERRIDES_RESET, **DEMO_BOT_SETTINGS}
            Bot.objects.filter(pk=bot.pk).update(**changes)
            bot.refresh_from_db()
        if list(bot.exchange_accounts.all()) == [account] and bot.reference_price == ONE_VENUE_REFERENCE:
            # as the one-venue demo left it: now on every venue, centred on their median
            bot.exchange_accounts.add(*accounts.values())
            changes = {"reference_price": DEMO_BOT_SETTINGS["reference_price"]}
            if bot.max_position_quote == ONE_VENUE_MAX_POSITION:
                changes["max_position_quote"] = DEMO_BOT_SETTINGS["max_position_quote"]
            Bot.objects.filter(pk=bot.pk).update(**changes)
            bot.refresh_from_db()
    ensure_demo_agreement(tenant, bot)
    return DemoWorld(tenant, account, bot, accounts)


def _demo_account(tenant: Tenant, exchange_id: str, url: str) -> ExchangeAccount:
    label = demo_account_label(exchange_id)
    account = ExchangeAccount.objects.filter(tenant=tenant, label=label).first()
    if account is None:
        account = ExchangeAccount(tenant=tenant, label=label, exchange_id=exchange_id)
        account.set_credentials(api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                                passphrase=demo_passphrase(exchange_id))
    account.api_base_url = url
    account.rate_limit_per_sec = 100.0
    account.save()
    return account


def ensure_demo_agreement(tenant: Tenant, bot: Bot) -> None:
    """The demo bot's liquidity agreement with a token issuer (its day's uptime, spread and depth) and the
    issuer's client login, which sees only this bot's SLA pages (created once; edits are kept)."""
    from liquidity.models import ClientAccess, Sla

    Sla.objects.get_or_create(tenant=tenant, bot=bot, name="demo issuer agreement", defaults={
        "max_spread_bps": Decimal("50"), "min_depth_quote": Decimal("1000"), "depth_band_pct": 2,
        "min_uptime_pct": Decimal("90")})
    users = get_user_model().objects
    client = users.filter(username=DEMO_CLIENT[0]).first()
    if client is None:
        client = users.create_user(username=DEMO_CLIENT[0], password=DEMO_CLIENT[1], is_staff=False)
    if not client.memberships.exists():
        ClientAccess.objects.get_or_create(tenant=tenant, bot=bot, user=client)
