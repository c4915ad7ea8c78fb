"""How far the streaming (binned-rank) contrast mode is from the exact one.

Prints a markdown table: for several numbers of pairs and bins, the max and mean
absolute error of the rank-biserial correlation and the max relative error of
log10(p) over 256 activations whose paired differences mix signs at every magnitude.

    python benchmarks/contrast_binning.py
"""

from __future__ import annotations

import numpy as np
import torch

from sa_frame import Categorical, Problem, SpikeAndSlab, Uniform
from sa_frame.core.registry import lookup

PROBLEM = Problem({"shift": SpikeAndSlab({"delta": Uniform(-0.3, 1.0)}, {"delta": 0.0}), "context": Categorical(50)})
WEIGHTS = torch.linspace(-1, 1, 256, dtype=torch.float64)


def outputs(x: torch.Tensor) -> torch.Tensor:
    context = torch.sin(1e3 * x[:, 2:3] + 7 * WEIGHTS)
    return context + WEIGHTS * x[:, 1:2] + 0.5 * torch.sin(1e3 * x[:, 1:2] + 7 * WEIGHTS)


def run(n: int, bins: int, mode: str) -> dict:
    est = lookup("estimator", "contrast")
    design = est.design(PROBLEM, n, seed=2, n_inner=5, outer_per_block=64, mode=mode, bins=bins)
    acc = est.accumulator(PROBLEM, design, {"y": (WEIGHTS.numel(),)})
    for block in design:
        acc.update(block, {"y": outputs(PROBLEM.values(block.unit))})
    return acc.finalize()["y"]


def main() -> None:
    print("| pairs | bins | max abs error of rank-biserial | mean abs error | max relative error of log10 p |")
    print("|---|---|---|---|---|")
    for n, bins in [(400, 64), (2000, 64), (2000, 32), (2000, 128)]:
        exact, binned = run(n, bins, "exact"), run(n, bins, "binned")
        err = np.abs(binned["rank_biserial"] - exact["rank_biserial"])
        ok = (exact["pvalue"] > 1e-250) & (binned["pvalue"] > 1e-250)
        log_p = np.log10(exact["pvalue"][ok])
        rel = np.abs(np.log10(binned["pvalue"][ok]) - log_p) / np.maximum(1.0, np.abs(log_p))
        print(f"| {n * 5} ({n} outer × 5 inner) | {bins} | {err.max():.4f} | {err.mean():.5f} | {rel.max():.4f} |")


if __name__ == "__main__":
    main()
