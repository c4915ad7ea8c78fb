"""Region sensitivity (SBSA): segmenters, perturbations, the ``sbsa`` estimator and the
region analyses (pir, region-masking, sensitivity-n, region-groups).

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_segmenters(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.regions.segmenters import (
        DemoForeground,
        Felzenszwalb,
        Grid,
        Masks,
        Quickshift,
        Slic,
        Watershed,
    )

    for segmenter in (Grid(), Slic(), Felzenszwalb(), Quickshift(), Watershed(), Masks(), DemoForeground()):
        register(segmenter)


@hookimpl
def register_perturbations(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.regions.perturbations import Inpaint, Scale

    register(Scale())
    register(Inpaint())


@hookimpl
def register_estimators(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.regions.sbsa import SbsaEstimator

    register(SbsaEstimator())


@hookimpl
def register_analyses(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.regions.analyses import (
        PirAnalysis,
        RegionGroupsAnalysis,
        RegionMaskingAnalysis,
        SensitivityNAnalysis,
    )

    for analysis in (PirAnalysis(), RegionMaskingAnalysis(), SensitivityNAnalysis(), RegionGroupsAnalysis()):
        register(analysis)
