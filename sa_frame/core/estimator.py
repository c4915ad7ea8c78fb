"""The types an estimator plugin implements: designs, blocks and streaming accumulators.

`design(problem, size, seed, options)` gives blocks of unit-cube rows, each a function of (seed, block index)
only; the engine evaluates them and hands the outputs to `accumulator.update`, whose float64 state does not grow
with the samples and merges. All the engine knows of an estimator (options, sizes, schemes, map rows, shares of
variance, splitting) is declared here, so a third-party estimator is treated like a built-in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.options import NoOptions, make_options, options_dict
from sa_frame.core.problem import Problem

ACC_DTYPE = torch.float64


@dataclass
class DesignBlock:
    """Rows of a design that an accumulator processes as one unit."""

    index: int
    unit: Tensor  # (rows, n_vars) float64 in [0, 1)
    known: Tensor | None = None  # (rows, n_vars) bool: columns drawn from their marginal law
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.unit.shape[0])


class Design(ABC):
    """A block-wise sampling design; block k depends only on (seed, k)."""

    name: str = "design"
    #: rows that must reach the accumulator together (a Saltelli base point, an inner group)
    unit_rows: int = 1

    @property
    @abstractmethod
    def n_blocks(self) -> int: ...

    @property
    @abstractmethod
    def n_rows(self) -> int: ...

    @abstractmethod
    def block(self, k: int) -> DesignBlock:
        """Block number k (0 <= k < n_blocks)."""

    def __iter__(self) -> Iterator[DesignBlock]:
        for k in range(self.n_blocks):
            yield self.block(k)

    def config(self) -> dict[str, Any]:
        """Everything that determines the rows (saved with results; checked on resume)."""
        return {"design": self.name}


class Accumulator(ABC):
    """Streaming statistics over the outputs of every checkpoint, all activations at once.

    Subclasses keep, per checkpoint, a dict of float64 tensors shaped (stat, M) with M the checkpoint's flattened
    activation count; they implement `update_checkpoint`, `finalize_checkpoint` (and `merge_checkpoint` where
    adding the tensors is not a merge)."""

    #: whether every float64 state tensor is finite (a resume refuses a state that is not)
    finite_state: bool = True

    def __init__(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                 device: str | torch.device = "cpu") -> None:
        self.problem = problem
        self.design = design
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.device = torch.device(device)
        self.stats: dict[str, dict[str, Tensor]] = {name: {} for name in self.shapes}
        self.blocks_done = 0

    # -- to implement ----------------------------------------------------------------
    @abstractmethod
    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        """Add the outputs `y` (rows, M) of `block.unit[rows]` of one checkpoint, on the
        accumulator's device in the model's dtype: accumulate in float64, converting
        piecewise (no float64 copy of a whole batch)."""

    @abstractmethod
    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        """Index maps of one checkpoint, each shaped (n, M) or (M,), as numpy arrays."""

    def merge_checkpoint(self, name: str, other: Accumulator) -> None:
        """Fold `other`'s statistics of one checkpoint into ours (default: add)."""
        mine, theirs = self.stats[name], other.stats[name]
        for key, value in theirs.items():
            mine[key] = mine[key] + value if key in mine else value.clone()

    # -- the contract ----------------------------------------------------------------
    def update(self, block: DesignBlock, outputs: Mapping[str, Tensor], rows: slice | None = None) -> None:
        """Fold in the outputs of rows `rows` (default: all) of `block`.

        Row ranges of one block arrive in order and are aligned to `design.unit_rows`
        (only the range that ends the block may be shorter).
        """
        rows = rows or slice(0, block.n_rows)
        n = rows.stop - rows.start
        if rows.start % self.design.unit_rows or (n % self.design.unit_rows and rows.stop != block.n_rows):
            raise ValueError(f"row range {rows.start}:{rows.stop} is not aligned to {self.design.unit_rows} rows")
        for name, shape in self.shapes.items():
            y = outputs[name]
            if tuple(y.shape[1:]) != shape or y.shape[0] != n:
                raise UsageError(f"checkpoint {name!r}: expected outputs shaped ({n}, {shape}), got {tuple(y.shape)}")
            self.update_checkpoint(name, block, rows, y.reshape(n, -1).to(device=self.device))
        if rows.stop == block.n_rows:
            self.blocks_done += 1

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's statistics (other blocks of the same design)."""
        if other.shapes != self.shapes:
            raise ValueError("cannot merge accumulators of different checkpoints")
        for name in self.shapes:
            self.merge_checkpoint(name, other)
        self.blocks_done += other.blocks_done

    def state(self) -> dict[str, Tensor]:
        """Flat `{"<checkpoint>/<stat>": tensor}` plus counters, for saving."""
        out = {f"{name}/{key}": t for name, stats in self.stats.items() for key, t in stats.items()}
        out["_blocks_done"] = torch.tensor(self.blocks_done)
        return out

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        self.stats = {name: {} for name in self.shapes}
        for key, t in state.items():
            if key == "_blocks_done":
                self.blocks_done = int(t)
                continue
            name, stat = key.rsplit("/", 1)
            self.stats[name][stat] = torch.as_tensor(t).to(self.device)

    def finalize(self) -> dict[str, dict[str, np.ndarray]]:
        """`{checkpoint: {index name: array shaped (n, *activation_shape) or shape}}`."""
        out = {}
        for name, shape in self.shapes.items():
            if not self.stats[name]:
                raise UsageError(f"checkpoint {name!r}: no outputs were accumulated")
            maps = self.finalize_checkpoint(name)
            out[name] = {key: np.asarray(v).reshape(v.shape[:-1] + shape) for key, v in maps.items()}
        return out


