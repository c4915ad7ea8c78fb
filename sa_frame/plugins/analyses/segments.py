"""Standalone segments fed single H, S or V channels (paper Figure 5).

Segments (consecutive modules of the run's network, optionally a subset of units) are
defined in a YAML or JSON file. The run's own design, images and augmentations are
replayed; each augmented image is converted to HSV (from [0, 1] RGB — the research code
converted ImageNet-normalised tensors, which puts S and V out of range; sa-frame fixes
this deliberately), and each channel, standardised with the model's mean/std averaged
over RGB, is fed to every segment. The run's estimator gives index maps per (channel,
segment); then, per unit, Spearman matrices between the variables with the PIXELS as
observations, their mean/std over units, the same for the original maps of the same
units, their mean |difference|, and the Spearman correlation of these matrices across
segments (strict upper triangles) and against the original checkpoints (upper triangles
with the diagonal). NaN cells are kept and flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame import (
    Analysis,
    Progress,
    Rebuilt,
    ResultsFile,
    UsageError,
    did_you_mean,
    maps,
    no_progress,
    option,
    print_matrix,
    read_yaml_file,
    rebuild,
    unknown_name,
)
from sa_frame.plugins.analyses._display import heatmap
from sa_frame.plugins.analyses._network_segments import SEGMENT_KINDS, build_segment
from sa_frame.plugins.analyses._spearman import spearman_matrices, spearman_vectors
from sa_frame.plugins.analyses.correlation import NAN_POLICIES, summarised

CHANNELS = ("hue", "saturation", "value")
SEGMENT_KEYS = ("name", "modules", "kind", "units", "original")
# the research code's JSON keys (notebook/*_single_units.json) -> ours
PAPER_KEYS = {"unit_name": "name", "modules_names": "modules", "module_type": "kind", "neurons": "units"}


@dataclass
class SegmentsOptions:
    segments: str = option("", "YAML/JSON file defining the segments (default: one segment per convolutional "
                               "checkpoint, from the previous one, with its most sensitive units)")
    units: int = option(8, "units per default segment: the most sensitive to the augmentations")
    channels: list[str] = option(list(CHANNELS), "hue, saturation and/or value")
    n: int = option(0, "design size (0: the run's)")
    batch_size: int = option(0, "rows per forward (0: the run's)")
    device: str = option("", "cpu, cuda, cuda:N (default: the run's device)")
    value: str = option("auto", "shapley, S1, ST or rank_biserial (default: shapley, else S1)")
    nan_policy: str = option("any", "a cell is flagged when undefined for any / all units")


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    modules: list[str]
    kind: str = "sequential"
    units: list[int] | None = None
    original: str | None = None  # the results file's checkpoint holding the same units


def load_segments(path: str) -> list[SegmentSpec]:
    """Segment definitions from a YAML/JSON list (our keys or the research code's)."""
    if not path:
        raise UsageError("the segments analysis needs -o segments=FILE (a YAML or JSON list of segments: "
                         "name, modules, kind, units, original)")
    file = Path(path)
    items = read_yaml_file(file, "segments file", " (not valid YAML/JSON)")
    if not isinstance(items, list) or not items:
        raise UsageError(f"{file}: expected a non-empty list of segments")
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UsageError(f"{file}: segment {i} must be a mapping with keys {', '.join(SEGMENT_KEYS)}")
        item = {PAPER_KEYS.get(k, k): v for k, v in item.items()}
        for key in item:
            if key not in SEGMENT_KEYS:
                raise UsageError(f"{file}: segment {i}: unknown key {key!r}{did_you_mean(key, SEGMENT_KEYS, 1)}; "
                                 f"keys: {', '.join(SEGMENT_KEYS)}")
        if not item.get("modules") or not isinstance(item["modules"], list):
            raise UsageError(f"{file}: segment {i} needs 'modules', a list of consecutive module names")
        units = item.get("units")
        try:
            if isinstance(units, dict):  # research code: {module: {unit index: [reasons]}}
                units = sorted({int(u) for per_module in units.values() for u in per_module})
            elif units is not None:
                units = [int(u) for u in units]
        except (TypeError, ValueError):
            raise UsageError(f"{file}: segment {i}: 'units' must be a list of unit (channel) indices, got "
                             f"{item.get('units')!r}") from None
        if item.get("kind", "sequential") not in SEGMENT_KINDS:
            raise UsageError(f"{file}: segment {i}: kind must be one of {', '.join(SEGMENT_KINDS)}")
        specs.append(SegmentSpec(str(item.get("name") or f"segment{i}"), [str(m) for m in item["modules"]],
                                 str(item.get("kind", "sequential")),
                                 units, item.get("original")))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"{file}: segment names must be unique, got {names}")
    return specs


