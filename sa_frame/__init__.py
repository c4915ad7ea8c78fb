"""sa-frame: which parts of a network react to which changes of its input, and how much.

The names below are the public API (DESIGN §7). Heavy ones are imported on first use so
that ``import sa_frame`` (and the ``sa-frame`` command) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sa_frame.core.hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "Problem": "sa_frame.core.problem",
    "Uniform": "sa_frame.core.variables",
    "LogUniform": "sa_frame.core.variables",
    "IntUniform": "sa_frame.core.variables",
    "Switch": "sa_frame.core.variables",
    "Categorical": "sa_frame.core.variables",
    "Permutation": "sa_frame.core.variables",
    "Constant": "sa_frame.core.variables",
    "SpikeAndSlab": "sa_frame.core.variables",
    "MultivariateNormal": "sa_frame.core.variables",
    "Variable": "sa_frame.core.variables",
    "Block": "sa_frame.core.variables",
    "Design": "sa_frame.core.contracts",
    "DesignBlock": "sa_frame.core.contracts",
    "Accumulator": "sa_frame.core.contracts",
    "Estimator": "sa_frame.core.contracts",
    "Augmentation": "sa_frame.core.augmentation",
    "Analysis": "sa_frame.core.analysis",
    "UsageError": "sa_frame.core.errors",
    "registered": "sa_frame.core.plugins",
    "lookup": "sa_frame.core.plugins",
    "estimate": "sa_frame.core.estimate",
    "sobol_from_outputs": "sa_frame.core.estimate",
}

__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sa_frame' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
