"""The contrast experiment: original vs one augmentation at a time.

Treatments are the groups made of one switched block (a `SpikeAndSlab` or a `Switch`);
the other groups (class, partition, ...) are context shared by a pair. Per outer
sample the design has one original row (every treatment off) and, per treatment, Ninner
rows with only that treatment on (one row for parameter-free ones).

Statistics per treatment and activation: matched-pairs rank-biserial correlation
(zero differences split), Wilcoxon signed-rank p-values (normal approximation with
continuity correction, zsplit), Benjamini-Yekutieli-corrected p-values over all
activations of all checkpoints, and the point-biserial correlation.

Two modes: ``exact`` keeps every paired difference (memory grows with n; use it when
they fit) and calls scipy; ``binned`` streams per-activation histograms of |D| on
quantile bins fixed by the first block and reads ranks off the bins (ties within a
bin get their mid-rank; see docs/estimators.md for the measured error).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from sa_frame import (
    ACC_DTYPE,
    Accumulator,
    Design,
    DesignBlock,
    Estimator,
    Problem,
    SpikeAndSlab,
    Switch,
    UsageError,
    lookup,
    option,
)

MODES = ("exact", "binned")
COUNT_DTYPE = torch.int32
EDGE_DTYPE = torch.float32
DEFAULT_BINS = 64
BIN_CHUNK = 1 << 21  # differences binned per step
STATS_CHUNK = 1 << 18  # histogram cells (activations x bins) ranked per step, in float64
EPS = 1e-20


class PairedDesign(Design):
    name = "paired"

    def __init__(self, problem: Problem, n: int, seed: int, n_inner: int = 10, outer_per_block: int = 16,
                 mode: str = "exact", bins: int = DEFAULT_BINS) -> None:
        if mode not in MODES:
            raise UsageError(f"contrast mode must be one of {', '.join(MODES)}, got {mode!r}")
        if bins < 2:
            raise UsageError(f"contrast needs bins >= 2, got {bins}")
        self.mode, self.bins = mode, int(bins)  # how the accumulator ranks; part of the run's identity
        if n < 2 or n_inner < 1:
            raise UsageError(f"contrast needs n >= 2 outer samples and n_inner >= 1, got {n}, {n_inner}")
        self.problem, self.n, self.seed, self.n_inner = problem, int(n), int(seed), int(n_inner)
        self.outer_per_block = min(self.n, int(outer_per_block))
        self.treatments: list[tuple[str, int, int]] = []  # (group, switch column, parameter count)
        for key, block, cols in problem.blocks():
            group = problem.group_of_column[cols.start]
            if isinstance(block, (SpikeAndSlab, Switch)):
                if set(problem.group_columns(group)) != set(range(cols.start, cols.stop)):
                    raise UsageError(f"contrast: group {problem.group_names[group]!r} must hold exactly the "
                                     f"switched block {key!r}")
                self.treatments.append((problem.group_names[group], cols.start, cols.stop - cols.start - 1))
        if not self.treatments:
            raise UsageError("contrast needs switched treatments (SpikeAndSlab or Switch variables, e.g. "
                             "augmentations); the problem has none")
        self.rows_per_treatment = [self.n_inner if k else 1 for _, _, k in self.treatments]
        self.unit_rows = 1 + sum(self.rows_per_treatment)
        self._switch_cols = [c for _, c, _ in self.treatments]

    @property
    def treatment_names(self) -> list[str]:
        return [g for g, _, _ in self.treatments]

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.outer_per_block)

    @property
    def n_rows(self) -> int:
        return self.n * self.unit_rows

    def block(self, k: int) -> DesignBlock:
        if not 0 <= k < self.n_blocks:
            raise IndexError(f"block {k} outside 0..{self.n_blocks - 1}")
        p = min(self.outer_per_block, self.n - k * self.outer_per_block)
        rng = np.random.default_rng([self.seed, k])
        nv = self.problem.n_vars
        unit = np.repeat(rng.random((p, 1, nv)), self.unit_rows, axis=1)  # context shared by the pair
        unit[:, :, self._switch_cols] = 0.0  # every treatment off ...
        row = 1
        for (_, col, n_params), rows in zip(self.treatments, self.rows_per_treatment):
            unit[:, row:row + rows, col] = np.nextafter(1.0, 0.0)  # ... but this one on
            if n_params:
                unit[:, row:row + rows, col + 1:col + 1 + n_params] = rng.random((p, rows, n_params))
            row += rows
        return DesignBlock(index=k, unit=torch.from_numpy(unit.reshape(-1, nv)))

    def config(self) -> dict[str, Any]:
        return {"design": self.name, "n": self.n, "seed": self.seed, "n_inner": self.n_inner,
                "outer_per_block": self.outer_per_block, "mode": self.mode, "bins": self.bins}


class ContrastAccumulator(Accumulator):
    design: PairedDesign

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode, self.bins = self.design.mode, self.design.bins
        self.pairs: dict[str, list[list[Tensor]]] = {}

    def _init(self, name: str, m: int, shift: Tensor) -> None:
        g = len(self.design.treatments)
        zg = torch.zeros(g, m, dtype=ACC_DTYPE, device=self.device)
        z1 = torch.zeros(m, dtype=ACC_DTYPE, device=self.device)
        self.stats[name] = {"shift": shift.clone(), "n0": z1.clone(), "s0": z1.clone(), "s00": z1.clone(),
                            "n1": zg.clone(), "s1": zg.clone(), "s11": zg.clone(), "nonfinite": zg.clone()}
        self.pairs[name] = [[] for _ in range(g)]

    def _differences(self, y: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per treatment: (augmented rows (P, n, M), paired differences (P n, M))."""
        out, row = [], 1
        x0 = y[:, 0]
        for rows in self.design.rows_per_treatment:
            x1 = y[:, row:row + rows]
            out.append((x1, (x1 - x0.unsqueeze(1)).reshape(-1, y.shape[-1])))
            row += rows
        return out

    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        y = y.to(ACC_DTYPE).reshape(-1, self.design.unit_rows, y.shape[-1])
        if not self.stats[name]:
            self._init(name, y.shape[-1], torch.nan_to_num(y[0, 0], nan=0.0, posinf=0.0, neginf=0.0))
        st = self.stats[name]
        ys = y - st["shift"]
        x0 = ys[:, 0]
        f0 = torch.isfinite(x0)
        st["n0"] += f0.sum(0)
        st["s0"] += torch.where(f0, x0, 0.0).sum(0)
        st["s00"] += torch.where(f0, x0 * x0, 0.0).sum(0)
        # differences of the outputs themselves (as scipy takes them): the shift would change their
        # rounding and break ties that the ranks must see
        for g, (raw, diff) in enumerate(self._differences(y)):
            x1 = raw - st["shift"]
            f1 = torch.isfinite(x1)
            st["n1"][g] += f1.sum((0, 1))
            st["s1"][g] += torch.where(f1, x1, 0.0).sum((0, 1))
            st["s11"][g] += torch.where(f1, x1 * x1, 0.0).sum((0, 1))
            finite = torch.isfinite(diff)
            st["nonfinite"][g] += (~finite).sum(0)
            if self.mode == "exact":
                self.pairs[name][g].append(diff)
            else:
                self._bin(st, g, diff, finite)

    def _bin(self, st: dict[str, Tensor], g: int, diff: Tensor, finite: Tensor) -> None:
        absd = diff.abs()
        m = diff.shape[-1]
        if "edges" not in st:
            n_t = len(self.design.treatments)
            # activations last, as every state tensor (a resume checks that layout); counts as int32
            # (exact to 2^31 pairs) and edges as float32: the histograms are the state's bulk
            # (treatments x bins x activations), half the memory of float64 for the same ranks
            st["edges"] = torch.zeros(n_t, self.bins, m, dtype=EDGE_DTYPE, device=self.device)
            st["pos"] = torch.zeros(n_t, self.bins + 2, m, dtype=COUNT_DTYPE, device=self.device)
            st["neg"] = torch.zeros_like(st["pos"])
            st["zero"] = torch.zeros(n_t, m, dtype=COUNT_DTYPE, device=self.device)
            st["has_edges"] = torch.zeros(n_t, m, dtype=ACC_DTYPE, device=self.device)
        if not st["has_edges"][g].any():
            # quantiles of this first block's nonzero |D| fix the bins of every later block
            nonzero = torch.where(finite & (absd > 0), absd, float("nan"))
            q = torch.linspace(0, 1, self.bins + 2, dtype=ACC_DTYPE, device=self.device)[1:-1]
            edges = torch.nan_to_num(torch.nanquantile(nonzero, q, dim=0), nan=0.0)  # (bins, M)
            st["edges"][g] = torch.cummax(edges, dim=0).values.to(EDGE_DTYPE)
            st["has_edges"][g] = 1.0
        # a few million differences at a time: the int64 bin index and its transposed copies were
        # three times the block's differences, the run's memory peak when taken in one piece
        step = max(1, BIN_CHUNK // max(1, diff.shape[0]))
        for lo in range(0, m, step):
            cols = slice(lo, lo + step)
            edges = st["edges"][g][:, cols].T.contiguous()
            index = 1 + torch.searchsorted(edges, absd[:, cols].T.to(EDGE_DTYPE).contiguous(), right=True)
            index = index.clamp(max=self.bins + 1).T  # (rows, chunk): each difference's bin
            d, f = diff[:, cols], finite[:, cols]
            st["pos"][g][:, cols].scatter_add_(0, index, (f & (d > 0)).to(COUNT_DTYPE))
            st["neg"][g][:, cols].scatter_add_(0, index, (f & (d < 0)).to(COUNT_DTYPE))
        st["zero"][g] += (finite & (diff == 0)).sum(0).to(COUNT_DTYPE)

    def merge_checkpoint(self, name: str, other: Accumulator) -> None:
        if not other.stats[name]:
            return
        if not self.stats[name]:
            self.stats[name] = {k: v.clone() for k, v in other.stats[name].items()}
            self.pairs[name] = [list(p) for p in other.pairs.get(name, [[] for _ in self.design.treatments])]
            return
        mine, theirs = self.stats[name], other.stats[name]
        if self.mode == "binned" and not torch.equal(mine["edges"], theirs["edges"]):
            raise ValueError("binned contrast states merge only with identical bins (same first block)")
        delta = theirs["shift"] - mine["shift"]  # re-express their sums around our shift
        n0, n1 = theirs["n0"], theirs["n1"]
        mine["s00"] += theirs["s00"] + 2 * delta * theirs["s0"] + n0 * delta * delta
        mine["s11"] += theirs["s11"] + 2 * delta * theirs["s1"] + n1 * delta * delta
        mine["s0"] += theirs["s0"] + n0 * delta
        mine["s1"] += theirs["s1"] + n1 * delta
        for key in ("n0", "n1", "nonfinite", "pos", "neg", "zero"):
            if key in mine:
                mine[key] += theirs[key]
        for g, p in enumerate(other.pairs.get(name, [])):
            self.pairs[name][g].extend(p)

    def state(self) -> dict[str, Tensor]:
        out = super().state()
        for name, per_treatment in self.pairs.items():
            for g, parts in enumerate(per_treatment):
                if parts:
                    out[f"{name}/pairs{g}"] = torch.cat(parts)
        return out

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        pairs = {k: v for k, v in state.items() if "/pairs" in k}
        super().load_state({k: v for k, v in state.items() if k not in pairs})
        self.pairs = {name: [[] for _ in self.design.treatments] for name in self.shapes}
        for key, t in pairs.items():
            name, stat = key.rsplit("/", 1)
            self.pairs[name][int(stat[len("pairs"):])] = [t.to(self.device)]

    def _point_biserial(self, st: dict[str, Tensor]) -> Tensor:
        n0, n1 = st["n0"], st["n1"]
        n = (n0 + n1).clamp(min=1)
        m0 = st["s0"] / n0.clamp(min=1)
        m1 = st["s1"] / n1.clamp(min=1)
        p0, p1 = n0 / n, n1 / n
        m = p0 * m0 + p1 * m1
        s2 = ((st["s00"] + st["s11"]) / n - m * m).clamp(min=0)
        return (m1 - m0) * (p0 * p1).sqrt() / (EPS + s2).sqrt()

    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        st = self.stats[name]
        out = {"point_biserial": self._point_biserial(st).cpu().numpy(), "nonfinite": st["nonfinite"].cpu().numpy()}
        if self.mode == "exact":
            rb, stat, p, n = [], [], [], []
            for parts in self.pairs[name]:
                d = torch.cat(parts).cpu().numpy()
                rb.append(rank_biserial(d))
                res = stats.wilcoxon(d, zero_method="zsplit", correction=True, method="asymptotic", axis=0)
                stat.append(res.statistic)
                p.append(res.pvalue)
                n.append(np.isfinite(d).sum(0))
            out.update(rank_biserial=np.stack(rb), statistic=np.stack(stat), pvalue=np.stack(p),
                       n_pairs=np.stack(n).astype(np.float64))
        else:
            out.update({k: v.cpu().numpy() for k, v in binned_statistics(st).items()})
        return out

    def finalize(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-checkpoint maps plus BY-corrected p-values over all checkpoints, per treatment."""
        out = super().finalize()
        names = list(out)
        for g in range(len(self.design.treatments)):
            flat = np.concatenate([out[c]["pvalue"][g].ravel() for c in names])
            ok = np.isfinite(flat)
            corrected = np.full_like(flat, np.nan)
            if ok.any():
                corrected[ok] = stats.false_discovery_control(flat[ok], method="by")
            start = 0
            for c in names:
                size = out[c]["pvalue"][g].size
                out[c].setdefault("pvalue_by", np.full_like(out[c]["pvalue"], np.nan))
                out[c]["pvalue_by"][g] = corrected[start:start + size].reshape(out[c]["pvalue"][g].shape)
                start += size
        return out


def rank_biserial(d: np.ndarray) -> np.ndarray:
    """Matched-pairs rank-biserial correlation per column, zero differences split half/half."""
    n = np.isfinite(d).sum(0)
    ranks = stats.rankdata(np.abs(d), axis=0, nan_policy="omit")
    r_plus = np.nansum(np.where(d > 0, ranks, 0.0), 0) + 0.5 * np.nansum(np.where(d == 0, ranks, 0.0), 0)
    total = n * (n + 1) / 2.0
    return np.where(total > 0, (2 * r_plus - total) / np.maximum(total, 1), 0.0)


def binned_statistics(st: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rank-biserial and Wilcoxon (normal approximation, no tie term) from binned counts, one
    treatment and a slice of activations at a time: the rank arithmetic makes several float64
    copies of the (activations, bins) counts, which for all of them at once were the run's
    memory peak."""
    n_t, n_bins, m = st["pos"].shape
    step = max(1, STATS_CHUNK // n_bins)
    per_treatment = []
    for g in range(n_t):
        parts = [treatment_statistics(st["pos"][g][:, lo:lo + step], st["neg"][g][:, lo:lo + step],
                                      st["zero"][g][lo:lo + step]) for lo in range(0, m, step)]
        per_treatment.append({key: torch.cat([part[key] for part in parts]) for key in parts[0]})
    return {key: torch.stack([t[key] for t in per_treatment]) for key in per_treatment[0]}


def treatment_statistics(pos: Tensor, neg: Tensor, zero: Tensor) -> dict[str, Tensor]:
    """The binned statistics of one treatment: counts (bins + 2, M) of positive and negative
    differences per |D| bin and (M,) zero differences."""
    pos, neg, zero = pos.T.to(ACC_DTYPE), neg.T.to(ACC_DTYPE), zero.to(ACC_DTYPE)  # (M, bins + 2) from (bins + 2, M)
    counts = pos + neg
    counts[..., 0] += zero
    before = counts.cumsum(-1) - counts
    midrank = before + (counts + 1) / 2
    r_plus = (pos * midrank).sum(-1) + 0.5 * zero * midrank[..., 0]
    n = counts.sum(-1)
    total = n * (n + 1) / 2
    rb = torch.where(total > 0, (2 * r_plus - total) / total.clamp(min=1), 0.0)
    r_minus = total - r_plus
    t = torch.minimum(r_plus, r_minus)
    mn = total / 2
    se = (n * (n + 1) * (2 * n + 1) / 24).sqrt()
    z = (t - mn + 0.5) / se.clamp(min=EPS)  # continuity correction towards the mean
    z = torch.where(t - mn == 0, 0.0, z)
    # the tail through log_ndtr: 1 - cdf (and torch's ndtr) underflow beyond |z| ~ 8
    p = torch.exp(torch.special.log_ndtr(-z.abs()) + math.log(2.0)).clamp(max=1.0)
    return {"rank_biserial": rb, "statistic": t, "pvalue": p, "n_pairs": n}


@dataclasses.dataclass
class ContrastOptions:
    n_inner: int = option(10, "rows per treatment and outer sample (one for parameter-free augmentations)")
    outer_per_block: int = option(16, "outer samples per design block")
    mode: str = option("binned", "binned (streaming histograms of |D|: memory fixed; within 0.001 of exact) or "
                                 "exact (keeps every paired difference; memory grows with n, said before the run)")
    bins: int = option(DEFAULT_BINS, "histogram bins per activation in binned mode")
    sampler: str = option("paired", "registered sampler that builds the paired design")


class ContrastEstimator(Estimator):
    name = "contrast"
    description = "original vs single augmentation: rank-biserial, Wilcoxon p (BY-corrected), point-biserial"
    outputs = ("rank_biserial", "point_biserial", "pvalue", "pvalue_by", "statistic", "n_pairs")
    summary = ("rank_biserial",)
    regions = "unsupported"  # its treatments are single augmentations
    analysis_maps = {"rank_biserial": ("rank_biserial", "abs")}
    Options = ContrastOptions
    # the paper's 50,000 outer samples x 10 inner; the research code's test sizes; the demo's
    sizes = {"paper": {"n": 50_000, "n_inner": 10}, "quick": {"n": 1000, "n_inner": 2},
             "demo": {"n": 256, "n_inner": 4}}
    schemes = (2,)  # a treatment is one augmentation switched on against off
    permute = False  # one augmentation at a time: there is no order to vary

    def make_design(self, problem: Problem, size: int, seed: int, options: ContrastOptions) -> PairedDesign:
        return lookup("sampler", options.sampler).design(problem, size, seed, n_inner=options.n_inner,
                                                         outer_per_block=options.outer_per_block,
                                                         mode=options.mode, bins=options.bins)

    def map_rows(self, problem: Problem, design: PairedDesign) -> list[str]:
        return list(design.treatment_names)

    def split_error(self, design: PairedDesign) -> str | None:
        if design.mode == "binned":
            return ("contrast in binned mode (the default) cannot be split across processes (its bins come from "
                    "the first block each process sees); give -o mode=exact or run a single process")
        return None

    def memory_note(self, design: PairedDesign, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
        if design.mode != "exact":
            return None
        activations = sum(math.prod(shape) for shape in shapes.values())
        pairs = design.n * sum(design.rows_per_treatment)
        need = pairs * activations * 8  # float64 differences, kept until the end
        return (f"contrast in exact mode keeps every paired difference: {pairs:,} pairs x {activations:,} "
                f"activations x 8 bytes = {need / 2**30:.2f} GiB, and about as much again while scipy ranks "
                f"them; -o mode=binned streams in fixed memory")

    def accumulator(self, problem: Problem, design: PairedDesign, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> ContrastAccumulator:
        return ContrastAccumulator(problem, design, shapes, device)
