"""REST dialects of the emulator other than Binance's (``server.py``): each speaks one venue's API over
the one matching engine, so ccxt's unmodified class of that venue trades the emulator."""

from __future__ import annotations

DIALECTS = ("binance", "okx", "bybit")
