"""What `run`, `show` and `plot` print and draw for a region run (``mode = regions``): the
regions' summary numbers and the images with their ST per region. Reads the file only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sa_frame.results.maps import primary_index_ratio
from sa_frame.results.store import ResultsFile


def is_region_run(results: ResultsFile) -> bool:
    return results.attrs().get("mode", "augmentations") == "regions"


def importance(results: ResultsFile) -> tuple[str, np.ndarray]:
    """(map name, (L, M) values) ranking the regions: ST for Sobol runs, else the estimator's
    first summary map as tables show it (e.g. Shapley shares); classes averaged (--target all)."""
    from sa_frame.results.report import estimator_of, shown

    maps = results.checkpoint_maps()["score"]
    if "ST" in maps:
        key, values = "ST", np.asarray(maps["ST"], float)
    else:
        estimator = estimator_of(results)
        key = estimator.summary[0]
        values = np.asarray(shown(maps, key, estimator), float)
    return key, values.mean(-1) if values.ndim > 2 else values


def region_summary(results: ResultsFile) -> dict[str, Any]:
    """Counts and means of a complete region run: images, regions per image, sum S1 / ST per
    image, PIR (mean, share > 1), images with a constant score, top regions of the first images."""
    attrs, maps, regions = results.attrs(), results.checkpoint_maps()["score"], results.read("regions")
    key, st = importance(results)
    s1 = np.asarray(maps["S1"], float) if "S1" in maps else np.full_like(st, np.nan)
    if s1.ndim > 2:
        s1 = s1.mean(-1)
    empty = np.asarray(regions["empty"]).astype(bool).T
    pir = primary_index_ratio(s1, st, empty)
    defined = np.isfinite(pir)
    count = np.asarray(regions["count"])
    order = np.argsort(-np.where(empty, -np.inf, st), axis=0)
    return {"images": int(st.shape[1]), "regions": int(st.shape[0]),
            "count": (int(count.min()), float(np.median(count)), int(count.max())),
            "sum_s1": float(s1.sum(0).mean()), "sum_st": float(st.sum(0).mean()),
            "pir_mean": float(np.nanmean(pir)) if defined.any() else float("nan"),
            "pir_gt1": float(np.mean(pir[defined] > 1)) if defined.any() else float("nan"),
            "constant": int(np.asarray(maps["zero_variance"]).astype(bool).reshape(st.shape[1], -1).all(1).sum()),
            "top": order[:3].T, "st": st, "key": key, "segmenter": attrs.get("segmenter"), "score": attrs.get("score"),
            "target": attrs.get("target"), "perturbation": attrs.get("perturbation"),
            "names": [str(n) for n in regions["names"]] if "names" in regions else None}


def print_region_summary(console: Any, results: ResultsFile, first: int = 5) -> None:
    from rich.table import Table

    s = region_summary(results)
    table = Table(title=f"regions: {s['segmenter']}, {s['perturbation']}, {s['score']} of the {s['target']} class",
                  show_header=False)
    lo, median, hi = s["count"]
    rows = [("images", s["images"]), ("region variables", s["regions"]),
            ("regions per image (min / median / max)", f"{lo} / {median:g} / {hi}")]
    if s["key"] == "ST":
        rows += [("mean sum S1 per image", f"{s['sum_s1']:.3f}"),
                 ("mean sum ST per image", f"{s['sum_st']:.3f} (above sum S1: interactions)"),
                 ("mean PIR = S1 / ST", f"{s['pir_mean']:.3f}"), ("PIR > 1", f"{s['pir_gt1']:.1%}")]
    else:
        rows += [(f"mean sum {s['key']} per image", f"{s['sum_st']:.3f}")]
    for key, value in [*rows, ("images with a constant score", s["constant"])]:
        table.add_row(key, str(value))
    console.print(table)
    top = Table(title=f"top regions by {s['key']} (first {min(first, s['images'])} images)")
    for column in ("image", f"regions ({s['key']})"):
        top.add_column(column)
    names = s["names"] or [f"r{k}" for k in range(s["regions"])]
    for i in range(min(first, s["images"])):
        top.add_row(str(i), ", ".join(f"{names[k]} ({s['st'][k, i]:.3f})" for k in s["top"][i]))
    console.print(top)


def region_figure(results: ResultsFile, out: Path) -> Path:
    """The stored preview images above their ST per region, region boundaries drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sa_frame.results.report import save_figure

    images, regions = results.read("images"), results.read("regions")
    key, st = importance(results)
    preview = np.asarray(images["preview"])
    labels = np.asarray(regions["labels"])[:len(preview)]
    k = len(preview)
    class_names = [str(c) for c in results.variables().get("classes", [])]
    fig, axes = plt.subplots(2, k, figsize=(1.8 * k + 0.8, 3.9), squeeze=False)
    top = float(np.nanmax(st[:, :k])) if np.isfinite(st[:, :k]).any() else 1.0
    shown = None
    for i in range(k):
        axes[0, i].imshow(preview[i])
        c = int(images["classes"][i])
        axes[0, i].set_title(f"{i}: {class_names[c] if c < len(class_names) else c}", fontsize=7)
        painted = st[labels[i].reshape(-1), i].reshape(labels[i].shape)
        shown = axes[1, i].imshow(painted, cmap="magma", vmin=0, vmax=max(top, 1e-12))
        edge = np.zeros(labels[i].shape, dtype=bool)
        edge[:, :-1] |= labels[i][:, 1:] != labels[i][:, :-1]
        edge[:-1, :] |= labels[i][1:, :] != labels[i][:-1, :]
        axes[1, i].imshow(np.ma.masked_where(~edge, edge), cmap="binary_r", vmin=0, vmax=1, alpha=0.7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel(f"{key} per region", fontsize=8)
    fig.colorbar(shown, ax=axes[1, :].tolist(), fraction=0.02)
    attrs = results.attrs()
    fig.suptitle(f"{attrs['model']} - {attrs['estimator']} - {attrs.get('segmenter')} - {results.path.name}",
                 fontsize=9)
    return save_figure(fig, out)
