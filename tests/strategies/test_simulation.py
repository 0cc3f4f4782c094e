"""Avellaneda-Stoikov Monte Carlo against the paper's table, and the simulate_as command."""

from __future__ import annotations

import json
import math
from io import StringIO

import pytest

from strategies.simulation import SimulationParameters, simulate_avellaneda_stoikov

# Avellaneda & Stoikov (2008), table for 1000 simulations: (profit mean, std, final q mean, std)
PAPER = {
    0.1: {"inventory": (62.94, 5.89, 0.10, 2.80), "symmetric": (67.21, 13.43, -0.018, 8.66)},
    0.01: {"inventory": (66.78, 8.76, -0.02, 4.70), "symmetric": (67.36, 13.40, -0.31, 8.65)},
}
PATHS = 4000


@pytest.fixture(scope="module", params=sorted(PAPER))
def result(request):
    return simulate_avellaneda_stoikov(gamma=request.param, paths=PATHS, seed=7)


def test_means_agree_with_the_paper_within_monte_carlo_error(result) -> None:
    """Mean profit and mean final inventory within 4 standard errors (ours and the paper's 1000 paths)."""
    for name in ("inventory", "symmetric"):
        profit_mean, profit_std, q_mean, q_std = PAPER[result.parameters.gamma][name]
        ours = getattr(result, name)
        profit_se = math.hypot(ours.profit_std / math.sqrt(PATHS), profit_std / math.sqrt(1000))
        q_se = math.hypot(ours.q_std / math.sqrt(PATHS), q_std / math.sqrt(1000))
        assert abs(ours.profit_mean - profit_mean) < 4 * profit_se, (name, ours.summary())
        assert abs(ours.q_mean - q_mean) < 4 * q_se, (name, ours.summary())


def test_dispersions_agree_with_the_paper(result) -> None:
    """Standard deviations within 15 % (ours run 0-12 % above the paper's, seed after seed)."""
    for name in ("inventory", "symmetric"):
        _, profit_std, _, q_std = PAPER[result.parameters.gamma][name]
        ours = getattr(result, name)
        assert ours.profit_std == pytest.approx(profit_std, rel=0.15), (name, ours.summary())
        assert ours.q_std == pytest.approx(q_std, rel=0.15), (name, ours.summary())


def test_inventory_strategy_is_far_less_dispersed_than_the_symmetric_one(result) -> None:
    assert result.inventory.profit_std < 0.7 * result.symmetric.profit_std
    assert result.inventory.q_std < 0.7 * result.symmetric.q_std
    assert result.inventory.spread == result.symmetric.spread  # same average spread by construction


def test_spread_columns() -> None:
    result = simulate_avellaneda_stoikov(gamma=0.1, paths=10, seed=1)
    assert result.base_spread == pytest.approx(1.29, abs=0.005)  # the paper's column
    # mean of gamma*sigma^2*(T-t) over t = 0, dt, ..., T-dt is 0.1*4*(1+dt)/2 = 0.201
    assert result.inventory.spread == pytest.approx(result.base_spread + 0.201, abs=1e-9)
    assert simulate_avellaneda_stoikov(gamma=0.5, paths=10).base_spread == pytest.approx(1.15, abs=0.005)


def test_same_seed_same_result_and_bad_parameters_rejected() -> None:
    a = simulate_avellaneda_stoikov(gamma=0.1, paths=50, seed=3).summary()
    assert simulate_avellaneda_stoikov(gamma=0.1, paths=50, seed=3).summary() == a
    assert simulate_avellaneda_stoikov(gamma=0.1, paths=50, seed=4).summary() != a
    with pytest.raises(ValueError, match="gamma must be a finite number greater than 0") as info:
        simulate_avellaneda_stoikov(SimulationParameters(gamma=0.0, paths=0, dt=math.nan))
    assert "paths must be" in str(info.value) and "dt must be" in str(info.value)


# --- the management command (needs Django settings; the lead's test settings provide them) -------


def run_command(*args: str) -> str:
    from django.core.management import call_command

    out = StringIO()
    call_command("simulate_as", *args, stdout=out)
    return out.getvalue()


def test_command_prints_a_table_per_strategy() -> None:
    text = run_command("--gamma", "0.1", "--paths", "200", "--seed", "1")
    assert "inventory" in text and "symmetric" in text and "1.2908" in text


def test_command_json_prints_only_the_results(tmp_path) -> None:
    plot = tmp_path / "pnl.png"
    text = run_command("--json", "--paths", "200", "--seed", "2", "--plot", str(plot))
    data = json.loads(text)
    assert set(data) == {"inventory", "symmetric"}
    assert set(data["inventory"]) == {"spread", "profit_mean", "profit_std", "q_mean", "q_std"}
    expected = simulate_avellaneda_stoikov(paths=200, seed=2).summary()
    assert data["inventory"] == pytest.approx(expected["inventory"])
    assert data["symmetric"] == pytest.approx(expected["symmetric"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--gamma", "-1"), "gamma must be a finite number greater than 0"),
        (("--paths", "0"), "paths must be a whole number"),
        (("--dt", "2"), r"dt \(2.0\) must not exceed T"),
        (("--plot", "out.txt"), "--plot must name a .png file"),
        (("--gamma", "abc"), "invalid float value"),
    ],
)
def test_command_bad_options_raise_command_error(args, message) -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=message):
        run_command(*args)
