"""Dependent normal inputs with exact conditional sampling: the multi-column law that
Shapley effects of dependent variables need (`sa_frame.estimate`, SALib ``norm`` dists).
A concrete `Block`, outside the kernel, which only defines what a block is."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.variables import DTYPE, Block


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
