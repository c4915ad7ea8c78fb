"""Built-in post-analyses of results files (`sa-frame analyze RESULTS.h5 NAME`).

Implementation modules are imported inside the hook, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_analyses(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.analyses.clustering import ClusteringAnalysis
    from sa_frame.plugins.analyses.correlation import CorrelationAnalysis, CovCorrelationAnalysis
    from sa_frame.plugins.analyses.lda import LdaAnalysis
    from sa_frame.plugins.analyses.masking import AccuracyAnalysis, MaskingAnalysis
    from sa_frame.plugins.analyses.segments import SegmentsAnalysis
    from sa_frame.plugins.analyses.single_class import SingleClassAnalysis

    for analysis in (AccuracyAnalysis(), MaskingAnalysis(), ClusteringAnalysis(), SingleClassAnalysis(),
                     CorrelationAnalysis(), CovCorrelationAnalysis(), LdaAnalysis(), SegmentsAnalysis()):
        register(analysis)