#: sample-size profiles: the paper's sizes, the research code's test sizes (`--quick`) and
#: the embedded demo's; each maps "n" (and any size option) to its default
SIZE_PROFILES = ("paper", "quick", "demo")


class Estimator(ABC):
    """A sensitivity estimator: its design plus its streaming accumulator.

    A subclass sets `name`, `Options` (a dataclass of `option(default, help)` fields, set by
    ``-o key=value`` or YAML ``options:``), `sizes`; it implements `make_design`, `accumulator`.
    """

    name: str = "estimator"
    description: str = ""
    #: the names of the index maps `finalize` returns, for docs and tables
    outputs: tuple[str, ...] = ()
    #: the maps shown in summaries (tables, figures), one value per map row
    summary: tuple[str, ...] = ()
    #: maps that are shares of variance (summaries clip them to [0, 1])
    fractions: frozenset[str] = frozenset()
    #: value types analyses read -> (stored map, how: "shares" | "clip" | "abs"); the first
    #: is the analyses' default
    analysis_maps: Mapping[str, tuple[str, str]] = {}
    #: maps without the leading axis of map rows (one value per activation, e.g. a mean)
    ungrouped: frozenset[str] = frozenset({"mean", "var", "zero_variance", "low_variance", "nonfinite"})
    #: a dataclass whose fields (made with `sa_frame.option`) are the estimator's options
    Options: type = NoOptions
    #: profile ("paper", "quick", "demo") -> {"n": design size, option: default, ...}
    sizes: Mapping[str, Mapping[str, Any]] = {"paper": {"n": 1024}, "quick": {"n": 64}, "demo": {"n": 256}}
    #: augmentation schemes it accepts, the default first: 1 (always applied; switch if
    #: parameter-free), 2 (every augmentation switched)
    schemes: tuple[int, ...] = (1, 2)
    #: whether each image gets its own order of augmentations (a permutation variable)
    permute: bool = True
    #: region runs (``--regions``): "allowed", "required" (sbsa) or "unsupported"
    regions: str = "allowed"
    #: whether its outputs are relevances between checkpoints (``--relevance``; ssa) rather than activations
    needs_grad: bool = False

    def options(self, values: Mapping[str, Any] | None = None) -> Any:
        """This estimator's Options from a mapping (unknown keys named with the closest)."""
        return make_options(self.Options, values or {}, f"estimator {self.name!r}")

    def design(self, problem: Problem, size: int, seed: int, options: Any = None, **values: Any) -> Design:
        """The block-wise design of `size` (base points, rows, ...) for `seed`; `options`: Options or keywords."""
        if options is None or isinstance(options, Mapping):
            options = self.options({**(options or {}), **values})
        elif values:
            raise TypeError("give either an Options instance or keyword options, not both")
        return self.make_design(problem, int(size), int(seed), options)

    @abstractmethod
    def make_design(self, problem: Problem, size: int, seed: int, options: Any) -> Design:
        """The design for checked options (called by `design`)."""

    @abstractmethod
    def accumulator(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> Accumulator:
        """A fresh accumulator for checkpoints of per-image output `shapes` on `device`."""

    def map_rows(self, problem: Problem, design: Design) -> list[str]:
        """Labels of the leading axis of the index maps (default: the problem's groups)."""
        return list(problem.group_names)

    def split_error(self, design: Design) -> str | None:
        """Why `design` cannot be split across processes (None: it can)."""
        return None

    def memory_note(self, design: Design, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
        """What a run whose state grows with its size will need, said before it starts; None: fixed."""
        return None

    def intervals(self, design: Design) -> dict[str, Any]:
        """How the `*_conf` maps are made (method, level, dof, warning) for results and `show`; {}: none."""
        return {}

    def options_record(self, options: Any) -> dict[str, Any]:
        """The options as plain values, for the results file."""
        return options_dict(options)
