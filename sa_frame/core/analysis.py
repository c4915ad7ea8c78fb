"""The Analysis contract (docs/architecture.md) and how `sa-frame analyze` runs one.

An analysis reads a complete results file (and, for predictions, runs the model again), returns a tree of named
arrays that the kernel writes under `/analyses/<name>`, prints rich tables and optionally draws figures. Its
options are a dataclass: `-o key=value` on the command line sets a field (values parsed as YAML), unknown keys are
named with the closest valid one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sa_frame.core.options import NoOptions, make_options, parse_pairs

Progress = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)


def no_progress(_description: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


class Analysis(ABC):
    """A post-analysis of a results file, registered through `register_analyses`."""

    name: str = ""
    description: str = ""
    #: a dataclass whose fields (with defaults) are the analysis' options
    Options: type = NoOptions

    @abstractmethod
    def run(self, results: Any, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        """Named outputs (nested dicts of arrays) of a complete `sa_frame.ResultsFile`, written
        under `/analyses/<name>`."""

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        """Print the outputs as rich tables (default: each output's name and shape or value)."""
        for key, value in outputs.items():
            shape = getattr(value, "shape", None)
            console.print(f"{key}: {value if not shape else f'array {shape}'}")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        """Write PNG figures at `prefix.with_suffix(".<what>.png")` (prefix: the results file, so
        results.h5 -> results.<what>.png); the paths written (default: none)."""
        return []


def parse_options(analysis: Analysis, pairs: Sequence[str]) -> Any:
    """The analysis' Options from ``key=value`` strings (YAML values), checked by field type."""
    owner = f"analysis {analysis.name!r}"
    return make_options(analysis.Options, parse_pairs(pairs, owner, analysis.Options), owner)

