"""The inverse-Hessian contract of influence functions (docs/influence.md): a solver gets a curvature operator
(H of one parameter block on the Hessian samples) and m right-hand sides, returns (H + damping I)^-1 V and a report
of how far it converged. A solve that did not converge raises `NotConverged`, so no number is shown as an answer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
