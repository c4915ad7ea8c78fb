"""Flat clusters of a dendrogram: the one rule the clustering analyses cut their trees by.

A fixed distance suits one data set and gives all singletons (or one cluster) on another
(0.025 gave 40 singletons out of 40 on the demo), so the default cut lies in the largest gap
between consecutive merge heights: the level where the tree's structure changes most.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy


def largest_gap_cut(linkage: np.ndarray) -> float:
    """The midpoint of the largest gap between consecutive merge heights: at least one merge
    lies below it and one above, so neither all singletons nor one cluster (for 3+ objects).
    With fewer than two merges, a height above the top merge (one cluster)."""
    heights = np.sort(np.asarray(linkage, float)[:, 2])
    if heights.size < 2:
        return float(heights[-1]) * 2 + 1.0 if heights.size else 1.0
    gaps = np.diff(heights)
    k = int(np.argmax(gaps))  # ties: the lowest such gap, i.e. the finer partition
    return float((heights[k] + heights[k + 1]) / 2)


def flat_clusters(linkage: np.ndarray, cut: float = 0.0) -> tuple[np.ndarray, float]:
    """(cluster label per object, 1-based; the distance used): scipy's fcluster at `cut`, or at
    `largest_gap_cut` when `cut` is 0."""
    used = largest_gap_cut(linkage) if cut == 0 else float(cut)
    return hierarchy.fcluster(linkage, used, "distance"), used
