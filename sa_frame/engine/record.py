"""What a run records in its results file besides the maps: versions, variables, the
root attributes (config, identity, design, progress) and the non-finite counts."""

from __future__ import annotations

import contextlib
import importlib.metadata
from typing import Any

import numpy as np

from sa_frame.core.options import options_dict
from sa_frame.core.registry import registry
from sa_frame.engine.plan import RunPlan
from sa_frame.results.store import SCHEMA_VERSION


def versions() -> dict[str, str]:
    """Package versions of sa-frame, its main libraries and every plugin provider."""
    out = {}
    for dist in ("sa-frame", "torch", "torchvision", "timm", "numpy", "scipy", "h5py"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    for kind in ("model", "data_source", "augmentation", "estimator", "segmenter", "perturbation"):
        for reg in registry().entries(kind).values():
            out.setdefault(reg.provider, reg.version)
    return out


def variables_section(run: RunPlan) -> dict[str, Any]:
    problem = run.problem
    rows = problem.describe()
    return {"names": np.array(problem.names), "groups": np.array(problem.group_names),
            "group_of_column": problem.group_of_column, "distributions": np.array([r[2] for r in rows]),
            "classes": np.array(run.source.classes), "partitions": np.array(run.source.partitions)}


def base_attrs(run: RunPlan, status: str, blocks_done: int,
               inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """The root attributes; `inputs` the content fingerprints a resume compares."""
    return {"inputs": inputs or {}, "schema_version": SCHEMA_VERSION, "status": status, "config": run.config.to_yaml(),
            "identity": run.config.identity(), "versions": versions(),
            "seed": run.config.seed, "estimator": run.config.estimator, "model": run.spec.name,
            "design": run.design.config(), "n_rows": run.design.n_rows, "n_blocks": run.design.n_blocks,
            "blocks_done": blocks_done, "checkpoints": run.map_checkpoints, "modules": run.checkpoints,
            # what the leading axis of the index maps means: groups, or (contrast) treatments
            "map_rows": run.estimator.map_rows(run.problem, run.design),
            "estimator_options": run.estimator.options_record(run.options),
            # how the *_conf maps are made (method, level, degrees of freedom, warning)
            "intervals": run.estimator.intervals(run.design),
            "rows_per_batch": run.rows_per_batch, "mode": run.mode} | region_attrs(run)


def region_attrs(run: RunPlan) -> dict[str, Any]:
    """A region run's segmenter, perturbation (with options), score and target; a relevance run's
    relevance, its options and partition ({} otherwise)."""
    if run.relevance is not None:
        relevance, options = run.relevance
        return {"relevance": relevance.name, "relevance_options": options_dict(options),
                "partition": run.source.partitions[run.partition]}
    s = run.regions
    if s is None:
        return {}
    return {"segmenter": s.segmenter.name, "segmenter_options": options_dict(s.segmenter_options),
            "perturbation": s.perturbation.name, "perturbation_options": options_dict(s.perturbation_options),
            "score": s.score, "target": s.target, "design_sharing": s.design_sharing, "n_regions_max": s.n_regions,
            "n_images": s.n_images}


def nonfinite_summary(maps: dict[str, dict[str, np.ndarray]]) -> dict[str, list[int]]:
    """{checkpoint: [activations with non-finite outputs, non-finite values]} where there were any."""
    out = {}
    for name, stats in maps.items():
        counts = stats.get("nonfinite")
        if counts is not None and np.any(counts > 0):
            out[name] = [int(np.count_nonzero(counts)), int(np.sum(counts))]
    return out
