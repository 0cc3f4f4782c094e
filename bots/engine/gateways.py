"""Exchange accounts to gateways: credentials are decrypted in memory and the gateway is cached per
process and per account by ``exchanges.gateway.get_gateway`` (rebuilt when credentials change)."""

from __future__ import annotations

from django.conf import settings

from exchanges.gateway import ExchangeGateway, get_gateway
from exchanges.models import ExchangeAccount


def gateway_for_account(account: ExchangeAccount) -> ExchangeGateway:
    return get_gateway(account.credentials(), redis_url=settings.REDIS_URL)
