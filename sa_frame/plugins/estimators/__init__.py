"""Built-in estimators, each with the design it needs (registered like any plugin).

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_estimators(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.estimators.contrast import ContrastEstimator
    from sa_frame.plugins.estimators.shapley import ShapleyEstimator
    from sa_frame.plugins.estimators.sobol import SobolEstimator
    from sa_frame.plugins.estimators.variance import VarianceEstimator

    for estimator in (SobolEstimator(), ShapleyEstimator(), VarianceEstimator(), ContrastEstimator()):
        register(estimator)


class _DesignType:
    """A registered sampler: a name, a description and the design class it builds."""

    def __init__(self, name: str, description: str, factory: Callable[..., Any]) -> None:
        self.name, self.description, self.factory = name, description, factory

    def design(self, *args: Any, **kwargs: Any) -> Any:
        return self.factory(*args, **kwargs)


@hookimpl
def register_samplers(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.estimators._saltelli_design import SaltelliDesign
    from sa_frame.plugins.estimators.contrast import PairedDesign
    from sa_frame.plugins.estimators.shapley import PermutationDesign
    from sa_frame.plugins.estimators.variance import IIDDesign

    register(_DesignType("saltelli", "grouped Saltelli design on scrambled Sobol points (sobol)", SaltelliDesign))
    register(_DesignType("shapley-permutations", "Song-Nelson-Staum permutation design (shapley)",
                         PermutationDesign))
    register(_DesignType("iid", "independent uniform rows (variance)", IIDDesign))
    register(_DesignType("paired", "original vs single-augmentation pairs (contrast)", PairedDesign))
