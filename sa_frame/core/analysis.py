"""The Analysis contract (DESIGN §7) and how `sa-frame analyze` runs one.

An analysis reads a complete results file (and, for predictions, runs the model again),
returns a tree of named arrays that the kernel writes under `/analyses/<name>`, prints
rich tables and optionally draws figures. Its options are a dataclass: `-o key=value`
on the command line sets a field (values parsed as YAML), unknown keys are named with
the closest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sa_frame.core.errors import UsageError, unknown_name
from sa_frame.core.store import ResultsFile

Progress = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)


def no_progress(_description: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


@dataclasses.dataclass
class NoOptions:
    """An analysis without options."""


class Analysis(ABC):
    """A post-analysis of a results file, registered through `register_analyses`."""

    name: str = ""
    description: str = ""
    #: a dataclass whose fields (with defaults) are the analysis' options
    Options: type = NoOptions

    @abstractmethod
    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        """Named outputs (nested dicts of arrays), written under `/analyses/<name>`."""

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        """Print the outputs as rich tables (default: each output's name and shape or value)."""
        for key, value in outputs.items():
            shape = getattr(value, "shape", None)
            console.print(f"{key}: {value if not shape else f'array {shape}'}")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        """Write PNG figures at `prefix.with_suffix(".<what>.png")` (prefix: the results file, so
        results.h5 -> results.<what>.png); the paths written (default: none)."""
        return []


def option(default: Any, help: str = "") -> Any:  # noqa: A002 - the word users see
    """A field of an analysis' Options dataclass with the help `sa-frame analyze R NAME --options` shows."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def option_help(options_type: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(options_type)}


def parse_options(analysis: Analysis, pairs: Sequence[str]) -> Any:
    """The analysis' Options from ``key=value`` strings (YAML values), checked by field type."""
    fields = {f.name: f for f in dataclasses.fields(analysis.Options)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"analysis option {pair!r} must be key=value; options of {analysis.name!r}: "
                             f"{', '.join(fields) or '(none)'}")
        if key not in fields:
            raise unknown_name(f"option of analysis {analysis.name!r}", key, fields)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        values[key] = _coerce(analysis.name, key, value, fields[key])
    return analysis.Options(**values)


def option_defaults(options_type: type) -> dict[str, Any]:
    """{option: default value} of an analysis' Options dataclass."""
    return {f.name: _default(f) for f in dataclasses.fields(options_type)}


def _default(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]


def _coerce(analysis: str, key: str, value: Any, field: dataclasses.Field) -> Any:
    default = _default(field)
    where = f"option {key!r} of analysis {analysis!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, (list, tuple)):
        items = value if isinstance(value, list) else [value]
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        kind = type(default[0]) if default else None
        if kind in (int, float):
            try:
                items = [kind(v) for v in items]
            except (TypeError, ValueError):
                raise UsageError(f"{where} must be a comma-separated list of numbers, got {value!r}") from None
        return tuple(items) if isinstance(default, tuple) else list(items)
    if value is None:
        return None
    return str(value)


def options_dict(options: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()}


def run_analysis(path: Path | str, name: str, pairs: Sequence[str] = (), progress: Progress = no_progress,
                 figures: Path | None = None) -> tuple[Analysis, dict[str, Any], list[Path]]:
    """Run analysis `name` on a results file, store its outputs, draw its figures."""
    from sa_frame.core.maps import complete_results
    from sa_frame.core.plugins import lookup

    analysis: Analysis = lookup("analysis", name)
    options = parse_options(analysis, pairs)
    results = complete_results(str(path))
    outputs = analysis.run(results, options, progress)
    results.write_analysis(analysis.name, outputs, {"options": options_dict(options),
                                                    "description": analysis.description})
    written = analysis.figures(outputs, figures) if figures is not None else []
    return analysis, outputs, written

