"""Step-wise sensitivity analysis (SSA): relevances between consecutive checkpoints, the
``ssa`` estimator (per-class streamed moments) and the dependency-graph analyses
(ssa-graph, ssa-eval, ssa-cluster, ssa-ablation).

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_relevances(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.ssa.relevances import Activations, Gradients, WeightActivations, WeightGradients, Weights

    for relevance in (Gradients(), Activations(), Weights(), WeightActivations(), WeightGradients()):
        register(relevance)


@hookimpl
def register_estimators(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.ssa.estimator import SsaEstimator

    register(SsaEstimator())


@hookimpl
def register_analyses(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.ssa.analyses import SsaAblationAnalysis, SsaClusterAnalysis, SsaEvalAnalysis, SsaGraphAnalysis

    for analysis in (SsaGraphAnalysis(), SsaEvalAnalysis(), SsaClusterAnalysis(), SsaAblationAnalysis()):
        register(analysis)
