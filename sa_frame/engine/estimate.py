"""Sensitivity analysis of any vectorised function, through the same designs and
accumulators that `sa-frame run` uses for networks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.problem import Problem
from sa_frame.core.registry import lookup

HUGE = 1e150  # |output| whose square (and sums of squares) overflows float64


def _as_outputs(y: Any, rows: int) -> Tensor:
    y = torch.as_tensor(y)
    if y.is_complex() or not (y.is_floating_point() or y.dtype in (torch.int32, torch.int64)):
        raise UsageError(f"fn must return real numbers, got {y.dtype}")
    if y.ndim == 1:
        y = y.unsqueeze(1)
    if y.ndim != 2 or y.shape[0] != rows:
        raise UsageError(f"fn must return (rows, n_outputs) or (rows,) values; got shape {tuple(y.shape)} "
                         f"for {rows} rows")
    if y.dtype == torch.float64:  # squares beyond float64's range would turn the sums into NaN unseen:
        y = torch.where(y.abs() > HUGE, float("nan"), y)  # count such values as non-finite instead
    return y


def estimate(problem: Problem, fn: Callable[[Tensor], Any], estimator: str = "sobol", n: int = 1024,
             seed: int = 0, device: str = "cpu", **options: Any) -> dict[str, np.ndarray]:
    """Indices of `fn` over `problem`.

    `fn` maps a (rows, n_vars) float64 tensor of variable values to (rows, n_outputs)
    outputs. Returns index maps keyed by name, e.g. ``S1`` shaped (n_groups, n_outputs).
    Memory does not depend on `n`: rows are generated, evaluated and folded in block by block.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"n must be a positive integer, got {n!r}")
    est = lookup("estimator", estimator)
    design = est.design(problem, n, seed, **options)
    acc = None
    for block in design:
        x = problem.values(block.unit, block.known)
        y = _as_outputs(fn(x), block.n_rows)
        if acc is None:
            acc = est.accumulator(problem, design, {"y": tuple(y.shape[1:])}, device=device)
        acc.update(block, {"y": y})
    assert acc is not None  # designs have at least one block
    return acc.finalize()["y"]


def sobol_from_outputs(y: Any, n_groups: int, second_order: bool = True, num_resamples: int = 0,
                       conf_level: float = 0.95, seed: int | None = None) -> dict[str, np.ndarray]:
    """Sobol indices from outputs `y` in SALib's Saltelli row order (N(2d+2) or N(d+2) rows)."""
    return lookup("estimator", "sobol").from_outputs(np.asarray(y), n_groups, second_order=second_order,
                                                     num_resamples=num_resamples, conf_level=conf_level,
                                                     seed=seed)
