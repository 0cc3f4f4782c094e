"""The driver's market analyses (volatility, trend, liquidity per venue and pair), shared by every bot with
the same strategy settings, on the mid histories the feeder reads (``AnalysisMixin``, part of ``Driver``
through ``FeedMixin``)."""

from __future__ import annotations

import time
from typing import Any

from bots.engine.bot import MarketMakingBot
from bots.engine.driver_state import DriverState
from bots.engine.market_data import mid_history
from bots.engine.venues import exchange_key
from strategies.analysis import MarketAnalysis, analyze_market

ANALYSIS_SECS = 1.0
"""Market analysis (volatility, trend, liquidity) is recomputed at most this often per venue and pair."""

MIDS_MAX_AGE_SECS = 3.0
"""The feeder's read of a mid history serves the analyses up to this old (else the check reads it)."""


class AnalysisMixin(DriverState):
    """Mid histories read by the feeder (``_read_mids``), analyses computed by the driver's checks (``_analysis``)."""

    def _read_mids(self) -> None:
        """The mid histories of every wanted book, in one round trip every ``ANALYSIS_SECS``, for the
        driver's market analyses (``_analysis``), which then wait on no Redis read; replaced whole."""
        self.mids_read_at = read_at = time.time()
        histories = self.mid_reader.read(list(self.wanted_books))  # (the tails since the last read)
        self.mids = {book: (read_at, *history) for book, history in histories.items()}

    def _analysis(self, engine: MarketMakingBot, account_id: int, pair: str, snapshot: Any,
                  now: float) -> MarketAnalysis:
        """The spec's market analysis on the venue's shared mid history, computed at most once per
        ANALYSIS_SECS per (venue, pair, strategy settings) and shared by every bot with those settings."""
        venue = exchange_key(engine.accounts[account_id])
        config = engine.config.strategy_settings
        key = (venue, pair, self.shared.settings_token(config))  # equal settings share one entry
        hit = self.analyses.get(key)
        if hit is not None and now - hit[0] < ANALYSIS_SECS:
            return hit[1]
        held = self.mids.get((venue, pair))  # the feeder's read (at most ANALYSIS_SECS old while it runs)
        if held is not None and now - held[0] < MIDS_MAX_AGE_SECS:
            times, mids = held[1], held[2]
        else:  # a pair the feeder does not read yet (a bot's first checks), or a stalled feeder
            times, mids = mid_history(venue, pair)
        analysis = analyze_market(snapshot, config, times, mids)
        if len(self.analyses) > 10_000:
            self.analyses.clear()
        self.analyses[key] = (now, analysis)
        return analysis
