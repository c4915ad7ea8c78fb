"""What a person reads and looks at: summary tables (rich) and figures (matplotlib) of a
results file. Only reads the file; never reruns anything."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame.core.errors import UsageError, unknown_name
from sa_frame.core.estimator import Estimator
from sa_frame.core.registry import lookup
from sa_frame.results.maps import display_values, map_rows, processed
from sa_frame.results.store import ResultsFile


def estimator_of(results: ResultsFile) -> Estimator:
    """The registered estimator that wrote a results file."""
    return lookup("estimator", results.attrs()["estimator"])


# Top units leave out activations whose variance is below this fraction of the checkpoint's
# median (positive) variance: their indices are ratios of round-off and tie at 1.
VARIANCE_FLOOR = 1e-6
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def shown(maps: dict[str, Any], key: str, estimator: Estimator) -> np.ndarray | None:
    """One checkpoint's map `key` as tables and figures show it: the way analyses read it where
    the estimator declares it (`analysis_maps`: e.g. Shapley shares from the raw effects),
    else |index|, clipped to [0, 1] for shares of variance; None if absent."""
    if key in estimator.analysis_maps:
        source, transform = estimator.analysis_maps[key]
        return processed(transform, maps[source]) if source in maps else None
    return display_values(maps[key], key in estimator.fractions) if key in maps else None


def shown_note(key: str, estimator: Estimator) -> str:
    """How `shown` transformed a map, for titles: ' clipped to [0, 1]', ' as shares summing to 1', ..."""
    transform = estimator.analysis_maps.get(key, (key, "clip" if key in estimator.fractions else ""))[1]
    return {"shares": " as shares summing to 1", "clip": " clipped to [0, 1]", "abs": " (absolute value)"}.get(
        transform, "")


def group_means(value: np.ndarray | None, n_groups: int, grouped: bool = True) -> np.ndarray | None:
    """Mean over all activations of one shown map per group (one mean for a map without the
    group axis); None if the map is absent; NaN for a group without any defined value (e.g. a
    class no image of a step-wise run belonged to)."""
    if value is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": NaN is the answer
        if not grouped or value.ndim == 0 or value.shape[0] != n_groups:  # a map without a group axis (e.g. cov)
            return np.array([np.nanmean(value)])
        return np.nanmean(value.reshape(n_groups, -1), axis=1)


def summary_rows(results: ResultsFile, key: str, estimator: Estimator | None = None) \
        -> tuple[list[str], list[str], np.ndarray]:
    """(row labels, checkpoint names, means) for one summary map of a results file."""
    estimator = estimator or estimator_of(results)
    groups = map_rows(results)
    maps = results.checkpoint_maps()
    checkpoints = [str(c) for c in results.attrs()["checkpoints"]]
    columns = [group_means(shown(maps[c], key, estimator), len(groups), key not in estimator.ungrouped)
               for c in checkpoints]
    labels = groups if columns and columns[0] is not None and len(columns[0]) == len(groups) else [key]
    table = np.stack([c if c is not None else np.full(len(labels), np.nan) for c in columns], axis=1)
    return labels, checkpoints, table


def summary_figure(results: ResultsFile, estimator: Estimator, out: Path, keys: tuple[str, ...] | None = None) \
        -> Path:
    """A heatmap per summary map (default: the estimator's): groups x checkpoints, mean |index| (PNG)."""
    plt = pyplot()

    keys = keys or estimator.summary
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys) + 1, 4.5), squeeze=False, layout="constrained")
    for ax, key in zip(axes[0], keys):
        labels, checkpoints, table = summary_rows(results, key, estimator)
        image = ax.imshow(table, cmap="viridis", aspect="auto", vmin=0)
        upright = max((len(c) for c in checkpoints), default=0) > 12  # 'features.10|features.8' at 45 deg collide
        ax.set_xticks(range(len(checkpoints)), checkpoints, rotation=90 if upright else 45,
                      ha="center" if upright else "right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"mean {key}{shown_note(key, estimator)} per activation", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    attrs = results.attrs()
    fig.suptitle(f"{attrs['model']} - {attrs['estimator']} - {results.path.name}")
    save_figure(fig, out)
    return out


def unit_figure(results: ResultsFile, checkpoint: str, unit: int, key: str | None, out: Path) -> Path:
    """One unit's sensitivity map per variable (paper Figure 3): images for conv checkpoints."""
    plt = pyplot()

    maps = results.checkpoint_maps()
    if checkpoint not in maps:
        raise unknown_name("checkpoint", checkpoint, maps)
    estimator = estimator_of(results)
    key = key or estimator.summary[0]
    values = shown(maps[checkpoint], key, estimator)
    if values is None:
        raise unknown_name("index map", key, [*maps[checkpoint], *estimator.analysis_maps])
    groups = map_rows(results)
    if values.ndim < 2 or not 0 <= unit < values.shape[1]:
        raise UsageError(f"unit must lie in 0..{values.shape[1] - 1 if values.ndim >= 2 else 0} for checkpoint "
                         f"{checkpoint!r} (shape {values.shape[1:]})")
    per_unit = values[:, unit]
    if per_unit.ndim == 3:  # (groups, H, W) maps: one image per variable (paper Figure 3)
        fig, axes = plt.subplots(1, len(groups), figsize=(2.2 * len(groups), 2.6), squeeze=False)
        vmax = np.nanmax(per_unit) if np.isfinite(per_unit).any() else 1.0
        for ax, name, grid in zip(axes[0], groups, per_unit):
            im = ax.imshow(grid, cmap="magma", vmin=0, vmax=vmax)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
        fig.colorbar(im, ax=list(axes[0]), fraction=0.02)
    else:
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(groups), 3))
        ax.bar(groups, per_unit.reshape(len(groups), -1).mean(axis=1))
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(f"{checkpoint}, unit {unit}: {key}")
    save_figure(fig, out)
    return out


