"""Figures of the SSA analyses: a layered drawing of one dependency graph, the pruned
classifiers' metrics against the keep fraction, and the class clustering."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import dendrogram_figure, pyplot, save_figure, split_pair


def graph_figure(outputs: Mapping[str, Any], group: int, out: Path) -> Path:
    """Checkpoints as columns (input side left), every neuron a grey dot, kept ones coloured,
    edges drawn with a width that grows with their relevance."""
    plt = pyplot()
    checkpoints = [str(c) for c in outputs["checkpoints"]][::-1]  # lower to upper, left to right
    totals = dict(zip([str(c) for c in outputs["checkpoints"]], outputs["total"]))
    fig, ax = plt.subplots(figsize=(1.8 * len(checkpoints) + 1, 4.5))
    y = {c: np.linspace(0, 1, int(totals[c])) if totals[c] > 1 else np.array([0.5]) for c in checkpoints}
    for x, c in enumerate(checkpoints):
        kept = outputs["nodes"][c][group].astype(bool)
        ax.scatter(np.full(kept.size, x), y[c], s=6, color="lightgrey", zorder=2)
        ax.scatter(np.full(kept.sum(), x), y[c][kept], s=14, color="tab:red", zorder=3)
    for pair, e in outputs["edges"].items():
        upper, lower = split_pair(pair)
        weights = e[group]
        if not np.any(weights):
            continue
        top = weights.max()
        xu, xl = checkpoints.index(upper), checkpoints.index(lower)
        for n, k in zip(*np.nonzero(weights)):
            ax.plot([xl, xu], [y[lower][k], y[upper][n]], color="tab:blue", alpha=0.35,
                    lw=0.3 + 1.5 * weights[n, k] / top, zorder=1)
    ax.set_xticks(range(len(checkpoints)), checkpoints, rotation=30, ha="right", fontsize=8)
    ax.set_yticks([])
    name = str(outputs["groups"][group])
    ax.set_title(f"dependency graph of {name!r} ({outputs['mode']}): kept neurons in red", fontsize=9)
    return save_figure(fig, out)


def eval_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """Per partition: accuracy of the global graph and the class graphs' mean TPR, FPR and
    balanced accuracy against the keep fraction; the unpruned accuracy as a line."""
    plt = pyplot()
    parts = [str(p) for p in outputs["partitions"]]
    fig, axes = plt.subplots(1, len(parts), figsize=(4.6 * len(parts), 3.4), squeeze=False)
    keep = np.asarray(outputs["keep"])
    for p, ax in enumerate(axes[0]):
        ax.plot(keep, outputs["accuracy"][p], "o-", label="accuracy, global graph")
        for key, style in (("tpr", "s-"), ("fpr", "v--"), ("balanced_accuracy", "^-")):
            values = np.asarray(outputs[key][p], float)
            defined = np.isfinite(values)
            mean = np.where(defined.any(0), np.where(defined, values, 0).sum(0) / np.maximum(defined.sum(0), 1), np.nan)
            ax.plot(keep, mean, style, label=f"class graphs: {key}")
        ax.axhline(outputs["unpruned_accuracy"][p], color="grey", lw=0.8, ls=":", label="unpruned accuracy")
        ax.set_xlabel("keep fraction per checkpoint")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(parts[p], fontsize=9)
    axes[0, 0].legend(fontsize=6)
    return save_figure(fig, out)


def cluster_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """The dendrogram of the classes beside the matrix of neurons their graphs share."""
    return dendrogram_figure(outputs["linkage"], [str(c) for c in outputs["classes"]], outputs["jaccard"],
                             ("classes by shared graph neurons", "Jaccard overlap of the graphs' neurons"), (0, 1),
                             "viridis", out, cut=outputs.get("cut"))
