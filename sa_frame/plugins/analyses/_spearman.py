"""Many Spearman correlations at once, as Pearson correlations of average ranks.

scipy.stats.spearmanr computes one matrix per call; the map analyses need one per pixel
(tens of thousands per checkpoint), so the ranks come from scipy.stats.rankdata along
one axis and the correlations from a single einsum. A constant variable has no rank
correlation: its entries are NaN here and the callers decide (the correlation analyses: 0 and flagged).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _standardised_ranks(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    ranks = stats.rankdata(values, axis=axis)
    centred = ranks - ranks.mean(axis=axis, keepdims=True)
    norm = np.sqrt((centred ** 2).sum(axis=axis, keepdims=True))
    constant = norm <= 1e-12 * values.shape[axis]
    return np.where(constant, 0.0, centred / np.where(constant, 1.0, norm)), np.squeeze(constant, axis=axis)


def spearman_matrices(values: np.ndarray) -> np.ndarray:
    """(P, V, V) Spearman matrices between V variables over N observations, for each of P columns.

    `values` is (V, N, P); entries involving a variable constant over the N observations are NaN.
    """
    z, constant = _standardised_ranks(values, axis=1)  # (V, N, P), (V, P)
    rho = np.einsum("vnp,wnp->pvw", z, z)
    bad = constant.T[:, :, None] | constant.T[:, None, :]
    return np.where(bad, np.nan, np.clip(rho, -1.0, 1.0))


def spearman_with(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(V, P) Spearman correlations between each variable (V, N, P) and a reference (N, P), per column."""
    z, constant = _standardised_ranks(values, axis=1)
    zr, constant_r = _standardised_ranks(reference, axis=0)
    rho = np.einsum("vnp,np->vp", z, zr)
    return np.where(constant | constant_r[None], np.nan, np.clip(rho, -1.0, 1.0))


def spearman_vectors(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two vectors ignoring positions where either is NaN (NaN if < 3 left
    or one is constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)