def print_matrix(console: Any, title: str, rows: Sequence[str], columns: Sequence[str], values: Any,
                 fmt: str = "{:.3f}", corner: str = "") -> None:
    """A labelled matrix as a rich table (NaN shown as 'nan'; `corner` heads the row labels), for
    the run summary and the analyses alike. Headers may fold; numbers never do ('0.19' over '4'
    reads as two numbers): a table wider than the console is printed whole."""
    from rich.table import Table

    cells = [["nan" if not np.isfinite(v) else fmt.format(v) for v in row] for row in np.asarray(values, dtype=float)]
    width = max((len(c) for row in cells for c in row), default=1)
    table = Table(title=title)
    table.add_column(corner, no_wrap=True)
    for c in columns:
        table.add_column(str(c), justify="right", overflow="fold", min_width=width)
    for label, row in zip(rows, cells):
        table.add_row(str(label), *row)
    console.print(table, crop=False)


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (figures are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dendrogram_figure(linkage: Any, labels: list[str], matrix: Any, titles: tuple[str, str], limits: tuple[float, float],
                      cmap: str, out: Path, row_height: float = 0.35, cut: float | None = None) -> Path:
    """A dendrogram (left; its flat clusters coloured and the cut dashed when `cut` is given)
    beside the matrix of the same items in the dendrogram's order (right), as PNG."""
    from scipy.cluster import hierarchy

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, row_height * len(labels) + 2.5), layout="constrained")
    tree = hierarchy.dendrogram(linkage, labels=labels, orientation="left", ax=left, leaf_font_size=7,
                                **({"color_threshold": cut, "above_threshold_color": "0.55"} if cut else {}))
    if cut:
        left.axvline(cut, color="0.3", linestyle="--", linewidth=0.8)
    left.set_title(titles[0] + (f" (cut {cut:.3g}, dashed)" if cut else ""), fontsize=9)
    left.tick_params(axis="x", labelsize=7)
    order = tree["leaves"][::-1]
    image = right.imshow(np.asarray(matrix)[np.ix_(order, order)], cmap=cmap, vmin=limits[0], vmax=limits[1])
    right.set_xticks(range(len(order)), [labels[i] for i in order], rotation=90, fontsize=7)
    right.set_yticks(range(len(order)), [labels[i] for i in order], fontsize=7)
    right.set_title(titles[1], fontsize=9)
    fig.colorbar(image, ax=right, fraction=0.046)
    return save_figure(fig, out)


def save_figure(fig: Any, out: Path) -> Path:
    """Write a matplotlib figure as PNG and close it (UsageError naming an unwritable path)."""
    import matplotlib.pyplot as plt

    if Path(out).suffix.lower() not in FIGURE_SUFFIXES:
        plt.close(fig)
        raise UsageError(f"cannot write figure {out}: its name must end in {', '.join(FIGURE_SUFFIXES)}")
    try:
        fig.savefig(out, dpi=110, bbox_inches="tight")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out


def top_units(results: ResultsFile, key: str, k: int = 3, estimator: Estimator | None = None) \
        -> list[tuple[str, str, str]]:
    """(checkpoint, group, 'unit (score), ...') for the k most sensitive units per group: the
    mean shown index over a unit's activations, those of near-zero variance left out."""
    estimator = estimator or estimator_of(results)
    groups = map_rows(results)
    maps = results.checkpoint_maps()
    rows = []
    for checkpoint in [str(c) for c in results.attrs()["checkpoints"]]:
        values = shown(maps[checkpoint], key, estimator)
        if values is None or values.ndim < 2 or values.shape[0] != len(groups):
            continue
        values = values.astype(float)
        var = maps[checkpoint].get("var")
        if var is not None and np.shape(var) == values.shape[1:]:
            positive = var[var > 0]
            floor = VARIANCE_FLOOR * float(np.median(positive)) if positive.size else np.inf
            values[:, ~(var > floor)] = np.nan
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a unit whose activations are all left out
            per_unit = np.nanmean(values.reshape(len(groups), values.shape[1], -1), axis=2)
        for g, name in enumerate(groups):
            best = np.argsort(-np.nan_to_num(per_unit[g], nan=-1))[:k]
            rows.append((checkpoint, name, ", ".join(f"{u} ({per_unit[g, u]:.3f})" for u in best)))
    return rows
