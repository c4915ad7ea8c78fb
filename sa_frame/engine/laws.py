"""SA variable laws beyond the kernel's own (Uniform, Switch, Categorical, SpikeAndSlab):
log-uniform, integer-uniform and constant scalars, and dependent normal inputs with exact
conditional sampling (the multi-column law Shapley effects of dependent variables need).
They implement the `Variable` / `Block` contract and are public as `sa_frame.<name>`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.variables import DTYPE, Block, Variable


def _as_unit(u: Tensor) -> Tensor:
    return torch.as_tensor(u, dtype=DTYPE)


class LogUniform(Variable):
    """log(x) uniform on [log low, log high]; e.g. an aspect ratio."""

    kind = "log-uniform"

    def __init__(self, low: float, high: float) -> None:
        if not (low > 0 and high > low and math.isfinite(high)):
            raise UsageError(f"LogUniform needs finite 0 < low < high, got ({low}, {high})")
        self.low, self.high = float(low), float(high)
        self._log_low, self._log_high = math.log(low), math.log(high)

    def from_unit(self, u: Tensor) -> Tensor:
        return torch.exp(self._log_low + _as_unit(u) * (self._log_high - self._log_low))


class IntUniform(Variable):
    """Integers low..high, both bounds inclusive, equally likely."""

    kind = "int-uniform"

    def __init__(self, low: int, high: int) -> None:
        if int(low) != low or int(high) != high or high < low:
            raise UsageError(f"IntUniform needs integers low <= high, got ({low}, {high})")
        self.low, self.high = int(low), int(high)

    def from_unit(self, u: Tensor) -> Tensor:
        n = self.high - self.low + 1
        k = torch.floor(_as_unit(u) * n).clamp_(0, n - 1)
        return self.low + k

    def __repr__(self) -> str:
        return f"IntUniform({self.low}, {self.high})"


class Constant(Variable):
    """A fixed value (keeps a parameter in the problem without varying it)."""

    kind = "constant"

    def __init__(self, value: float) -> None:
        self.value = self.low = self.high = float(value)

    def from_unit(self, u: Tensor) -> Tensor:
        return torch.full_like(_as_unit(u), self.value)

    def __repr__(self) -> str:
        return f"Constant({self.value:g})"


class MultivariateNormal(Block):
    """Dependent normal inputs N(mean, cov) with exact conditional sampling.

    Default groups: one per coordinate (each is a separate input of the model).
    """

    independent_columns = False

    def __init__(self, mean: Sequence[float], cov: Sequence[Sequence[float]], names: Sequence[str]) -> None:
        self.mean = torch.as_tensor(mean, dtype=DTYPE).flatten()
        self.cov = torch.as_tensor(cov, dtype=DTYPE)
        self.names = list(names)
        k = self.mean.numel()
        if self.cov.shape != (k, k) or len(self.names) != k:
            raise UsageError(f"MultivariateNormal: mean has {k} entries, cov is {tuple(self.cov.shape)}, "
                             f"{len(self.names)} names")
        if not torch.allclose(self.cov, self.cov.T):
            raise UsageError("MultivariateNormal: cov must be symmetric")
        try:
            torch.linalg.cholesky(self.cov)
        except RuntimeError:
            raise UsageError("MultivariateNormal: cov must be positive definite") from None
        self._plans: dict[tuple[bool, ...], tuple[Tensor, ...]] = {}

    def columns(self, key: str) -> list[str]:
        return list(self.names)

    def default_groups(self, key: str) -> dict[str, list[str]]:
        return {name: [name] for name in self.names}

    def _plan(self, mask: tuple[bool, ...]) -> tuple[Tensor, ...]:
        """Cholesky factors and regression matrix for one known/unknown split (cached)."""
        if mask not in self._plans:
            kn = torch.tensor(mask)
            un = ~kn
            s_kk = self.cov[kn][:, kn]
            s_uk = self.cov[un][:, kn]
            s_uu = self.cov[un][:, un]
            l_k = torch.linalg.cholesky(s_kk) if kn.any() else s_kk
            reg = torch.linalg.solve(s_kk, s_uk.T).T if kn.any() else s_uk
            l_u = torch.linalg.cholesky(s_uu - reg @ s_uk.T) if un.any() else s_uu
            self._plans[mask] = (kn, un, l_k, reg, l_u)
        return self._plans[mask]

    def values(self, u: Tensor, known: Tensor | None = None) -> Tensor:
        u = torch.as_tensor(u, dtype=DTYPE)
        tiny = 1e-300
        z = torch.special.ndtri(u.clamp(tiny, 1.0 - 1e-16))
        rows, k = u.shape
        if known is None:
            known = torch.zeros(rows, k, dtype=torch.bool)
        known = torch.as_tensor(known, dtype=torch.bool).expand(rows, k)
        out = torch.empty_like(z)
        patterns, inverse = torch.unique(known.cpu(), dim=0, return_inverse=True)
        mean = self.mean.to(u.device)
        for p, pattern in enumerate(patterns):  # at most 2**k patterns, never per row
            rows_p = (inverse == p).to(u.device)
            kn, un, l_k, reg, l_u = (t.to(u.device) for t in self._plan(tuple(pattern.tolist())))
            zp = z[rows_p]
            x = torch.empty_like(zp)
            x_k = mean[kn] + zp[:, kn] @ l_k.T
            x[:, kn] = x_k
            x[:, un] = mean[un] + (x_k - mean[kn]) @ reg.T + zp[:, un] @ l_u.T
            out[rows_p] = x
        return out

    def __repr__(self) -> str:
        return f"MultivariateNormal({self.names})"
