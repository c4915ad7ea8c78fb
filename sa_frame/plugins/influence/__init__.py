"""Layer-wise influence functions: the inverse-Hessian solvers (auto, exact, cg, lissa, arnoldi), the fixed
disturbances of test images (white_background, texture_swap, style), the ``sa-frame influence`` command and the
influence analyses (influence-summary, influence-layers, influence-cluster, influence-top).

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_ihvp_solvers(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.influence.solvers import ArnoldiSolver, AutoSolver, CgSolver, ExactSolver, LissaSolver

    exact, cg = ExactSolver(), CgSolver()
    for solver in (AutoSolver(exact, cg), exact, cg, LissaSolver(), ArnoldiSolver()):
        register(solver)


@hookimpl
def register_augmentations(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.influence.disturbances import Style, TextureSwap, WhiteBackground

    for disturbance in (WhiteBackground(), TextureSwap(), Style()):
        register(disturbance)


@hookimpl
def register_commands(app: Any) -> None:
    from sa_frame.plugins.influence.command import influence

    app.command(name="influence")(influence)


@hookimpl
def register_analyses(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.influence.analyses import (
        InfluenceClusterAnalysis,
        InfluenceLayersAnalysis,
        InfluenceSummaryAnalysis,
        InfluenceTopAnalysis,
    )

    for analysis in (InfluenceSummaryAnalysis(), InfluenceLayersAnalysis(), InfluenceClusterAnalysis(),
                     InfluenceTopAnalysis()):
        register(analysis)
