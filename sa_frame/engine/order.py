"""The order of a chain's augmentations as one SA variable: a Lehmer code over n! orders."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.variables import Variable, _as_unit

# Largest n for which every index in [0, n!) is exact in float64 (18! < 2**53).
MAX_PERMUTATION_SIZE = 18


class Permutation(Variable):
    """An order of n items: the index floor(u n!) decoded with the Lehmer code.

    Index 0 is the identity order. Values are the float64 indices; use
    `decode` to get the orders.
    """

    kind = "permutation"

    def __init__(self, n: int) -> None:
        if int(n) != n or not 1 <= n <= MAX_PERMUTATION_SIZE:
            raise UsageError(f"Permutation supports 1..{MAX_PERMUTATION_SIZE} items, got {n}")
        self.n = int(n)
        self.count = math.factorial(self.n)

    def from_unit(self, u: Tensor) -> Tensor:
        return torch.floor(_as_unit(u) * self.count).clamp_(0, self.count - 1)

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, float(self.count - 1)

    def decode(self, index: Tensor) -> Tensor:
        """Orders (rows, n) int64 from indices in [0, n!); a loop over positions only."""
        k = torch.as_tensor(index).to(torch.int64).clone()
        rows = k.shape[0]
        remaining = torch.ones(rows, self.n, dtype=torch.bool, device=k.device)
        order = torch.empty(rows, self.n, dtype=torch.int64, device=k.device)
        arange = torch.arange(rows, device=k.device)
        for m in range(self.n):
            f = math.factorial(self.n - 1 - m)
            digit = torch.div(k, f, rounding_mode="floor")
            k = k - digit * f
            # the digit-th (0-based) still-unused item
            rank = remaining.cumsum(1)
            choice = ((rank == (digit + 1).unsqueeze(1)) & remaining).to(torch.int8).argmax(1)
            order[:, m] = choice
            remaining[arange, choice] = False
        return order

    def encode(self, order: Tensor) -> Tensor:
        """Inverse of `decode`: Lehmer-code indices (rows,) int64 of orders (rows, n)."""
        order = torch.as_tensor(order).to(torch.int64)
        rows = order.shape[0]
        remaining = torch.ones(rows, self.n, dtype=torch.bool, device=order.device)
        arange = torch.arange(rows, device=order.device)
        index = torch.zeros(rows, dtype=torch.int64, device=order.device)
        for m in range(self.n):
            item = order[:, m]
            digit = (remaining & (torch.arange(self.n, device=order.device) < item.unsqueeze(1))).sum(1)
            index = index + digit * math.factorial(self.n - 1 - m)
            remaining[arange, item] = False
        return index

    def __repr__(self) -> str:
        return f"Permutation({self.n})"
