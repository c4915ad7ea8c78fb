"""Dependency graphs from relevance maps (SSA steps III-IV and the downward recursion), on
plain arrays so that they serve the ssa analyses and `sa_frame.relevance_maps` of any model
alike (public as `sa_frame.dependency_graph` and `sa_frame.Graph`).

Starting from the upper neurons of the top pair (a class's logit, or every output), each
pair top-down selects the lower neurons that matter to the selected upper ones:

- global: the mean relevance over the selected upper neurons, keeping the top
  ceil(K_lower x keep) lower neurons (keep = 0.5 is the paper's 50th percentile);
- local: each selected upper neuron nominates its top-b' lower neurons; the `branching`
  most often nominated are kept (ties broken by the summed relevance).

Edges (weighted by relevance) join the selected upper neurons to the kept lower ones: all
of them in global mode, the nominations in local mode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sa_frame.core.errors import UsageError

MODES = ("global", "local")


@dataclass
class Graph:
    """Kept neurons per checkpoint and kept edges per pair (upper, lower) of one graph."""

    nodes: dict[str, np.ndarray]  # checkpoint -> sorted neuron indices
    edges: dict[str, np.ndarray]  # "upper|lower" -> (E, 2) (upper neuron, lower neuron)
    weights: dict[str, np.ndarray]  # "upper|lower" -> (E,) relevance of each edge

    def mask(self, checkpoint: str, size: int) -> np.ndarray:
        """(size,) float 0/1: which neurons of `checkpoint` the graph keeps."""
        out = np.zeros(size)
        out[self.nodes[checkpoint]] = 1.0
        return out


def split_pair(pair: str) -> tuple[str, str]:
    upper, sep, lower = pair.partition("|")
    if not sep:
        raise UsageError(f"{pair!r} is not a checkpoint pair 'upper|lower'")
    return upper, lower


def select(omega: np.ndarray, chosen: np.ndarray, mode: str, keep: float, branching: int,
           b_prime: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept lower neurons, (len(chosen), K_low) bool edges) for the upper neurons `chosen`,
    from omega (K_up, K_low): global edges join every chosen upper neuron to every kept lower
    one; local edges are the nominations of kept neurons."""
    rows = omega[chosen]
    k_low = omega.shape[1]
    if mode == "global":
        count = max(1, math.ceil(k_low * keep))
        kept = np.sort(np.argsort(-rows.mean(0), kind="stable")[:count])
        linked = np.zeros(rows.shape, dtype=bool)
        linked[:, kept] = True
        return kept, linked
    top = np.argsort(-rows, axis=1, kind="stable")[:, :max(1, b_prime)]  # each upper neuron's nominees
    nominated = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(nominated, top, True, axis=1)
    nominated &= rows > 0  # a lower neuron without relevance is no nomination (ties at zero)
    frequency = nominated.sum(0)
    order = np.lexsort((-rows.sum(0), -frequency))  # most nominated first, then the larger summed relevance
    kept = np.sort(order[frequency[order] > 0][:max(1, branching)])
    if not kept.size:  # nothing has any relevance: keep the first, so the walk goes on
        kept = np.array([int(order[0])])
    linked = nominated.copy()
    linked[:, np.setdiff1d(np.arange(k_low), kept)] = False
    return kept, linked


def dependency_graph(maps: Mapping[str, np.ndarray], pairs: Sequence[str], top: Sequence[int] | None = None,
                     mode: str = "global", keep: float = 0.5, branching: int = 3, b_prime: int = 3) -> Graph:
    """The graph of relevance `maps` ({pair: (K_up, K_low)}, pairs given top-down, each pair's
    lower checkpoint the next pair's upper) from the `top` neurons of the first pair's upper
    checkpoint (None: all of them)."""
    if mode not in MODES:
        raise UsageError(f"graph mode must be global or local, got {mode!r}")
    if not 0 < keep <= 1:
        raise UsageError(f"keep must lie in (0, 1], got {keep}")
    first_upper = split_pair(pairs[0])[0]
    k_top = maps[pairs[0]].shape[0]
    chosen = np.arange(k_top) if top is None else np.asarray(sorted(set(int(t) for t in top)))
    nodes = {first_upper: chosen}
    edges, weights = {}, {}
    for i, pair in enumerate(pairs):
        upper, lower = split_pair(pair)
        if i and upper != split_pair(pairs[i - 1])[1]:
            raise UsageError(f"pairs are not consecutive: {pairs[i - 1]!r} then {pair!r}")
        omega = np.asarray(maps[pair], dtype=float)
        kept, linked = select(omega, chosen, mode, keep, branching, b_prime)
        i_up, i_low = np.nonzero(linked)
        edges[pair] = np.stack([chosen[i_up], i_low], 1)
        weights[pair] = omega[chosen[i_up], i_low]
        nodes[lower] = kept
        chosen = kept
    return Graph(nodes, edges, weights)
