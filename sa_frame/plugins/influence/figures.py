"""Figures of the influence analyses (PNG, matplotlib on Agg)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import dendrogram_figure, pyplot, save_figure


def summary_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """Share of test images whose top-1 proponent is of their own class, conditions x layers."""
    plt = pyplot()
    share = np.asarray(outputs["own_class_share"], float)
    rows, conditions = [str(r) for r in outputs["rows"]], [str(c) for c in outputs["conditions"]]
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(rows), 1.2 + 0.5 * len(conditions)))
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (k, r), v in np.ndenumerate(share):
        ax.text(r, k, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(rows)), rows, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(conditions)), conditions, fontsize=8)
    ax.set_title("top-1 proponent of the test image's own class", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, out)


def layers_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """Mean influence per layer, one line per condition: over all training images, and of the top-k on each side
    (symmetric-log axis: layers differ by orders of magnitude)."""
    plt = pyplot()
    rows = [str(r) for r in outputs["rows"]]
    panels = (("mean", "all training images"), ("mean_proponents", "top-k proponents"),
              ("mean_opponents", "top-k opponents"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True)
    for ax, (key, title) in zip(axes, panels):
        values = np.asarray(outputs[key], float)
        for k, condition in enumerate(outputs["conditions"]):
            ax.plot(range(len(rows)), values[k], marker="o", label=str(condition))
        largest = float(np.nanmax(np.abs(values), initial=0.0))
        ax.set_yscale("symlog", linthresh=max(1e-3 * largest, 1e-12))  # three decades shown logarithmically
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xticks(range(len(rows)), rows, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"mean I_up,loss: {title}", fontsize=9)
    axes[0].set_ylabel("influence (negative = helpful)", fontsize=8)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


def cluster_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """The dendrogram of the layers (average linkage on 1 - r) beside their Pearson matrix."""
    return dendrogram_figure(outputs["linkage"], [str(x) for x in outputs["layers"]], outputs["pearson"],
                             ("layers by influence profile (1 - Pearson r)", f"Pearson r ({outputs['profile']})"),
                             (-1, 1), "RdBu_r", out, row_height=0.4, cut=outputs.get("cut"))


def top_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """A row per test image: the image, then for every layer its top-k training images (class and value above)."""
    plt = pyplot()
    tests, train = outputs["test_images"], outputs["train_images"]  # (N, 3, H, W), (L + 1, N, k, 3, H, W)
    n_rows, n, k = train.shape[0], len(tests), train.shape[2]
    names, conditions = [str(c) for c in outputs["class_names"]], [str(c) for c in outputs["conditions"]]
    fig, axes = plt.subplots(n, 1 + n_rows * k, figsize=(1.4 * (1 + n_rows * k), 1.5 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(tests[i].transpose(1, 2, 0))
        axes[i, 0].set_title(f"{names[outputs['test_classes'][i]]}\n{conditions[outputs['test_condition'][i]]}",
                             fontsize=6)
        for r in range(n_rows):
            for j in range(k):
                ax = axes[i, 1 + r * k + j]
                ax.imshow(train[r, i, j].transpose(1, 2, 0))
                head = f"{outputs['rows'][r]}\n" if j == 0 else "\n"
                ax.set_title(f"{head}{names[outputs['train_classes'][r, i, j]]} {outputs['values'][r, i, j]:.2g}",
                             fontsize=5.5)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"test images (left) and their top {outputs['side']} per layer", fontsize=9)
    return save_figure(fig, out)