def default_segments(net: torch.nn.Module, results: ResultsFile, value: str, n_units: int) -> list[SegmentSpec]:
    """One segment per convolutional checkpoint: the modules after the previous checkpoint of
    the same parent module (or from the parent's first child) up to it, keeping the `n_units`
    units whose maps give the augmentations the largest mean index (the evidence the method
    uses); sliced where the modules allow it, else whole with the units taken from the output."""
    rows = maps.map_rows(results)
    augmentations = [i for i, r in enumerate(rows) if r not in ("class", "partition", "permutation")]
    modules = dict(net.named_modules())
    specs, previous = [], {}
    for checkpoint in maps.checkpoints(results):
        parent, _, _ = checkpoint.rpartition(".")
        siblings = [f"{parent}.{n}" if parent else n for n, _ in modules[parent].named_children()]
        start = siblings.index(previous[parent]) + 1 if parent in previous else 0
        previous[parent] = checkpoint
        chosen = siblings[start:siblings.index(checkpoint) + 1]
        values = maps.sensitivity(results, value, checkpoint)
        has_conv = any(isinstance(m, torch.nn.Conv2d) for n in chosen for m in modules[n].modules())
        if values.ndim != 4 or values.shape[2] * values.shape[3] < 2 or not has_conv:
            continue  # no spatial map to correlate pixel-wise, or no convolution to take channels from
        score = values[augmentations].mean(axis=(0, 2, 3))
        units = sorted(int(u) for u in np.argsort(-score, kind="stable")[:n_units])
        try:
            build_segment(net, chosen, "sequential", units)
            kind = "sequential"
        except UsageError:
            kind = "residual"
        specs.append(SegmentSpec(checkpoint, chosen, kind, units, checkpoint))
    if not specs:
        raise UsageError(f"{results.path}: no convolutional checkpoint to build a default segment from; give "
                         f"-o segments=FILE")
    return specs


def channel_inputs(images: Tensor, channels: list[str], mean: float, std: float) -> dict[str, Tensor]:
    """[0, 1] RGB (B, 3, H, W) -> {channel: (B, 1, H, W)} standardised single HSV channels."""
    from torchvision.transforms.v2.functional._color import _rgb_to_hsv  # the op the hue augmentation uses

    hsv = _rgb_to_hsv(images)
    return {c: ((hsv[:, CHANNELS.index(c)] - mean) / std).unsqueeze(1) for c in channels}


def unit_matrices(values: np.ndarray) -> np.ndarray:
    """(V, U, H, W) maps -> (U, V, V) Spearman matrices between variables, pixels as observations."""
    v, u = values.shape[:2]
    return spearman_matrices(values.reshape(v, u, -1).transpose(0, 2, 1))


def upper(matrix: np.ndarray, diagonal: bool) -> np.ndarray:
    return matrix[np.triu_indices(matrix.shape[0], 0 if diagonal else 1)]


