"""What the region analyses read from a region run's results file: the S1/ST maps of the
score per (region, image), the regions and the images, checked to be a region run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sa_frame import ResultsFile, UsageError, maps


@dataclass
class RegionMaps:
    s1: np.ndarray  # (L, M)
    st: np.ndarray  # (L, M)
    empty: np.ndarray  # (M, L) bool
    zero_variance: np.ndarray  # (M,) bool
    labels: np.ndarray  # (M, H, W)
    names: list[str] | None  # region names (demo-foreground, masks), else None
    attrs: dict[str, Any]

    @property
    def n_regions(self) -> int:
        return int(self.st.shape[0])

    @property
    def n_images(self) -> int:
        return int(self.st.shape[1])

    def ranking(self, method: str, seed: int = 0) -> np.ndarray:
        """(M, L) importance scores of a ranking method: ST, S1 or random; empty regions -inf."""
        if method == "ST":
            score = self.st.T.copy()
        elif method == "S1":
            score = self.s1.T.copy()
        elif method == "random":
            score = np.random.default_rng(seed).random((self.n_images, self.n_regions))
        else:
            raise UsageError(f"unknown ranking {method!r}; rankings: ST, S1, random (and with the baselines "
                             f"extra: kernelshap, lime, ig)")
        return np.where(self.empty, -np.inf, score)

    def pir(self) -> np.ndarray:
        """(L, M) PIR = S1 / ST; NaN where ST is about 0, the region is empty or the score constant."""
        return maps.primary_index_ratio(self.s1, self.st, self.empty.T | self.zero_variance[None, :])


def read_region_maps(results: ResultsFile, analysis: str) -> RegionMaps:
    """The region maps of a complete region run (UsageError naming the analysis otherwise)."""
    attrs = results.attrs()
    if attrs.get("mode", "augmentations") != "regions":
        raise UsageError(f"analysis {analysis!r} reads region runs (sa-frame run --estimator sbsa --regions ...); "
                         f"{results.path} is an augmentation run")
    if attrs.get("target") == "all":
        raise UsageError(f"analysis {analysis!r} needs one score per image: {results.path} was run with --target "
                         f"all; run with --target true or predicted")
    score = results.checkpoint_maps()["score"]
    if "S1" not in score or "ST" not in score:
        raise UsageError(f"analysis {analysis!r} needs S1 and ST maps of the score (estimator sbsa or sobol); "
                         f"{results.path} has {', '.join(score)}")
    regions = results.read("regions")
    names = [str(n) for n in regions["names"]] if "names" in regions else None
    return RegionMaps(np.asarray(score["S1"], float), np.asarray(score["ST"], float),
                      np.asarray(regions["empty"]).astype(bool), np.asarray(score["zero_variance"]).astype(bool),
                      np.asarray(regions["labels"]), names, attrs)


def top_fraction(ranking: np.ndarray, empty: np.ndarray, fraction: float, top: bool) -> np.ndarray:
    """(M, L) bool: per image, the top (or bottom) `fraction` of its non-empty regions by `ranking`
    (at least one region)."""
    m, n = ranking.shape
    present = (~empty).sum(1)
    k = np.maximum(1, np.rint(fraction * present)).astype(int)
    key = np.where(empty, np.inf, -ranking if top else ranking)  # ascending sort puts the chosen first
    order = np.argsort(key, axis=1, kind="stable")
    chosen = np.zeros((m, n), dtype=bool)
    position = np.argsort(order, axis=1, kind="stable")  # rank of every region
    chosen[position < k[:, None]] = True
    return chosen & ~empty
