"""Layer-wise influence of training points on test predictions (docs/influence.md), streamed over the training set.

Koh & Liang's signed influence of up-weighting training point j on the loss of test point k,
I_up,loss(j, k) = -g_kᵀ (H + λI)^-1 g_j, is scored per parameter block l:

- ``block`` (the paper's): I_l = -g^lₖᵀ (H_ll + λI)^-1 g^lⱼ with the layer's own Hessian block; their sum is not eq. 5;
- ``masked``: s_k = (H + λI)^-1 g_k over all blocks together, I_l = -(s_k|_l)ᵀ g^lⱼ, whose sum *is* eq. 5.

Negative = up-weighting j lowers k's loss (a proponent, helpful); positive = an opponent. The test side (gradients,
inverse-Hessian solves) is computed once; training points then stream in batches through `InfluenceAccumulator`,
whose state is sized by layers x test points x (k + classes), not by the training set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sa_frame.core.errors import UsageError
from sa_frame.core.influence import Curvature, IhvpSolver, SolveReport
from sa_frame.engine.parameter_blocks import (
    BlockCurvature,
    NetworkFunctions,
    ParameterBlock,
    block_slices,
    hessian_batches,
    parameter_blocks,
    union_block,
)

LAYER_MODES = ("block", "masked")
TOTAL = "total"
FLOAT = torch.float64
#: `--damping auto`: this much above the most negative eigenvalue (Koh & Liang's advice, SPEC-companions C.5)
AUTO_DAMPING_MARGIN = 1e-3


#: blocks up to this many parameters get their lowest eigenvalue from the dense matrix (exact, and the exact
#: solver reuses it); larger ones from LOBPCG on the batched product
DENSE_EIGEN_LIMIT = 5000


def lowest_eigenvalue(curvature: Curvature) -> float:
    """The smallest eigenvalue of H: exact for small blocks, else scipy's LOBPCG (a block method, so each iteration
    is one multi-vector product; its Ritz value is an upper bound, which CG's negative-curvature check backs up)."""
    if curvature.dim <= DENSE_EIGEN_LIMIT:
        return float(torch.linalg.eigvalsh(curvature.dense())[0])
    from scipy.sparse.linalg import lobpcg

    start = np.random.default_rng(0).standard_normal((curvature.dim, 4))
    values = lobpcg(curvature.linear_operator(), start, largest=False, tol=1e-4, maxiter=100)[0]
    return float(values.min())


def resolve_damping(damping: float | str, curvature: Curvature) -> tuple[float, float]:
    """(damping, λ_min estimate or NaN): a fixed damping, or ``auto``: max(0, -λ_min) + AUTO_DAMPING_MARGIN."""
    if damping == "auto":
        lam_min = lowest_eigenvalue(curvature)
        return max(0.0, -lam_min) + AUTO_DAMPING_MARGIN, lam_min
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not damping >= 0:
        raise UsageError(f"damping must be a number >= 0 or auto, got {damping!r}")
    return float(damping), float("nan")


@dataclass
class InfluenceSpec:
    """How influence is computed: which blocks, which mode, which solver with which damping and curvature."""

    solver: IhvpSolver
    solver_options: Any
    layers: str | Sequence[str] = "weighted"
    layer_mode: str = "block"
    damping: float | str = 0.0
    curvature: str = "hessian"
    hvp: str = "double-backward"
    l2: float = 0.0
    hessian_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.layer_mode not in LAYER_MODES:
            raise UsageError(f"layer mode must be one of {', '.join(LAYER_MODES)}, got {self.layer_mode!r}")
        if not self.l2 >= 0:
            raise UsageError(f"l2 must be >= 0, got {self.l2}")


@dataclass
class SolvedTests:
    """The test side: blocks, (T, P) inverse-Hessian-vector products over the union of blocks, one report and
    damping per solve (per block; one for all in masked mode), and the curvature operators they used."""

    blocks: list[ParameterBlock]
    solutions: Tensor
    reports: list[SolveReport]
    dampings: list[float]
    curvatures: list[Curvature] = field(repr=False, default_factory=list)

    @property
    def layer_names(self) -> list[str]:
        return [b.name for b in self.blocks]


