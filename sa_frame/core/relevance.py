"""The relevance contract of step-wise sensitivity analysis (docs/ssa.md): how much each neuron (channel) of a
lower checkpoint matters to each neuron of the next checkpoint up, per image, on a batch with autograd available."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sa_frame.core.options import NoOptions, make_options


@dataclass
class RelevanceContext:
    """One batch: the network (eval mode), its normalised inputs, the checkpoints in forward order, the pairs."""

    net: nn.Module
    inputs: Tensor
    labels: Tensor  # (B,) the data's classes, in the network's class space
    modules: Mapping[str, nn.Module]
    pairs: list[tuple[str, str]]
    upper: str = "mean"  # an upper conv map as one scalar per image: "mean" (spatial) or "max"


class Relevance(ABC):
    """Relevance of lower neurons for upper neurons (``register_relevances``)."""

    name: str = ""
    description: str = ""
    Options: type = NoOptions
    needs_grad: bool = True  # whether `compute` differentiates through the network (autograd on)

    def options(self, values: Mapping[str, Any] | None = None) -> Any:
        return make_options(self.Options, values or {}, f"relevance {self.name!r}")

    @abstractmethod
    def compute(self, ctx: RelevanceContext, options: Any) -> dict[str, Tensor]:
        """``{"upper|lower": (B, K_upper, K_lower)}`` for every pair of `ctx.pairs` (signed or absolute)."""
