"""Step-wise runs (an estimator with ``needs_grad``, e.g. ssa): design rows -> images (and
augmentations) -> the relevance plugin between consecutive checkpoints -> accumulator.

The accumulator's "checkpoints" are the pairs ``upper|lower``, each row's output a
(K_upper, K_lower) relevance matrix; nothing but the accumulator's per-class sums is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import Accumulator
from sa_frame.core.relevance import RelevanceContext
from sa_frame.engine.capture import resolve_modules
from sa_frame.engine.runner import Runner


def pair_name(upper: str, lower: str) -> str:
    return f"{upper}|{lower}"


def forward_order(net: torch.nn.Module, modules: dict[str, torch.nn.Module], inputs: Tensor) -> list[str]:
    """The checkpoints in the order a forward pass reaches them (first call of each)."""
    order: list[str] = []
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name) if name not in order
                                       else None) for name, m in modules.items()]
    try:
        with torch.no_grad():
            net(inputs)
    finally:
        for h in handles:
            h.remove()
    return order


class RelevanceRunner:
    """Relevances of a run's rows, folded into its accumulator (the `Runner.process` contract)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.runner = Runner(run)
        self.relevance, self.options = run.relevance
        self.modules = resolve_modules(run.net, run.checkpoints)
        if len(run.checkpoints) < 2:
            raise UsageError(f"a relevance run needs at least two --checkpoints (lower to upper), got "
                             f"{run.checkpoints}")
        pairs = list(zip(run.checkpoints[1:], run.checkpoints[:-1]))
        self.pairs = pairs[::-1]  # top pair first, as the graphs are walked
        self.upper = getattr(run.options, "upper", "mean")

    def check_order(self, inputs: Tensor) -> None:
        order = forward_order(self.run.net, self.modules, inputs)
        if order != list(self.run.checkpoints):
            raise UsageError(f"--checkpoints must be in forward order (lower to upper): the forward reaches them "
                             f"as {','.join(order)}")

    def forward(self, unit: Tensor, values: Tensor) -> dict[str, Tensor]:
        """{"upper|lower": (rows, K_upper, K_lower)} of design rows."""
        inputs = self.runner.inputs(unit, values)
        classes = self.runner.class_variable.split(unit[:, self.runner.class_col])[0].long()
        mapped = self.run.labels.network_classes
        labels = classes if mapped is None else torch.as_tensor(mapped)[classes]
        ctx = RelevanceContext(self.run.net, inputs, labels.to(inputs.device), self.modules, self.pairs, self.upper)
        with torch.enable_grad() if self.relevance.needs_grad else torch.no_grad():
            out = self.relevance.compute(ctx, self.options)
        missing = [pair_name(u, lo) for u, lo in self.pairs if pair_name(u, lo) not in out]
        if missing:
            raise UsageError(f"relevance {self.relevance.name!r} gave no values for {missing[0]}")
        return {k: v.detach() for k, v in out.items()}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        block = self.run.design.block(0)
        unit = block.unit[:1]
        values = self.run.problem.values(unit)
        self.check_order(self.runner.inputs(unit, values))
        return {k: tuple(v.shape[1:]) for k, v in self.forward(unit, values).items()}

    def process(self, acc: Accumulator, blocks: Iterable[int], on_block_done: Callable[[int], None],
                progress: Callable[[int], None], forward: Callable[..., dict[str, Tensor]] | None = None) -> None:
        """`Runner.process` with the relevances as outputs and no capture hooks: the classifier's
        output stays the logits (the forward enables autograd itself where the relevance needs it)."""
        self.runner.process(acc, blocks, on_block_done, progress, forward or self.forward, capture=False)
