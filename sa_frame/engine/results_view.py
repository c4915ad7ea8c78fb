"""`Results`: a finished run as labelled arrays and tables for Python users, read through the
same functions as `sa-frame show` and the analyses (one definition of every number shown).

    res = sa_frame.open_results("results.h5")
    res.to_dataframe("ST")            # variables x checkpoints: the summary table's means
    res.sensitivity("ST", "layer4")   # (variables, *activation shape), as the analyses read it
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sa_frame.core.errors import UsageError, unknown_name
from sa_frame.engine.analyze import run_analysis
from sa_frame.results import maps
from sa_frame.results.report import estimator_of, summary_figure, summary_rows


class Results:
    """A complete results file: its settings, variables, checkpoints and maps."""

    def __init__(self, path: str | Path) -> None:
        self.file = maps.complete_results(str(path))
        self.path = self.file.path
        self.attrs: dict[str, Any] = self.file.attrs()
        self.mode: str = str(self.attrs.get("mode", "augmentations"))

    def __repr__(self) -> str:
        return (f"Results({str(self.path)!r}: {self.attrs.get('model')}, {self.attrs.get('estimator')}, "
                f"{len(self.checkpoints)} checkpoints, values {', '.join(self.values) or '-'})")

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as stored (what `--resume` alone continues from)."""
        return self.file.config()

    @property
    def checkpoints(self) -> list[str]:
        return maps.checkpoints(self.file) if self.mode != "influence" else []

    @property
    def variables(self) -> list[str]:
        """Labels of the maps' leading axis: augmentations (or regions), then auxiliary variables."""
        return maps.map_rows(self.file) if self.mode != "influence" else []

    @property
    def values(self) -> list[str]:
        """The value types the estimator provides, the analyses' default first (e.g. ['S1', 'ST'])."""
        return maps.value_types(self.file) if self.mode != "influence" else []

    def _value(self, value: str | None) -> str:
        if not self.values:
            raise UsageError(f"{self.path} holds no sensitivity maps ({self.mode} run, estimator "
                             f"{self.attrs.get('estimator')!r}); read its sections with .file.read(...)")
        return maps.check_value(self.file, value)

    def sensitivity(self, value: str | None = None, checkpoint: str | None = None) -> np.ndarray:
        """(variables, *activation shape) float64 map as the analyses read it (shares, clipped
        indices, ...; docs/analyses.md), of the first checkpoint unless one is named."""
        value = self._value(value)
        checkpoint = maps.check_checkpoints(self.file, [checkpoint] if checkpoint else None)[0]
        return maps.sensitivity(self.file, value, checkpoint)

    def raw(self, name: str, checkpoint: str) -> np.ndarray:
        """A stored map as the estimator wrote it (e.g. 'S1_conf', 'shapley_raw', 'var')."""
        maps.check_checkpoints(self.file, [checkpoint])
        stored = self.file.keys(f"checkpoints/{checkpoint}")
        if name not in stored:
            raise unknown_name(f"map of checkpoint {checkpoint!r}", name, stored)
        return np.asarray(self.file.dataset(f"checkpoints/{checkpoint}/{name}"))

    def to_dataframe(self, value: str | None = None) -> Any:
        """A pandas DataFrame of mean sensitivity per variable (rows) and checkpoint (columns): the
        numbers of the run's summary table. With no `value`, every value type, indexed by
        (value, variable) as SALib's ``ResultDict.to_df`` indexes by parameter."""
        import pandas as pd

        keys = [self._value(value)] if value is not None else self.values
        estimator = estimator_of(self.file)
        frames = {}
        for key in keys:
            labels, checkpoints, table = summary_rows(self.file, key, estimator)
            frames[key] = pd.DataFrame(table, index=pd.Index(labels, name="variable"),
                                       columns=pd.Index(checkpoints, name="checkpoint"))
        return frames[keys[0]] if value is not None else pd.concat(frames, names=["value"])

    def plot(self, out: str | Path | None = None, values: tuple[str, ...] | None = None) -> Path:
        """The summary heatmaps (variables x checkpoints) written to `out` (default: the results
        file's name with .png); returns the path."""
        if self.mode != "augmentations" or not self.values:
            raise UsageError(f"{self.path}: plot() draws augmentation runs' summaries; a {self.mode} run's "
                             f"figures come from its analyses (sa-frame analyze)")
        keys = tuple(self._value(v) for v in values) if values else None
        target = Path(out) if out is not None else Path(self.path).with_suffix(".png")
        return summary_figure(self.file, estimator_of(self.file), target, keys)

    def analyze(self, name: str, **options: Any) -> dict[str, Any]:
        """Run analysis `name` (as `sa-frame analyze NAME -o key=value`), store its outputs in the
        file, and return them."""
        _, outputs, _ = run_analysis(self.path, name, [f"{k}={v}" for k, v in options.items()])
        return outputs