class SegmentsAnalysis(Analysis):
    name = "segments"
    description = "standalone segments fed single H/S/V channels, per-unit correlation patterns"
    Options = SegmentsOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps.require_augmentation_run(results, self.name)
        if options.units < 1:
            raise UsageError(f"segments option units must be at least 1, got {options.units}")
        for c in options.channels:
            if c not in CHANNELS:
                raise unknown_name("channel", c, CHANNELS)
        if options.nan_policy not in NAN_POLICIES:
            raise UsageError(f"nan_policy must be any or all, got {options.nan_policy!r}")
        value = maps.check_value(results, options.value)
        rebuilt = rebuild(results, device=options.device or None, n=options.n or None,
                          batch_size=options.batch_size or None)
        specs = load_segments(options.segments) if options.segments else \
            default_segments(rebuilt.net, results, value, options.units)
        segment_maps = self._estimate(rebuilt, options, specs, progress)
        variables = maps.map_rows(results)
        source, transform = maps.analysis_maps(results)[value]
        per_unit: dict[str, dict[str, np.ndarray]] = {c: {} for c in options.channels}
        out_units: dict[str, Any] = {c: {} for c in options.channels}
        out_maps: dict[str, Any] = {c: {} for c in options.channels}
        for c in options.channels:
            for spec in specs:
                stats_ = segment_maps[f"{c}/{spec.name}"]
                out_maps[c][spec.name] = {k: stats_[k] for k in (source, "mean", "var") if k in stats_}
                values = maps.processed(transform, stats_[source])
                if values.ndim != 4 or values.shape[2] * values.shape[3] < 2:
                    raise UsageError(f"segment {spec.name!r} outputs {values.shape[1:]}: pixel-wise correlations "
                                     f"need a spatial map (end the segment before global pooling)")
                per_unit[c][spec.name] = unit_matrices(values)
                out_units[c][spec.name] = summarised(per_unit[c][spec.name], options.nan_policy)
        original = self._original(results, value, specs, options, per_unit)
        names = [s.name for s in specs]
        layers, versus = {}, {}
        for c in options.channels:
            means = [out_units[c][n]["mean"] for n in names]
            spearman = np.array([[spearman_vectors(upper(a, False), upper(b, False)) for b in means] for a in means])
            absdiff = np.array([[np.abs(upper(a, False) - upper(b, False)) for b in means] for a in means])
            layers[c] = {"spearman": spearman, "absdiff_mean": absdiff.mean(-1), "absdiff_std": absdiff.std(-1),
                         "nan": np.isnan(spearman)}
            if original:
                versus[c] = np.array([[spearman_vectors(upper(a, True), upper(original[o]["mean"], True))
                                       for o in original] for a in means])
        return {"segments": np.array(names), "channels": np.array(options.channels), "variables": np.array(variables),
                "value": value, "maps": out_maps, "units": out_units, "original": original, "layers": layers,
                "versus_original": versus, "originals": np.array(list(original))}

    def _estimate(self, rebuilt: Rebuilt, options: Any, specs: list[SegmentSpec], progress: Progress) \
            -> dict[str, dict[str, np.ndarray]]:
        """Run the results file's estimator on the segments' outputs over the run's own design."""
        run, runner = rebuilt.plan, rebuilt.runner
        segments = {s.name: build_segment(run.net, s.modules, s.kind, s.units).to(run.device) for s in specs}
        mean, std = float(np.mean(run.spec.mean)), float(np.mean(run.spec.std))

        def forward(unit: Tensor, values: Tensor) -> dict[str, Tensor]:
            channels = channel_inputs(runner.inputs(unit, values, normalize=False), options.channels, mean, std)
            return {f"{c}/{name}": segment(x) for c, x in channels.items() for name, segment in segments.items()}

        with torch.no_grad():
            block = run.design.block(0)
            shapes = {k: tuple(v.shape[1:]) for k, v in forward(block.unit[:1], run.problem.values(block.unit[:1]))
                      .items()}
        acc = run.estimator.accumulator(run.problem, run.design, shapes, device=run.device)
        runner.process(acc, range(run.design.n_blocks), lambda _k: None,
                       progress("segments: design rows", run.design.n_rows), forward)
        return acc.finalize()

    @staticmethod
    def _original(results: ResultsFile, value: str, specs: list[SegmentSpec], options: Any,
                  per_unit: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
        """The same units' matrices from the results file's maps, and their difference to the segments'."""
        available = maps.checkpoints(results)
        out: dict[str, Any] = {}
        for spec in specs:
            checkpoint = spec.original or (spec.modules[-1] if spec.modules[-1] in available else None)
            if checkpoint is None:
                continue
            if checkpoint not in available:
                raise unknown_name(f"checkpoint for segment {spec.name!r} ('original')", checkpoint, available)
            values = maps.sensitivity(results, value, checkpoint)
            if values.ndim != 4 or values.shape[2] * values.shape[3] < 2:
                continue  # 1x1 maps cannot be correlated pixel-wise (the paper leaves avgpool out too)
            if spec.units is not None:
                values = values[:, spec.units]
            matrices = unit_matrices(values)
            entry = summarised(matrices, options.nan_policy)
            entry["checkpoint"] = checkpoint
            for c, per_segment in per_unit.items():
                if per_segment[spec.name].shape == matrices.shape:
                    diff = np.abs(np.nan_to_num(per_segment[spec.name]) - np.nan_to_num(matrices))
                    entry[f"difference_{c}"] = diff.mean(axis=0)
            out[spec.name] = entry
        return out

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        names = [str(s) for s in outputs["segments"]]
        variables = [str(v) for v in outputs["variables"]]
        for c in outputs["channels"]:
            c = str(c)
            first = names[0]
            print_matrix(console, f"{c}, segment {first}: Spearman between variables per unit (pixels as "
                         f"observations), mean over units", variables, variables, outputs["units"][c][first]["mean"])
            print_matrix(console, f"{c}: Spearman between the segments' correlation matrices (strict upper "
                         f"triangles; nan = undefined, flagged)", names, names, outputs["layers"][c]["spearman"])
            if c in outputs["versus_original"]:
                print_matrix(console, f"{c}: segments vs the original checkpoints' matrices (with diagonal)",
                             names, [str(o) for o in outputs["originals"]], outputs["versus_original"][c])
        for name, entry in outputs["original"].items():
            diffs = ", ".join(f"{k.split('_', 1)[1]} {np.mean(v):.3f}" for k, v in entry.items()
                              if k.startswith("difference_"))
            console.print(f"{name} vs {entry['checkpoint']}: mean |difference| of per-unit matrices: {diffs}")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        names = [str(s) for s in outputs["segments"]]
        written = []
        for c in outputs["channels"]:
            c = str(c)
            written.append(heatmap(outputs["layers"][c]["spearman"], names, names, "segment", "segment",
                                   f"{c}: Spearman of correlation matrices (hatched: undefined)",
                                   prefix.with_suffix(f".segments-{c}.png"), limits=(-1, 1)))
        return written
