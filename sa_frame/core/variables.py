"""SA variables: vectorised maps from unit-interval values to parameter values.

Designs are made in the unit cube (rows x columns in [0, 1)); a *block* turns its columns
into parameter values for a batch of rows at once. Scalar variables are blocks of one
column; a block may have several (the paper's scheme-2 `SpikeAndSlab`). The laws themselves
(Uniform, Switch, Categorical, SpikeAndSlab, LogUniform, ...) implement this contract in engine/laws.py.

`Block.values(u, known)` is the one entry point: for columns marked `known`, `u` is the
draw of their *marginal* law; for the others, `u` is the draw of their law
*conditional* on the known columns. With independent columns the mask changes nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError

DTYPE = torch.float64


def _as_unit(u: Tensor) -> Tensor:
    return torch.as_tensor(u, dtype=DTYPE)


class Block(ABC):
    """Columns of the unit cube that are mapped to values jointly."""

    #: True when the block's columns are mutually independent (conditioning is a no-op).
    independent_columns: bool = True

    @abstractmethod
    def columns(self, key: str) -> list[str]:
        """Column names of this block when it is registered in a Problem under `key`."""

    def default_groups(self, key: str) -> dict[str, list[str]]:
        """Groups used when the Problem is given none: by default the block is one group."""
        return {key: self.columns(key)}

    @abstractmethod
    def values(self, u: Tensor, known: Tensor | None = None) -> Tensor:
        """Map unit values `u` (rows, k) to parameter values (rows, k), float64."""


class Variable(Block):
    """A scalar SA variable (one column)."""

    kind: str = "variable"

    def columns(self, key: str) -> list[str]:
        return [key]

    def values(self, u: Tensor, known: Tensor | None = None) -> Tensor:
        return self.from_unit(u[..., 0]).unsqueeze(-1)

    @abstractmethod
    def from_unit(self, u: Tensor) -> Tensor:
        """Vectorised map from u in [0, 1) to the variable's values (float64)."""

    @property
    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value the variable takes (default: its `low` and `high`)."""
        return float(self.low), float(self.high)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.low:g}, {self.high:g})"  # type: ignore[attr-defined]

    def check(self, x: Tensor, what: str) -> None:
        """Raise UsageError if any value of `x` lies outside the variable's range."""
        low, high = self.bounds
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            x = x.to(DTYPE)
        # compare in the value's own precision: float32(0.01) must pass a bound of 0.01
        low_t, high_t = (torch.tensor(v, dtype=DTYPE).to(x.dtype) for v in (low, high))
        bad = ~((x >= low_t) & (x <= high_t))
        if bool(bad.any()):
            first = float(x[bad].flatten()[0])
            raise UsageError(f"{what}: value {first:g} is outside its range [{low:g}, {high:g}]")

    def describe(self) -> str:
        return repr(self)


__all__ = ["Block", "DTYPE", "Variable"]
