"""Mean, variance (ddof 1) and coefficient of variation on an i.i.d. design.

NaN-aware: non-finite outputs are counted per activation and left out. Streaming with
Chan's pairwise update of (count, mean, M2), which is also how two states merge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame import ACC_DTYPE, Accumulator, Design, DesignBlock, Estimator, Problem, UsageError, lookup, maps, option

DEFAULT_BLOCK_ROWS = 256


class IIDDesign(Design):
    name = "iid"

    def __init__(self, problem: Problem, n: int, seed: int, rows_per_block: int | None = None) -> None:
        if n < 2:
            raise UsageError(f"variance needs n >= 2 rows, got {n}")
        self.problem = problem
        self.n = int(n)
        self.seed = int(seed)
        self.rows_per_block = min(self.n, int(rows_per_block or DEFAULT_BLOCK_ROWS))

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.rows_per_block)

    @property
    def n_rows(self) -> int:
        return self.n

    def block(self, k: int) -> DesignBlock:
        if not 0 <= k < self.n_blocks:
            raise IndexError(f"block {k} outside 0..{self.n_blocks - 1}")
        rows = min(self.rows_per_block, self.n - k * self.rows_per_block)
        unit = np.random.default_rng([self.seed, k]).random((rows, self.problem.n_vars))
        return DesignBlock(index=k, unit=torch.from_numpy(unit))

    def config(self) -> dict[str, Any]:
        return {"design": self.name, "n": self.n, "seed": self.seed, "rows_per_block": self.rows_per_block}


def chan_combine(n_a: Tensor, mean_a: Tensor, m2_a: Tensor, n_b: Tensor, mean_b: Tensor,
                 m2_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Combine (count, mean, M2) of two disjoint samples (Chan, Golub & LeVeque 1979)."""
    n = n_a + n_b
    safe = n.clamp(min=1)
    delta = mean_b - mean_a
    mean = mean_a + delta * n_b / safe
    m2 = m2_a + m2_b + delta * delta * n_a * n_b / safe
    return n, mean, m2


class VarianceAccumulator(Accumulator):
    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        y = y.to(ACC_DTYPE)
        finite = torch.isfinite(y)
        n_b = finite.sum(0).to(ACC_DTYPE)
        clean = torch.where(finite, y, 0.0)
        mean_b = clean.sum(0) / n_b.clamp(min=1)
        m2_b = torch.where(finite, (y - mean_b) ** 2, 0.0).sum(0)
        self._fold(name, {"n": n_b, "mean": mean_b, "m2": m2_b, "nonfinite": (~finite).sum(0).to(ACC_DTYPE)})

    def _fold(self, name: str, other: dict[str, Tensor]) -> None:
        st = self.stats[name]
        if not st:
            self.stats[name] = {k: v.clone() for k, v in other.items()}
            return
        st["n"], st["mean"], st["m2"] = chan_combine(st["n"], st["mean"], st["m2"],
                                                     other["n"], other["mean"], other["m2"])
        st["nonfinite"] = st["nonfinite"] + other["nonfinite"]

    def merge_checkpoint(self, name: str, other: Accumulator) -> None:
        if other.stats[name]:
            self._fold(name, other.stats[name])

    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        st = self.stats[name]
        var = st["m2"] / (st["n"] - 1).clamp(min=1)
        var = torch.where(st["n"] >= 2, var, float("nan"))
        out = {key: value.cpu().numpy() for key, value in
               {"mean": st["mean"], "var": var, "n": st["n"], "nonfinite": st["nonfinite"]}.items()}
        out["cov"] = maps.cov_from_moments(out["mean"], out["var"])
        return out


@dataclasses.dataclass
class VarianceOptions:
    rows_per_block: int = option(0, f"rows per design block (0: {DEFAULT_BLOCK_ROWS})")
    sampler: str = option("iid", "registered sampler that builds the i.i.d. design")


class VarianceEstimator(Estimator):
    name = "variance"
    description = "mean, variance and coefficient of variation on an i.i.d. design"
    outputs = ("mean", "var", "cov", "n", "nonfinite")
    summary = ("cov",)
    ungrouped = frozenset({"mean", "var", "cov", "n", "nonfinite"})
    regions = "unsupported"  # no map per variable: nothing to say per region

    Options = VarianceOptions
    # the paper's 2^18 rows; the research code's test size; the demo's
    sizes = {"paper": {"n": 2**18}, "quick": {"n": 1024}, "demo": {"n": 4096}}

    def make_design(self, problem: Problem, size: int, seed: int, options: VarianceOptions) -> IIDDesign:
        return lookup("sampler", options.sampler).design(problem, size, seed,
                                                         rows_per_block=options.rows_per_block or None)

    def accumulator(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> VarianceAccumulator:
        return VarianceAccumulator(problem, design, shapes, device)
