"""Sensitivity maps as the analyses use them.

Every analysis reads maps through here, so they all see the same values. Which stored
maps analyses read, and how, is declared by the estimator (`Estimator.analysis_maps`):
"shares" (Shapley effects as non-negative shares summing to 1 per activation: negative
estimates clipped, then normalised by their sum), "clip" (S1 and ST clipped to [0, 1]),
"abs" (the contrast experiment's rank-biserial correlation as its absolute value). The
coefficient of variation comes from the run's mean and variance.
"""

from __future__ import annotations

import numpy as np

from sa_frame.core.errors import UsageError, unknown_name
from sa_frame.core.registry import lookup
from sa_frame.results.store import COMPLETE, ResultsFile

TRANSFORMS = ("shares", "clip", "abs")
SHAPLEY_ZERO = 1e-8  # |share numerator| at or below this is 0
SHAPLEY_EPS = 1e-20
COV_OFFSET = 1e-5  # CoV = sqrt(var) / (|mean| + 1e-5)


def complete_results(path: str) -> ResultsFile:
    """An existing, complete results file (UsageError otherwise)."""
    results = ResultsFile(path)
    attrs = results.attrs()
    command = "influence" if attrs.get("mode") == "influence" else "run"
    if attrs["status"] != COMPLETE:
        raise UsageError(f"{path} is not complete ({attrs['blocks_done']} of {attrs['n_blocks']} blocks); finish it "
                         f"with `sa-frame {command} --resume --out {path}` before analysing it")
    if command == "influence":  # no variables or checkpoint maps: the scores live under /influence
        if not results.keys("influence"):
            raise UsageError(f"{path} is not a valid sa-frame results file: it lacks /influence")
        return results
    results.variables()  # both raise naming what is missing from a damaged file
    missing = [str(c) for c in attrs["checkpoints"] if str(c) not in results.keys("checkpoints")]
    if missing:
        raise UsageError(f"{path} is not a valid sa-frame results file: /checkpoints lacks {', '.join(missing[:3])}")
    return results


#: an ST below this is no evidence of importance: PIR = S1 / ST is left undefined there
TINY_ST = 1e-6


def primary_index_ratio(s1: np.ndarray, st: np.ndarray, undefined: np.ndarray | None = None) -> np.ndarray:
    """PIR = S1 / ST of a region run's maps (regions x images), NaN where ST <= TINY_ST or
    `undefined` (empty regions, constant scores): the one definition summaries and analyses use."""
    s1, st = np.asarray(s1, float), np.asarray(st, float)
    missing = st <= TINY_ST if undefined is None else (st <= TINY_ST) | undefined
    return np.where(missing, np.nan, s1 / np.where(missing, 1.0, st))


def require_augmentation_run(results: ResultsFile, analysis: str) -> None:
    """UsageError when `results` is a region run (--regions): analyses of augmentation variables
    (masking, accuracy, segments, ...) have nothing to read there."""
    mode = results.attrs().get("mode", "augmentations")
    if mode != "augmentations":
        kind, theirs = RUN_KINDS.get(mode, (f"a {mode} run", "listed by sa-frame plugins --kind analysis"))
        raise UsageError(f"analysis {analysis!r} reads augmentation runs; {results.path} is {kind}: its analyses are "
                         f"{theirs}")


#: mode -> (what the run is, the analyses that read it), for the message above
RUN_KINDS = {"regions": ("a region run (--regions)", "pir, region-masking, sensitivity-n, region-groups"),
             "relevance": ("a step-wise run (--estimator ssa)", "ssa-graph, ssa-eval, ssa-cluster, ssa-ablation"),
             "influence": ("an influence run (sa-frame influence)",
                           "influence-summary, influence-layers, influence-cluster, influence-top")}


def analysis_maps(results: ResultsFile) -> dict[str, tuple[str, str]]:
    """{value type: (stored map, transform)} that the file's estimator declares."""
    return dict(lookup("estimator", results.attrs()["estimator"]).analysis_maps)


def value_types(results: ResultsFile) -> list[str]:
    """The value types this file provides (e.g. ['S1', 'ST'] for sobol), in the estimator's order."""
    checkpoints = [str(c) for c in results.attrs()["checkpoints"]]
    stored = set(results.keys(f"checkpoints/{checkpoints[0]}")) if checkpoints else set()
    return [value for value, (source, _) in analysis_maps(results).items() if source in stored]


