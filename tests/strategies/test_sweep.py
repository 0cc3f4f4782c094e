"""Parameter sweeps: determinism across worker counts, resume, bad grids, the P&L identity per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strategies.sweep import RUNS, main, pareto_front

DATA = Path(__file__).parent / "data"
PNG = b"\x89PNG\r\n\x1a\n"
COMMON = ["--data", "synthetic:3000", "--seed", "7", "--strategy", "GRID_TRADING", "--set", "grid_levels=2",
          "--set", "maker_fee_bps=1", "--set", "min_spread_bps=0", "--min-order-size-quote", "1",
          "--analysis-secs", "30", "--quiet"]
GRID = ["--grid", "spread_bps=4,8,30", "--grid", "level_spacing_bps=1,4"]


def sweep(out: Path, *extra: str) -> int:
    return main([*COMMON, *GRID, "--out", str(out), *extra])


def test_same_results_byte_for_byte_with_one_or_two_workers_and_the_pnl_identity(tmp_path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert sweep(one, "--workers", "1") == 0
    assert sweep(two, "--workers", "2") == 0
    for name in ("results.csv", "results.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    rows = json.loads((one / "results.json").read_text())
    assert [(r["spread_bps"], r["level_spacing_bps"]) for r in rows] == [
        (4.0, 1.0), (4.0, 4.0), (8.0, 1.0), (8.0, 4.0), (30.0, 1.0), (30.0, 4.0)]
    assert len({r["seed"] for r in rows}) == 6
    assert sum(r["fills"] for r in rows) > 50
    assert len({r["net_pnl"] for r in rows}) > 3  # the parameters matter
    for row in rows:
        # realised + unrealised - fees = the engine's balances marked to market, start to end
        assert row["realised_pnl"] + row["unrealised_pnl"] - row["fees"] == pytest.approx(row["net_pnl"], abs=1e-9)
        assert row["net_pnl"] == pytest.approx(row["mtm_change"], abs=1e-6), row
        assert row["max_drawdown"] >= 0 and row["inventory_risk"] >= 0
        if row["fills"]:
            assert row["fees"] > 0 and row["volume_quote"] > 0 and row["inventory_risk"] > 0
    header = (one / "results.csv").read_text().splitlines()[0].split(",")
    for column in ("spread_bps", "level_spacing_bps", "realised_pnl", "unrealised_pnl", "fees", "net_pnl",
                   "max_drawdown", "inventory_risk", "fills", "volume_quote"):
        assert column in header
    for name in ("heatmap.png", "pareto.png"):
        assert (one / name).read_bytes()[:8] == PNG


def test_resume_runs_only_the_missing_combinations(tmp_path) -> None:
    full, partial = tmp_path / "full", tmp_path / "partial"
    assert sweep(full, "--workers", "1") == 0
    assert sweep(partial, "--workers", "1") == 0
    lines = (partial / RUNS).read_text().splitlines(keepends=True)
    kept = lines[:2]
    # two finished runs and a torn third line, as a kill mid-write leaves it
    (partial / RUNS).write_text("".join(kept) + lines[2][:40])
    (partial / "results.csv").unlink()
    assert sweep(partial, "--workers", "2") == 2  # refused without --resume
    assert sweep(partial, "--workers", "2", "--resume") == 0
    after = (partial / RUNS).read_text().splitlines(keepends=True)
    assert after[:2] == kept and len(after) == 6  # the torn line dropped, 4 new runs, nothing rerun
    assert (partial / "results.csv").read_bytes() == (full / "results.csv").read_bytes()
    assert (partial / "results.json").read_bytes() == (full / "results.json").read_bytes()
    # resuming a finished sweep runs nothing and rewrites the same tables
    assert sweep(partial, "--resume") == 0
    assert len((partial / RUNS).read_text().splitlines()) == 6


def test_resume_of_a_different_sweep_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    assert sweep(out, "--workers", "1") == 0
    capsys.readouterr()
    assert main([*COMMON, "--grid", "spread_bps=4,8", "--out", str(out), "--resume"]) == 2
    assert "describes a different sweep" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["--grid", "colour=red,blue"], "unknown key 'colour'"),
        (["--grid", "spread_bps=10,wide"], "--grid spread_bps: 'wide' is not a valid float"),
        (["--grid", "spread_bps=10,-5"], "--grid spread_bps=-5.0"),
        (["--grid", "grid_levels=1,2.5"], "--grid grid_levels: '2.5' is not a valid int"),
        (["--grid", "spread_bps=10,,20"], "--grid spread_bps: empty value"),
        (["--grid", "spread_bps=10,10"], "value '10' given twice"),
        (["--grid", "spread_bps=10", "--grid", "spread_bps=20"], "key 'spread_bps' given twice"),
        (["--grid", "spread_bps"], "--grid expects key=value"),
        (["--grid", "grid_levels=1,3"], "'grid_levels' is both in --grid and --set"),
        (["--grid", "spread_bps=nan"], "not a finite number"),
        (["--grid", "strategy=GRID_TRADING,MAGIC"], "--grid strategy='MAGIC'"),
        (["--grid", "initial_quote=1000,-1"], "initial_quote must not be negative"),
        (["--grid", "spread_bps=10,20", "--heatmap", "spread_bps,colour"], "--heatmap 'colour' is not a --grid key"),
        (["--grid", "spread_bps=10", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_grid_is_a_clear_error_before_anything_runs(tmp_path, capsys, grid, message) -> None:
    out = tmp_path / "out"
    assert main([*COMMON, *grid, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_sweep_reads_exchange_dumps(tmp_path, capsys) -> None:
    out = tmp_path / "dumps"
    code = main(["--data", str(DATA / "BTCUSDT-bookTicker-2024-03-01.csv"), "--data",
                 str(DATA / "BTCUSDT-trades-2024-03-01.csv"), "--data-format", "binance-bookticker",
                 "--data-format", "binance-trades", "--grid", "spread_bps=1,50", "--set", "grid_levels=1",
                 "--min-order-size-quote", "1", "--initial-quote", "100000", "--out", str(out), "--workers", "1",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())
    assert [r["events"] for r in rows] == [70, 70]
    assert all(r["net_pnl"] == pytest.approx(r["mtm_change"], abs=1e-6) for r in rows)


def test_pareto_front() -> None:
    points = [(1.0, 5.0), (2.0, 4.0), (0.5, 1.0), (3.0, 9.0), (3.0, 2.0)]
    assert pareto_front(points) == [2, 0, 3]


def test_a_clashing_combination_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["--data", "synthetic:300", "--grid", "min_spread_bps=1,50", "--grid",
                 "max_spread_bps=40,100", "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert '{"max_spread_bps":40.0,"min_spread_bps":50.0}' in err and "must not exceed max_spread_bps" in err
    assert not out.exists()
