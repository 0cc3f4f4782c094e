"""``manage.py simulate_as``: the Avellaneda-Stoikov Monte Carlo (thin wrapper of strategies.simulation)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from strategies.simulation import SimulationParameters, plot_profit_histograms, simulate_avellaneda_stoikov

DEFAULTS = SimulationParameters()


class Command(BaseCommand):
    help = (
        "Reproduce Avellaneda & Stoikov (2008): the inventory strategy against the symmetric one. "
        "Every model parameter is an option; defaults are the paper's."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--gamma", type=float, default=DEFAULTS.gamma, help="risk aversion (default %(default)s)")
        parser.add_argument("--s0", type=float, default=DEFAULTS.s0, help="initial mid (default %(default)s)")
        parser.add_argument("--T", dest="T", type=float, default=DEFAULTS.T, help="horizon (default %(default)s)")
        parser.add_argument("--sigma", type=float, default=DEFAULTS.sigma, help="mid volatility (default %(default)s)")
        parser.add_argument("--dt", type=float, default=DEFAULTS.dt, help="time step (default %(default)s)")
        parser.add_argument("--k", type=float, default=DEFAULTS.k, help="order arrival decay k (default %(default)s)")
        parser.add_argument("--A", dest="A", type=float, default=DEFAULTS.A,
                            help="order arrival rate A (default %(default)s)")
        parser.add_argument("--q0", type=int, default=DEFAULTS.q0, help="initial inventory (default %(default)s)")
        parser.add_argument("--paths", type=int, default=DEFAULTS.paths, help="simulated paths (default %(default)s)")
        parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default %(default)s)")
        parser.add_argument("--json", action="store_true",
                            help="print only the results as JSON (default: a readable report)")
        parser.add_argument("--plot", metavar="FILE.png",
                            help="write the two profit histograms to this PNG (default: no plot)")

    def handle(self, *args: Any, **options: Any) -> None:
        params = SimulationParameters(
            gamma=options["gamma"], s0=options["s0"], T=options["T"], sigma=options["sigma"],
            dt=options["dt"], k=options["k"], A=options["A"], q0=options["q0"],
            paths=options["paths"], seed=options["seed"],
        )
        problems = params.problems()
        plot = options.get("plot")
        if plot is not None and not str(plot).lower().endswith(".png"):
            problems.append(f"--plot must name a .png file, got {plot!r}")
        if problems:
            raise CommandError("; ".join(problems))
        result = simulate_avellaneda_stoikov(params)
        if plot:
            try:
                plot_profit_histograms(result, str(plot))
            except OSError as exc:
                raise CommandError(f"cannot write {plot}: {exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result.summary()))
            return
        self.stdout.write(
            f"Avellaneda-Stoikov, gamma={params.gamma}, s0={params.s0}, T={params.T}, sigma={params.sigma}, "
            f"dt={params.dt}, k={params.k}, A={params.A}, q0={params.q0}, {params.paths} paths, seed={params.seed}"
        )
        self.stdout.write(f"(2/gamma)*ln(1+gamma/k) = {result.base_spread:.4f}  (the paper's spread column)")
        header = f"{'strategy':<10} {'spread':>8} {'profit':>10} {'std(profit)':>12} {'final q':>9} {'std(q)':>8}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for name, row in result.summary().items():
            self.stdout.write(
                f"{name:<10} {row['spread']:>8.2f} {row['profit_mean']:>10.2f} {row['profit_std']:>12.2f} "
                f"{row['q_mean']:>9.2f} {row['q_std']:>8.2f}"
            )
        if plot:
            self.stdout.write(f"histograms written to {plot}")
