"""Avellaneda & Stoikov (2008) Monte Carlo: the inventory strategy against the symmetric one.

The model of section 4 of "High-frequency trading in a limit order book", vectorised over paths
with numpy (one Python loop over time steps):

* the mid starts at ``s0`` and each step moves up or down by sigma*sqrt(dt) with probability 1/2;
* at the start of a step the strategy posts a bid and an ask; during the step the mid moves and
  market orders arrive: the ask is hit with probability A*exp(-k*delta_a)*dt and the bid with
  A*exp(-k*delta_b)*dt, delta being the distance from the mid at the end of the step;
* a fill changes the inventory q by one unit and the cash by the quote's price;
* the **inventory** strategy quotes around the reservation price r = s - q*gamma*sigma^2*(T-t)
  with the total spread gamma*sigma^2*(T-t) + (2/gamma)*ln(1 + gamma/k);
* the **symmetric** strategy quotes around the mid with the inventory strategy's average spread.

Terminal profit is cash + q*S_T. Both strategies see the same random numbers (common random
numbers), so their difference is measured with less noise. With gamma = 0.1 and 0.01 the means
and standard deviations agree with the paper's table (1000 paths); the paper's "spread" column is
the time-independent part (2/gamma)*ln(1 + gamma/k) (1.29 for gamma = 0.1), which
``SimulationResult.spread`` reports as ``base_spread`` beside the mean spread actually quoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SimulationParameters:
    """The model's parameters, defaulting to the paper's values."""

    gamma: float = 0.1
    s0: float = 100.0
    T: float = 1.0
    sigma: float = 2.0
    dt: float = 0.005
    k: float = 1.5
    A: float = 140.0
    q0: int = 0
    paths: int = 1000
    seed: int | None = 1

    def problems(self) -> list[str]:
        """Human-readable reasons these parameters cannot be simulated (empty when they can)."""
        problems = []
        for name in ("gamma", "s0", "T", "sigma", "dt", "k", "A"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a finite number greater than 0, got {value!r}")
        if not problems:
            if self.dt > self.T:
                problems.append(f"dt ({self.dt}) must not exceed T ({self.T})")
            elif round(self.T / self.dt) > 1_000_000:
                problems.append(f"T/dt = {self.T / self.dt:.0f} steps is more than 1,000,000")
        if not isinstance(self.paths, int) or not 1 <= self.paths <= 10_000_000:
            problems.append(f"paths must be a whole number between 1 and 10,000,000, got {self.paths!r}")
        if not isinstance(self.q0, int):
            problems.append(f"q0 must be a whole number, got {self.q0!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            problems.append(f"seed must be a whole number >= 0, got {self.seed!r}")
        return problems


@dataclass(frozen=True, slots=True)
class StrategyOutcome:
    """One strategy's results over all paths."""

    spread: float
    """Mean total spread quoted (over steps and paths)."""
    profit_mean: float
    profit_std: float
    q_mean: float
    q_std: float
    profits: np.ndarray
    """Terminal profit per path (cash + q*S_T)."""
    inventories: np.ndarray
    """Terminal inventory per path."""

    def summary(self) -> dict[str, float]:
        """The table row: spread, profit mean/std, terminal inventory mean/std."""
        return {
            "spread": self.spread,
            "profit_mean": self.profit_mean,
            "profit_std": self.profit_std,
            "q_mean": self.q_mean,
            "q_std": self.q_std,
        }


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Both strategies' outcomes and the parameters that produced them."""

    parameters: SimulationParameters
    base_spread: float
    """(2/gamma)*ln(1 + gamma/k): the paper's "spread" column."""
    inventory: StrategyOutcome
    symmetric: StrategyOutcome

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"inventory": {...}, "symmetric": {...}}`` as ``simulate_as --json`` prints it."""
        return {"inventory": self.inventory.summary(), "symmetric": self.symmetric.summary()}


def simulate_avellaneda_stoikov(params: SimulationParameters | None = None, **overrides: float) -> SimulationResult:
    """Run the paper's experiment; raises ``ValueError`` listing every bad parameter."""
    if params is None:
        params = SimulationParameters(**overrides)  # type: ignore[arg-type]
    elif overrides:
        raise TypeError("pass either a SimulationParameters or keyword overrides, not both")
    problems = params.problems()
    if problems:
        raise ValueError("; ".join(problems))

    gamma, sigma, dt, k, big_a = params.gamma, params.sigma, params.dt, params.k, params.A
    steps = round(params.T / dt)
    paths = params.paths
    tau = params.T - np.arange(steps) * dt
    inventory_term = gamma * sigma * sigma * tau  # gamma*sigma^2*(T-t) per step
    base_spread = 2.0 / gamma * math.log1p(gamma / k)
    inventory_spreads = inventory_term + base_spread
    mean_spread = float(inventory_spreads.mean())

    rng = np.random.default_rng(params.seed)
    move = sigma * math.sqrt(dt)
    # mid increments (+-sigma*sqrt(dt)) and the two fill draws, shared by both strategies
    increments = np.where(rng.random((steps, paths)) < 0.5, move, -move)
    bid_draws = rng.random((steps, paths))
    ask_draws = rng.random((steps, paths))

    def run(skewed: bool) -> StrategyOutcome:
        s = np.full(paths, params.s0)
        q = np.full(paths, float(params.q0))
        cash = np.zeros(paths)
        rate = big_a * dt
        half = mean_spread / 2.0
        for i in range(steps):
            if skewed:
                reservation = s - q * inventory_term[i]
                half = inventory_spreads[i] / 2.0
            else:
                reservation = s
            bid = reservation - half
            ask = reservation + half
            s = s + increments[i]
            bid_hit = bid_draws[i] < rate * np.exp(-k * (s - bid))
            ask_hit = ask_draws[i] < rate * np.exp(-k * (ask - s))
            q += bid_hit
            q -= ask_hit
            cash += ask * ask_hit - bid * bid_hit
        profits = cash + q * s
        return StrategyOutcome(
            spread=mean_spread,
            profit_mean=float(profits.mean()),
            profit_std=float(profits.std()),
            q_mean=float(q.mean()),
            q_std=float(q.std()),
            profits=profits,
            inventories=q,
        )

    return SimulationResult(params, base_spread, inventory=run(True), symmetric=run(False))


def plot_profit_histograms(result: SimulationResult, path: str) -> None:
    """Write a PNG with the two strategies' terminal-profit histograms (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    both = np.concatenate([result.inventory.profits, result.symmetric.profits])
    bins = np.linspace(float(both.min()), float(both.max()), 60).tolist()
    ax.hist(result.inventory.profits, bins=bins, alpha=0.6, label="inventory strategy")
    ax.hist(result.symmetric.profits, bins=bins, alpha=0.6, label="symmetric strategy")
    p = result.parameters
    ax.set_title(f"Avellaneda-Stoikov terminal profit, gamma={p.gamma}, {p.paths} paths")
    ax.set_xlabel("profit (cash + q * S_T)")
    ax.set_ylabel("paths")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
