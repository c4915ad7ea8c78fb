"""Sensitivity analysis of any vectorised function, through the same designs and
accumulators that `sa-frame run` uses for networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.problem import Problem
from sa_frame.core.registry import lookup
from sa_frame.engine.laws import MultivariateNormal, Uniform

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


SALIB_DISTS = ("unif", "norm")  # SALib's `dists` entries that have an sa-frame variable


def problem_from_salib(spec: Mapping[str, Any]) -> Problem:
    """A Problem from a SALib problem dict (`num_vars`, `names`, `bounds`, optional `groups`,
    one group name per variable, and `dists`: ``unif`` [low, high] or ``norm`` [mean, sd])."""
    missing = [k for k in ("names", "bounds") if k not in spec]
    if missing:
        raise UsageError(f"a SALib problem dict needs {', '.join(missing)} (it has {', '.join(map(str, spec))})")
    names, bounds = [str(n) for n in spec["names"]], [list(map(float, b)) for b in spec["bounds"]]
    count = int(spec.get("num_vars", len(names)))
    dists = list(spec.get("dists") or ["unif"] * count)
    groups = spec.get("groups")
    if not (len(names) == len(bounds) == len(dists) == count) or (groups is not None and len(groups) != count):
        raise UsageError(f"SALib problem: num_vars = {count} but {len(names)} names, {len(bounds)} bounds, "
                         f"{len(dists)} dists" + (f", {len(groups)} groups" if groups is not None else ""))
    variables: dict[str, Any] = {}
    for name, bound, dist in zip(names, bounds, dists):
        if dist not in SALIB_DISTS:
            raise UsageError(f"SALib problem: variable {name!r} has dist {dist!r}; supported: "
                             f"{', '.join(SALIB_DISTS)} (other laws: build a sa_frame.Problem)")
        if len(bound) != 2:
            raise UsageError(f"SALib problem: variable {name!r} needs 2 bounds for {dist!r}, got {bound}")
        if dist == "unif":
            variables[name] = Uniform(*bound)
        else:
            if not bound[1] > 0:
                raise UsageError(f"SALib problem: variable {name!r} (norm) needs a positive sd, got {bound[1]:g}")
            variables[name] = MultivariateNormal([bound[0]], [[bound[1] ** 2]], [name])
    members: dict[str, list[str]] | None = None
    if groups is not None:
        members = {}
        for name, group in zip(names, groups):
            members.setdefault(str(group), []).append(name)
    return Problem(variables, groups=members)


def as_problem(problem: Problem | Mapping[str, Any]) -> Problem:
    """`problem` itself, or the Problem of a SALib problem dict."""
    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, Mapping):
        return problem_from_salib(problem)
    raise UsageError(f"problem must be a sa_frame.Problem or a SALib problem dict, got {type(problem).__name__}")


def estimate(problem: Problem | Mapping[str, Any], fn: Callable[[Tensor], Any], estimator: str = "sobol",
             n: int = 1024, seed: int = 0, device: str = "cpu", **options: Any) -> dict[str, np.ndarray]:
    """Indices of `fn` over `problem` (a Problem, or a SALib problem dict).

    `fn` maps a (rows, n_vars) float64 tensor of variable values to (rows, n_outputs)
    outputs. Returns index maps keyed by name, e.g. ``S1`` shaped (n_groups, n_outputs),
    and ``names``: the labels of the maps' leading axis (the groups, or the variables
    without groups), in order. Memory does not depend on `n`: rows are generated,
    evaluated and folded in block by block.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"n must be a positive integer, got {n!r}")
    problem = as_problem(problem)
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
    return {**acc.finalize()["y"], "names": np.array(est.map_rows(problem, design))}


def sobol_from_outputs(y: Any, n_groups: int, second_order: bool = True, num_resamples: int = 0,
                       conf_level: float = 0.95, seed: int | None = None) -> dict[str, np.ndarray]:
    """Sobol indices from outputs `y` in SALib's Saltelli row order (N(2d+2) or N(d+2) rows)."""
    return lookup("estimator", "sobol").from_outputs(np.asarray(y), n_groups, second_order=second_order,
                                                     num_resamples=num_resamples, conf_level=conf_level,
                                                     seed=seed)
