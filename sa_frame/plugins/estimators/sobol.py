"""Streaming Sobol indices: S1 (Saltelli 2010), ST (Jansen), S2 (Saltelli 2002).

Every activation is one output. The accumulator keeps sums over base points that
reproduce `SALib.analyze.sobol` exactly, including its centring of Y by the grand mean
of all rows: with m that mean, SALib's S1 numerator is mean((B - m)(AB_j - A)) =
[sum B(AB_j - A) - m sum(AB_j - A)] / N, and likewise for S2. Sums are taken of values
shifted by the first row seen (per activation) so that outputs with a large mean lose
no precision; merging converts shifts exactly.

Base points with a non-finite output in any of their rows are left out for that
activation (and counted); zero-variance activations get index 0 and are flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import norm
from torch import Tensor

from sa_frame.core.contracts import ACC_DTYPE, Accumulator, DesignBlock, Estimator
from sa_frame.core.errors import UsageError
from sa_frame.core.problem import Problem
from sa_frame.core.variables import Uniform
from sa_frame.plugins.estimators.saltelli import SaltelliDesign
from sa_frame.plugins.estimators.zero_variance import zero_variance

CONF_LEVEL = 0.95


class SobolAccumulator(Accumulator):
    design: SaltelliDesign

    def _init(self, name: str, m: int, shift: Tensor) -> None:
        d = self.design.n_groups
        z1 = torch.zeros(m, dtype=ACC_DTYPE, device=self.device)
        zd = torch.zeros(d, m, dtype=ACC_DTYPE, device=self.device)
        stats = {"shift": shift.clone(), "n": z1.clone(), "nonfinite": z1.clone(),
                 "s_a": z1.clone(), "s_b": z1.clone(), "s_aa": z1.clone(), "s_bb": z1.clone(),
                 "s_all2": z1.clone(), "s_ab": zd.clone(), "p": zd.clone(), "t": zd.clone(),
                 "s_bd2": zd.clone(), "s_b2d2": zd.clone(), "s_d4": zd.clone()}
        if self.design.second_order:
            stats["s_ba"] = zd.clone()
            stats["q"] = torch.zeros(d * (d - 1) // 2, m, dtype=ACC_DTYPE, device=self.device)
        self.stats[name] = stats

    def _update(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        d, rpp = self.design.n_groups, self.design.unit_rows
        y = y.reshape(-1, rpp, y.shape[-1])  # (points, rows per point, M)
        if not self.stats[name]:
            self._init(name, y.shape[-1], torch.nan_to_num(y[0, 0], nan=0.0, posinf=0.0, neginf=0.0))
        st = self.stats[name]
        finite = torch.isfinite(y)
        st["nonfinite"] += (~finite).sum((0, 1)).to(ACC_DTYPE)
        valid = finite.all(1)  # (points, M): a base point counts only if all its rows are finite
        y = torch.where(valid.unsqueeze(1), y - st["shift"], 0.0)
        st["n"] += valid.sum(0).to(ACC_DTYPE)
        a, b, ab = y[:, 0], y[:, -1], y[:, 1:d + 1]
        st["s_a"] += a.sum(0)
        st["s_b"] += b.sum(0)
        st["s_aa"] += (a * a).sum(0)
        st["s_bb"] += (b * b).sum(0)
        st["s_all2"] += (y * y).sum((0, 1))
        delta = ab - a.unsqueeze(1)
        d2 = delta * delta
        bu = b.unsqueeze(1)
        st["s_ab"] += ab.sum(0)
        st["p"] += (bu * delta).sum(0)
        st["t"] += d2.sum(0)
        st["s_bd2"] += (bu * d2).sum(0)
        st["s_b2d2"] += (bu * bu * d2).sum(0)
        st["s_d4"] += (d2 * d2).sum(0)
        if self.design.second_order:
            ba = y[:, d + 1:2 * d + 1]
            st["s_ba"] += ba.sum(0)
            s_ab_prod = (a * b).sum(0)
            row = 0
            for j in range(d - 1):  # a loop over groups; every activation at once
                k = d - 1 - j
                st["q"][row:row + k] += (ba[:, j:j + 1] * ab[:, j + 1:]).sum(0) - s_ab_prod
                row += k

    @staticmethod
    def _shift(st: dict[str, Tensor], delta: Tensor) -> dict[str, Tensor]:
        """The same sums expressed with the shift increased by -delta (x - c -> x - c + delta)."""
        n = st["n"]
        out = dict(st)
        out["shift"] = st["shift"] - delta
        for key in ("s_a", "s_b"):
            out[key] = st[key] + n * delta
        out["s_aa"] = st["s_aa"] + 2 * delta * st["s_a"] + n * delta * delta
        out["s_bb"] = st["s_bb"] + 2 * delta * st["s_b"] + n * delta * delta
        rpp = st["s_ab"].shape[0] * (2 if "s_ba" in st else 1) + 2
        s_all = st["s_a"] + st["s_b"] + st["s_ab"].sum(0) + (st["s_ba"].sum(0) if "s_ba" in st else 0)
        out["s_all2"] = st["s_all2"] + 2 * delta * s_all + rpp * n * delta * delta
        out["s_ab"] = st["s_ab"] + n * delta
        out["p"] = st["p"] + delta * (st["s_ab"] - st["s_a"])
        out["s_bd2"] = st["s_bd2"] + delta * st["t"]
        out["s_b2d2"] = st["s_b2d2"] + 2 * delta * st["s_bd2"] + delta * delta * st["t"]
        if "s_ba" in st:
            out["s_ba"] = st["s_ba"] + n * delta
            j, k = np.triu_indices(st["s_ab"].shape[0], 1)
            out["q"] = st["q"] + delta * (st["s_ba"][j] + st["s_ab"][k] - st["s_a"] - st["s_b"])
        return out

    def _merge(self, name: str, other: Accumulator) -> None:
        theirs = other.stats[name]
        if not theirs:
            return
        if not self.stats[name]:
            self.stats[name] = {k: v.clone() for k, v in theirs.items()}
            return
        mine = self.stats[name]
        converted = self._shift(theirs, theirs["shift"] - mine["shift"])
        for key in mine:
            if key != "shift":
                mine[key] = mine[key] + converted[key]

    def _finalize(self, name: str) -> dict[str, np.ndarray]:
        st = self.stats[name]
        if not st:
            raise UsageError(f"checkpoint {name!r}: no outputs were accumulated")
        d, rpp = self.design.n_groups, self.design.unit_rows
        n = st["n"]
        n_safe = n.clamp(min=1)
        s_all = st["s_a"] + st["s_b"] + st["s_ab"].sum(0) + (st["s_ba"].sum(0) if self.design.second_order else 0)
        mu = s_all / (rpp * n_safe)  # grand mean of all rows (shifted)
        mean_ab = (st["s_a"] + st["s_b"]) / (2 * n_safe)
        var = (st["s_aa"] + st["s_bb"]) / (2 * n_safe) - mean_ab * mean_ab
        flat = zero_variance(var, mean_ab + st["shift"]) | (n < 2)
        v = torch.where(flat, 1.0, var)
        x_sum = st["p"] - mu * (st["s_ab"] - st["s_a"])  # sum over points of (B - m)(AB_j - A)
        s1 = x_sum / n_safe / v
        st_ = 0.5 * st["t"] / n_safe / v
        # streaming CLT intervals (variance treated as known)
        x_sq = st["s_b2d2"] - 2 * mu * st["s_bd2"] + mu * mu * st["t"]
        z = float(norm.ppf(0.5 + CONF_LEVEL / 2))
        denom = (n_safe - 1).clamp(min=1)
        sd_x = ((x_sq - x_sum * x_sum / n_safe) / denom).clamp(min=0).sqrt()
        sd_t = ((0.25 * st["s_d4"] - 0.25 * st["t"] ** 2 / n_safe) / denom).clamp(min=0).sqrt()
        s1_conf = z * sd_x / n_safe.sqrt() / v
        st_conf = z * sd_t / n_safe.sqrt() / v
        mean_all = mu + st["shift"]
        var_all = (st["s_all2"] - rpp * n * mu * mu) / (rpp * n_safe - 1).clamp(min=1)
        out = {"S1": s1, "ST": st_, "S1_conf": s1_conf, "ST_conf": st_conf}
        if self.design.second_order:
            j, k = np.triu_indices(d, 1)
            vjk = (st["q"] - mu * (st["s_ba"][j] + st["s_ab"][k] - st["s_a"] - st["s_b"])) / n_safe / v
            s2 = torch.full((d, d) + tuple(s1.shape[1:]), float("nan"), dtype=ACC_DTYPE, device=s1.device)
            s2[j, k] = vjk - s1[j] - s1[k]
            out["S2"] = torch.where(flat, 0.0, s2).where(~torch.isnan(s2), float("nan"))
        for key in ("S1", "ST", "S1_conf", "ST_conf"):
            out[key] = torch.where(flat, 0.0, out[key])
        out.update(mean=mean_all, var=var_all.clamp(min=0), zero_variance=flat.to(torch.uint8),
                   nonfinite=st["nonfinite"], n_points=n)
        return {key: value.cpu().numpy() for key, value in out.items()}


class SobolEstimator(Estimator):
    name = "sobol"
    description = "Sobol indices S1, ST (and S2) on a grouped Saltelli design"
    outputs = ("S1", "ST", "S2", "S1_conf", "ST_conf", "mean", "var", "zero_variance")

    def design(self, problem: Problem, size: int, seed: int, second_order: bool = True,
               points_per_block: int | None = None, **options: Any) -> SaltelliDesign:
        if options:
            raise UsageError(f"sobol: unknown options {sorted(options)}; allowed: second_order, points_per_block")
        return SaltelliDesign(problem, size, seed, second_order=second_order, points_per_block=points_per_block)

    def accumulator(self, problem: Problem, design: SaltelliDesign, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> SobolAccumulator:
        return SobolAccumulator(problem, design, shapes, device)

    def from_outputs(self, y: np.ndarray, n_groups: int, second_order: bool = True, num_resamples: int = 0,
                     conf_level: float = CONF_LEVEL, seed: int | None = None) -> dict[str, np.ndarray]:
        """Indices from outputs already computed on a Saltelli design (SALib's row order).

        Point estimates come from the streaming accumulator; with `num_resamples` > 0
        the intervals are SALib's bootstrap over base points (same resampling indices
        as SALib for the same `seed`).
        """
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        rpp = 2 * n_groups + 2 if second_order else n_groups + 2
        if y.ndim != 2 or y.shape[0] % rpp or y.shape[0] == 0:
            raise UsageError(f"Y has {y.shape[0]} rows, not a multiple of {rpp} = rows per base point for "
                             f"{n_groups} groups ({'2d+2' if second_order else 'd+2'}); check n_groups and second_order")
        n = y.shape[0] // rpp
        problem = Problem({f"x{i}": Uniform(0.0, 1.0) for i in range(n_groups)})
        design = SaltelliDesign(problem, n, seed=0, second_order=second_order, points_per_block=n,
                                require_power_of_two=False)
        acc = SobolAccumulator(problem, design, {"y": (y.shape[1],)})
        acc.update(design_block_stub(n * rpp), {"y": torch.from_numpy(y)})
        res = acc.finalize()["y"]
        if num_resamples > 0:
            res.update(bootstrap_intervals(y, n_groups, second_order, num_resamples, conf_level, seed))
        return res


def design_block_stub(rows: int) -> DesignBlock:
    """A block standing for rows that were evaluated elsewhere (given-data analysis)."""
    return DesignBlock(index=0, unit=torch.empty(rows, 0, dtype=torch.float64))


def bootstrap_intervals(y: np.ndarray, d: int, second_order: bool, num_resamples: int, conf_level: float,
                        seed: int | None) -> dict[str, np.ndarray]:
    """SALib's bootstrap intervals, vectorised over outputs (Y standardised once, as SALib)."""
    if not 0 < conf_level < 1:
        raise UsageError(f"conf_level must lie in (0, 1), got {conf_level}")
    rpp = 2 * d + 2 if second_order else d + 2
    n = y.shape[0] // rpp
    std = y.std(axis=0)
    ys = (y - y.mean(axis=0)) / np.where(std > 0, std, 1.0)
    blocks = ys.reshape(n, rpp, -1)
    a, b, ab = blocks[:, 0], blocks[:, -1], blocks[:, 1:d + 1]
    draw = np.random.default_rng(seed).integers if seed else np.random.randint
    r = draw(n, size=(n, num_resamples))
    z = norm.ppf(0.5 + conf_level / 2)
    ar, br = a[r], b[r]  # (n, R, M)
    var = np.concatenate([ar, br], 0).var(axis=0)
    var = np.where(var > np.finfo(float).eps, var, np.inf)

    def s1(j: int) -> np.ndarray:
        return np.mean(br * (ab[r, j] - ar), axis=0) / var

    out = {"S1_conf": np.stack([z * s1(j).std(axis=0, ddof=1) for j in range(d)]),
           "ST_conf": np.stack([z * (0.5 * np.mean((ar - ab[r, j]) ** 2, axis=0) / var).std(axis=0, ddof=1)
                                for j in range(d)])}
    if second_order:
        ba = blocks[:, d + 1:2 * d + 1]
        s2c = np.full((d, d, y.shape[1]), np.nan)
        s1s = [s1(j) for j in range(d)]
        for j in range(d):
            for k in range(j + 1, d):
                vjk = np.mean(ba[r, j] * ab[r, k] - ar * br, axis=0) / var
                s2c[j, k] = z * (vjk - s1s[j] - s1s[k]).std(axis=0, ddof=1)
        out["S2_conf"] = s2c
    return out
