"""Accuracy under single augmentations (paper Table 1) and guided masking of activations
(paper Figure 4).

`accuracy`: top-1/top-5 of the run's network on the original evaluation images and on
each augmentation alone (`n_inner` parameter draws). `masking`: the same inputs with
each variable's sensitivity map used as a mask on all convolutional checkpoints at once
— raw, inverted and thresholded (alpha x q-quantile) — giving 17 accuracy features per
(input, masking variable) pair and the Spearman pattern "augmented + mask vs original +
mask".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from sa_frame import (
    Analysis,
    Progress,
    Rebuilt,
    ResultsFile,
    UsageError,
    maps,
    no_progress,
    option,
    print_matrix,
    rebuild,
)
from sa_frame.plugins.analyses._display import heatmap
from sa_frame.plugins.analyses._predictions import (
    ORIGINAL,
    PredictionStore,
    StoreIdentity,
    accuracies,
    compute_predictions,
    conditions,
    feature_labels,
    mask_configs,
)


@dataclass
class AccuracyOptions:
    per_class: int = option(10, "evaluation images per class (validation partition)")
    n_inner: int = option(3, "parameter draws per parameterised augmentation")
    batch_size: int = option(64, "images per batch (one part file of the prediction store each)")
    top_n: int = option(5, "predicted classes kept per image")
    seed: int = option(0, "seed of the augmentation parameter draws")
    device: str = option("", "cpu, cuda, cuda:N (default: the run's device)")
    partition: str = option("", "partition of the evaluation images (default: valid, or the only one)")
    predictions: str = option("", "folder of the prediction stores (default: next to the results file)")
    force: bool = option(False, "recompute the stored predictions of these settings")


@dataclass
class MaskingOptions(AccuracyOptions):
    per_class: int = option(5, "evaluation images per class (validation partition)")
    value: str = option("auto", "shapley, S1, ST or rank_biserial (default: shapley, else S1)")
    checkpoints: list[str] = option([], "checkpoints to use (default: every convolutional one)")
    alphas: list[float] = option([0.0, 0.5, 1.5], "factors applied at or above the quantile (thresholded)")
    quantiles: list[float] = option([0.5, 0.6, 0.7, 0.8, 0.9], "quantiles of the whole checkpoint's mask (thresholded)")
    max_rows: int = option(0, "rows per forward (masked copies of a batch); 0: 1024 on CUDA, on CPU 64 at 64 px "
                                 "and fewer for larger images (5 at 224 px)")


def _check(options: AccuracyOptions) -> None:
    for name in ("per_class", "n_inner", "batch_size", "top_n"):
        if getattr(options, name) < 1:
            raise UsageError(f"analysis option {name} must be at least 1, got {getattr(options, name)}")
    for q in getattr(options, "quantiles", []):
        if not 0.0 <= q <= 1.0:
            raise UsageError(f"masking quantiles must lie in [0, 1], got {q}")


def store_folder(results: ResultsFile, name: str, option: str) -> Path:
    return Path(option) if option else results.path.with_name(f"{results.path.name}.{name}-predictions")


class AccuracyAnalysis(Analysis):
    name = "accuracy"
    description = "top-1/top-5 accuracy on the original images and under each augmentation alone (Table 1)"
    Options = AccuracyOptions

    def predict(self, results: ResultsFile, options: Any, progress: Progress,
                masks: Mapping[str, Mapping[str, torch.Tensor]], variables: list[str], value: str,
                checkpoints: list[str]) -> tuple[Rebuilt, PredictionStore, dict[str, np.ndarray], int, float]:
        _check(options)
        replay = rebuild(results, options.device or None)
        configs = mask_configs(variables, getattr(options, "alphas", ()), getattr(options, "quantiles", ()))
        identity = StoreIdentity(str(results.path.resolve()), tuple(c.label for c in configs), tuple(checkpoints),
                                 value, options.per_class, options.partition, options.n_inner, options.seed,
                                 options.top_n, options.batch_size)
        n_images = replay.evaluation_images(options.per_class, options.partition or None)[0].numel()
        if n_images == 0:
            raise UsageError("no evaluation images: the chosen partition is empty")
        store = PredictionStore(store_folder(results, self.name, options.predictions)).prepare(identity, options.force)
        advance = progress(f"{self.name}: evaluations (image x input x mask)",
                           n_images * len(configs) * conditions(replay.augmentations, options.n_inner))
        started = time.perf_counter()
        h, w = replay.spec.input_size
        # on a CPU, stacked copies pay off while a forward's activations stay cache-sized: 64 rows
        # of 64 px, a few of 224 px (measured: benchmarks/masking.py, docs/performance.md)
        max_rows = getattr(options, "max_rows", 0) or (1024 if replay.device.type == "cuda"
                                                       else max(1, 64 * 64 * 64 // (h * w)))
        compute_predictions(replay, store, masks, configs, identity, max_rows, advance)
        elapsed = time.perf_counter() - started
        return replay, store, accuracies(store.parts()), n_images, elapsed

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps.require_augmentation_run(results, self.name)
        replay, store, acc, n_images, elapsed = self.predict(results, options, progress, {}, [], "", [])
        keys = [ORIGINAL] + [a.name for a in replay.augmentations]
        return {"inputs": np.array(keys), "top1": np.array([acc[k][0, 0] for k in keys]),
                "top5": np.array([acc[k][1, 0] for k in keys]), "images": n_images,
                "images_per_second": n_images / max(elapsed, 1e-9), "store": str(store.folder),
                "warning": replay.label_warning()}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        if str(outputs.get("warning", "")):
            console.print(f"[yellow]warning:[/] {outputs['warning']}")
        table = Table(title=f"accuracy on {int(outputs['images'])} images, each augmentation alone")
        for column in ("input", "top-1", "top-5"):
            table.add_column(column, justify="left" if column == "input" else "right")
        for key, t1, t5 in zip(outputs["inputs"], outputs["top1"], outputs["top5"]):
            table.add_row(str(key), f"{t1:.4f}", f"{t5:.4f}")
        console.print(table)


class MaskingAnalysis(AccuracyAnalysis):
    name = "masking"
    description = "guided masking of activations with the sensitivity maps (Figure 4)"
    Options = MaskingOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps.require_augmentation_run(results, self.name)
        value = maps.check_value(results, options.value)
        checkpoints = maps.check_checkpoints(results, options.checkpoints, conv_only=True)
        variables = maps.map_rows(results)
        masks = {c: {v: torch.from_numpy(m).float() for v, m in zip(variables, maps.sensitivity(results, value, c))}
                 for c in checkpoints}
        replay, store, acc, n_images, elapsed = self.predict(results, options, progress, masks, variables, value,
                                                             checkpoints)
        keys = [ORIGINAL] + [a.name for a in replay.augmentations]
        n_features = len(options.alphas) * len(options.quantiles) + 2
        masked = {k: acc[k][:, 1:].reshape(2, len(variables), n_features) for k in keys}  # (2, vars, features)
        pattern = signature_pattern(np.stack([masked[k][0] for k in keys[1:]]), masked[ORIGINAL][0])
        n_configs = 1 + len(variables) * n_features
        evaluations = n_images * n_configs * sum(1 if not a.params else options.n_inner
                                                 for a in replay.augmentations) + n_images * n_configs
        return {"inputs": np.array(keys), "variables": np.array(variables),
                "features": np.array(feature_labels(options.alphas, options.quantiles)),
                "checkpoints": np.array(checkpoints), "value": value,
                "unmasked": {"top1": np.array([acc[k][0, 0] for k in keys]),
                             "top5": np.array([acc[k][1, 0] for k in keys])},
                "masked": {"top1": np.stack([masked[k][0] for k in keys]),
                           "top5": np.stack([masked[k][1] for k in keys])},
                "pattern": pattern, "images": n_images, "images_per_second": n_images / max(elapsed, 1e-9),
                "evaluations_per_second": evaluations / max(elapsed, 1e-9), "store": str(store.folder),
                "warning": replay.label_warning()}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        super().report({**outputs, **outputs["unmasked"]}, console)
        variables = [str(v) for v in outputs["variables"]]
        inputs = [str(k) for k in outputs["inputs"]]
        print_matrix(console, f"top-1 with the raw mask of each variable ({outputs['value']} maps), rows: input",
                     inputs, variables, outputs["masked"]["top1"][:, :, -2])
        print_matrix(console, f"Spearman correlation over the {len(outputs['features'])} masking features: "
                     "augmented + mask vs original + mask (Figure 4)", inputs[1:], variables, outputs["pattern"])
        console.print(f"{int(outputs['images'])} images, {outputs['images_per_second']:.2g} images/s "
                      f"({outputs['evaluations_per_second']:,.0f} masked evaluations/s)")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [heatmap(outputs["pattern"], [str(k) for k in outputs["inputs"][1:]],
                        [str(v) for v in outputs["variables"]], "masking variable", "input augmentation",
                        "Spearman: augmented+mask vs original+mask", prefix.with_suffix(".masking-pattern.png"),
                        limits=(-1, 1))]


def signature_pattern(augmented: np.ndarray, original: np.ndarray) -> np.ndarray:
    """(inputs, variables) Spearman correlations between feature vectors (inputs, variables, F) and
    the original input's (variables, F); NaN where a vector is constant."""
    out = np.full(augmented.shape[:2], np.nan)
    for i in range(augmented.shape[0]):  # a loop over a dozen augmentations, not over data
        for j in range(augmented.shape[1]):
            if np.ptp(augmented[i, j]) > 0 and np.ptp(original[j]) > 0:
                out[i, j] = stats.spearmanr(augmented[i, j], original[j]).statistic
    return out
