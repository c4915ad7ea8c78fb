"""Coverage of sa-frame's 95% intervals against exact indices, over many seeds (no timed
tests; the table is recorded in docs/estimators.md).

Cases: Ishigami (S1, ST), Sobol' G with d = 8 (S1, ST, S2), a grouped G (S1, ST of three
groups), and the linear-Gaussian model with correlated inputs (Shapley effects), each at
n = 128 and n = 1,024 (Sobol: base points; Shapley: permutations). For every index the
script counts how often |estimate - exact| <= half-width, and compares the median
half-width with 1.96 x the estimator's real RMSE over the seeds (1 = the interval is as
wide as it should be).

    python benchmarks/interval_coverage.py [--seeds 200] [--replicates 8] [--json]

`--replicates 1` measures the one-replicate (SALib design, batch-means) intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import sa_frame
from sa_frame import MultivariateNormal, Problem, Uniform

BAND = (0.92, 0.98)  # the binomial band around 0.95 for ~200 seeds


@dataclass
class Case:
    name: str
    problem: Problem
    fn: Callable[[torch.Tensor], torch.Tensor]
    estimator: str
    exact: dict[str, np.ndarray]  # index name -> exact values (S2: (d, d), upper triangle)
    options: dict


def ishigami_case(a: float = 7.0, b: float = 0.1) -> Case:
    v = a**2 / 8 + b * math.pi**4 / 5 + b**2 * math.pi**8 / 18 + 0.5
    v1, v2, v13 = 0.5 * (1 + b * math.pi**4 / 5) ** 2, a**2 / 8, b**2 * math.pi**8 * (1 / 18 - 1 / 50)
    problem = Problem({f"x{i}": Uniform(-math.pi, math.pi) for i in (1, 2, 3)})

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x[:, 0]) + a * torch.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * torch.sin(x[:, 0])

    return Case("ishigami", problem, fn, "sobol", {"S1": np.array([v1, v2, 0]) / v,
                                                   "ST": np.array([v1 + v13, v2, v13]) / v}, {"second_order": False})


G_A = [0, 1, 4.5, 9, 99, 99, 99, 99]


def g_function(x: torch.Tensor) -> torch.Tensor:
    a = torch.tensor(G_A, dtype=torch.float64)
    return torch.prod((torch.abs(4 * x - 2) + a) / (1 + a), dim=1)


def g_case(groups: dict[str, list[str]] | None = None) -> Case:
    """Exact: V_i = 1 / (3 (1 + a_i)^2), V = prod(1 + V_i) - 1; a set u's closed index is
    (prod_{i in u}(1 + V_i) - 1) / V, its total 1 - closed(complement)."""
    vi = 1 / (3 * (1 + np.array(G_A)) ** 2)
    v = np.prod(1 + vi) - 1
    names = [f"x{i + 1}" for i in range(len(G_A))]
    problem = Problem({n: Uniform(0, 1) for n in names}, groups=groups)
    members = [[names.index(c) for c in problem.groups[g]] for g in problem.group_names]

    def closed(idx: list[int]) -> float:
        return (np.prod(1 + vi[idx]) - 1) / v

    s1 = np.array([closed(m) for m in members])
    st = np.array([1 - closed([i for i in range(len(G_A)) if i not in m]) for m in members])
    exact = {"S1": s1, "ST": st}
    if groups is None:
        exact["S2"] = np.outer(vi, vi) / v
        return Case("G8", problem, g_function, "sobol", exact, {"second_order": True})
    return Case("grouped G8", problem, g_function, "sobol", exact, {"second_order": False})


def linear_gaussian_case(rho: float = 0.9) -> Case:
    """Y = X1 + X2 + X3, sd (1, 1, 2), corr(X2, X3) = rho: Shapley effects (Iooss & Prieur 2019)."""
    s = np.array([1.0, 1.0, 2.0])
    cov = np.diag(s**2)
    cov[1, 2] = cov[2, 1] = rho * s[1] * s[2]
    v = s[0] ** 2 + s[1] ** 2 + s[2] ** 2 + 2 * rho * s[1] * s[2]
    c23 = rho * s[1] * s[2]
    sh2 = s[1] ** 2 + c23 + rho**2 * (s[2] ** 2 - s[1] ** 2) / 2
    sh3 = s[2] ** 2 + c23 + rho**2 * (s[1] ** 2 - s[2] ** 2) / 2
    problem = Problem({"x": MultivariateNormal([0, 0, 0], cov, ["x1", "x2", "x3"])})
    return Case("linear Gaussian", problem, lambda x: x.sum(1), "shapley",
                {"shapley": np.array([s[0] ** 2, sh2, sh3]) / v}, {"n_outer": 2, "n_inner": 3})


def coverage(case: Case, n: int, seeds: int, replicates: int) -> dict[str, dict[str, list[float]]]:
    """Per index: coverage and median half-width / (1.96 RMSE) for each variable (or pair)."""
    options = dict(case.options)
    if case.estimator == "sobol":
        options["replicates"] = replicates
    estimates: dict[str, list[np.ndarray]] = {k: [] for k in case.exact}
    widths: dict[str, list[np.ndarray]] = {k: [] for k in case.exact}
    for seed in range(seeds):
        res = sa_frame.estimate(case.problem, case.fn, case.estimator, n=n, seed=seed, **options)
        for key in [k for k in case.exact if f"{k}_conf" not in res]:  # one replicate: no S2 intervals
            del case.exact[key]
        for key in case.exact:
            estimates[key].append(res[key][..., 0])
            widths[key].append(res[f"{key}_conf"][..., 0])
    out = {}
    for key, exact in {k: v for k, v in case.exact.items() if estimates[k]}.items():
        est, half = np.array(estimates[key]), np.array(widths[key])
        keep = ~np.isnan(exact) if exact.ndim == 1 else np.triu(np.ones_like(exact, dtype=bool), 1)
        err = (est - exact)[:, keep]
        rmse = np.sqrt((err**2).mean(0))
        out[key] = {"coverage": np.mean(np.abs(err) <= half[:, keep], axis=0).tolist(),
                    "width_ratio": (np.median(half[:, keep], axis=0) / (1.959964 * rmse)).tolist(),
                    "rmse": rmse.tolist()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--replicates", type=int, default=8, help="Sobol replicates (1: batch means)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [ishigami_case(), g_case(), g_case({"G1": ["x1", "x2"], "G2": ["x3", "x4"],
                                                "G3": ["x5", "x6", "x7", "x8"]}), linear_gaussian_case()]
    table, start = [], time.perf_counter()
    for case in cases:
        for n in args.sizes:
            for key, cell in coverage(case, n, args.seeds, args.replicates).items():
                table.append({"case": case.name, "n": n, "index": key, **cell})
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"95% intervals over {args.seeds} seeds (Sobol replicates = {args.replicates}); coverage and median "
          f"half-width / (1.96 RMSE), min-max over the variables; band {BAND[0]}-{BAND[1]}")
    print(f"{'case':<16}{'n':>6}  {'index':<8}{'coverage':>16}{'width / 1.96 RMSE':>22}{'RMSE':>20}")
    outside = 0
    for row in table:
        cov, wid = np.array(row["coverage"]), np.array(row["width_ratio"])
        outside += int(np.sum((cov < BAND[0]) | (cov > BAND[1])))
        print(f"{row['case']:<16}{row['n']:>6}  {row['index']:<8}{cov.min():>8.3f}-{cov.max():.3f}"
              f"{wid.min():>14.2f}-{wid.max():.2f}{min(row['rmse']):>12.2g}-{max(row['rmse']):.2g}")
    cells = sum(len(row["coverage"]) for row in table)
    # at 0.95 exactly, binomial noise alone puts ~5% of the cells outside the band
    print(f"cells outside the band: {outside} of {cells} (about {0.05 * cells:.0f} expected by chance); "
          f"{time.perf_counter() - start:.0f} s")
    for row in table:
        for i, (cov, wid) in enumerate(zip(row["coverage"], row["width_ratio"])):
            if not BAND[0] <= cov <= BAND[1]:
                print(f"  outside: {row['case']}, n={row['n']}, {row['index']}[{i}]: coverage {cov:.3f}, "
                      f"width ratio {wid:.2f}")


if __name__ == "__main__":
    main()
