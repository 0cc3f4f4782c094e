"""What a venue module declares (``Venue``) and the helpers every venue module shares.

Plain data and functions only: no ccxt or Django import, so the emulator, the models and the
benchmarks can read the registry without loading either.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

STREAM_METHODS = ("watch_bids_asks", "watch_ticker", "watch_order_book")
"""Public best-price streams in order of preference: the first one a venue offers is used."""


class ClientIdError(ValueError):
    """A client order id that cannot be sent to a venue (charset or length)."""


@dataclass(frozen=True)
class ClientIdRules:
    """A venue's client-order-id rules and the reversible encoding that keeps the platform's ids
    (``mm-<bot>-<epoch>-<cycle>-<position><side><level>``, Binance's alphabet) within them.

    ``escapes`` maps each character the venue refuses to a replacement; ``escape`` starts a two-char
    sequence for the replacement characters themselves, so ``decode(encode(x)) == x`` for any id in
    the platform's alphabet ``[.A-Za-z0-9:/_-]``. Ids coming back that were not made by ``encode``
    (typed by hand on the venue) decode unchanged where they contain no escape."""

    max_length: int
    pattern: str
    """The whole id as sent, e.g. ``[A-Za-z0-9]{1,32}``."""
    charset: str = ""
    """One character the venue accepts as itself (a regex class); empty: every platform character."""
    escapes: dict[str, str] = field(default_factory=dict)
    escape: str = ""

    def encode(self, client_order_id: str) -> str:
        """The id as sent to the venue; raises ``ClientIdError`` when it cannot fit the venue's rules."""
        if not client_order_id or not PLATFORM_CLIENT_ID.match(client_order_id):
            raise ClientIdError(f"client order id {client_order_id!r} must match {PLATFORM_CLIENT_ID.pattern}")
        if self.escape:
            reserved = set(self.escapes.values()) | {self.escape}
            out = []
            for char in client_order_id:
                if char in self.escapes:
                    out.append(self.escapes[char])
                elif char in reserved or not re.fullmatch(self.charset, char):
                    out.append(self.escape + _ESCAPE_TAGS[char])
                else:
                    out.append(char)
            wire = "".join(out)
        else:
            wire = client_order_id
        if len(wire) > self.max_length or not re.fullmatch(self.pattern, wire):
            raise ClientIdError(
                f"client order id {client_order_id!r} does not fit this venue's rules "
                f"({self.max_length} characters of {self.pattern}) as {wire!r}")
        return wire

    def decode(self, wire: str | None) -> str | None:
        """The platform's id for an id the venue reports (None / empty stays None)."""
        if not wire:
            return None
        if not self.escape:
            return wire
        back = {v: k for k, v in self.escapes.items()}
        untag = {v: k for k, v in _ESCAPE_TAGS.items()}
        out = []
        index = 0
        while index < len(wire):
            char = wire[index]
            if char == self.escape and index + 1 < len(wire) and wire[index + 1] in untag:
                out.append(untag[wire[index + 1]])
                index += 2
                continue
            out.append(back.get(char, char))
            index += 1
        return "".join(out)


PLATFORM_CLIENT_ID = re.compile(r"^[.A-Za-z0-9:/_-]{1,36}$")
"""Client order ids the platform makes (Binance's alphabet and length; the engine's are a subset)."""

# the second character of an escape sequence, per escaped character (never a replacement itself)
_ESCAPE_TAGS = {".": "A", ":": "B", "/": "C", "_": "D", "-": "E", "Y": "F", "Z": "G", "X": "H", "W": "I"}


@dataclass(frozen=True)
class ReplaceFailure:
    """A one-request cancel-replace the venue refused: whether the cancel half was done, the cancel's
    code and message, and the new order's rejection body (to map as a placement rejection)."""

    cancel_succeeded: bool
    cancel_code: Any
    cancel_message: str
    new_order_response: dict


@dataclass(frozen=True)
class CancelReplace:
    """How a venue cancels and places in ONE request (ccxt ``edit_order`` with these params)."""

    params: Callable[[str | None, str | None], dict]
    """(cancel order id or None, cancel client id as sent or None) -> extra ``edit_order`` params."""
    failure: Callable[[BaseException | None], ReplaceFailure | None]
    """The refusal carried by a ccxt exception, None when the error is anything else."""
    rejection_url: Callable[[dict], str]
    """The URL whose error table maps a new-order rejection (from the client's ``urls``)."""
    time_in_force_param: bool = True
    """Send ``timeInForce`` for a non-post-only limit order."""
    request: Callable[..., Awaitable[dict]] | None = None
    """(ccxt client, cancel order id or None, pair, type, side, amount, price, params) -> the venue's raw answer
    with both halves (what ``edit_order`` sends; it returns only the new order). None: ``edit_order``."""
    halves: Callable[[dict], tuple[dict, dict]] | None = None
    """The raw answer of ``request`` -> (the new order, the cancelled order), each as the venue sent it."""


@dataclass(frozen=True)
class Venue:
    """One venue's quirks. Everything venue-specific the gateway, the streams and the models need."""

    exchange_id: str
    """ccxt id."""
    label: str
    client_ids: ClientIdRules
    default_rate_limit_per_sec: float
    requires_passphrase: bool
    config: Callable[[str | None, str, str, str, int], dict]
    """(api base url or None, api key, secret, passphrase, timeout ms) -> ccxt constructor config."""
    stream_config: Callable[[str | None, int, int], dict]
    """(api base url or None, timeout ms, keepalive ms) -> ccxt.pro config for public streams."""
    cancel_replace: CancelReplace | None = None
    """None: cancel-replace is a cancel, then a placement (two requests)."""
    duplicate_client_id_markers: tuple[str, ...] = ()
    """Text in a rejection that says "an order with this client id exists"."""
    client_id_param: str = "clientOrderId"
    """The param that names an order by client id in ``fetch_order`` / ``cancel_order`` (ccxt's unified
    one, unless the venue's ccxt class passes only its own)."""
    my_trades_params: dict = field(default_factory=dict)
    """Params of the first ``fetch_my_trades`` call (e.g. ccxt's own pagination)."""
    next_trades_page: Callable[[list[dict], int], dict | None] | None = None
    """(last page, page size) -> params of the next page; None: one call returns everything."""
    quote_update_id_key: str | None = None
    """The key of the per-symbol update id in a pushed best bid/ask's raw message (None: not sent)."""
    stream_methods: tuple[str, ...] = STREAM_METHODS
    private_stream_methods: tuple[str, ...] = ()
    private_stream_config: Callable[[str | None, str, str, str, int, int], dict] | None = None
    """(api base url or None, api key, secret, passphrase, timeout ms, keepalive ms) -> ccxt.pro config
    for the account's own order/fill pushes (``private_stream_methods``); None: not served."""
    private_stream_subscribed: Callable[[dict], bool] | None = None
    """True for the message of the private socket by which the venue confirms the order subscription
    (``exchanges.streams.OrderUpdateStream.subscribe`` returns on it: updates from then on are pushed)."""
    private_stream_balances: Callable[[dict], dict[str, tuple[Decimal, Decimal]] | None] | None = None
    """The account's balances in a message of the private socket (venue asset -> (free, locked)), None for any
    other message; the venue pushes them after the order updates that moved them (Binance's
    ``outboundAccountPosition``). None: the venue's private stream carries no balances."""
    pushed_fee_negated: bool = False
    """ccxt.pro's class passes the venue's pushed trade fee on with the venue's sign (OKX's ``fillFee``:
    negative when paid) where its REST class gives the amount paid: the gateway negates it."""
    emulator_dialect: str = ""
    """The emulator's ``--venue`` value that speaks this venue's REST API."""
    self_trade_prevention: dict = field(default_factory=dict)
    """Params sent with every placement that set the venue's self-trade-prevention mode (its own name and
    value: an order that would match one of the account's resting orders is expired instead); empty: the
    venue offers none and the pipeline's pre-trade check (``risk.checks.self_trade_denials``) is the only
    guard."""


def websocket_url_for(base_url: str, path: str = "/ws") -> str:
    """The websocket root for an API base URL: ``http://h:p`` -> ``ws://h:p/ws`` (``https`` -> ``wss``)."""
    root = base_url.rstrip("/")
    scheme, separator, rest = root.partition("://")
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if not separator or scheme.lower() not in schemes:
        raise ValueError(f"api base url {base_url!r}: expected http(s)://host[:port]")
    return f"{schemes[scheme.lower()]}://{rest}{path}"


def base_config(api_key: str, secret: str, passphrase: str, timeout_ms: int) -> dict:
    """What every venue's ccxt config starts with: credentials, ccxt's own throttle off (the gateway
    keeps the budget), the timeout."""
    config: dict = {"apiKey": api_key, "secret": secret, "enableRateLimit": False, "timeout": timeout_ms}
    if passphrase:
        config["password"] = passphrase
    return config


def private_stream_config(config: dict, timeout_ms: int, keepalive_ms: int) -> dict:
    """A REST config (with its credentials) turned into a private-stream one: keepalive pings, all updates."""
    config = dict(config)
    config["newUpdates"] = True
    config["streaming"] = {"keepAlive": keepalive_ms, "connectionTimeout": timeout_ms}
    return config


def public_stream_config(config: dict, timeout_ms: int, keepalive_ms: int) -> dict:
    """A REST config turned into a public-stream one: no credentials, keepalive pings, new updates only.

    ``keepalive_ms``: ccxt pings this often and drops a socket that misses two pongs, so a silently
    dead connection is noticed within ``2 * keepalive_ms``."""
    config = dict(config)
    for key in ("apiKey", "secret", "password"):
        config.pop(key, None)
    config["newUpdates"] = True
    config["streaming"] = {"keepAlive": keepalive_ms, "connectionTimeout": timeout_ms}
    return config
