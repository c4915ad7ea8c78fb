"""Grouped Saltelli design on scrambled Sobol points, generated block by block.

Row layout per base point (SALib's, so outputs can be checked against
`SALib.analyze.sobol`): A, AB_1..AB_d, [BA_1..BA_d,] B, where AB_g takes group g's
columns from B and the rest from A. Block k holds base points [kP, (k+1)P); it is
produced by fast-forwarding the same scrambled Sobol engine, so any process can make
any block and the union of blocks equals one `qmc.Sobol(...).random(N)` call.

With R > 1 replicates (randomised QMC), the N base points are R independent scramblings
of N/R points each, replicate r seeded by (seed, r) and holding points [rN/R, (r+1)N/R):
every replicate is a valid Saltelli design, and the spread between them gives intervals
that see the QMC error (the accumulator keeps sums per replicate). R = 1 is SALib's design.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy.stats import qmc

from sa_frame import Design, DesignBlock, Problem, UsageError

DEFAULT_BLOCK_ROWS = 512
# Base points that reach the accumulator together: they form one batch of the streaming
# (batch-means) confidence intervals, so batches do not depend on forward batch sizes.
POINTS_PER_UNIT = 16


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


class SaltelliDesign(Design):
    name = "saltelli"

    def __init__(self, problem: Problem, n: int, seed: int, second_order: bool = True,
                 points_per_block: int | None = None, require_power_of_two: bool = True,
                 replicates: int = 1) -> None:
        n, replicates = int(n), int(replicates)
        if require_power_of_two and not is_power_of_two(n):
            lower = 1 << max(n.bit_length() - 1, 0)
            raise UsageError(f"sobol needs n (base points) to be a power of two, got {n}; "
                             f"use {lower} or {lower * 2}")
        if not problem.groups_independent:
            raise UsageError("sobol needs independent groups: a dependent block (e.g. MultivariateNormal) "
                             "spans several groups; put it in one group or use the shapley estimator")
        if replicates < 1 or not is_power_of_two(replicates) or n % replicates:
            raise UsageError(f"replicates must be a power of two that divides n = {n} (1, 2, 4, .., n), "
                             f"got {replicates}")
        self.problem = problem
        self.n = n
        self.replicates = replicates
        self.points_per_replicate = n // replicates
        self.seed = int(seed)
        self.second_order = bool(second_order)
        self.n_groups = problem.n_groups
        self.rows_per_point = (2 * self.n_groups + 2) if self.second_order else (self.n_groups + 2)
        default = max(POINTS_PER_UNIT, 1 << max((DEFAULT_BLOCK_ROWS // self.rows_per_point).bit_length() - 1, 0))
        self.points_per_block = min(self.points_per_replicate, int(points_per_block or default))
        asked = points_per_block
        if asked is not None and (asked < 1 or (asked % POINTS_PER_UNIT if asked > POINTS_PER_UNIT
                                                else POINTS_PER_UNIT % asked)):
            raise UsageError(f"points_per_block must be a multiple of {POINTS_PER_UNIT} (or a divisor of it: 1, 2, "
                             f"4, 8), got {asked}")
        if replicates > 1 and self.points_per_replicate % self.points_per_block:
            raise UsageError(f"points_per_block ({asked}) must divide the {self.points_per_replicate} base points "
                             f"of each of the {replicates} replicates")
        self.unit_rows = self.rows_per_point * min(POINTS_PER_UNIT, self.points_per_block)
        # membership[g, c]: column c belongs to group g
        self._membership = np.zeros((self.n_groups, problem.n_vars), dtype=bool)
        self._membership[problem.group_of_column, np.arange(problem.n_vars)] = True

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.points_per_block)

    @property
    def n_rows(self) -> int:
        return self.n * self.rows_per_point

    def replicate_of(self, point: int) -> int:
        """The replicate that base point `point` belongs to."""
        return point // self.points_per_replicate

    def base_points(self, start: int, count: int) -> np.ndarray:
        """Scrambled Sobol points start..start+count-1 of dimension 2 n_vars (within one replicate)."""
        r = self.replicate_of(start)
        # the legacy `seed=` keyword is what SALib passes to scipy, so with one replicate
        # the rows equal SALib's design for the same seed; replicate r of R > 1 scrambles
        # with its own generator seeded by (seed, r).
        seed = self.seed if self.replicates == 1 else np.random.default_rng([self.seed, r])
        engine = qmc.Sobol(2 * self.problem.n_vars, scramble=True, seed=seed)
        if start - r * self.points_per_replicate:
            engine.fast_forward(start - r * self.points_per_replicate)
        with warnings.catch_warnings():
            # the balance property concerns the whole (power-of-two) sequence, not one block
            warnings.filterwarnings("ignore", message="The balance properties")
            return engine.random(count)

    def block(self, k: int) -> DesignBlock:
        if not 0 <= k < self.n_blocks:
            raise IndexError(f"block {k} outside 0..{self.n_blocks - 1}")
        start = k * self.points_per_block
        count = min(self.points_per_block, self.n - start)
        base = self.base_points(start, count)
        d_vars = self.problem.n_vars
        a, b = base[:, :d_vars], base[:, d_vars:]
        member = self._membership[None]  # (1, groups, vars)
        ab = np.where(member, b[:, None], a[:, None])
        parts = [a[:, None], ab]
        if self.second_order:
            parts.append(np.where(member, a[:, None], b[:, None]))
        parts.append(b[:, None])
        rows = np.concatenate(parts, axis=1).reshape(-1, d_vars)
        return DesignBlock(index=k, unit=torch.from_numpy(rows), info={"first_point": start,
                                                                      "replicate": self.replicate_of(start)})

    def config(self) -> dict[str, Any]:
        return {"design": self.name, "n": self.n, "seed": self.seed, "second_order": self.second_order,
                "points_per_block": self.points_per_block, "replicates": self.replicates}