def solve_tests(functions: NetworkFunctions, spec: InfluenceSpec, test_inputs: Tensor, test_labels: Tensor,
                hessian_inputs: Tensor, hessian_labels: Tensor, chunk: int = 64,
                notify: Callable[[str], None] = lambda _m: None,
                known: tuple[Tensor, Sequence[float]] | None = None) -> SolvedTests:
    """Test gradients and their inverse-Hessian products, all test points as right-hand sides of one solve;
    `known` (solutions, dampings) from a saved state skips the gradients and the solves."""
    blocks = parameter_blocks(functions.net, spec.layers)
    union = union_block(blocks)
    batches = hessian_batches(hessian_inputs, hessian_labels, spec.hessian_batch_size)
    targets = list(zip(blocks, block_slices(blocks))) if spec.layer_mode == "block" else [(union, slice(None))]
    if known is not None:
        curvatures = [BlockCurvature(functions, b, batches, spec.l2, spec.curvature, spec.hvp) for b, _ in targets]
        restored = [SolveReport(converged=True, note="restored from the saved state") for _ in targets]
        return SolvedTests(blocks, known[0].to(FLOAT), restored, list(known[1]), curvatures)
    gradients = functions.per_example_grads(union, test_inputs, test_labels, chunk)
    solutions = torch.zeros_like(gradients, dtype=FLOAT)
    reports, dampings, curvatures = [], [], []
    for block, where in targets:
        curvature = BlockCurvature(functions, block, batches, spec.l2, spec.curvature, spec.hvp)
        notify(f"solving {block.name} ({block.dim:,} parameters, {len(test_labels)} right-hand sides, "
               f"{curvature.n_samples} Hessian samples)")
        damping, lam_min = resolve_damping(spec.damping, curvature)
        try:
            solution, report = spec.solver.solve(curvature, gradients[:, where], damping, spec.solver_options)
        except UsageError as exc:
            raise type(exc)(f"layer {block.name}: {exc}") from None
        if np.isnan(report.lambda_min):  # the solver did not estimate it; auto damping did
            report.lambda_min = lam_min
        solutions[:, where] = solution.to(FLOAT)
        reports.append(report)
        dampings.append(damping)
        curvatures.append(curvature)
    return SolvedTests(blocks, solutions, reports, dampings, curvatures)


def layer_scores(solved: SolvedTests, train_gradients: Tensor) -> Tensor:
    """(L + 1, T, B) signed I_up,loss per block and their sum, for a batch of (B, P) training gradients."""
    g = train_gradients.to(FLOAT)
    per_layer = torch.stack([-(solved.solutions[:, where] @ g[:, where].T)
                             for where in block_slices(solved.blocks)])
    return torch.cat([per_layer, per_layer.sum(0, keepdim=True)])


def self_scores(solved: SolvedTests, spec: InfluenceSpec, train_gradients: Tensor) -> Tensor:
    """(L + 1, B) self-influence I(j, j) = -g_jᵀ (H + λI)^-1 g_j per block and summed (a solve per batch)."""
    g = train_gradients.to(FLOAT)
    slices = block_slices(solved.blocks)
    targets = list(zip(solved.curvatures, slices)) if spec.layer_mode == "block" else [(solved.curvatures[0], slice(None))]
    inverse = torch.zeros_like(g)
    for (curvature, where), damping in zip(targets, solved.dampings):
        inverse[:, where] = spec.solver.solve(curvature, train_gradients[:, where], damping, spec.solver_options)[0].to(FLOAT)
    per_layer = torch.stack([-(inverse[:, where] * g[:, where]).sum(1) for where in slices])
    return torch.cat([per_layer, per_layer.sum(0, keepdim=True)])


