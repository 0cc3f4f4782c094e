"""The project's error classes: the spec's hierarchy plus the exchange errors the gateway raises.

Pure module (no Django, no ccxt) so strategies, risk checks and the gateway share one hierarchy.
"""

from __future__ import annotations


class MarketMakingError(Exception):
    """Base exception for market making errors (spec)."""


class InvalidTradingPairsError(MarketMakingError):
    """Raised when no trading pair of a start request is valid (spec)."""


class RiskLimitViolationError(MarketMakingError):
    """Raised when risk limits are violated, e.g. at start-up (spec)."""


class OrderPlacementError(MarketMakingError):
    """Raised when order placement fails (spec). ``__cause__`` keeps the exchange error."""


class InventoryRebalancingError(MarketMakingError):
    """Raised when inventory rebalancing fails (spec)."""


class InvalidStrategyError(MarketMakingError):
    """Raised when a strategy's parameters are invalid (spec's StrategyEngine.create_strategy)."""


class ConfigValidationError(MarketMakingError, ValueError):
    """A market making config is invalid. ``errors`` maps field name -> list of messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        text = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in sorted(errors.items()))
        super().__init__(f"invalid market making config: {text}")


# --- exchange errors (raised by exchanges/, never ccxt's own classes) ---------------------------


class ExchangeError(MarketMakingError):
    """Base of every error the exchange gateway raises."""

    cancelled: bool = False
    """``replace_order`` only: True when the replaced (old) order is known cancelled although the call
    failed (cancel done, new order rejected)."""


class ExchangeUnavailableError(ExchangeError):
    """Network error, timeout or 5xx: the request may be retried if it is a read."""


class RateLimitedError(ExchangeError):
    """The exchange throttled us (429 / DDoSProtection / RateLimitExceeded)."""

    def __init__(self, message: str, retry_after_secs: float | None = None):
        super().__init__(message)
        self.retry_after_secs = retry_after_secs


class AuthenticationFailedError(ExchangeError):
    """Bad key, bad signature, or permission denied: the bot must not keep trading."""


class InsufficientFundsError(ExchangeError):
    """The account cannot fund the order. Never retried automatically."""


class InvalidOrderError(ExchangeError):
    """The exchange rejected the order as malformed (filters, post-only cross...). Never retried."""


class OrderNotFoundError(ExchangeError):
    """The exchange does not know the order (may be transient right after placement)."""


class ReplaceCancelFailedError(OrderNotFoundError):
    """A cancel-replace whose cancel failed because the old order is no longer open (filled, cancelled
    or unknown): nothing was placed. ``cancel_error_code`` is the venue's code (Binance -2011)."""

    def __init__(self, message: str, cancel_error_code: int | None = None):
        super().__init__(message)
        self.cancel_error_code = cancel_error_code


class BadSymbolError(ExchangeError):
    """The exchange does not list the symbol."""


class OrderOutcomeUnknownError(ExchangeError):
    """A placement was sent but its outcome could not be resolved by client order id."""
