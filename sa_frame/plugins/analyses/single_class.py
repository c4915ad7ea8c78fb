"""Single-class sensitivity (paper Tables 2-4).

From the classifying checkpoint's maps: for each augmentation, the classes whose
probability is most sensitive to it (top-k "sensitive classes", with names and values).
With a prediction store of `masking` (or `accuracy`), the mean Jaccard index between each
augmentation's sensitive set and the top-n predictions: unmasked inputs x augmentations,
and, for masked predictions whose masking variable is the input augmentation, the 17
masking configurations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import Analysis, Progress, ResultsFile, UsageError, maps, no_progress, option, print_matrix, rebuild
from sa_frame.plugins.analyses._display import heatmap
from sa_frame.plugins.analyses._predictions import ORIGINAL, PredictionStore, jaccard_sums


@dataclass
class SingleClassOptions:
    value: str = option("auto", "S1 or shapley (default: shapley, else S1)")
    k: int = option(5, "size of a sensitive-class set (and of the predicted set compared with it)")
    top: int = option(10, "classes listed per augmentation")
    predictions: str = option("", "a prediction store (default: the masking analysis', else accuracy's)")


def sensitive_classes(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(augmentations, k) class indices sorted by decreasing value, and those values (stable order)."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(values, order, axis=1)


def jaccard(a: set[int], b: set[int]) -> float:
    """|A ∩ B| / |A ∪ B| (1 for two empty sets)."""
    return len(a & b) / len(a | b) if a | b else 1.0


class SingleClassAnalysis(Analysis):
    name = "single-class"
    description = "classes most sensitive to each augmentation, and Jaccard indices with predictions"
    Options = SingleClassOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps.require_augmentation_run(results, self.name)
        if options.k < 1 or options.top < 1:
            raise UsageError("single-class options k and top must be at least 1")
        value = maps.check_value(results, options.value)
        rebuilt = rebuild(results, with_network=False)
        spec = rebuilt.spec
        classifier = spec.classifier
        if classifier not in maps.checkpoints(results):
            raise UsageError(f"the run did not record the classifying module {classifier!r}; rerun with it among "
                             f"--checkpoints ({', '.join(maps.checkpoints(results))} were recorded)")
        rows = maps.map_rows(results)
        augs = [a.name for a in rebuilt.augmentations if a.name in rows]
        values = maps.sensitivity(results, value, classifier)[[rows.index(a) for a in augs]]
        values = values.reshape(len(augs), -1)
        names = spec.class_names or rebuilt.source.classes
        if len(names) != values.shape[1]:  # outputs without known names: call them by index
            names = [f"output {c}" for c in range(values.shape[1])]
        top_classes, top_values = sensitive_classes(values, options.top)
        out: dict[str, Any] = {"augmentations": np.array(augs), "value": value, "checkpoint": classifier,
                               "classes": top_classes, "class_names": np.array([[names[c] for c in row]
                                                                                for row in top_classes]),
                               "values": top_values}
        store = self._store(results, options)
        if store is not None:
            out["jaccard"] = self._jaccard(store, sensitive_classes(values, options.k)[0], augs)
        return out

    def _store(self, results: ResultsFile, options: Any) -> PredictionStore | None:
        if options.predictions:
            return PredictionStore(Path(options.predictions))
        for source in ("masking", "accuracy"):
            if source in results.keys("analyses"):
                stored = results.dataset(f"analyses/{source}/store")
                return PredictionStore(Path(stored.decode() if isinstance(stored, bytes) else str(stored)))
        return None

    @staticmethod
    def _jaccard(store: PredictionStore, sensitive: np.ndarray, augs: list[str]) -> dict[str, Any]:
        identity = store.identity()
        labels = list(identity["configs"])
        per_input = jaccard_sums(store.parts(), sensitive)  # {input: (K, sets)}
        inputs = [ORIGINAL] + [a for a in augs if a in per_input]
        out: dict[str, Any] = {"inputs": np.array(inputs),
                               "unmasked": np.stack([per_input[i][0] for i in inputs])}
        if len(labels) > 1:  # masked: the input augmentation's own mask, every configuration
            features = [label.split(":", 1)[1] for label in labels if label.startswith(f"{augs[0]}:")]
            diagonal = np.full((len(augs), len(features)), np.nan)
            for s, aug in enumerate(augs):
                columns = [i for i, label in enumerate(labels) if label.startswith(f"{aug}:")]
                if aug in per_input and columns:
                    diagonal[s] = per_input[aug][columns, s]
            out["masked"] = diagonal
            out["features"] = np.array(features)
        return out

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        augs = [str(a) for a in outputs["augmentations"]]
        for aug, names, values in zip(augs, outputs["class_names"], outputs["values"]):
            table = Table(title=f"classes most sensitive to {aug} ({outputs['value']}, {outputs['checkpoint']})")
            table.add_column("rank", justify="right")
            table.add_column("class")
            table.add_column(str(outputs["value"]), justify="right")
            for rank, (name, v) in enumerate(zip(names, values), 1):
                table.add_row(str(rank), str(name), f"{v:.4f}")
            console.print(table)
        if "jaccard" in outputs:
            jac = outputs["jaccard"]
            print_matrix(console, "mean Jaccard index: top predictions of the input (rows) vs the classes "
                         "sensitive to an augmentation (columns)", [str(i) for i in jac["inputs"]], augs,
                         jac["unmasked"])
            if "masked" in jac:
                print_matrix(console, "mean Jaccard index with the input augmentation's own mask (Table 4)", augs,
                             [str(f) for f in jac["features"]], jac["masked"])

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        if "jaccard" not in outputs:
            return []
        jac = outputs["jaccard"]
        return [heatmap(jac["unmasked"], [str(i) for i in jac["inputs"]], [str(a) for a in outputs["augmentations"]],
                        "sensitive classes of", "input", "mean Jaccard index (unmasked)",
                        prefix.with_suffix(".single-class.png"), limits=(0.0, 1.0))]
