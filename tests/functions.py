"""Test functions with known sensitivity indices (values in tests/data/analytic.json)."""

from __future__ import annotations

import math

import torch

from sa_frame import Problem, Uniform


def ishigami(x: torch.Tensor, a: float = 7.0, b: float = 0.1) -> torch.Tensor:
    return (torch.sin(x[:, 0]) + a * torch.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * torch.sin(x[:, 0]))[:, None]


def ishigami_problem(groups: dict | None = None) -> Problem:
    return Problem({f"x{i}": Uniform(-math.pi, math.pi) for i in (1, 2, 3)}, groups=groups)


def sobol_g(a: list[float]):
    coef = torch.tensor(a, dtype=torch.float64)

    def g(x: torch.Tensor) -> torch.Tensor:
        return torch.prod((torch.abs(4 * x - 2) + coef) / (1 + coef), dim=1)[:, None]

    return g


def unit_problem(d: int) -> Problem:
    return Problem({f"x{i + 1}": Uniform(0.0, 1.0) for i in range(d)})
