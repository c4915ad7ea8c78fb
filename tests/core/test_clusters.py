"""The one clustering cut: the largest gap between merge heights, on trees with known structure."""

from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy

from sa_frame import flat_clusters
from sa_frame.results.clusters import largest_gap_cut


def test_three_tight_groups_are_found_where_a_fixed_small_cut_gives_singletons():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + 0.1 * rng.standard_normal((8, 2)) for c in centres])
    linkage = hierarchy.linkage(points, "average")
    clusters, cut = flat_clusters(linkage)
    assert clusters.max() == 3
    assert all(len(set(clusters[8 * g:8 * g + 8])) == 1 for g in range(3))  # each group is one cluster
    heights = np.sort(linkage[:, 2])
    assert heights[20] < cut < heights[21]  # between the last within-group merge and the first across
    assert flat_clusters(linkage, 0.01)[0].max() == 24 and flat_clusters(linkage, 0.01)[1] == 0.01


def test_the_cut_never_gives_all_singletons_or_one_cluster_for_three_or_more():
    rng = np.random.default_rng(1)
    for n in (3, 5, 40):
        linkage = hierarchy.linkage(rng.standard_normal((n, 3)), "average")
        clusters, _ = flat_clusters(linkage)
        assert 2 <= clusters.max() <= n - 1
    two = hierarchy.linkage(np.array([[0.0], [1.0]]), "average")
    assert flat_clusters(two)[0].tolist() == [1, 1] and largest_gap_cut(two) > 1.0
