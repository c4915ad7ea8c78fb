"""SA variables: vectorised maps from unit-interval values to parameter values.

Designs are made in the unit cube (rows x columns in [0, 1)); a *block* turns its columns
into parameter values for a batch of rows at once. Scalar variables are blocks of one
column; `SpikeAndSlab` (an on/off switch plus parameters that take their identity values
when off: the paper's scheme 2) is multi-column. Further laws (LogUniform, IntUniform,
Constant, MultivariateNormal) are implementations of this contract in engine/laws.py.

`Block.values(u, known)` is the one entry point: for columns marked `known`, `u` is the
draw of their *marginal* law; for the others, `u` is the draw of their law
*conditional* on the known columns. With independent columns the mask changes nothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

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


class Uniform(Variable):
    """Continuous uniform on [low, high]."""

    kind = "uniform"

    def __init__(self, low: float, high: float) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise UsageError(f"Uniform needs finite low < high, got ({low}, {high})")
        self.low, self.high = float(low), float(high)

    def from_unit(self, u: Tensor) -> Tensor:
        return self.low + _as_unit(u) * (self.high - self.low)


class Switch(Variable):
    """On (1) with probability p, off (0) otherwise; on exactly when u >= 1 - p."""

    kind = "switch"

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 < p < 1.0:
            raise UsageError(f"Switch probability must lie in (0, 1), got {p}")
        self.p = float(p)

    def from_unit(self, u: Tensor) -> Tensor:
        return (_as_unit(u) >= 1.0 - self.p).to(DTYPE)

    low, high = 0.0, 1.0

    def __repr__(self) -> str:
        return f"Switch(p={self.p:g})"


class Categorical(Variable):
    """Index 0..n-1, equally likely (class, partition).

    `split(u)` also returns the position of u inside its category's sub-interval, a
    second uniform value that decides e.g. which image of the class is used.
    """

    kind = "categorical"

    def __init__(self, n: int, labels: Sequence[str] | None = None) -> None:
        if int(n) != n or n < 1:
            raise UsageError(f"Categorical needs a positive integer number of levels, got {n}")
        self.n, self.low, self.high = int(n), 0, int(n) - 1
        self.labels = list(labels) if labels is not None else None
        if self.labels is not None and len(self.labels) != self.n:
            raise UsageError(f"Categorical got {len(self.labels)} labels for {self.n} levels")

    def from_unit(self, u: Tensor) -> Tensor:
        return self.split(u)[0]

    def split(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(index, within) with index = floor(u n) and within = u n - index in [0, 1)."""
        scaled = _as_unit(u) * self.n
        index = torch.floor(scaled).clamp_(0, self.n - 1)
        within = (scaled - index).clamp_(0.0, math.nextafter(1.0, 0.0))
        return index, within

    def __repr__(self) -> str:
        return f"Categorical({self.n})"


class SpikeAndSlab(Block):
    """A switch plus parameters that sit at their identity values when it is off.

    Columns: ``<key>.on`` then ``<key>.<param>`` for each parameter. Conditional
    sampling is exact: a known switch decides the unknown parameters; known parameters
    without a known switch reveal it (identity values have no mass under the slab).
    """

    independent_columns = False

    def __init__(self, params: Mapping[str, Variable], identity: Mapping[str, float],
                 p: float = 0.5) -> None:
        self.switch = Switch(p)
        self.params = dict(params)
        missing = set(self.params) - set(identity)
        if missing:
            raise UsageError(f"SpikeAndSlab: no identity value for {sorted(missing)}")
        self.identity = torch.tensor([float(identity[k]) for k in self.params], dtype=DTYPE)

    def columns(self, key: str) -> list[str]:
        return [f"{key}.on"] + [f"{key}.{name}" for name in self.params]

    def _slab(self, u: Tensor) -> Tensor:
        return torch.stack([var.from_unit(u[:, i]) for i, var in enumerate(self.params.values())], 1) \
            if self.params else u[:, :0]

    def values(self, u: Tensor, known: Tensor | None = None) -> Tensor:
        u = _as_unit(u)
        rows = u.shape[0]
        u_params = u[:, 1:].clone()
        on = u[:, 0] >= 1.0 - self.switch.p
        if known is not None and self.params:
            known = torch.as_tensor(known, dtype=torch.bool).expand(rows, -1)
            params_known = known[:, 1:]
            lead_rows = ~known[:, 0] & params_known.any(1)
            if bool(lead_rows.any()):
                # The switch is unknown but a parameter is known: the first known
                # parameter's uniform decides the (latent) switch and, rescaled, its slab value.
                lead = params_known.to(torch.int8).argmax(1)
                u_lead = u_params.gather(1, lead.unsqueeze(1)).squeeze(1)
                lead_on = u_lead >= 1.0 - self.switch.p
                rescaled = ((u_lead - (1.0 - self.switch.p)) / self.switch.p).clamp(0.0, math.nextafter(1.0, 0.0))
                on = torch.where(lead_rows, lead_on, on)
                sel = lead_rows & lead_on
                u_params[sel, lead[sel]] = rescaled[sel]
        slab = self._slab(u_params)
        params = torch.where(on.unsqueeze(1), slab, self.identity.to(slab.device).expand_as(slab))
        return torch.cat([on.to(DTYPE).unsqueeze(1), params], 1)

    def __repr__(self) -> str:
        return f"SpikeAndSlab(p={self.switch.p:g}, {list(self.params)})"


__all__ = ["Block", "Categorical", "SpikeAndSlab", "Switch", "Uniform", "Variable"]
