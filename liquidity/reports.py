"""SLA reports of one bot over a period: rows per (venue, pair), as JSON, CSV or a PDF with tables and
charts (matplotlib, its PDF backend). The caller has scoped the bot to a tenant (or to a client's
shares); nothing here reads another bot."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils import timezone

from bots.models import Bot
from exchanges.models import ExchangeAccount
from liquidity import metrics, services
from liquidity.models import LiquidityStats, Resolution, Sla

FORMATS = ("json", "csv", "pdf")
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "pdf": "application/pdf"}
MAX_PERIOD = timedelta(days=400)
COLUMNS = ["venue", "pair", "from", "to", "counted_minutes", "uptime_bid", "uptime_ask", "uptime_two_sided",
           "avg_spread_bps", "p50_spread_bps", "p95_spread_bps", "depth_bid_1pct_quote", "depth_ask_1pct_quote",
           "depth_bid_2pct_quote", "depth_ask_2pct_quote", "depth_bid_5pct_quote", "depth_ask_5pct_quote",
           "venue_share_2pct", "fills", "volume_quote", "maker_share"]


class ReportError(ValueError):
    """Bad report parameters (an empty or too long period)."""


def _quote(value: float) -> str:
    return str(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _round(value: float | None, places: int) -> float | None:
    return None if value is None else round(value, places)


def check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ReportError(f"the period is empty: --to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    if end - start > MAX_PERIOD:
        raise ReportError(f"the period is longer than {MAX_PERIOD.days} days")


def report_rows(bot: Bot, start: datetime, end: datetime, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per (venue, pair) of the bot: the figures of ``[start, end)`` (whole minutes)."""
    check_period(start, end)
    labels = {a.pk: f"{a.label} ({a.exchange_id})" for a in ExchangeAccount.objects.filter(tenant_id=bot.tenant_id)}
    rows = []
    for figures in services.window_figures(bot, start, end, now=now):
        s = figures.summary
        rows.append({
            "venue": labels.get(figures.exchange_account_id, str(figures.exchange_account_id)),
            "pair": figures.trading_pair,
            "from": figures.start.isoformat(), "to": figures.end.isoformat(),
            "counted_minutes": round(figures.counted_ms / 60_000, 2),
            "uptime_bid": round(s.uptime_bid, 6), "uptime_ask": round(s.uptime_ask, 6),
            "uptime_two_sided": round(s.uptime_two_sided, 6),
            "avg_spread_bps": _round(s.avg_spread_bps, 3), "p50_spread_bps": _round(s.p50_spread_bps, 3),
            "p95_spread_bps": _round(s.p95_spread_bps, 3),
            **{f"depth_{side}_{band}pct_quote": _quote(s.depth_quote[f"{side}_{band}"])
               for band in metrics.BANDS_PCT for side in ("bid", "ask")},
            "venue_share_2pct": _round(figures.venue_share, 6),
            "fills": figures.extras.fills,
            "volume_quote": str(figures.extras.volume_quote.quantize(Decimal("0.01"))),
            "maker_share": _round(figures.maker_share, 6),
        })
    return rows


def sla_terms(bot: Bot) -> list[dict[str, Any]]:
    """The bot's active agreements, as a report lists them."""
    return [{"name": s.name, "window": s.window, "venue": s.exchange_account.label if s.exchange_account_id else "",
             "pair": s.trading_pair, "max_spread_bps": str(s.max_spread_bps) if s.max_spread_bps is not None else None,
             "min_depth_quote": str(s.min_depth_quote) if s.min_depth_quote is not None else None,
             "depth_band_pct": s.depth_band_pct,
             "min_uptime_pct": str(s.min_uptime_pct) if s.min_uptime_pct is not None else None}
            for s in Sla.objects.filter(bot=bot, is_active=True).select_related("exchange_account")]


