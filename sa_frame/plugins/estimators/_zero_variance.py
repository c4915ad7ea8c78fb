"""The one rule for "this activation does not vary" shared by every estimator."""

from __future__ import annotations

from torch import Tensor

# An activation is flat when its standard deviation is below this fraction of its
# magnitude (float64 round-off of sums over millions of rows stays far below it),
# or when its variance is exactly zero (dead ReLU units).
RELATIVE_STD_FLOOR = 1e-12


def zero_variance(var: Tensor, mean: Tensor) -> Tensor:
    """Boolean mask of activations whose variance is zero up to round-off."""
    floor = (RELATIVE_STD_FLOOR * mean.abs()) ** 2
    return (var <= floor) | (var <= 0)