def default_value(results: ResultsFile) -> str:
    """The value type analyses use when none is asked for: the estimator's first."""
    available = value_types(results)
    if not available:
        raise UsageError(f"{results.path} holds no sensitivity maps (estimator "
                         f"{results.attrs()['estimator']!r}); analyses need a sobol, shapley or contrast run")
    return available[0]


def source_map(results: ResultsFile, value: str) -> str:
    """The stored map a value type is read from (e.g. 'shapley_raw' for 'shapley')."""
    return analysis_maps(results)[value][0]


def check_value(results: ResultsFile, value: str | None) -> str:
    """`value`, or the default one; UsageError naming what the file has."""
    if value is None or value == "auto":
        return default_value(results)
    available = value_types(results)
    if value not in available:
        raise unknown_name(f"value type in {results.path}", value, available)
    return value


def checkpoints(results: ResultsFile) -> list[str]:
    return [str(c) for c in results.attrs()["checkpoints"]]


def check_checkpoints(results: ResultsFile, names: list[str] | None, conv_only: bool = False) -> list[str]:
    """Checkpoints to analyse: all (or the convolutional ones: (C, H, W) maps with H*W > 1), or `names`
    checked against the file."""
    available = [c for c in checkpoints(results) if not conv_only or is_spatial(activation_shape(results, c))]
    if not names:
        if not available:
            raise UsageError(f"{results.path} has no {'convolutional ' if conv_only else ''}checkpoints")
        return available
    for name in names:
        if name not in available:
            raise unknown_name("convolutional checkpoint" if conv_only else "checkpoint", name, available)
    return list(names)


def is_spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[1] * shape[2] > 1


def activation_shape(results: ResultsFile, checkpoint: str) -> tuple[int, ...]:
    return tuple(results.dataset(f"checkpoints/{checkpoint}/mean").shape)


def map_rows(results: ResultsFile) -> list[str]:
    """Labels of the maps' leading axis: the groups (augmentations and auxiliary variables)."""
    attrs = results.attrs()
    return [str(r) for r in attrs["map_rows"]] if "map_rows" in attrs else \
        [str(g) for g in results.variables()["groups"]]


def shapley_shares(raw: np.ndarray) -> np.ndarray:
    """Group Shapley effects -> shares per activation: clip < 0 to 0, divide by the sum."""
    clipped = np.clip(raw, 0.0, None)
    total = clipped.sum(axis=0, keepdims=True)
    return np.where(np.abs(clipped) <= SHAPLEY_ZERO, 0.0, clipped / (SHAPLEY_EPS + total))


def sensitivity(results: ResultsFile, value: str, checkpoint: str) -> np.ndarray:
    """(n_rows, *activation_shape) float64 map of one value type, processed for analysis."""
    source, transform = analysis_maps(results)[value]
    return processed(transform, results.dataset(f"checkpoints/{checkpoint}/{source}"))


def processed(transform: str, stored: np.ndarray) -> np.ndarray:
    """A stored map as analyses use it: NaN read as 0, then "shares", "clip" or "abs"."""
    raw = np.nan_to_num(np.asarray(stored, dtype=np.float64), nan=0.0)
    if transform == "shares":
        return shapley_shares(raw)
    if transform == "abs":
        return np.abs(raw)
    if transform == "clip":
        return np.clip(raw, 0.0, 1.0)
    raise ValueError(f"unknown map transform {transform!r}; one of {', '.join(TRANSFORMS)}")


def coefficient_of_variation(results: ResultsFile, checkpoint: str) -> np.ndarray:
    """The coefficient of variation of the run's activations (not log-scaled)."""
    mean = np.asarray(results.dataset(f"checkpoints/{checkpoint}/mean"), dtype=np.float64)
    var = np.asarray(results.dataset(f"checkpoints/{checkpoint}/var"), dtype=np.float64)
    return cov_from_moments(mean, var)


def cov_from_moments(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """sqrt(max(var, 0)) / (|mean| + 1e-5): the one CoV formula (the offset keeps units whose
    mean is 0 finite)."""
    return np.sqrt(np.maximum(var, 0.0)) / (np.abs(mean) + COV_OFFSET)


def display_values(value: np.ndarray, fraction: bool) -> np.ndarray:
    """A map as summaries show it: |index|, shares of variance (`fraction`) clipped to [0, 1]
    — near-dead units with a tiny variance estimate otherwise dominate a mean."""
    value = np.abs(np.asarray(value, dtype=float))
    return np.clip(value, 0.0, 1.0) if fraction else value
