"""Hierarchical clustering of the masking signatures (paper Appendix C).

Objects are the (input augmentation, masking variable) pairs of a `masking` analysis,
described by their 17 top-1 accuracies; their distance is sqrt(1 - |Spearman rho|) and
the tree is scikit-learn's average-linkage AgglomerativeClustering, converted to a scipy
linkage matrix for the dendrogram and the flat clusters (cut in the largest gap between merge
heights by default: sa_frame.flat_clusters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from scipy.cluster import hierarchy

from sa_frame import Analysis, Progress, ResultsFile, UsageError, flat_clusters, maps, no_progress, option
from sa_frame.plugins.analyses._display import pyplot, save


@dataclass
class ClusteringOptions:
    cut: float = option(0.0, "fcluster distance for the flat clusters (0: in the largest gap between merge "
                             "heights)")
    include_original: bool = option(False, "also cluster the (original input, variable) pairs")


def signature_distances(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Spearman rho between the rows of `features`, distance sqrt(1 - |rho|)); constant rows get rho 0."""
    if features.shape[0] < 2:
        raise UsageError("clustering needs at least two (input, variable) pairs")
    ranks = stats.rankdata(features, axis=1)  # Spearman = Pearson correlation of average ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.corrcoef(ranks)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    np.fill_diagonal(rho, 1.0)
    distance = np.sqrt(np.clip(1.0 - np.abs(rho), 0.0, None))
    np.fill_diagonal(distance, 0.0)
    return rho, (distance + distance.T) / 2


def average_linkage(distance: np.ndarray) -> np.ndarray:
    """scipy linkage matrix of scikit-learn's precomputed average-linkage tree."""
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(metric="precomputed", linkage="average", compute_full_tree=True,
                                    compute_distances=True, distance_threshold=0.0, n_clusters=None)
    model.fit(distance)
    n = distance.shape[0]
    sizes = np.zeros(model.children_.shape[0])
    for i, (a, b) in enumerate(model.children_):  # a loop over merges (n - 1), sizes need earlier merges
        sizes[i] = (1 if a < n else sizes[a - n]) + (1 if b < n else sizes[b - n])
    return np.column_stack([model.children_, model.distances_, sizes]).astype(float)


class ClusteringAnalysis(Analysis):
    name = "clustering"
    description = "hierarchical clustering of the 17-feature masking signatures (needs `masking`)"
    Options = ClusteringOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps.require_augmentation_run(results, self.name)
        results.analysis_attrs("masking")  # a clear error when masking was not run
        masking = results.read("analyses")["masking"]
        inputs = [str(k) for k in masking["inputs"]]
        variables = [str(v) for v in masking["variables"]]
        first = 0 if options.include_original else 1
        features = masking["masked"]["top1"][first:]  # (inputs, variables, 17)
        labels = [f"{i} | {v}" for i in inputs[first:] for v in variables]
        rho, distance = signature_distances(features.reshape(-1, features.shape[-1]))
        linkage = average_linkage(distance)
        clusters, cut = flat_clusters(linkage, options.cut)
        return {"labels": np.array(labels), "spearman": rho, "distance": distance, "linkage": linkage,
                "clusters": clusters, "n_clusters": int(clusters.max()), "cut": cut}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"{int(outputs['n_clusters'])} flat clusters of (input | masking variable) pairs")
        table.add_column("cluster", justify="right")
        table.add_column("members")
        labels = [str(v) for v in outputs["labels"]]
        for c in np.unique(outputs["clusters"]):
            table.add_row(str(c), ", ".join(l for l, k in zip(labels, outputs["clusters"]) if k == c))
        console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        plt = pyplot()
        labels = [str(v) for v in outputs["labels"]]
        fig, ax = plt.subplots(figsize=(6, 1.5 + 0.18 * len(labels)))
        cut = float(outputs["cut"]) if "cut" in outputs else None
        hierarchy.dendrogram(outputs["linkage"], labels=labels, orientation="right", ax=ax, leaf_font_size=6,
                             **({"color_threshold": cut, "above_threshold_color": "0.55"} if cut else {}))
        if cut:
            ax.axvline(cut, color="0.3", linestyle="--", linewidth=0.8)
        ax.set_xlabel("sqrt(1 - |Spearman rho|)")
        ax.set_title(f"masking signatures, average linkage: {int(outputs['n_clusters'])} clusters"
                     + (f" at cut {cut:.3g}" if cut else ""))
        return [save(fig, prefix.with_suffix(".clustering.png"))]
