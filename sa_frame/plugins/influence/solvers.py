"""Built-in inverse-Hessian solvers: exact (eigendecomposition), block conjugate gradients, LiSSA, Arnoldi.

Each solves (H + damping I) S = V for all right-hand sides at once and reports how far it got; a solve that missed
its tolerance raises `NotConverged` with what to change. Dense linear algebra is torch.linalg's and the Lanczos
iteration scipy's (`eigsh`); block CG and LiSSA are written here because no kept library runs them on a matrix
given only as a batched torch product.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import torch
from torch import Tensor

from sa_frame import Curvature, IhvpSolver, NotConverged, SolveReport, UsageError, option

FLOAT = torch.float64


def relative_residual(curvature: Curvature, solution: Tensor, rhs: Tensor, damping: float) -> float:
    """max over columns of ||(H + damping I) s - v|| / ||v|| (one multi-vector product)."""
    if not len(rhs):
        return 0.0
    lhs = curvature.matvec(solution.to(FLOAT)).to(FLOAT) + damping * solution.to(FLOAT)
    norms = rhs.to(FLOAT).norm(dim=1).clamp_min(torch.finfo(FLOAT).tiny)
    return float(((lhs - rhs.to(FLOAT)).norm(dim=1) / norms).max())


class _Decomposed:
    """A cached eigendecomposition per curvature operator (solved again for self-influence batches)."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Curvature, tuple[Tensor, Tensor]] = weakref.WeakKeyDictionary()

    def get(self, curvature: Curvature, make: Any) -> tuple[Tensor, Tensor]:
        if curvature not in self._cache:
            self._cache[curvature] = make()
        return self._cache[curvature]


def _check_damping(damping: float) -> None:
    if not damping >= 0:
        raise UsageError(f"damping must be >= 0, got {damping}")


@dataclasses.dataclass
class ExactOptions:
    max_dim: int = option(5000, "largest block (parameters) whose Hessian is formed; use cg, lissa or arnoldi above")
    tol: float = option(1e-6, "largest accepted relative residual")


class ExactSolver(IhvpSolver):
    name = "exact"
    description = "the Hessian formed explicitly and inverted by eigendecomposition (blocks up to max_dim parameters)"
    Options = ExactOptions

    def __init__(self) -> None:
        self._decomposed = _Decomposed()

    def solve(self, curvature: Curvature, rhs: Tensor, damping: float, options: Any) -> tuple[Tensor, SolveReport]:
        _check_damping(damping)
        if curvature.dim > options.max_dim:
            raise UsageError(f"solver exact: the block has {curvature.dim:,} parameters, more than max_dim="
                             f"{options.max_dim:,}; use --solver cg (or lissa, arnoldi), or raise max_dim")
        values, vectors = self._decomposed.get(curvature, lambda: torch.linalg.eigh(curvature.dense()))
        shifted = values + damping
        lam_min, lam_max = float(values.min()), float(values.max())
        if float(shifted.min()) <= 0:
            raise NotConverged(f"solver exact: H + damping I is not positive definite (lowest eigenvalue "
                               f"{lam_min:.3g}, damping {damping:g}); use --damping {max(0.0, -lam_min) * 1.1 + 1e-3:.3g} "
                               f"or more, or --damping auto")
        solution = ((rhs.to(FLOAT) @ vectors) / shifted) @ vectors.T
        residual = relative_residual(curvature, solution, rhs, damping)
        report = SolveReport(converged=residual <= options.tol, iterations=1, residual=residual, rel_change=0.0,
                             lambda_max=lam_max, lambda_min=lam_min,
                             extra={"condition": float(shifted.max() / shifted.min())})
        if not report.converged:
            raise NotConverged(f"solver exact: relative residual {residual:.3g} > tol={options.tol:g} (H + damping I "
                               f"is ill-conditioned, condition {report.extra['condition']:.3g}); raise --damping")
        return solution.to(rhs.dtype), report


@dataclasses.dataclass
class CgOptions:
    tol: float = option(1e-6, "relative residual at which a right-hand side counts as solved")
    maxiter: int = option(500, "most iterations")


