"""Shapley effects by random permutations (Song, Nelson & Staum 2016), total-effect cost.

Design: for each permutation pi of the players, each position i and each of No outer
samples, the players after position i are drawn once (outer) and the players
pi[0..i] are drawn Ni times conditionally on them (inner). Rows are ordered
(position, outer, inner) inside a block, and one block is one permutation.

Estimator: c_i = mean over outer of the inner variance (ddof 1), an
estimate of E[Var(Y | X_{-J})] with J = pi[0..i]; player pi[i] gets c_i - c_{i-1}.
Per-permutation increments are kept as sums and sums of squares, which gives
standard errors over permutations. When d! <= the permutation budget, every
permutation is used, each equally often (the budget is rounded up to a multiple of d!).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import Tensor

from sa_frame import ACC_DTYPE, Accumulator, Design, DesignBlock, Estimator, Problem, UsageError, lookup, option
from sa_frame.plugins.estimators._zero_variance import zero_variance

CONF_LEVEL = 0.95
#: intervals backed by fewer permutations than this are flagged (results, console)
FEW_PERMUTATIONS = 8
#: most permutations kept as strata (d! for d <= 4 players): their sums cost d! x d per activation
MAX_STRATA = 24

PLAYER_MODES = ("groups", "variables")


class PermutationDesign(Design):
    name = "shapley-permutations"

    def __init__(self, problem: Problem, n_permutations: int, seed: int, n_outer: int = 1, n_inner: int = 3,
                 players: str = "groups") -> None:
        if players not in PLAYER_MODES:
            raise UsageError(f"players must be one of {', '.join(PLAYER_MODES)}, got {players!r}")
        if n_inner < 2:
            raise UsageError(f"shapley needs n_inner >= 2 (an inner variance), got {n_inner}")
        if n_outer < 1 or n_permutations < 1:
            raise UsageError(f"shapley needs n_permutations >= 1 and n_outer >= 1, got {n_permutations}, {n_outer}")
        self.problem = problem
        self.seed = int(seed)
        self.n_outer, self.n_inner = int(n_outer), int(n_inner)
        self.players = players
        if players == "groups":
            self.player_names = list(problem.group_names)
            self.player_of_column = problem.group_of_column.copy()
        else:
            self.player_names = list(problem.names)
            self.player_of_column = np.arange(problem.n_vars)
        d = self.n_players
        self.unit_rows = self.n_inner
        self.exhaustive = math.factorial(d) <= n_permutations
        #: the d! permutations as strata when every one is used equally often and their
        #: per-permutation sums are small enough to keep (0: no strata)
        self.strata = 0
        if self.exhaustive:
            every = np.array(list(itertools.permutations(range(d))), dtype=np.int64)
            self.permutations = np.tile(every, (-(-n_permutations // len(every)), 1))  # at least the budget
            self.strata = len(every) if len(every) <= MAX_STRATA else 0
        else:
            rng = np.random.default_rng([self.seed, 0xC0FFEE])
            self.permutations = np.argsort(rng.random((n_permutations, d)), axis=1)

    @property
    def pooled_strata(self) -> int:
        """Strata whose within-permutation spreads the errors pool: 0 without strata, or with
        one permutation per stratum (no spread within)."""
        return self.strata if self.n_blocks > self.strata else 0

    @property
    def n_players(self) -> int:
        return len(self.player_names)

    @property
    def n_blocks(self) -> int:
        return len(self.permutations)

    @property
    def n_rows(self) -> int:
        return self.n_blocks * self.rows_per_block

    @property
    def rows_per_block(self) -> int:
        return self.n_players * self.n_outer * self.n_inner

    def block(self, k: int) -> DesignBlock:
        if not 0 <= k < self.n_blocks:
            raise IndexError(f"block {k} outside 0..{self.n_blocks - 1}")
        d, no, ni, nv = self.n_players, self.n_outer, self.n_inner, self.problem.n_vars
        perm = self.permutations[k]
        rng = np.random.default_rng([self.seed, k])
        outer = rng.random((d, no, 1, nv))
        inner = rng.random((d, no, ni, nv))
        rank = np.empty(d, dtype=np.int64)
        rank[perm] = np.arange(d)
        column_rank = rank[self.player_of_column]  # position of each column's player in pi
        resampled = column_rank[None, :] <= np.arange(d)[:, None]  # (position, column): in J
        unit = np.where(resampled[:, None, None, :], inner, outer).reshape(-1, nv)
        known = np.broadcast_to(~resampled[:, None, None, :], (d, no, ni, nv)).reshape(-1, nv)
        return DesignBlock(index=k, unit=torch.from_numpy(unit), known=torch.from_numpy(known.copy()),
                           info={"permutation": perm, "stratum": k % self.strata if self.strata else 0})

    def config(self) -> dict[str, Any]:
        return {"design": self.name, "n_permutations": int(self.n_blocks), "n_outer": self.n_outer,
                "n_inner": self.n_inner, "seed": self.seed, "players": self.players}


class ShapleyAccumulator(Accumulator):
    design: PermutationDesign

    def _init(self, name: str, m: int) -> None:
        d = self.design.n_players
        zd = torch.zeros(d, m, dtype=ACC_DTYPE, device=self.device)
        z1 = torch.zeros(m, dtype=ACC_DTYPE, device=self.device)
        # per permutation: a player's increment a and the total b (their sum over players);
        # sums of a, a^2, a b and b, b^2 give the shares' delta-method errors
        self.stats[name] = {"phi": zd.clone(), "phi2": zd.clone(), "phi_total": zd.clone(), "n_perm": z1.clone(),
                            "total": z1.clone(), "total2": z1.clone(), "s_y": z1.clone(), "n_y": z1.clone(),
                            "nonfinite": z1.clone()}
        if self.design.strata:  # per permutation: sums of a and b (within-permutation spreads)
            self.stats[name]["phi_stratum"] = zd.expand(self.design.strata, d, m).clone()
            self.stats[name]["total_stratum"] = z1.expand(self.design.strata, m).clone()
        self._open[name] = {"c_sum": zd.clone(), "c_n": zd.clone()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: dict[str, dict[str, Tensor]] = {}

    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        y = y.to(ACC_DTYPE)
        no, ni = self.design.n_outer, self.design.n_inner
        if not self.stats[name]:
            self._init(name, y.shape[-1])
        st, op = self.stats[name], self._open[name]
        groups = y.reshape(-1, ni, y.shape[-1])  # (inner groups, Ni, M)
        finite = torch.isfinite(groups).all(1)  # a group counts only if all its rows are finite
        st["nonfinite"] += (~torch.isfinite(groups)).sum((0, 1)).to(ACC_DTYPE)
        clean = torch.where(finite.unsqueeze(1), groups, 0.0)
        st["s_y"] += clean.sum((0, 1))
        st["n_y"] += finite.sum(0).to(ACC_DTYPE) * ni
        inner_var = clean.var(1, correction=1)
        position = (torch.arange(groups.shape[0], device=self.device) + rows.start // ni) // no
        op["c_sum"].index_add_(0, position, torch.where(finite, inner_var, 0.0))
        op["c_n"].index_add_(0, position, finite.to(ACC_DTYPE))
        if rows.stop == block.n_rows:  # the permutation is complete
            c = op["c_sum"] / op["c_n"].clamp(min=1)
            increments = torch.diff(c, dim=0, prepend=torch.zeros_like(c[:1]))
            players = torch.as_tensor(block.info["permutation"], device=self.device)
            st["phi"].index_add_(0, players, increments)
            st["phi2"].index_add_(0, players, increments * increments)
            st["phi_total"].index_add_(0, players, increments * c[-1])
            st["n_perm"] += 1.0
            st["total"] += c[-1]
            st["total2"] += c[-1] * c[-1]
            if self.design.strata:
                stratum = int(block.info["stratum"])
                st["phi_stratum"][stratum].index_add_(0, players, increments)
                st["total_stratum"][stratum] += c[-1]
            op["c_sum"].zero_()
            op["c_n"].zero_()

    def state(self) -> dict[str, Tensor]:
        if any(bool(op["c_n"].any()) for op in self._open.values()):
            raise RuntimeError("state() in the middle of a permutation block")
        return super().state()

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        super().load_state(state)
        for name, st in self.stats.items():
            if st:
                z = torch.zeros_like(st["phi"])
                self._open[name] = {"c_sum": z.clone(), "c_n": z.clone()}

    def merge_checkpoint(self, name: str, other: Accumulator) -> None:
        if other.stats[name] and not self.stats[name]:
            self._init(name, other.stats[name]["phi"].shape[-1])
        super().merge_checkpoint(name, other)

    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        st = self.stats[name]
        m = st["n_perm"].clamp(min=1)
        raw = st["phi"] / m
        spread = ((st["phi2"] / m - raw * raw) * m / (m - 1).clamp(min=1)).clamp(min=0)
        se = spread.sqrt() / m.sqrt()
        total = raw.sum(0)
        mean = st["s_y"] / st["n_y"].clamp(min=1)
        var = st["total"] / m  # the estimated variance as stored: 0 there means flagged (sum(phi) may be 1e-18)
        flat = zero_variance(var.clamp(min=0), mean) | zero_variance(total.clamp(min=0), mean)
        scale = torch.where(flat, 1.0, total)
        share = raw / scale
        n_perm = int(st["n_perm"].max())
        strata = self.design.pooled_strata
        share_se = share_standard_error(st, share, scale, m, strata)
        if strata:
            se = stratified_spread(st["phi2"], st["phi_stratum"] ** 2, m, strata).sqrt() / m.sqrt()
        dof = n_perm - max(strata, 1)
        t = float(student_t.ppf(0.5 + CONF_LEVEL / 2, dof)) if dof > 0 else float("nan")
        out = {"shapley": torch.where(flat, 0.0, share), "shapley_raw": raw,
               "shapley_se": torch.where(flat, 0.0, share_se), "shapley_conf": torch.where(flat, 0.0, t * share_se),
               "shapley_raw_se": se, "var": var, "mean": mean, "zero_variance": flat.to(torch.uint8),
               "index_var": torch.where(flat, 0.0, total), "index_scale": raw.abs().sum(0),  # the shares' denominator
               "nonfinite": st["nonfinite"]}
        return {key: value.cpu().numpy() for key, value in out.items()}


def share_standard_error(st: Mapping[str, Tensor], share: Tensor, total: Tensor, m: Tensor,
                         strata: int = 0) -> Tensor:
    """Standard error of a share R = mean(a) / mean(b) of the per-permutation increments a and
    totals b, by the delta method: sd(a - R b) / (sqrt(M) |mean(b)|) — the total's own spread
    included, so one player (a = b) has se 0. With strata (every permutation used equally
    often), sd is the pooled spread within permutations: the choice of permutations is no
    error then."""
    z2 = st["phi2"] - 2 * share * st["phi_total"] + share * share * st["total2"]  # sum (a - R b)^2
    if strata:
        per_stratum = (st["phi_stratum"] - share * st["total_stratum"].unsqueeze(1)) ** 2
        spread = stratified_spread(z2, per_stratum, m, strata)
    else:
        spread = (z2 / (m - 1).clamp(min=1)).clamp(min=0)
    return spread.sqrt() / m.sqrt() / total.abs()


def stratified_spread(sum_sq: Tensor, stratum_sums_sq: Tensor, m: Tensor, strata: int) -> Tensor:
    """Pooled within-stratum variance of a per-permutation quantity over M permutations in
    equal strata: [sum x^2 - sum_s (sum_{k in s} x_k)^2 / (M / S)] / (M - S)."""
    within = sum_sq - stratum_sums_sq.sum(0) * strata / m
    return (within / (m - strata).clamp(min=1)).clamp(min=0)


@dataclasses.dataclass
class ShapleyOptions:
    n_outer: int = option(1, "outer samples per permutation position")
    n_inner: int = option(3, "inner (conditional) samples per outer sample")
    players: str = option("groups", "groups (one player per augmentation) or variables (one per SA variable)")
    sampler: str = option("shapley-permutations", "registered sampler that builds the permutation design")


class ShapleyEstimator(Estimator):
    name = "shapley"
    description = "Shapley effects (Song-Nelson-Staum random permutations, total-effect cost)"
    outputs = ("shapley", "shapley_raw", "shapley_se", "shapley_conf", "shapley_raw_se", "var", "mean", "index_var",
               "index_scale", "zero_variance")
    summary = ("shapley",)
    ungrouped = Estimator.ungrouped | {"index_var", "index_scale"}

    fractions = frozenset({"shapley"})
    analysis_maps = {"shapley": ("shapley_raw", "shares")}
    Options = ShapleyOptions
    # the paper's 256 permutations x 64 outer x 8 inner; the research code's test sizes; the demo's
    sizes = {"paper": {"n": 256, "n_outer": 64, "n_inner": 8}, "quick": {"n": 8, "n_outer": 6, "n_inner": 4},
             "demo": {"n": 48, "n_outer": 4, "n_inner": 4}}
    schemes = (2, 1)  # by default every augmentation switched: a player's switch and parameters drawn together

    def make_design(self, problem: Problem, size: int, seed: int, options: ShapleyOptions) -> PermutationDesign:
        return lookup("sampler", options.sampler).design(problem, size, seed, n_outer=options.n_outer,
                                                         n_inner=options.n_inner, players=options.players)

    def accumulator(self, problem: Problem, design: PermutationDesign, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> ShapleyAccumulator:
        return ShapleyAccumulator(problem, design, shapes, device)

    def intervals(self, design: PermutationDesign) -> dict[str, Any]:
        strata = design.pooled_strata
        dof = design.n_blocks - max(strata, 1)
        detail = (f"delta method over {design.n_blocks} permutations (the total's spread included), Student t on "
                  f"{dof} degrees of freedom")
        if strata:
            detail += f"; stratified: each of the {strata} permutations is used equally often, spreads within them"
        elif design.exhaustive:
            detail += "; every permutation is used equally often, which makes them conservative"
        out = {"method": "permutations", "level": CONF_LEVEL, "dof": dof, "detail": detail}
        if design.n_blocks < FEW_PERMUTATIONS:
            out["warning"] = (f"only {design.n_blocks} permutations back the intervals (fewer than "
                              f"{FEW_PERMUTATIONS}): they are wide and their coverage rough")
        return out
