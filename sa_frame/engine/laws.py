"""SA variable laws: uniform, switch, categorical (class, partition), spike-and-slab (scheme 2),
log-uniform, integer-uniform and constant scalars, and dependent normal inputs with exact
conditional sampling (the multi-column law Shapley effects of dependent variables need).
They implement the `Variable` / `Block` contract and are public as `sa_frame.<name>`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.variables import DTYPE, Block, Variable


def _as_unit(u: Tensor) -> Tensor:
    return torch.as_tensor(u, dtype=DTYPE)


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