def _top(values: Tensor, index: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    """The k most extreme values along the last axis with their indices, ties broken by the lower index, so that
    any order of merging gives the same answer."""
    by_index = index.argsort(dim=-1, stable=True)
    values, index = values.gather(-1, by_index), index.gather(-1, by_index)
    order = values.argsort(dim=-1, stable=True, descending=largest)[..., :k]
    return values.gather(-1, order), index.gather(-1, order)


class InfluenceAccumulator:
    """Mergeable summaries of the (L + 1, T, n) score matrix, streamed over training batches: top-k proponents
    (most negative) and opponents (most positive) with their indices, per-train-class sums and counts, and, when
    asked, the full matrix and the self-influence of each training point."""

    def __init__(self, n_rows: int, n_tests: int, n_classes: int, k: int, n_train: int,
                 keep_scores: bool = False, self_influence: bool = False) -> None:
        shape = (n_rows, n_tests, k)
        self.k, self.n_train = k, n_train
        self.tensors: dict[str, Tensor] = {
            "proponents/value": torch.full(shape, float("inf"), dtype=FLOAT),
            "proponents/index": torch.full(shape, -1, dtype=torch.long),
            "opponents/value": torch.full(shape, float("-inf"), dtype=FLOAT),
            "opponents/index": torch.full(shape, -1, dtype=torch.long),
            "class_sum": torch.zeros(n_rows, n_tests, n_classes, dtype=FLOAT),
            "class_count": torch.zeros(n_classes, dtype=torch.long),
            "seen": torch.zeros(n_train, dtype=torch.bool),
        }
        if keep_scores:
            self.tensors["scores"] = torch.zeros(n_rows, n_tests, n_train, dtype=FLOAT)
        if self_influence:
            self.tensors["self"] = torch.zeros(n_rows, n_train, dtype=FLOAT)

    def update(self, scores: Tensor, train_index: Tensor, train_classes: Tensor, self_values: Tensor | None = None) -> None:
        t = self.tensors
        index = train_index.to(torch.long).expand(*scores.shape[:2], -1)
        for side, largest in (("proponents", False), ("opponents", True)):
            values = torch.cat([t[f"{side}/value"], scores], -1)
            indices = torch.cat([t[f"{side}/index"], index], -1)
            t[f"{side}/value"], t[f"{side}/index"] = _top(values, indices, self.k, largest)
        t["class_sum"].index_add_(2, train_classes.long(), scores)
        t["class_count"].index_add_(0, train_classes.long(), torch.ones_like(train_classes, dtype=torch.long))
        t["seen"][train_index.long()] = True
        if "scores" in t:
            t["scores"][:, :, train_index.long()] = scores
        if "self" in t and self_values is not None:
            t["self"][:, train_index.long()] = self_values

    def merge(self, other: InfluenceAccumulator) -> None:
        t, o = self.tensors, other.tensors
        if bool((t["seen"] & o["seen"]).any()):
            raise ValueError("merging influence accumulators that saw the same training points")
        for side, largest in (("proponents", False), ("opponents", True)):
            values = torch.cat([t[f"{side}/value"], o[f"{side}/value"]], -1)
            indices = torch.cat([t[f"{side}/index"], o[f"{side}/index"]], -1)
            t[f"{side}/value"], t[f"{side}/index"] = _top(values, indices, self.k, largest)
        for key in ("class_sum", "class_count"):
            t[key] += o[key]
        for key in ("scores", "self"):
            if key in t:
                t[key] = torch.where(o["seen"], o[key], t[key])
        t["seen"] |= o["seen"]

    def state(self) -> dict[str, Tensor]:
        return {key: value.clone() for key, value in self.tensors.items()}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        for key, value in self.tensors.items():
            if key not in state or tuple(state[key].shape) != tuple(value.shape):
                raise UsageError(f"saved influence state lacks or misshapes {key!r}; start the run again without "
                                 f"--resume")
            self.tensors[key] = torch.as_tensor(state[key]).to(value.dtype).clone()

    def finalize(self) -> dict[str, Any]:
        """The results tree of `/influence` (tops cut to the number of training points seen)."""
        t = self.tensors
        k = min(self.k, int(t["seen"].sum()))
        out: dict[str, Any] = {side: {"index": t[f"{side}/index"][..., :k].numpy(),
                                      "value": t[f"{side}/value"][..., :k].numpy()}
                               for side in ("proponents", "opponents")}
        out["class_sum"], out["class_count"] = t["class_sum"].numpy(), t["class_count"].numpy()
        for key in ("scores", "self"):
            if key in t:
                out[key] = t[key].numpy()
        return out


@dataclass
class InfluenceResult:
    """`sa_frame.influence`'s answer: rows are the blocks then ``total``; values are signed I_up,loss."""

    rows: list[str]
    scores: np.ndarray  # (L + 1, T, n)
    self_influence: np.ndarray | None
    reports: list[SolveReport]
    dampings: list[float]
    layer_mode: str

    def top(self, k: int = 10, row: str = TOTAL, side: str = "proponents") -> np.ndarray:
        """(T, k) training indices: the most negative (proponents) or most positive (opponents) per test point."""
        values = self.scores[self.rows.index(row)]
        order = np.argsort(values if side == "proponents" else -values, axis=1, kind="stable")
        return order[:, :k]


def influence(model: nn.Module, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], *,
              solver: str | IhvpSolver = "exact", solver_options: Mapping[str, Any] | None = None,
              layers: str | Sequence[str] = "weighted", layer_mode: str = "block", damping: float | str = 0.0,
              curvature: str = "hessian", l2: float = 0.0, hessian: tuple[Tensor, Tensor] | None = None,
              batch_size: int = 64, self_influence: bool = False) -> InfluenceResult:
    """Influence of every training point on every test point's loss, per parameter block, for any classifier
    `model` (logits out) on tensors: `train` and `test` are (inputs, class labels); `hessian` samples default to
    `train`. The same computation as ``sa-frame influence``, with the full score matrix kept."""
    from sa_frame.core.registry import lookup

    solver_obj = lookup("ihvp", solver) if isinstance(solver, str) else solver
    spec = InfluenceSpec(solver_obj, solver_obj.options(solver_options), layers, layer_mode, damping, curvature,
                         l2=l2, hessian_batch_size=batch_size)
    functions = NetworkFunctions(model)
    h_inputs, h_labels = hessian if hessian is not None else train
    solved = solve_tests(functions, spec, test[0], test[1], h_inputs, h_labels, batch_size)
    union = union_block(solved.blocks)
    n = len(train[1])
    n_classes = int(max(int(train[1].max()) if n else 0, int(test[1].max()) if len(test[1]) else 0)) + 1
    acc = InfluenceAccumulator(len(solved.blocks) + 1, len(test[1]), n_classes, 1, n, keep_scores=True,
                               self_influence=self_influence)
    for start in range(0, n, batch_size):
        x, y = train[0][start:start + batch_size], train[1][start:start + batch_size]
        g = functions.per_example_grads(union, x, y, batch_size)
        acc.update(layer_scores(solved, g), torch.arange(start, start + len(y)), y,
                   self_scores(solved, spec, g) if self_influence else None)
    out = acc.finalize()
    return InfluenceResult([*solved.layer_names, TOTAL], out["scores"], out.get("self"), solved.reports,
                           solved.dampings, layer_mode)