class CgSolver(IhvpSolver):
    name = "cg"
    description = "block conjugate gradients: every right-hand side its own CG, all in one product per iteration"
    Options = CgOptions

    def solve(self, curvature: Curvature, rhs: Tensor, damping: float, options: Any) -> tuple[Tensor, SolveReport]:
        _check_damping(damping)
        b = rhs.to(FLOAT)
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = (r * r).sum(1)
        target = (options.tol * b.norm(dim=1)) ** 2
        iterations, change = 0, 0.0
        while iterations < options.maxiter and bool((rr > target).any()):
            active = rr > target
            ap = curvature.matvec(p).to(FLOAT) + damping * p
            pap = (p * ap).sum(1)
            if bool((pap[active] <= 0).any()):
                raise NotConverged(f"solver cg: negative curvature met at iteration {iterations + 1} (H + damping I "
                                   f"is not positive definite); raise --damping or use --damping auto")
            alpha = torch.where(active, rr / pap.clamp_min(torch.finfo(FLOAT).tiny), torch.zeros_like(rr))
            step = alpha[:, None] * p
            x = x + step
            change = float((step.norm(dim=1) / x.norm(dim=1).clamp_min(torch.finfo(FLOAT).tiny)).max())
            r = r - alpha[:, None] * ap
            rr_new = (r * r).sum(1)
            p = torch.where(active[:, None], r + (rr_new / rr.clamp_min(torch.finfo(FLOAT).tiny))[:, None] * p, p)
            rr = torch.where(active, rr_new, rr)
            iterations += 1
        residual = relative_residual(curvature, x, rhs, damping)
        report = SolveReport(converged=residual <= options.tol * 10, iterations=iterations, residual=residual,
                             rel_change=change)
        if not report.converged:
            raise NotConverged(f"solver cg: relative residual {residual:.3g} after {iterations} iterations (tol="
                               f"{options.tol:g}); raise maxiter (cg:maxiter=...) or --damping")
        return x.to(rhs.dtype), report


