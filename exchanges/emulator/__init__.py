"""A local Binance-compatible exchange: matching engine, synthetic market and HTTP API."""
