"""The reference price a pair quoted on several venues is centred on (pure: no Django, no ccxt).

Each venue's own mid (the default), one chosen venue's mid, or a composite of the healthy venues'
mids: their median, or their mean weighted by the depth each book holds near its mid, so the quotes
on a thin venue follow the deep one and cannot be picked off across venues. A venue is healthy when
its book is usable (no problem, not stale); the caller decides that and passes only healthy books.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from strategies.types import MarketSnapshot

REFERENCE_OWN = "own"
REFERENCE_VENUE = "venue"
REFERENCE_MEDIAN = "median"
REFERENCE_DEPTH_WEIGHTED = "depth_weighted"
REFERENCE_MODES = (REFERENCE_OWN, REFERENCE_VENUE, REFERENCE_MEDIAN, REFERENCE_DEPTH_WEIGHTED)

DEPTH_BAND_BPS = 50.0
"""Depth counted for the depth-weighted composite: both sides within this distance of the venue's mid."""


@dataclass(frozen=True, slots=True)
class Reference:
    """The mid to centre on (``mid``), or why there is none (``problem``; quoting halts)."""

    mid: float
    problem: str | None = None
    venues: tuple[str, ...] = ()
    """The venues the mid was taken from."""


def depth_near_mid_quote(snapshot: MarketSnapshot, band_bps: float = DEPTH_BAND_BPS) -> float:
    """Quote value of the bids and asks within ``band_bps`` of the snapshot's book mid."""
    mid = (snapshot.best_bid + snapshot.best_ask) * 0.5
    if not (mid > 0 and math.isfinite(mid)):
        return 0.0
    low, high = mid * (1 - band_bps / 1e4), mid * (1 + band_bps / 1e4)
    depth = sum(price * size for price, size in snapshot.bids if price >= low)
    depth += sum(price * size for price, size in snapshot.asks if price <= high)
    return depth if math.isfinite(depth) else 0.0


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) * 0.5


def reference_mid(mode: str, own_venue: str, healthy: Mapping[str, MarketSnapshot], *,
                  chosen_venue: str = "", band_bps: float = DEPTH_BAND_BPS) -> Reference:
    """The reference mid for the venue ``own_venue`` from the ``healthy`` venues' snapshots of one pair
    (venue -> snapshot; ``own_venue`` is among them when its own book is healthy)."""
    own = healthy.get(own_venue)
    if mode == REFERENCE_OWN or len(healthy) == 0:
        if own is None:
            return Reference(math.nan, f"{own_venue}: no healthy book")
        return Reference((own.best_bid + own.best_ask) * 0.5, venues=(own_venue,))
    if mode == REFERENCE_VENUE:
        chosen = healthy.get(chosen_venue)
        if chosen is None:
            return Reference(math.nan, f"reference venue {chosen_venue or '(none chosen)'} has no healthy book")
        return Reference((chosen.best_bid + chosen.best_ask) * 0.5, venues=(chosen_venue,))
    venues = tuple(sorted(healthy))
    mids = [(healthy[v].best_bid + healthy[v].best_ask) * 0.5 for v in venues]
    if mode == REFERENCE_DEPTH_WEIGHTED:
        depths = [depth_near_mid_quote(healthy[v], band_bps) for v in venues]
        total = sum(depths)
        if total > 0:
            return Reference(sum(m * d for m, d in zip(mids, depths, strict=True)) / total, venues=venues)
        return Reference(_median(mids), venues=venues)  # no depth anywhere: the median
    if mode == REFERENCE_MEDIAN:
        return Reference(_median(mids), venues=venues)
    return Reference(math.nan, f"unknown reference price mode {mode!r}")


def with_reference(snapshot: MarketSnapshot, reference: float) -> MarketSnapshot:
    """``snapshot`` whose strategy centre (and ``mid``) is ``reference``; its book is unchanged, so the
    post-only guard still keeps bids below the venue's own best ask."""
    book_mid = (snapshot.best_bid + snapshot.best_ask) * 0.5
    if not (reference > 0 and math.isfinite(reference)) or reference == book_mid:
        return snapshot
    return replace(snapshot, reference_mid=reference)
