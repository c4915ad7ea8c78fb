"""Streaming Sobol indices: S1 (Saltelli 2010), ST (Jansen), S2 (Saltelli 2002).

Every activation is one output. The accumulator keeps sums over base points that
reproduce `SALib.analyze.sobol` exactly, including its centring of Y by the grand mean
of all rows: with m that mean, SALib's S1 numerator is mean((B - m)(AB_j - A)) =
[sum B(AB_j - A) - m sum(AB_j - A)] / N, and likewise for S2. Sums are taken of values
shifted by the first row seen (per activation) so that outputs with a large mean lose
no precision; merging converts shifts exactly.

Base points with a non-finite output in any of their rows are left out for that
activation (and counted); zero-variance activations get index 0 and are flagged.

Intervals: the point-estimate sums are kept per randomised-QMC replicate of the design
(leading axis R), and the delete-one-replicate jackknife gives the half-widths; a
one-replicate design (SALib's) falls back to batch means over its units.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import norm
from scipy.stats import t as student_t
from torch import Tensor

from sa_frame import ACC_DTYPE, Accumulator, DesignBlock, Estimator, Problem, Uniform, UsageError, lookup, option
from sa_frame.plugins.estimators._saltelli_design import POINTS_PER_UNIT, SaltelliDesign, is_power_of_two
from sa_frame.plugins.estimators._zero_variance import zero_variance

CONF_LEVEL = 0.95
#: replicates of the design when the options do not say (docs/estimators.md: n and R)
DEFAULT_REPLICATES = 8
#: intervals backed by fewer replicates or batches than this are flagged (results, console)
FEW_INTERVAL_GROUPS = 8
#: state sums kept per replicate (leading axis R); the others are over all replicates
REPLICATED = frozenset({"n", "s_a", "s_b", "s_aa", "s_bb", "s_all2", "s_ab", "p", "t", "s_ba", "q"})
# A chunk of the torch path on the CPU (cpu_kernel False): up to CPU_UNITS units x
# (CPU_CHUNK // units) columns (best of a sweep on 2 cores)
CPU_UNITS, CPU_CHUNK = 16, 8192
#: activations finalized at a time (the index arithmetic's temporaries are a few of these wide)
FINALIZE_COLUMNS = 1 << 15


def first_order(x_sum: Tensor, n: Tensor, var: Tensor) -> Tensor:
    """S1 (Saltelli 2010): mean of (B - m)(AB_j - A) over base points, over Var(Y)."""
    return x_sum / n / var


def total_order(t_sum: Tensor, n: Tensor, var: Tensor) -> Tensor:
    """ST (Jansen 1999): half the mean of (A - AB_j)^2 over base points, over Var(Y)."""
    return 0.5 * t_sum / n / var


def second_order(vjk_sum: Tensor, n: Tensor, var: Tensor, s1_j: Tensor, s1_k: Tensor) -> Tensor:
    """S2 (Saltelli 2002): the closed index of the pair, mean of BA_j AB_k - A B over Var(Y),
    less both first-order indices."""
    return vjk_sum / n / var - s1_j - s1_k


def batch_means_halfwidth(ss: Tensor, dof: Tensor, n: Tensor, var: Tensor, t: Tensor,
                           scale: float = 1.0) -> Tensor:
    """Half-width of the t-interval of an index from batch means: `ss` the sum of squared
    deviations of batch sums from their expectation, `dof` its effective degrees of freedom
    in points (NaN below two batches), `t` the quantile; `scale` the per-point term's
    factor (1/2 for ST)."""
    sd = torch.where(dof > 0.5, scale * (ss / dof).clamp(min=0).sqrt(), float("nan"))
    return t * sd / n.sqrt() / var


class SobolAccumulator(Accumulator):
    design: SaltelliDesign
    _gram: Tensor | None = None
    # On the CPU, fold with the fused kernel of saltelli_kernel (False: the torch Gram path
    # that GPUs use, for tests comparing the two)
    cpu_kernel: bool = True

    def _init(self, name: str, m: int, shift: Tensor) -> None:
        d, r = self.design.n_groups, self.design.replicates
        z1 = torch.zeros(m, dtype=ACC_DTYPE, device=self.device)
        zd = torch.zeros(d, m, dtype=ACC_DTYPE, device=self.device)
        stats = {"shift": shift.clone(), "nonfinite": z1.clone(), "w2": z1.clone()}
        # the sums the indices are made of, per replicate (leading axis R): n, A, B, A^2,
        # B^2, all rows squared; per group s_ab, p (S1 numerator), t (ST numerator)
        for key in ("n", "s_a", "s_b", "s_aa", "s_bb", "s_all2"):
            stats[key] = z1.expand(r, m).clone()
        for key in ("s_ab", "p", "t"):
            stats[key] = zd.expand(r, d, m).clone()
        # per CI batch (design unit), over all replicates: the sums of squares and cross
        # products of batch sums (batch-means intervals of a one-replicate design)
        for key in ("pp", "pq", "qq", "np", "nq", "tt", "nt"):
            stats[key] = zd.clone()
        if self.design.second_order:
            stats["s_ba"] = zd.expand(r, d, m).clone()
            stats["q"] = torch.zeros(r, d * (d - 1) // 2, m, dtype=ACC_DTYPE, device=self.device)
        self.stats[name] = stats

    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        rpp = self.design.rows_per_point
        y = y.reshape(-1, rpp, y.shape[-1])  # (points, rows per point, M)
        if not self.stats[name]:
            self._init(name, y.shape[-1], torch.nan_to_num(y[0, 0].to(ACC_DTYPE), nan=0.0, posinf=0.0, neginf=0.0))
        replicate = int(block.info.get("replicate", 0))
        stats = {key: value[replicate] if key in REPLICATED else value for key, value in self.stats[name].items()}
        # The design's units of POINTS_PER_UNIT points are the CI batches; all whole units of
        # this call are folded at once, a shorter tail (only at the end of a block) after them.
        whole = y.shape[0] - y.shape[0] % POINTS_PER_UNIT
        for part in (y[:whole], y[whole:]):
            if part.shape[0]:
                self._update_units(stats, part.reshape(-1, min(POINTS_PER_UNIT, part.shape[0]), rpp, part.shape[-1]))

    def _update_units(self, stats: dict[str, Tensor], y: Tensor) -> None:
        """Fold units (units, points, rows per point, M) into `stats`: on the CPU with the
        fused kernel, otherwise with the torch Gram path below, in chunks.

        On the CPU (torch path) a chunk is up to CPU_UNITS units x CPU_CHUNK / units columns: long column
        runs for the one transposing copy, a working set that stays in cache, and few enough
        chunks that per-operation overheads stay small. On a GPU, one unit over every
        activation (launches are few, and memory stays at one unit's Gram matrices).
        """
        if self.cpu_kernel and y.device.type == "cpu":
            # imported here: numba and LLVM hold 51 MiB once loaded, which runs of other estimators
            # (they all register through one plugin) should not carry
            from sa_frame.plugins.estimators._sobol_cpu_kernel import fold_units

            fold_units(stats, y, self.design.n_groups, self.design.second_order)
            return
        units, m = y.shape[0], y.shape[-1]
        group = min(units, CPU_UNITS)
        group, step = (1, m) if y.is_cuda else (group, CPU_CHUNK // group)
        buffers: dict[tuple[int, int], Tensor] = {}  # reused: fresh multi-MB buffers cost page faults
        for c0 in range(0, m, step):
            cols = slice(c0, c0 + step)
            chunk_stats = {k: v[..., cols] for k, v in stats.items()}
            for u0 in range(0, units, group):
                part = y[u0:u0 + group, ..., cols]
                shape = (part.shape[0], part.shape[-1])
                if shape not in buffers:
                    buffers[shape] = torch.empty(*shape, y.shape[1], y.shape[2] + 1, dtype=ACC_DTYPE, device=y.device)
                    buffers[shape][..., -1] = 1.0  # the column of ones
                self._update_chunk(chunk_stats, part, buffers[shape])

    def _update_chunk(self, st: dict[str, Tensor], y: Tensor, z: Tensor) -> None:
        """Fold one chunk y (units, points, rows per point, cols) into `st` (views, in place);
        `z` is a (units, cols, points, rows per point + 1) buffer whose last column holds ones.

        One batched GEMM: for every (activation, unit), the Gram matrix of the columns
        z = [A, AB_1 - A, .., AB_d - A, (BA_1, .., BA_d,) B, 1] over the unit's points
        (A, B, BA shifted) holds every sum the estimators need. Differences AB_j - A are
        formed before the product so that ST keeps full precision. Per-unit sums are then
        added up over units, and their squares kept for the batch-means intervals.
        """
        d, second = self.design.n_groups, self.design.second_order
        rpp = y.shape[2]
        # the one strided pass, shifted on the way: (units, cols, points, rows per point)
        torch.sub(y.permute(0, 3, 1, 2), st["shift"].view(-1, 1, 1), out=z[..., :rpp])
        z[..., 1:d + 1] -= z[..., :1]  # AB_j - A (the shift cancels)
        flat = z.view(-1, z.shape[2], z.shape[3])
        entries = self._entries(torch.bmm(flat.transpose(1, 2), flat, out=self._gram_buffer(flat)), z.shape[0])
        # A non-finite value reaches its row's diagonal entry, and every row's is used: the
        # sum of the entries is then non-finite (one cheap contiguous reduction to check).
        if not bool(torch.isfinite(entries.sum())):
            # drop, per column and unit, the points with a non-finite value in any row
            st["nonfinite"] += (~torch.isfinite(y)).sum((0, 1, 2)).to(ACC_DTYPE)
            flat = torch.where(torch.isfinite(flat).all(-1, keepdim=True), flat, 0.0)  # the 1 goes too
            entries = self._entries(torch.bmm(flat.transpose(1, 2), flat), z.shape[0])
        # n, p, q, t lead the entries: the products the intervals need take three operations
        lead = 1 + 3 * d
        per_unit = self._named(entries.transpose(0, 1))  # each (k, units, cols)
        total = self._named(entries.sum(0))
        with_n = self._named((entries[:, :1] * entries[:, :lead]).sum(0))  # n n, n p, n q, n t
        squares = self._named((entries[:, :lead] ** 2).sum(0))  # (n n,) p p, q q, t t
        st["n"] += total["n"][0]
        st["w2"] += with_n["n"][0]
        for key in ("s_a", "s_b", "s_aa", "s_bb"):
            st[key] += total[key][0]
        st["s_ab"] += total["q"] + total["s_a"]
        st["p"] += total["p"]
        st["t"] += total["t"]
        st["pp"] += squares["p"]
        st["pq"] += (per_unit["p"] * per_unit["q"]).sum(1)
        st["qq"] += squares["q"]
        st["tt"] += squares["t"]
        st["np"] += with_n["p"]
        st["nq"] += with_n["q"]
        st["nt"] += with_n["t"]
        # sum of all squared rows: A, B, AB_j = (AB_j - A) + A, and BA_j
        s_all2 = total["s_bb"][0] + (d + 1) * total["s_aa"][0] + (total["t"] + 2 * total["a_diff"]).sum(0)
        if second:
            s_all2 = s_all2 + total["ba_sq"].sum(0)
            st["s_ba"] += total["s_ba"]
            # sum BA_j AB_k - A B = sum BA_j (AB_k - A) + sum BA_j A - sum A B
            st["q"] += total["ba_diff"] + total["ba_a"] - total["a_b"]
        st["s_all2"] += s_all2

    def _gram_buffer(self, flat: Tensor) -> Tensor | None:
        """The Gram output on the CPU, reused between chunks of one shape (fresh multi-MB
        tensors cost page faults); None on a GPU, whose caching allocator does this already."""
        if flat.is_cuda:
            return None
        shape = (flat.shape[0], flat.shape[2], flat.shape[2])
        if self._gram is None or self._gram.shape != shape:
            self._gram = torch.empty(shape, dtype=flat.dtype, device=flat.device)
        return self._gram

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _entry_index(d: int, second: bool) -> tuple[torch.Tensor, dict[str, slice]]:
        """Flat positions in the Gram matrix of the sums the estimators use, and their slices by name."""
        i_b = 2 * d + 1 if second else d + 1  # B's row; the ones follow it
        one = i_b + 1
        diff = range(1, d + 1)
        named: dict[str, list[tuple[int, int]]] = {
            "n": [(one, one)],
            "p": [(i_b, j) for j in diff],      # sums of B (AB_j - A)
            "q": [(j, one) for j in diff],      # sums of AB_j - A
            "t": [(j, j) for j in diff],        # sums of (AB_j - A)^2
            "s_a": [(0, one)], "s_b": [(i_b, one)], "s_aa": [(0, 0)], "s_bb": [(i_b, i_b)],
            "a_diff": [(0, j) for j in diff]}   # sums of A (AB_j - A)
        if second:
            ba = range(d + 1, 2 * d + 1)
            j, k = np.triu_indices(d, 1)
            named.update({"ba_sq": [(b, b) for b in ba], "s_ba": [(b, one) for b in ba],
                          "ba_diff": [(d + 1 + a, 1 + b) for a, b in zip(j, k)],
                          "ba_a": [(d + 1 + a, 0) for a in j], "a_b": [(0, i_b)]})
        flat: list[int] = []
        slices = {}
        for name, pairs in named.items():
            slices[name] = slice(len(flat), len(flat) + len(pairs))
            flat += [r * (one + 1) + c for r, c in pairs]
        return torch.tensor(flat), slices

    def _entries(self, gram: Tensor, units: int) -> Tensor:
        """The Gram entries used, (units, k, cols), copied once so that every later operation
        reads contiguous memory (a strided view made them ~3x slower)."""
        index, _ = self._entry_index(self.design.n_groups, self.design.second_order)
        return gram.view(units, -1, gram.shape[-1] ** 2).transpose(1, 2)[:, index.to(gram.device)]

    def _named(self, entries: Tensor) -> dict[str, Tensor]:
        """Named blocks along the first dimension of per-entry values (k, ...); names past a
        shorter tensor's end are empty."""
        _, slices = self._entry_index(self.design.n_groups, self.design.second_order)
        return {name: entries[sl] for name, sl in slices.items()}

    @staticmethod
    def _shift(st: dict[str, Tensor], delta: Tensor) -> dict[str, Tensor]:
        """The same sums expressed with the shift increased by -delta (x - c -> x - c + delta);
        per-replicate sums (R, ..., M) and sums over all replicates alike."""
        n = st["n"]
        g = -2  # the group axis of per-replicate sums
        out = dict(st)
        out["shift"] = st["shift"] - delta
        for key in ("s_a", "s_b"):
            out[key] = st[key] + n * delta
        out["s_aa"] = st["s_aa"] + 2 * delta * st["s_a"] + n * delta * delta
        out["s_bb"] = st["s_bb"] + 2 * delta * st["s_b"] + n * delta * delta
        rpp = st["s_ab"].shape[g] * (2 if "s_ba" in st else 1) + 2
        s_all = st["s_a"] + st["s_b"] + st["s_ab"].sum(g) + (st["s_ba"].sum(g) if "s_ba" in st else 0)
        out["s_all2"] = st["s_all2"] + 2 * delta * s_all + rpp * n * delta * delta
        out["s_ab"] = st["s_ab"] + (n * delta).unsqueeze(g)
        q = st["s_ab"] - st["s_a"].unsqueeze(g)
        out["p"] = st["p"] + delta * q
        # batch sums p_b become p_b + delta q_b
        out["pp"] = st["pp"] + 2 * delta * st["pq"] + delta * delta * st["qq"]
        out["pq"] = st["pq"] + delta * st["qq"]
        out["np"] = st["np"] + delta * st["nq"]
        if "s_ba" in st:
            out["s_ba"] = st["s_ba"] + (n * delta).unsqueeze(g)
            j, k = np.triu_indices(st["s_ab"].shape[g], 1)
            out["q"] = st["q"] + delta * (st["s_ba"][..., j, :] + st["s_ab"][..., k, :]
                                          - (st["s_a"] + st["s_b"]).unsqueeze(g))
        return out

    def merge_checkpoint(self, name: str, other: Accumulator) -> None:
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

    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        """The maps of one checkpoint, FINALIZE_COLUMNS activations at a time: every index is
        a function of one activation's sums, and the second-order and jackknife arithmetic on
        a whole checkpoint made a dozen copies of its largest state (9.2 GB on EfficientNet-Lite0's
        stem at --quick, for 2.4 GB of state)."""
        st = self.stats[name]
        m = st["shift"].shape[-1]
        parts = [self._finalize_columns({key: value[..., lo:lo + FINALIZE_COLUMNS] for key, value in st.items()})
                 for lo in range(0, m, FINALIZE_COLUMNS)]
        return parts[0] if len(parts) == 1 else {key: np.concatenate([p[key] for p in parts], axis=-1)
                                                 for key in parts[0]}

    def _finalize_columns(self, st: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        replicates = self.design.replicates
        total = {key: value.sum(0) if key in REPLICATED else value for key, value in st.items()}
        est = index_estimates(total, self.design.rows_per_point, self.design.second_order)
        flat, n, mu = est["flat"], total["n"], est["mu"]
        out = {"S1": est["S1"], "ST": est["ST"]}
        if replicates > 1:
            out.update(replicate_intervals(st, total, est, self.design.rows_per_point, self.design.second_order))
        else:
            out.update(batch_means_intervals(total, est))
        rpp = self.design.rows_per_point
        var_all = (total["s_all2"] - rpp * n * mu * mu) / (rpp * n.clamp(min=1) - 1).clamp(min=1)
        if self.design.second_order:  # pairs j < k into (d, d) maps, NaN below the diagonal
            d = self.design.n_groups
            j, k = np.triu_indices(d, 1)
            pairs = {"S2": est["S2"], **({"S2_conf": out.pop("S2_conf")} if "S2_conf" in out else {})}
            for key, values in pairs.items():
                full = torch.full((d, d) + tuple(values.shape[1:]), float("nan"), dtype=ACC_DTYPE, device=values.device)
                full[j, k] = torch.where(flat & ~torch.isnan(values), 0.0, values)  # flat outputs: 0, NaN kept
                out[key] = full
        for key in ("S1", "ST", "S1_conf", "ST_conf"):
            out[key] = torch.where(flat, 0.0, out[key])
        out.update(mean=mu + total["shift"], var=var_all.clamp(min=0), zero_variance=flat.to(torch.uint8),
                   index_var=torch.where(flat, 0.0, est["v"]),  # the indices' denominator: A and B rows' variance
                   nonfinite=total["nonfinite"], n_points=n)
        return {key: value.cpu().numpy() for key, value in out.items()}


def index_estimates(st: Mapping[str, Tensor], rpp: int, second: bool) -> dict[str, Tensor]:
    """S1, ST (and the S2 pairs j < k) from sums over base points, with any leading axes
    (one set of sums, or one per left-out replicate): SALib's estimators, Y centred on the
    grand mean of all rows; also the flat mask, Var(Y) (1 where flat), the grand mean mu
    (shifted) and the point count."""
    n = st["n"]
    n_safe = n.clamp(min=1)
    s_all = st["s_a"] + st["s_b"] + st["s_ab"].sum(-2) + (st["s_ba"].sum(-2) if second else 0)
    mu = s_all / (rpp * n_safe)  # grand mean of all rows (shifted)
    mean_ab = (st["s_a"] + st["s_b"]) / (2 * n_safe)
    var = (st["s_aa"] + st["s_bb"]) / (2 * n_safe) - mean_ab * mean_ab
    flat = zero_variance(var, mean_ab + st["shift"]) | (n < 2)
    v = torch.where(flat, 1.0, var)
    per_group = {"n": n_safe.unsqueeze(-2), "v": v.unsqueeze(-2), "mu": mu.unsqueeze(-2)}
    x_sum = st["p"] - per_group["mu"] * (st["s_ab"] - st["s_a"].unsqueeze(-2))  # sum of (B - m)(AB_j - A)
    s1 = first_order(x_sum, per_group["n"], per_group["v"])
    out = {"S1": s1, "ST": total_order(st["t"], per_group["n"], per_group["v"]), "flat": flat, "v": v, "mu": mu,
           "x_sum": x_sum, "n_safe": n_safe}
    if second:
        j, k = np.triu_indices(st["s_ab"].shape[-2], 1)
        centred = (st["s_a"] + st["s_b"]).unsqueeze(-2)
        vjk_sum = st["q"] - per_group["mu"] * (st["s_ba"][..., j, :] + st["s_ab"][..., k, :] - centred)
        out["S2"] = second_order(vjk_sum, per_group["n"], per_group["v"], s1[..., j, :], s1[..., k, :])
    return out


def replicate_intervals(st: Mapping[str, Tensor], total: Mapping[str, Tensor], est: Mapping[str, Tensor],
                        rpp: int, second: bool) -> dict[str, Tensor]:
    """Half-widths from R independent replicates: the delete-one-replicate jackknife of
    each index (the ratio, so the error of Var(Y) is included), Student t on R - 1 degrees
    of freedom. The jackknife of a smooth function of replicate means is its delta method."""
    r = st["n"].shape[0]
    left_out = {key: (total[key].unsqueeze(0) - value if key in REPLICATED else value) for key, value in st.items()}
    loo = index_estimates(left_out, rpp, second)
    t = float(student_t.ppf(0.5 + CONF_LEVEL / 2, r - 1))
    # a left-out set without variance where the whole has some: the spread is unknown there
    unknown = (loo["flat"].any(0) & ~est["flat"]) | (st["n"] < 1).any(0)
    out = {}
    for key in ("S1", "ST") + (("S2",) if second else ()):
        theta = loo[key]
        spread = ((theta - theta.mean(0)) ** 2).sum(0) * (r - 1) / r
        out[f"{key}_conf"] = torch.where(unknown, float("nan"), t * spread.sqrt())
    out["conf_dof"] = torch.where(unknown, float("nan"), float(r - 1))
    return out


def batch_means_intervals(total: Mapping[str, Tensor], est: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Half-widths of a one-replicate design from batch means (the design's units of
    POINTS_PER_UNIT base points), with Var(Y) treated as known and Student t on the
    batches' degrees of freedom (N^2 / sum n_b^2 - 1 with batches of n_b points).

    Per-point terms X = (B - m)(AB_j - A) and T = (A - AB_j)^2 / 2; batch sums give
    sum_b (X_b - n_b xbar)^2 = sigma^2 (N - sum n_b^2 / N) in expectation.
    """
    n_safe, v, mu, x_sum = est["n_safe"], est["v"], est["mu"], est["x_sum"]
    w2 = total["w2"]
    dof = (n_safe - w2 / n_safe).clamp(min=1e-300)
    x_bar = x_sum / n_safe
    ss_x = total["pp"] - 2 * mu * total["pq"] + mu * mu * total["qq"] \
        - 2 * x_bar * (total["np"] - mu * total["nq"]) + x_bar * x_bar * w2
    t_bar = total["t"] / n_safe
    ss_t = total["tt"] - 2 * t_bar * total["nt"] + t_bar * t_bar * w2
    batch_dof = (n_safe * n_safe / w2.clamp(min=1) - 1).round()  # batches of one design are equal but the tail
    t = student_t_quantiles(batch_dof)
    return {"S1_conf": batch_means_halfwidth(ss_x, dof, n_safe, v, t),
            "ST_conf": batch_means_halfwidth(ss_t, dof, n_safe, v, t, scale=0.5),
            "conf_dof": torch.where(batch_dof >= 1, batch_dof, float("nan"))}


def default_replicates(n: int) -> int:
    """DEFAULT_REPLICATES, or the largest power of two below it that divides n (n = 50: 2)."""
    r = DEFAULT_REPLICATES
    while r > 1 and n % r:
        r //= 2
    return r


def student_t_quantiles(dof: Tensor) -> Tensor:
    """The two-sided CONF_LEVEL quantile of Student t for each entry of `dof` (NaN below 1),
    computed once per distinct value (activations share a few)."""
    values, inverse = torch.unique(dof, return_inverse=True)
    v = values.cpu().numpy()
    q = np.where(v >= 1, student_t.ppf(0.5 + CONF_LEVEL / 2, np.maximum(v, 1)), np.nan)
    return torch.as_tensor(q, dtype=ACC_DTYPE, device=dof.device)[inverse]


@dataclasses.dataclass
class SobolOptions:
    second_order: bool = option(True, "also estimate second-order indices S2 (2d+2 rows per base point "
                                      "instead of d+2)")
    points_per_block: int = option(0, "base points per design block, a multiple of 16 (0: about 512 rows)")
    sampler: str = option("saltelli", "registered sampler that builds the Saltelli design")
    replicates: int = option(0, f"independent scramblings of the Sobol points (randomised QMC) whose spread "
                                f"gives the intervals (0: {DEFAULT_REPLICATES}, or n if smaller); 1: SALib's "
                                f"design, batch-means intervals")
    allow_any_n: bool = option(False, "accept any n, not only powers of two (the SBSA paper's N = 50); the "
                                      "Sobol points then lose their balance, as SALib warns")


class SobolEstimator(Estimator):
    name = "sobol"
    description = "Sobol indices S1, ST (and S2) on a grouped Saltelli design"
    outputs = ("S1", "ST", "S2", "S1_conf", "ST_conf", "S2_conf", "conf_dof", "mean", "var", "index_var",
               "zero_variance")
    ungrouped = Estimator.ungrouped | {"conf_dof", "n_points", "index_var"}
    summary = ("S1", "ST")
    fractions = frozenset({"S1", "ST", "S2"})
    analysis_maps = {"S1": ("S1", "clip"), "ST": ("ST", "clip")}
    Options = SobolOptions
    # the paper's N = 2^17 base points; the research code's test size; the demo's
    sizes = {"paper": {"n": 2**17}, "quick": {"n": 64}, "demo": {"n": 512}}

    def make_design(self, problem: Problem, size: int, seed: int, options: SobolOptions) -> SaltelliDesign:
        return lookup("sampler", options.sampler).design(problem, size, seed, second_order=options.second_order,
                                                         points_per_block=options.points_per_block or None,
                                                         require_power_of_two=not options.allow_any_n,
                                                         replicates=options.replicates or default_replicates(size))

    def intervals(self, design: SaltelliDesign) -> dict[str, Any]:
        if design.replicates > 1:
            method, dof = "replicates", design.replicates - 1
            detail = (f"jackknife over {design.replicates} independent scramblings of the Sobol points, "
                      f"Student t on {dof} degrees of freedom (includes the error of Var(Y))")
        else:
            units = -(-design.n_rows // design.unit_rows)
            method, dof = "batch-means", units - 1
            detail = (f"batch means over {units} units of base points, Student t on {dof} degrees of freedom, "
                      f"Var(Y) treated as known; QMC points make them conservative for S1 (replicates > 1 "
                      f"sees the QMC error)")
        out = {"method": method, "level": CONF_LEVEL, "dof": dof, "detail": detail}
        warnings = []
        if dof + 1 < FEW_INTERVAL_GROUPS:
            warnings.append(f"only {dof + 1} {'replicates' if method == 'replicates' else 'batches'} back the "
                            f"intervals (fewer than {FEW_INTERVAL_GROUPS}): they are wide and their coverage rough")
        if not is_power_of_two(design.points_per_replicate):
            warnings.append(f"{design.points_per_replicate} Sobol points per replicate is not a power of two: the "
                            f"points lose their balance properties (SALib warns the same)")
        if warnings:
            out["warning"] = "; ".join(warnings)
        return out

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
        design = SaltelliDesign(problem, n, seed=0, second_order=second_order, points_per_block=POINTS_PER_UNIT,
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