def sla_results(bot: Bot, start: datetime, end: datetime, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each active agreement of the bot over the period, per (venue, pair) it covers: its excluded time,
    the uptime within its max spread, and whether each term was met."""
    labels = {a.pk: a.label for a in ExchangeAccount.objects.filter(tenant_id=bot.tenant_id)}
    results = []
    for sla in Sla.objects.filter(bot=bot, is_active=True):
        for figures in services.window_figures(bot, start, end, sla=sla, now=now):
            s = figures.summary
            result: dict[str, Any] = {"sla": sla.name, "venue": labels.get(figures.exchange_account_id, "?"),
                                      "pair": figures.trading_pair,
                                      "excluded_minutes": round(figures.excluded_ms / 60_000, 2)}
            bid, ask, two_sided = s.uptime_bid, s.uptime_ask, s.uptime_two_sided
            if sla.max_spread_bps is not None:
                bid, ask, two_sided = metrics.uptime_within(figures.totals, figures.counted_ms,
                                                            float(sla.max_spread_bps))
                result["avg_spread_bps"] = _round(s.avg_spread_bps, 3)
                result["spread_met"] = s.avg_spread_bps is not None and s.avg_spread_bps <= float(sla.max_spread_bps)
            result.update(uptime_bid=round(bid, 6), uptime_ask=round(ask, 6), uptime_two_sided=round(two_sided, 6))
            if sla.min_uptime_pct is not None:
                target = float(sla.min_uptime_pct) / 100
                result["uptime_met"] = bid >= target and ask >= target
            if sla.min_depth_quote is not None:
                band = sla.depth_band_pct
                bid_depth, ask_depth = s.depth_quote[f"bid_{band}"], s.depth_quote[f"ask_{band}"]
                result[f"depth_bid_{band}pct_quote"] = _quote(bid_depth)
                result[f"depth_ask_{band}pct_quote"] = _quote(ask_depth)
                result["depth_met"] = min(bid_depth, ask_depth) >= float(sla.min_depth_quote)
            result["met"] = all(v for k, v in result.items() if k.endswith("_met"))
            results.append(result)
    return results


@dataclass(frozen=True)
class Report:
    filename: str
    content_type: str
    body: bytes


def build(bot: Bot, start: datetime, end: datetime, fmt: str, *, now: datetime | None = None) -> Report:
    """The report file of ``bot`` over ``[start, end)`` in ``fmt`` (json, csv, pdf)."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    rows = report_rows(bot, start, end, now=now)
    stem = f"sla-{bot.name}-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}".replace(" ", "_")
    if fmt == "json":
        import json

        document = {"bot": bot.name, "bot_id": bot.pk, "from": start.isoformat(), "to": end.isoformat(),
                    "generated_at": (now or timezone.now()).isoformat(), "slas": sla_terms(bot),
                    "sla_results": sla_results(bot, start, end, now=now), "rows": rows}
        body = json.dumps(document, indent=2).encode()
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        body = buffer.getvalue().encode()
    else:
        body = pdf(bot, start, end, rows, sla_results(bot, start, end, now=now))
    return Report(f"{stem}.{fmt}", CONTENT_TYPES[fmt], body)


def series(bot: Bot, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
    """Chart points per "venue account id:pair": uptime per side, average spread and ±2 % depth per
    stored minute (periods up to a day), hour (up to 10 days) or day."""
    length = end - start
    resolution = (Resolution.MINUTE if length <= timedelta(hours=24)
                  else Resolution.HOUR if length <= timedelta(days=10) else Resolution.DAY)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in LiquidityStats.objects.filter(bot=bot, resolution=resolution, bucket_start__gte=start,
                                             bucket_start__lt=end).order_by("bucket_start"):
        duration = row.duration_ms or 1
        found.setdefault(f"{row.exchange_account_id}:{row.trading_pair}", []).append({
            "t": int(row.bucket_start.timestamp()),
            "uptime_bid": round(row.bid_ms / duration, 6), "uptime_ask": round(row.ask_ms / duration, 6),
            "avg_spread_bps": round(row.spread_bps_ms / row.two_sided_ms, 3) if row.two_sided_ms else None,
            "depth_bid_2pct_quote": round(row.depth_quote_ms.get("bid_2", 0.0) / duration, 2),
            "depth_ask_2pct_quote": round(row.depth_quote_ms.get("ask_2", 0.0) / duration, 2),
        })
    return found


def pdf(bot: Bot, start: datetime, end: datetime, rows: list[dict[str, Any]],
        results: list[dict[str, Any]] | None = None) -> bytes:
    """A PDF: a title page with the agreements and the table of figures, then one page of charts per
    (venue, pair) (uptime per side, average spread, ±2 % depth over the period)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    points = series(bot, start, end)
    labels = {f"{a.pk}": a.label for a in ExchangeAccount.objects.filter(tenant_id=bot.tenant_id)}
    with plt.rc_context({"pdf.fonttype": 42}), PdfPages(  # TrueType: the text can be searched and copied
            buffer, metadata={"Title": f"SLA report {bot.name}", "Creator": "mmplatform"}) as document:
        figure = plt.figure(figsize=(11.69, 8.27))
        figure.text(0.05, 0.94, f"Liquidity report - {bot.name}", fontsize=18, weight="bold")
        figure.text(0.05, 0.90, f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC", fontsize=11)
        terms = sla_terms(bot)
        y = 0.86
        for term in terms:
            text = f"SLA {term['name']} ({term['window']}): " + ", ".join(
                f"{k} {v}" for k, v in term.items() if k in ("max_spread_bps", "min_depth_quote", "min_uptime_pct")
                and v is not None)
            figure.text(0.05, y, text, fontsize=9)
            y -= 0.03
        headers = ["venue", "pair", "uptime bid", "uptime ask", "two-sided", "avg spread bps", "p95 bps",
                   "depth bid ±2 %", "depth ask ±2 %", "fills", "volume", "maker share"]
        cells = [[r["venue"], r["pair"], f"{r['uptime_bid'] * 100:.2f} %", f"{r['uptime_ask'] * 100:.2f} %",
                  f"{r['uptime_two_sided'] * 100:.2f} %",
                  "-" if r["avg_spread_bps"] is None else f"{r['avg_spread_bps']:.2f}",
                  "-" if r["p95_spread_bps"] is None else f"{r['p95_spread_bps']:.2f}",
                  r["depth_bid_2pct_quote"], r["depth_ask_2pct_quote"], str(r["fills"]), r["volume_quote"],
                  "-" if r["maker_share"] is None else f"{r['maker_share'] * 100:.1f} %"] for r in rows]
        axes = figure.add_axes((0.03, 0.1, 0.94, max(y - 0.15, 0.2)))
        axes.axis("off")
        if cells:
            table = axes.table(cellText=cells, colLabels=headers, loc="upper center")
            table.auto_set_font_size(False)
            table.set_fontsize(7.5)
            table.scale(1, 1.4)
        else:
            axes.text(0.5, 0.8, "No quotes in this period.", ha="center")
        if results:
            verdicts = [[r["sla"], r["venue"], r["pair"], f"{r['uptime_bid'] * 100:.2f} %",
                         f"{r['uptime_ask'] * 100:.2f} %",
                         "-" if r.get("avg_spread_bps") is None else f"{r['avg_spread_bps']:.2f}",
                         f"{r['excluded_minutes']:g} min", "met" if r["met"] else "MISSED"] for r in results]
            table = axes.table(cellText=verdicts, loc="lower center", colLabels=[
                "agreement", "venue", "pair", "uptime bid (within spread)", "uptime ask (within spread)",
                "avg spread bps", "excluded", "verdict"])
            table.auto_set_font_size(False)
            table.set_fontsize(7.5)
            table.scale(1, 1.4)
        document.savefig(figure)
        plt.close(figure)
        for key, values in sorted(points.items()):
            account_id, pair = key.split(":", 1)
            times = [datetime.fromtimestamp(p["t"], tz=start.tzinfo) for p in values]
            figure, (up, spread, depth) = plt.subplots(3, 1, figsize=(11.69, 8.27), sharex=True)
            figure.suptitle(f"{labels.get(account_id, account_id)} {pair}")
            up.plot(times, [p["uptime_bid"] * 100 for p in values], label="bid")
            up.plot(times, [p["uptime_ask"] * 100 for p in values], label="ask")
            up.set_ylabel("uptime %")
            up.set_ylim(0, 105)
            up.legend(loc="lower left")
            spread.plot(times, [p["avg_spread_bps"] if p["avg_spread_bps"] is not None else float("nan")
                                for p in values], color="tab:purple")
            spread.set_ylabel("avg spread (bps)")
            depth.plot(times, [p["depth_bid_2pct_quote"] for p in values], label="bid ±2 %")
            depth.plot(times, [p["depth_ask_2pct_quote"] for p in values], label="ask ±2 %")
            depth.set_ylabel("depth (quote)")
            depth.legend(loc="lower left")
            depth.set_xlabel("UTC")
            figure.autofmt_xdate()
            document.savefig(figure)
            plt.close(figure)
    return buffer.getvalue()
