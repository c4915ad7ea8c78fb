"""Rich tables and matplotlib figures shared by the analyses of this plugin."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import pyplot, save_figure


def distinct_colours(n: int) -> list[Any]:
    """n colours a reader tells apart: tab10 up to 10, tab20 up to 20, evenly spaced hues beyond."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](k) for k in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](k) for k in range(n)]
    return [matplotlib.colormaps["hsv"](k / n) for k in range(n)]


save = save_figure  # the kernel's figure writer (PNG, closed afterwards, one clear line if unwritable)


def heatmap(values: np.ndarray, rows: Sequence[str], columns: Sequence[str], xlabel: str, ylabel: str, title: str,
            out: Path, limits: tuple[float, float] | None = None, annotate: bool = True) -> Path:
    """A matrix as a heatmap PNG; NaN cells hatched (they are flagged, not zero)."""
    plt = pyplot()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(columns), 1.0 + 0.4 * len(rows)))
    vmin, vmax = limits if limits else (np.nanmin(values), np.nanmax(values)) if np.isfinite(values).any() else (0, 1)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r" if limits and limits[0] < 0 else "viridis",
                      vmin=vmin, vmax=vmax, aspect="auto")
    for i, j in zip(*np.nonzero(~np.isfinite(values))):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey", lw=0))
    if annotate and values.size <= 400:
        for i, j in np.ndindex(values.shape):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6)
    # long labels upright: at 45 degrees neighbours such as 'grayscale' and 'gaussian_blur' overlapped
    upright = max((len(str(c)) for c in columns), default=0) > 6
    ax.set_xticks(range(len(columns)), columns, rotation=90 if upright else 45, ha="center" if upright else "right",
                  fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save(fig, out)
