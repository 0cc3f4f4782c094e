"""Exchange accounts to gateways: credentials are decrypted in memory and the gateway is cached per
process and per account by ``exchanges.registry.get_gateway`` (rebuilt when credentials change)."""

from __future__ import annotations

from django.conf import settings

from exchanges.gateway import ExchangeGateway
from exchanges.models import ExchangeAccount
from exchanges.registry import get_gateway


def gateway_for_account(account: ExchangeAccount) -> ExchangeGateway:
    return get_gateway(account.credentials(), redis_url=settings.REDIS_URL,
                       timeout_secs=settings.EXCHANGE_HTTP_TIMEOUT_SECS)


def warm_up() -> None:
    """Import ccxt's async exchange classes now (about 1.5 s), not on a kill switch's critical path.

    Long-running processes (daphne, Celery workers) call this at start.
    """
    import exchanges.ccxt_gateway  # noqa: F401
