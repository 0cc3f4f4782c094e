"""Where a webhook may point: http(s) only, and never at a private, loopback, link-local or otherwise
non-public address unless the operator allowed that network (``ALERTS_ALLOWED_PRIVATE_NETWORKS``, CIDRs).

Checked when a channel is saved (a field error, nothing saved) and again right before each delivery (the
name may resolve elsewhere by then), so a tenant cannot make the platform call into its own network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookURLError(ValueError):
    """The URL may not be called; the message says why."""


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """``["127.0.0.0/8", "::1/128"]`` -> networks; a malformed entry raises ValueError naming it."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"ALERTS_ALLOWED_PRIVATE_NETWORKS: {cidr!r} is not a network (e.g. 10.0.0.0/8)") from None
    return networks


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def check_address(address: Address, allowed: list[Network]) -> None:
    if is_public(address) or any(address in network for network in allowed):
        return
    what = "loopback" if address.is_loopback else "link-local" if address.is_link_local else "private or reserved"
    raise WebhookURLError(f"{address} is a {what} address; webhooks go to public addresses only "
                          "(an operator may allow a network with ALERTS_ALLOWED_PRIVATE_NETWORKS)")


def resolve(host: str, port: int) -> list[Address]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def check_webhook_url(url: str, allowed: list[Network], *, must_resolve: bool = False) -> None:
    """Raise WebhookURLError when ``url`` may not be called. A literal address is judged as it is; a name
    by every address it resolves to. A name that does not resolve now passes unless ``must_resolve``
    (at delivery time it must)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise WebhookURLError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookURLError(f"the scheme must be http or https, not {parts.scheme or 'none'!r}")
    host = parts.hostname or ""
    if not host:
        raise WebhookURLError("the URL has no host")
    if parts.username or parts.password:
        raise WebhookURLError("credentials in the URL are not allowed; the request is signed instead")
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allowed)
        return
    try:
        addresses = resolve(host, port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        if must_resolve:
            raise WebhookURLError(f"{host} does not resolve: {exc}") from None
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise WebhookURLError(f"{host} is a local name that does not resolve here") from None
        return
    for address in addresses:
        check_address(address, allowed)
