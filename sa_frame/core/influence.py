"""The inverse-Hessian contract of influence functions (docs/influence.md): a solver gets a curvature operator
(H of one parameter block on the Hessian samples) and m right-hand sides, returns (H + damping I)^-1 V and a report
of how far it converged. A solve that did not converge raises `NotConverged`, so no number is shown as an answer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.options import NoOptions, make_options


class NotConverged(UsageError):
    """An inverse-Hessian solve that did not reach its tolerance (the message says what to change)."""


class Curvature(ABC):
    """H (or the Gauss-Newton matrix) of one parameter block, applied to several vectors at once."""

    dim: int  # P, the block's number of parameters
    n_batches: int  # mini-batches of Hessian samples; `batch_matvec` cycles through them

    @abstractmethod
    def matvec(self, vectors: Tensor) -> Tensor:
        """(m, P) -> H V over all Hessian samples (mean loss, plus the L2 term)."""

    @abstractmethod
    def batch_matvec(self, vectors: Tensor, step: int) -> Tensor:
        """(m, P) -> H_b V on mini-batch ``step % n_batches`` (stochastic solvers)."""

    def dense(self, chunk: int = 256) -> Tensor:
        """H as a symmetric (P, P) float64 matrix, from products with `chunk` identity columns at a time; formed
        once per operator (the damping's eigenvalue and the exact solver share it)."""
        cached = getattr(self, "_dense", None)
        if cached is None:
            eye = torch.eye(self.dim, dtype=torch.float64)
            matrix = torch.cat([self.matvec(eye[i:i + chunk]).to(torch.float64) for i in range(0, self.dim, chunk)])
            cached = self._dense = (matrix + matrix.T) / 2
        return cached

    def linear_operator(self) -> Any:
        """H as a float64 scipy `LinearOperator` whose matmat is one multi-vector product (for eigsh, lobpcg)."""
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        def matmat(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x).reshape(self.dim, -1)
            return self.matvec(torch.from_numpy(x.T.copy())).to(torch.float64).numpy().T

        return LinearOperator((self.dim, self.dim), matvec=matmat, matmat=matmat, dtype=np.float64)


@dataclass
class SolveReport:
    """What a solve measured: eigenvalue estimates (NaN when not estimated), the last relative change of the
    iterate, the relative residual ||(H + damping I) S - V|| / ||V|| (worst column), iterations, and a note."""

    converged: bool
    iterations: int = 0
    residual: float = float("nan")
    rel_change: float = float("nan")
    lambda_max: float = float("nan")
    lambda_min: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)  # solver-specific figures (LiSSA's scale, ...)
    note: str = ""


class IhvpSolver(ABC):
    """Inverse-Hessian-vector products (``register_ihvp_solvers``)."""

    name: str = ""
    description: str = ""
    Options: type = NoOptions

    def options(self, values: Mapping[str, Any] | None = None) -> Any:
        return make_options(self.Options, values or {}, f"solver {self.name!r}")

    @abstractmethod
    def solve(self, curvature: Curvature, rhs: Tensor, damping: float, options: Any) -> tuple[Tensor, SolveReport]:
        """(H + damping I)^-1 rhs for (m, P) right-hand sides together; raise `NotConverged` rather than
        return a result that missed its tolerance."""
