"""Step-wise sensitivity on tensors, for any model (an MLP on 2-D points as well as a CNN):
`relevance_maps` streams batches of (inputs, labels) through a registered relevance into the
``ssa`` estimator's per-class accumulator; `dependency_graph` and `graph_masks` turn the
maps into graphs and masks that `sa_frame.Masking` applies.

    maps = sa_frame.relevance_maps(net, ["inp", "hidden", "out"], batches, n_classes=2)
    graph = sa_frame.dependency_graph(maps, top=[0], keep=0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import DesignBlock
from sa_frame.core.problem import Problem
from sa_frame.core.registry import lookup
from sa_frame.core.relevance import RelevanceContext
from sa_frame.engine.capture import resolve_modules
from sa_frame.engine.laws import Categorical
from sa_frame.engine.relevance_runner import forward_order, pair_name


def relevance_maps(net: nn.Module, checkpoints: Sequence[str], batches: Iterable[tuple[Tensor, Tensor]],
                   n_classes: int, relevance: str = "gradients", options: Mapping[str, Any] | None = None,
                   upper: str = "mean") -> dict[str, dict[str, np.ndarray]]:
    """{"upper|lower": {relevance, relevance_var, outlier_frequency, count}} shaped (n_classes + 1,
    K_upper, K_lower) — the classes, then all — of (inputs, labels) batches; `checkpoints` are
    module names of `net` in forward order (lower to upper). Memory does not grow with the batches."""
    net.eval()
    plugin = lookup("relevance", relevance)
    opts = plugin.options(options or {})
    modules = resolve_modules(net, checkpoints)
    if len(modules) < 2:
        raise UsageError(f"relevance_maps needs at least two checkpoints, got {list(checkpoints)}")
    pairs = list(zip(checkpoints[1:], checkpoints[:-1]))[::-1]
    problem = Problem({"class": Categorical(n_classes)})
    estimator = lookup("estimator", "ssa")
    design = lookup("sampler", "iid").design(problem, 2, 0)  # a stand-in: rows arrive from the caller
    acc = None
    for k, (inputs, labels) in enumerate(batches):
        labels = torch.as_tensor(labels).long()
        if k == 0 and forward_order(net, modules, inputs[:1]) != list(checkpoints):
            raise UsageError(f"checkpoints must be in forward order; the forward reaches them as "
                             f"{','.join(forward_order(net, modules, inputs[:1]))}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            raise UsageError(f"labels must lie in 0..{n_classes - 1}")
        ctx = RelevanceContext(net, inputs, labels, modules, pairs, upper)
        with torch.enable_grad() if plugin.needs_grad else torch.no_grad():
            out = plugin.compute(ctx, opts)
        outputs = {pair_name(u, lo): out[pair_name(u, lo)].detach() for u, lo in pairs}
        if acc is None:
            acc = estimator.accumulator(problem, design, {name: tuple(v.shape[1:]) for name, v in outputs.items()})
        block = DesignBlock(index=k, unit=((labels.double() + 0.5) / n_classes)[:, None].cpu())
        acc.update(block, outputs)
    if acc is None:
        raise UsageError("relevance_maps got no batches")
    return acc.finalize()
