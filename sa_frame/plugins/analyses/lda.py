"""Cross-validated linear discriminant analysis of sensitivity maps.

Can a unit's spatial sensitivity map tell which variable it belongs to? Samples are the
(variable, unit) pairs of a convolutional checkpoint, features the unit's map flattened
(H*W values), labels the variables. scikit-learn's LinearDiscriminantAnalysis (svd
solver) under RepeatedKFold (5 x 100 by default, seeds drawn per checkpoint from
`random_state` as the research code does); confusion matrices of the training and the
validation folds are summed over folds and row-normalised; a fit on all samples gives
the 2-D projections for the figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import Analysis, Progress, ResultsFile, UsageError, maps, no_progress, option, print_matrix
from sa_frame.plugins.analyses._display import distinct_colours, pyplot, save


@dataclass
class LdaOptions:
    value: str = option("auto", "shapley, S1, ST or rank_biserial (default: shapley, else S1)")
    checkpoints: list[str] = option([], "checkpoints to use (default: every convolutional one)")
    n_splits: int = option(5, "folds per repetition (RepeatedKFold)")
    n_repeats: int = option(100, "repetitions (RepeatedKFold)")
    random_state: int = option(0, "seed of the per-checkpoint fold seeds")


def lda_model() -> Any:
    """The research code's LDA without `store_covariance=True`: that only keeps the (H*W)^2
    covariance matrix, changes no prediction, and made every fold ~10x slower."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return LinearDiscriminantAnalysis(solver="svd", n_components=2, tol=1e-4)


def samples(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, C, H, W) maps -> features (V*C, H*W) and labels (V*C,) = variable index."""
    v, c = values.shape[:2]
    return values.reshape(v * c, -1), np.repeat(np.arange(v), c)


def cross_validated(x: np.ndarray, y: np.ndarray, n_splits: int, n_repeats: int, seed: int,
                    advance: Any = None) -> dict[str, np.ndarray]:
    """Summed, row-normalised train/validation confusion matrices and mean accuracies over all folds."""
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import RepeatedKFold

    labels = np.unique(y)
    train = np.zeros((len(labels), len(labels)))
    valid = np.zeros_like(train)
    accuracy = []
    for fit_rows, test_rows in RepeatedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed).split(x):
        model = lda_model().fit(x[fit_rows], y[fit_rows])
        train += confusion_matrix(y[fit_rows], model.predict(x[fit_rows]), labels=labels)
        predicted = model.predict(x[test_rows])
        valid += confusion_matrix(y[test_rows], predicted, labels=labels)
        accuracy.append([model.score(x[fit_rows], y[fit_rows]), np.mean(predicted == y[test_rows])])
        if advance:
            advance(1)
    accuracy = np.asarray(accuracy)
    return {"train": train / train.sum(axis=1, keepdims=True), "valid": valid / valid.sum(axis=1, keepdims=True),
            "train_accuracy": accuracy[:, 0].mean(), "valid_accuracy": accuracy[:, 1].mean()}


class LdaAnalysis(Analysis):
    name = "lda"
    description = "cross-validated LDA: which variable does a unit's sensitivity map belong to?"
    Options = LdaOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps.require_augmentation_run(results, self.name)
        if options.n_splits < 2 or options.n_repeats < 1:
            raise UsageError("lda needs n_splits >= 2 and n_repeats >= 1")
        value = maps.check_value(results, options.value)
        checkpoints = maps.check_checkpoints(results, options.checkpoints, conv_only=True)
        variables = maps.map_rows(results)
        if len(variables) < 3:
            raise UsageError("lda needs at least 3 variables (it projects onto 2 discriminant axes)")
        seeds = np.random.default_rng(options.random_state).integers(0, 100000, size=len(checkpoints))
        advance = progress("lda: folds", len(checkpoints) * options.n_splits * options.n_repeats)
        out: dict[str, Any] = {}
        for checkpoint, seed in zip(checkpoints, seeds):
            x, y = samples(maps.sensitivity(results, value, checkpoint))
            if x.shape[0] < options.n_splits:
                raise UsageError(f"{checkpoint}: {x.shape[0]} samples cannot be split {options.n_splits} ways")
            result = cross_validated(x, y, options.n_splits, options.n_repeats, int(seed), advance)
            result["projection"] = lda_model().fit(x, y).transform(x)
            result["labels"] = y
            result["seed"] = int(seed)
            out[checkpoint] = result
        return {"variables": np.array(variables), "value": value, "checkpoints": out}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        variables = [str(v) for v in outputs["variables"]]
        table = Table(title=f"LDA on {outputs['value']} maps: mean accuracy over folds (chance "
                      f"{1 / len(variables):.3f})")
        for column in ("checkpoint", "train", "validation"):
            table.add_column(column, justify="left" if column == "checkpoint" else "right")
        for checkpoint, r in outputs["checkpoints"].items():
            table.add_row(checkpoint, f"{float(r['train_accuracy']):.3f}", f"{float(r['valid_accuracy']):.3f}")
        console.print(table)
        for checkpoint, r in outputs["checkpoints"].items():
            print_matrix(console, f"{checkpoint}: validation confusion (rows: true variable, row-normalised)",
                         variables, variables, r["valid"])

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        plt = pyplot()
        variables = [str(v) for v in outputs["variables"]]
        results = outputs["checkpoints"]
        colours = distinct_colours(len(variables))
        fig, axes = plt.subplots(2, len(results), figsize=(3.4 * len(results) + 0.6, 7.2), squeeze=False,
                                 layout="constrained")
        for k, (checkpoint, r) in enumerate(results.items()):
            ax = axes[0, k]
            for label, name in enumerate(variables):
                points = r["projection"][r["labels"] == label]
                ax.scatter(points[:, 0], points[:, 1], s=6, color=colours[label], label=name)
            ax.set_title(f"{checkpoint}\nvalidation accuracy {float(r['valid_accuracy']):.2f}", fontsize=8)
            ax.set_xticks([])  # discriminant coordinates have no units: axes named, ticks left out
            ax.set_yticks([])
            ax.set_xlabel("LD1", fontsize=7)
            ax.set_ylabel("LD2", fontsize=7)
            matrix = axes[1, k]
            image = matrix.imshow(r["valid"], vmin=0, vmax=1, cmap="viridis")
            matrix.set_xticks(range(len(variables)), variables, rotation=90, fontsize=6)
            # row labels once, on the left panel: repeated they ran into the neighbouring matrix
            matrix.set_yticks(range(len(variables)), variables if k == 0 else [], fontsize=6)
            matrix.set_xlabel("predicted", fontsize=7)
        axes[1, 0].set_ylabel("true", fontsize=7)
        colorbar = fig.colorbar(image, ax=list(axes[1]), fraction=0.02)
        colorbar.set_label("share of the true variable's maps", fontsize=7)
        colorbar.ax.tick_params(labelsize=6)
        handles = [plt.Line2D([], [], color=c, marker="o", lw=0, ms=4) for c in colours]
        fig.legend(handles, variables, loc="outside lower center", ncol=min(len(variables), 8), fontsize=7,
                   frameon=False)
        fig.suptitle(f"LDA of {outputs['value']} maps: 2-D projections and validation confusion matrices", fontsize=9)
        return [save(fig, prefix.with_suffix(".lda.png"))]
