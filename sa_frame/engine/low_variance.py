"""Indices left undefined where their denominator is noise: the one rule, applied to a network
run's finished maps before they are written (docs/estimators.md, "Undefined indices").

A Sobol index divides by the variance of the A and B rows; a Shapley share by the estimated total
variance. For a ReLU unit that fires for a handful of rows that denominator can be a rounding
error's size next to the checkpoint's other units, or be small next to the numerators (Sobol: the A
and B rows happened to be silent while the AB rows were not; Shapley: large effects of both signs
that cancel): the ratios then reach 1e7 (Sobol) or 1e16 (Shapley shares) and mean nothing. Such
activations get NaN in every ratio map and 1 in the `low_variance` map; activations that do not
vary at all keep their `zero_variance` flag and indices of 0. Analyses read NaN as 0, so both
kinds count as "no effect".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

#: an index denominator below this fraction of the checkpoint's median denominator is noise
CHECKPOINT_FLOOR = 1e-3
#: ... and so is one below this fraction of the scale of its numerators (`index_scale`: the sum of
#: |Shapley effects|; for Sobol the activation's variance over all of the run's rows)
SCALE_FLOOR = 0.05
#: suffixes of a ratio map's error maps, undefined with it
ERROR_SUFFIXES = ("_conf", "_se")


def low_variance(denominator: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Activations (not already flagged constant) whose index denominator is below CHECKPOINT_FLOOR x
    the checkpoint's median denominator or below SCALE_FLOOR x the scale of their numerators."""
    denominator, scale, zero = np.asarray(denominator, float), np.asarray(scale, float), np.asarray(zero).astype(bool)
    varying = denominator[(denominator > 0) & ~zero]
    if not varying.size:
        return np.zeros(denominator.shape, bool)
    floor = CHECKPOINT_FLOOR * float(np.median(varying))
    return ~zero & ((denominator < floor) | (denominator < SCALE_FLOOR * scale))


def ratio_maps(fractions: Iterable[str], read_maps: Mapping[str, tuple[str, str]]) -> set[str]:
    """The maps a rule marks: the estimator's shares of variance, the maps analyses read as ratios,
    and their error maps."""
    names = set(fractions) | {source for source, how in read_maps.values() if how in ("shares", "clip")}
    return names | {name + suffix for name in names for suffix in ERROR_SUFFIXES}


def mark_low_variance(maps: dict[str, np.ndarray], names: set[str]) -> int:
    """Set NaN in `maps[names]` where the activation's denominator is noise and add the
    `low_variance` flag (uint8, activation shape); returns how many activations were marked.
    Maps without a `zero_variance` flag (no index denominators) are left as they are."""
    if "zero_variance" not in maps or "var" not in maps:
        return 0
    zero = np.asarray(maps["zero_variance"]).astype(bool)
    low = low_variance(maps.get("index_var", maps["var"]), maps.get("index_scale", maps["var"]), zero)
    for name in names & set(maps):
        values = np.asarray(maps[name])
        if values.dtype.kind == "f" and values.shape[values.ndim - low.ndim:] == low.shape:
            maps[name] = np.where(low, np.nan, values)
    maps["low_variance"] = low.astype(np.uint8)
    return int(low.sum())
