"""`ssa`: step-wise sensitivity analysis streamed over images — per class, the float64 moments
of a relevance between consecutive checkpoints (mean, variance) and its Tukey outlier
frequency, for every (upper neuron, lower neuron) pair. States add, so runs resume and split.

Outputs per pair ``upper|lower``, shaped (classes + 1, K_upper, K_lower), rows the classes
then ``all``: `relevance` (mean), `relevance_var` (population variance), `outlier_frequency`
(share of images in which the lower neuron lies above Q3 + 1.5 IQR of the upper neuron's
K_lower relevances), `count` (images).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from sa_frame import ACC_DTYPE, Accumulator, Design, DesignBlock, Estimator, Problem, UsageError, lookup, option

CLASS = "class"
TUKEY = 1.5
STATS = ("count", "sum", "sumsq", "outliers")


def tukey_flags(y: Tensor) -> Tensor:
    """(..., K) -> (..., K) bool: entries above Q3 + 1.5 IQR of their row (quartiles with
    linear interpolation, as numpy.percentile)."""
    q = torch.quantile(y.to(ACC_DTYPE), torch.tensor([0.25, 0.75], dtype=ACC_DTYPE, device=y.device), dim=-1)
    return y.to(ACC_DTYPE) > (q[1] + TUKEY * (q[1] - q[0])).unsqueeze(-1)


class GroupedMoments(Accumulator):
    """Per-class sums of the outputs, their squares and Tukey flags (float64; merge by adding)."""

    def __init__(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                 device: str | torch.device = "cpu") -> None:
        super().__init__(problem, design, shapes, device)
        self.class_variable = problem.variable(CLASS)
        self.class_col = problem.names.index(CLASS)
        self.n_classes = int(self.class_variable.n)  # type: ignore[attr-defined]

    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        classes = self.class_variable.split(block.unit[rows, self.class_col])[0].long().to(self.device)
        onehot = torch.nn.functional.one_hot(classes, self.n_classes).to(ACC_DTYPE)  # (R, C)
        values = y.to(ACC_DTYPE)
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            raise UsageError(f"relevance {name!r} has non-finite values (a diverging network?)")
        k_low = self.shapes[name][-1]
        flags = tukey_flags(values.view(values.shape[0], -1, k_low)).reshape(values.shape).to(ACC_DTYPE)
        stats = self.stats[name]
        if not stats:
            m = values.shape[1]
            # count is the same for every column; kept at full width so that every state tensor
            # has the activation axis last (the layout resume checks)
            stats.update({k: torch.zeros(self.n_classes, m, dtype=ACC_DTYPE, device=self.device) for k in STATS})
        stats["count"] += onehot.sum(0)[:, None]
        stats["sum"] += onehot.T @ values
        stats["sumsq"] += onehot.T @ (values * values)
        stats["outliers"] += onehot.T @ flags

    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        s = {k: v for k, v in self.stats[name].items()}
        rows = {k: torch.cat([v, v.sum(0, keepdim=True)]) for k, v in s.items()}  # the classes, then all
        count = rows["count"]
        with np.errstate(invalid="ignore", divide="ignore"):
            safe = torch.where(count > 0, count, torch.nan)
            mean = rows["sum"] / safe
            var = (rows["sumsq"] / safe - mean * mean).clamp(min=0)
        return {"relevance": mean.cpu().numpy(), "relevance_var": var.cpu().numpy(),
                "outlier_frequency": (rows["outliers"] / safe).cpu().numpy(), "count": count.cpu().numpy()}


@dataclasses.dataclass
class SsaOptions:
    sampler: str = option("iid", "registered sampler of the image rows (i.i.d. over the class variable)")
    rows_per_block: int = option(64, "images per design block (one relevance batch)")
    augmentations: bool = option(False, "also vary --aug's augmentations (dependency graphs under augmentation)")
    upper: str = option("mean", "an upper conv map as one scalar: its spatial mean or max")


class SsaEstimator(Estimator):
    name = "ssa"
    description = "step-wise sensitivity: per-class relevance between consecutive checkpoints (needs --relevance)"
    outputs = ("relevance", "relevance_var", "outlier_frequency", "count")
    summary = ("relevance",)
    ungrouped = frozenset()
    Options = SsaOptions
    sizes = {"paper": {"n": 1000}, "quick": {"n": 64}, "demo": {"n": 320}}
    schemes = (1,)
    permute = False
    regions = "unsupported"
    needs_grad = True

    def make_design(self, problem: Problem, size: int, seed: int, options: SsaOptions) -> Design:
        if options.upper not in ("mean", "max"):
            raise UsageError(f"estimator 'ssa': upper must be mean or max, got {options.upper!r}")
        return lookup("sampler", options.sampler).design(problem, size, seed, rows_per_block=options.rows_per_block)

    def accumulator(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> GroupedMoments:
        if CLASS not in problem.names:
            raise UsageError("estimator 'ssa' needs the class variable (it groups relevances by class)")
        return GroupedMoments(problem, design, shapes, device)

    def map_rows(self, problem: Problem, design: Design) -> list[str]:
        labels = getattr(problem.variable(CLASS), "labels", None) or [str(c) for c in range(problem.variable(CLASS).n)]
        return [*map(str, labels), "all"]
