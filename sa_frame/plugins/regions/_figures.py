"""Figures of the region analyses: PIR distributions and trends, masking (Fig. 2 style) and
sensitivity-n (Fig. 3 style). The run's own figure (images with ST per region) is drawn by
`sa-frame run` / `plot` from the results file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import pyplot, save_figure


def pir_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """PIR histogram of this run; with compared runs, the trend of mean PIR and of PIR > 1."""
    plt = pyplot()
    trend = outputs["trend"]
    compared = len(trend["labels"]) > 1
    fig, axes = plt.subplots(1, 2 if compared else 1, figsize=(9 if compared else 4.5, 3.2), squeeze=False)
    pir = np.asarray(outputs["pir"], float)
    top = np.asarray(outputs["top20"]).astype(bool) & np.isfinite(pir)
    ax = axes[0, 0]
    bins = np.linspace(-0.5, 2.0, 51)
    ax.hist(np.clip(pir[np.isfinite(pir)], -0.5, 2.0), bins=bins, color="lightgrey", label="all regions")
    ax.hist(np.clip(pir[top], -0.5, 2.0), bins=bins, color="tab:blue", label="top 20% by ST")
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("PIR = S1 / ST (clipped to [-0.5, 2]: the end bins hold the rest)")
    ax.set_ylabel("regions x images")
    ax.legend(fontsize=7)
    ax.set_title(f"mean {outputs['mean']:.2f}, top-20% {outputs['mean_top20']:.2f}, "
                 f"> 1: {outputs['fraction_gt1']:.0%}", fontsize=9)
    if compared:
        ax = axes[0, 1]
        x = np.arange(len(trend["labels"]))
        ax.plot(x, trend["mean"], "o-", label="mean PIR")
        ax.plot(x, trend["mean_top20"], "s-", label="mean PIR, top 20% by ST")
        ax.plot(x, trend["fraction_gt1"], "^--", label="share PIR > 1")
        ax.set_xticks(x, [str(v) for v in trend["labels"]], rotation=30, ha="right")
        ax.legend(fontsize=7)
        ax.set_title("across results files", fontsize=9)
    return save_figure(fig, out)


def masking_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """Per ranking: score drops with the bottom (x) vs the top (y) regions masked; steeper is better."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for i, method in enumerate(outputs["methods"]):
        x, y = outputs["drop_bottom"][i], outputs["drop_top"][i]
        points = ax.scatter(x, y, s=6, alpha=0.35)
        ax.scatter([x.mean()], [y.mean()], s=80, marker="*", color=points.get_facecolor()[0], edgecolor="k",
                   label=f"{method}: {y.mean():.3f} vs {x.mean():.3f}")
    low = min(ax.get_xlim()[0], ax.get_ylim()[0])
    high = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"score drop, bottom {outputs['fraction']:.0%} masked")
    ax.set_ylabel(f"score drop, top {outputs['fraction']:.0%} masked")
    ax.legend(fontsize=7, title="ranking: mean top vs bottom", title_fontsize=7)
    return save_figure(fig, out)


def sensitivity_figure(outputs: Mapping[str, Any], out: Path) -> Path:
    """Mean Pearson correlation against the share of regions masked, per ranking."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    x = 100 * np.asarray(outputs["fractions"])
    for i, method in enumerate(outputs["methods"]):
        ax.plot(x, outputs["mean"][i], "o-", label=str(method))
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("regions masked (%)")
    ax.set_ylabel("Pearson correlation")
    ax.set_ylim(-0.3, 1.05)
    ax.legend(fontsize=7)
    ax.set_title(f"sensitivity-n ({outputs['subsets']} random subsets per point)", fontsize=9)
    return save_figure(fig, out)
