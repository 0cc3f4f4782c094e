"""The bot engine: the spec's MarketMakingBot and its managers, run one cycle at a time by Celery."""
