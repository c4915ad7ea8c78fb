"""How `sa-frame analyze` runs an analysis: options parsed, outputs stored, figures drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sa_frame.core.analysis import Analysis, Progress, no_progress, parse_options
from sa_frame.core.options import options_dict
from sa_frame.core.registry import lookup
from sa_frame.results.maps import complete_results


def run_analysis(path: Path | str, name: str, pairs: Sequence[str] = (), progress: Progress = no_progress,
                 figures: Path | None = None) -> tuple[Analysis, dict[str, Any], list[Path]]:
    """Run analysis `name` on a results file, store its outputs, draw its figures."""

    analysis: Analysis = lookup("analysis", name)
    options = parse_options(analysis, pairs)
    results = complete_results(str(path))
    outputs = analysis.run(results, options, progress)
    results.write_analysis(analysis.name, outputs, {"options": options_dict(options),
                                                    "description": analysis.description})
    written = analysis.figures(outputs, figures) if figures is not None else []
    return analysis, outputs, written