def power_iteration(curvature: Curvature, damping: float, steps: int = 20, seed: int = 0) -> float:
    """The largest eigenvalue of H + damping I, estimated by `steps` power iterations from a seeded vector."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(1, curvature.dim, generator=generator, dtype=FLOAT)
    v /= v.norm()
    value = 0.0
    for _ in range(steps):
        w = curvature.matvec(v).to(FLOAT) + damping * v
        value = float((w * v).sum())
        v = w / w.norm().clamp_min(torch.finfo(FLOAT).tiny)
    return value


@dataclasses.dataclass
class LissaOptions:
    scale: Any = option("auto", "s > largest eigenvalue of H + damping I; auto: 1.1 x a 20-step power iteration")
    depth: int = option(1000, "recursion depth (iterations per repeat)")
    repeat: int = option(1, "independent repeats, averaged")
    tol: float = option(0.05, "largest accepted relative residual on all Hessian samples")


class LissaSolver(IhvpSolver):
    """LiSSA (Agarwal et al. 2017) in torch-influence's form: h <- v + h - ((H_b + damping I) h) / s over
    mini-batches b, result h / s; its fixed point is (H + damping I)^-1 v for s above the top eigenvalue."""

    name = "lissa"
    description = "stochastic Neumann series over mini-batches of Hessian samples (scale, depth, repeat)"
    Options = LissaOptions

    def solve(self, curvature: Curvature, rhs: Tensor, damping: float, options: Any) -> tuple[Tensor, SolveReport]:
        _check_damping(damping)
        if options.depth < 1 or options.repeat < 1:
            raise UsageError(f"solver lissa: depth and repeat must be >= 1, got {options.depth}, {options.repeat}")
        lam_max = power_iteration(curvature, damping)
        try:
            scale = 1.1 * lam_max if options.scale == "auto" else float(options.scale)
        except (TypeError, ValueError):
            scale = float("nan")
        if not scale > 0 or isinstance(options.scale, bool):
            raise UsageError(f"solver lissa: scale must be a positive number or auto, got {options.scale!r}")
        v = rhs.to(FLOAT)
        total = torch.zeros_like(v)
        change, step = 0.0, 0
        for _ in range(options.repeat):
            h = v.clone()
            for _ in range(options.depth):
                hv = curvature.batch_matvec(h, step).to(FLOAT) + damping * h
                new = v + h - hv / scale
                step += 1
                change = float(((new - h).norm(dim=1) / new.norm(dim=1).clamp_min(torch.finfo(FLOAT).tiny)).max())
                h = new
                if not torch.isfinite(h).all():
                    break
            total += h / scale
        solution = total / options.repeat
        extra = {"scale": scale}
        if not torch.isfinite(solution).all() or scale < lam_max / 2:
            raise NotConverged(f"solver lissa diverged: scale {scale:.3g} is below the top eigenvalue of H + damping I "
                               f"(about {lam_max:.3g}); use lissa:scale=auto or a scale above {lam_max:.3g}")
        residual = relative_residual(curvature, solution, rhs, damping)
        report = SolveReport(converged=residual <= options.tol, iterations=options.depth * options.repeat,
                             residual=residual, rel_change=change, lambda_max=lam_max, extra=extra)
        if not report.converged:
            hint = "raise depth" if scale >= lam_max else f"the scale {scale:.3g} is below the top eigenvalue {lam_max:.3g}"
            raise NotConverged(f"solver lissa: relative residual {residual:.3g} > tol={options.tol:g} after depth "
                               f"{options.depth} (last relative change {change:.3g}); {hint}, or raise --damping")
        return solution.to(rhs.dtype), report


@dataclasses.dataclass
class ArnoldiOptions:
    k: int = option(100, "eigenpairs kept (the largest)")
    tol: float = option(1e-6, "eigsh's convergence tolerance of the eigenpairs")


class ArnoldiSolver(IhvpSolver):
    """The inverse on the top-k eigenspace of H (Lanczos, scipy's eigsh), as Captum's ArnoldiInfluenceFunction:
    a low-rank approximation by design, whose residual is reported, not bounded."""

    name = "arnoldi"
    description = "top-k eigenpairs of H by Lanczos (scipy eigsh), inverted on their span"
    Options = ArnoldiOptions

    def __init__(self) -> None:
        self._decomposed = _Decomposed()

    def solve(self, curvature: Curvature, rhs: Tensor, damping: float, options: Any) -> tuple[Tensor, SolveReport]:
        import numpy as np
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        _check_damping(damping)
        k = min(int(options.k), curvature.dim - 1)
        if k < 1:
            raise UsageError(f"solver arnoldi: k must be >= 1 and below the block size {curvature.dim}")

        operator = curvature.linear_operator()

        def decompose() -> tuple[Tensor, Tensor]:
            try:
                values, vectors = eigsh(operator, k=k, which="LA", tol=options.tol,
                                        v0=np.random.default_rng(0).standard_normal(curvature.dim))
            except ArpackNoConvergence as exc:
                raise NotConverged(f"solver arnoldi: Lanczos did not converge for k={k} ({exc}); lower k or raise "
                                   f"tol") from None
            return torch.from_numpy(values), torch.from_numpy(vectors)

        values, vectors = self._decomposed.get(curvature, decompose)
        shifted = values + damping
        if float(shifted.min()) <= 0:
            raise NotConverged(f"solver arnoldi: kept eigenvalues reach {float(values.min()):.3g}; raise --damping "
                               f"above {-float(values.min()):.3g} or lower k")
        solution = ((rhs.to(FLOAT) @ vectors) / shifted) @ vectors.T
        residual = relative_residual(curvature, solution, rhs, damping)
        report = SolveReport(converged=True, iterations=k, residual=residual, rel_change=0.0,
                             lambda_max=float(values.max()), lambda_min=float(values.min()),
                             note=f"low rank: inverse on the top {k} eigenvectors; the residual measures what it drops")
        return solution.to(rhs.dtype), report


@dataclasses.dataclass
class AutoOptions:
    max_dim: int = option(2000, "blocks up to this many parameters are solved exactly, larger ones by cg")
    tol: float = option(1e-6, "the chosen solver's tolerance")
    maxiter: int = option(500, "cg's most iterations")


class AutoSolver(IhvpSolver):
    """Exact where forming the block's Hessian (one product per parameter) is cheap, CG (one product per iteration
    and right-hand side block) elsewhere: the cheaper of the two converged answers for each layer."""

    name = "auto"
    description = "exact for blocks up to max_dim parameters (default 2,000), block cg above"
    Options = AutoOptions

    def __init__(self, exact: ExactSolver, cg: CgSolver) -> None:
        self.exact, self.cg = exact, cg

    def solve(self, curvature: Curvature, rhs: Tensor, damping: float, options: Any) -> tuple[Tensor, SolveReport]:
        if curvature.dim <= options.max_dim:
            solution, report = self.exact.solve(curvature, rhs, damping,
                                                self.exact.options({"max_dim": options.max_dim, "tol": options.tol}))
        else:
            solution, report = self.cg.solve(curvature, rhs, damping,
                                             self.cg.options({"tol": options.tol, "maxiter": options.maxiter}))
        chosen = "exact" if curvature.dim <= options.max_dim else "cg"
        report.note = f"auto: {chosen}" + (f"; {report.note}" if report.note else "")
        return solution, report
