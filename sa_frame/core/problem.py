"""A Problem: the ordered SA variables (unit-cube columns) and how they are grouped.

Groups are the "players" of the analysis: Sobol indices and Shapley effects are reported per group. By default
every top-level entry is one group (an augmentation's parameters form one group), and a MultivariateNormal block
contributes one group per coordinate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sa_frame.core.errors import UsageError, unknown_name
from sa_frame.core.variables import DTYPE, Block, Variable


@dataclass(frozen=True)
class _Placed:
    key: str
    block: Block
    start: int
    stop: int


class Problem:
    """Named SA variables in a fixed column order, with optional groups.

    >>> Problem({"x1": Uniform(-3.14, 3.14), "x2": Uniform(-3.14, 3.14)},
    ...         groups={"g1": ["x1"], "g2": ["x2"]})
    """

    def __init__(self, variables: Mapping[str, Block], groups: Mapping[str, Sequence[str]] | None = None) -> None:
        if not variables:
            raise UsageError("a Problem needs at least one variable")
        self._blocks: list[_Placed] = []
        names: list[str] = []
        default_groups: dict[str, list[str]] = {}
        for key, block in variables.items():
            if not isinstance(block, Block):
                raise UsageError(f"variable {key!r} must be an SA variable (Uniform, Switch, ...), got {block!r}")
            cols = block.columns(key)
            self._blocks.append(_Placed(key, block, len(names), len(names) + len(cols)))
            names.extend(cols)
            default_groups.update(block.default_groups(key))
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UsageError(f"duplicate variable names: {dup}")
        self.names: list[str] = names
        self.groups: dict[str, list[str]] = self._check_groups(dict(groups) if groups else default_groups)
        self.group_names: list[str] = list(self.groups)
        position = {name: i for i, name in enumerate(names)}
        self.group_of_column = np.empty(len(names), dtype=np.int64)
        for g, members in enumerate(self.groups.values()):
            self.group_of_column[[position[m] for m in members]] = g

    def _check_groups(self, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for group, members in groups.items():
            if not members:
                raise UsageError(f"group {group!r} is empty")
            for m in members:
                if m not in self.names:
                    raise unknown_name(f"variable in group {group!r}:", m, self.names)
                if m in seen:
                    raise UsageError(f"variable {m!r} is in two groups: {seen[m]!r} and {group!r}")
                seen[m] = group
        missing = [n for n in self.names if n not in seen]
        if missing:
            raise UsageError(f"variables not in any group: {missing}")
        first = {n: i for i, n in enumerate(self.names)}  # groups ordered by their first column, as SALib
        return {g: list(m) for g, m in sorted(groups.items(), key=lambda item: min(first[m] for m in item[1]))}

    # -- sizes -----------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        return len(self.names)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def group_columns(self, group: int) -> np.ndarray:
        """Column indices of group number `group`."""
        return np.flatnonzero(self.group_of_column == group)

    # -- structure ---------------------------------------------------------------------
    def blocks(self) -> list[tuple[str, Block, slice]]:
        """(key, block, column slice) for every block, in column order."""
        return [(p.key, p.block, slice(p.start, p.stop)) for p in self._blocks]

    def variable(self, name: str) -> Variable:
        """The scalar variable behind column `name` (blocks' inner columns are not scalars)."""
        for p in self._blocks:
            if p.key == name and isinstance(p.block, Variable):
                return p.block
        raise unknown_name("scalar variable", name, [p.key for p in self._blocks if isinstance(p.block, Variable)])

    @property
    def groups_independent(self) -> bool:
        """True when no dependent block spans two groups (required by Sobol designs)."""
        return not any(not p.block.independent_columns and len(set(self.group_of_column[p.start:p.stop])) > 1
                       for p in self._blocks)

    # -- the unit-cube map ---------------------------------------------------------------
    def values(self, unit: Tensor, known: Tensor | None = None) -> Tensor:
        """Map unit-cube rows (rows, n_vars) to variable values (rows, n_vars), float64.

        `known` (rows, n_vars) bool marks the columns whose unit values are draws of
        their marginal law; the other columns are drawn conditionally on them. Only
        dependent blocks care; None means a joint draw of every block.
        """
        unit = torch.as_tensor(unit, dtype=DTYPE)
        if unit.ndim != 2 or unit.shape[1] != self.n_vars:
            raise UsageError(f"unit rows must have shape (rows, {self.n_vars}), got {tuple(unit.shape)}")
        out = torch.empty_like(unit)
        for p in self._blocks:
            k = None if known is None or p.block.independent_columns else known[:, p.start:p.stop]
            out[:, p.start:p.stop] = p.block.values(unit[:, p.start:p.stop], k)
        return out

    def describe(self) -> list[tuple[str, str, str]]:
        """(column, group, distribution) rows for tables."""
        rows = []
        for p in self._blocks:
            for i, name in enumerate(p.block.columns(p.key)):
                group = self.group_names[self.group_of_column[p.start + i]]
                rows.append((name, group, repr(p.block) if p.stop - p.start == 1 else f"{p.block!r}[{i}]"))
        return rows

    def __repr__(self) -> str:
        return f"Problem({self.n_vars} variables, {self.n_groups} groups: {', '.join(self.group_names)})"
