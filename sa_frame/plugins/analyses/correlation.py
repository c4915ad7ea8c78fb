"""How sensitivity maps relate: unit-wise Spearman correlations between SA variables
 and spatial correlation maps with the coefficient of variation (§8.3).

`correlation`: per checkpoint and value type, for each pixel the Spearman matrix between
variables with the units (channels) as observations; mean over pixels, std (ddof 1)
over pixels, and a NaN mask (a variable constant over the units gives 0 and is flagged;
pixels aggregated by `any` or `all`). With `other=FILE` (a second run of the same model,
e.g. Shapley next to this Sobol run) also the cross-value-type blocks. The evolution of
every variable pair across checkpoints is tabulated and plotted.

`cov-correlation`: for each variable and pixel, the Spearman correlation across units
between the sensitivity map and the CoV of the run's activations: a map per variable,
summarised by its mean and std over pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import Analysis, Progress, ResultsFile, UsageError, maps, no_progress, option, print_matrix
from sa_frame.plugins.analyses._display import distinct_colours, heatmap, pyplot, save
from sa_frame.plugins.analyses._spearman import spearman_matrices, spearman_with

NAN_POLICIES = ("any", "all")


@dataclass
class CorrelationOptions:
    other: str = option("", "a second results file (same model and checkpoints) for cross-value blocks")
    nan_policy: str = option("any", "a cell is flagged when a variable is constant at any / all pixels")
    augmentations_only: bool = option(False, "leave out permutation, class and partition")


@dataclass
class CovCorrelationOptions:
    value: str = option("auto", "shapley, S1, ST or rank_biserial (default: shapley, else S1)")


def unit_as_observations(values: np.ndarray) -> np.ndarray:
    """(V, C, *spatial) -> (V, C, P): units are the observations, pixels the columns (P = 1 for fc)."""
    return values.reshape(values.shape[0], values.shape[1], -1) if values.ndim > 2 else values[:, :, None]


def pixel_averaged(values: np.ndarray, nan_policy: str) -> dict[str, np.ndarray]:
    """Per-pixel Spearman matrices between variables (V, C, P), averaged over pixels."""
    return summarised(spearman_matrices(values), nan_policy)


def summarised(rho: np.ndarray, nan_policy: str) -> dict[str, np.ndarray]:
    """Mean and std (ddof 1) of (K, V, V) matrices over K; NaN cells count as 0 and are flagged
    where NaN in any / all of the K matrices."""
    nan = np.isnan(rho)
    flagged = nan.any(axis=0) if nan_policy == "any" else nan.all(axis=0)
    rho = np.where(nan, 0.0, rho)
    std = rho.std(axis=0, ddof=1) if rho.shape[0] > 1 else np.zeros(rho.shape[1:])
    return {"mean": rho.mean(axis=0), "std": std, "nan": flagged}


def _variables(results: ResultsFile, augmentations_only: bool) -> tuple[list[str], list[int]]:
    rows = maps.map_rows(results)
    keep = [i for i, r in enumerate(rows) if not augmentations_only or r not in ("permutation", "class", "partition")]
    return [rows[i] for i in keep], keep


def variable_pairs(n: int) -> list[tuple[int, int]]:
    """The variable pairs i < j in the order of the `evolution` and `pairs` outputs."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


class CorrelationAnalysis(Analysis):
    name = "correlation"
    description = "unit-wise Spearman correlations between SA variables per checkpoint"
    Options = CorrelationOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        if options.nan_policy not in NAN_POLICIES:
            raise UsageError(f"nan_policy must be any or all, got {options.nan_policy!r}")
        sources = {v: (results, v) for v in maps.value_types(results)}
        if options.other:
            other = maps.complete_results(options.other)
            if maps.checkpoints(other) != maps.checkpoints(results) or maps.map_rows(other) != maps.map_rows(results):
                raise UsageError(f"{options.other} has other checkpoints or variables than {results.path}; "
                                 f"cross-value correlations need two runs of the same model and augmentations")
            sources.update({v: (other, v) for v in maps.value_types(other) if v not in sources})
        if not sources:
            raise UsageError(f"{results.path} holds no sensitivity maps to correlate")
        variables, keep = _variables(results, options.augmentations_only)
        checkpoints = maps.checkpoints(results)
        advance = progress("correlation: checkpoints", len(checkpoints))
        within: dict[str, Any] = {v: {} for v in sources}
        cross: dict[str, Any] = {}
        names = list(sources)
        for checkpoint in checkpoints:
            loaded = {v: unit_as_observations(maps.sensitivity(f, value, checkpoint)[keep])
                      for v, (f, value) in sources.items()}
            for v in names:
                within[v][checkpoint] = pixel_averaged(loaded[v], options.nan_policy)
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    joint = pixel_averaged(np.concatenate([loaded[names[a]], loaded[names[b]]]), options.nan_policy)
                    n = len(variables)
                    cross.setdefault(f"{names[a]}-{names[b]}", {})[checkpoint] = \
                        {k: m[:n, n:] for k, m in joint.items()}
            advance(1)
        pairs = variable_pairs(len(variables))
        evolution = {v: np.array([[within[v][c]["mean"][i, j] for c in checkpoints] for i, j in pairs])
                     for v in names}
        return {"variables": np.array(variables), "checkpoints": np.array(checkpoints),
                "pairs": np.array([f"{variables[i]}-{variables[j]}" for i, j in pairs]),
                "within": within, "cross": cross, "evolution": evolution}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        variables = [str(v) for v in outputs["variables"]]
        checkpoints = [str(c) for c in outputs["checkpoints"]]
        for value, per_checkpoint in outputs["within"].items():
            shown = checkpoints[len(checkpoints) // 2]  # a middle layer; every layer is in the file
            print_matrix(console, f"{value}: Spearman between variables at {shown} (mean over pixels)",
                         variables, variables, per_checkpoint[shown]["mean"])
            print_matrix(console, f"{value}: variable pairs across checkpoints", [str(p) for p in outputs["pairs"]],
                         checkpoints, outputs["evolution"][value])
        for pair, per_checkpoint in outputs["cross"].items():
            first, second = pair.split("-", 1)
            print_matrix(console, f"cross-value {pair} at {checkpoints[0]} (rows: {first}, columns: {second})",
                         variables, variables, per_checkpoint[checkpoints[0]]["mean"])

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        """Small multiples: one panel per variable, its correlation with each other variable across
        the checkpoints (a partner keeps its colour in every panel; 28 lines in one axes were not
        readable)."""
        plt = pyplot()
        checkpoints = [str(c) for c in outputs["checkpoints"]]
        variables = [str(v) for v in outputs["variables"]]
        n = len(variables)
        index = {pair: k for k, pair in enumerate(variable_pairs(n))}  # the rows of `evolution`
        colours = distinct_colours(n)
        columns = min(4, n)
        rows = -(-n // columns)
        written = []
        for value, evolution in outputs["evolution"].items():
            fig, axes = plt.subplots(rows, columns, figsize=(3.1 * columns, 2.3 * rows + 1.0), sharex=True,
                                     sharey=True, squeeze=False, layout="constrained")
            for a, ax in enumerate(axes.flat):
                if a >= n:
                    ax.set_visible(False)
                    continue
                for b in range(n):
                    if b != a:
                        ax.plot(range(len(checkpoints)), evolution[index[min(a, b), max(a, b)]], marker="o", ms=2.5,
                                lw=1, color=colours[b], label=variables[b])
                ax.axhline(0, color="0.7", lw=0.6)
                ax.set_title(variables[a], fontsize=8)
                ax.set_ylim(-1, 1)
                ax.tick_params(labelsize=7)
            for ax in axes[-1]:
                ax.set_xticks(range(len(checkpoints)), checkpoints, rotation=45, ha="right", fontsize=7)
            for ax in axes[:, 0]:
                ax.set_ylabel("mean Spearman", fontsize=7)
            handles = [plt.Line2D([], [], color=colours[b], marker="o", ms=3, lw=1) for b in range(n)]
            fig.legend(handles, variables, loc="outside lower center", ncol=min(n, 8), fontsize=7, frameon=False)
            fig.suptitle(f"{value}: correlation of each variable's map with the others', by checkpoint", fontsize=9)
            written.append(save(fig, prefix.with_suffix(f".correlation-{value}.png")))
        return written


class CovCorrelationAnalysis(Analysis):
    name = "cov-correlation"
    description = "spatial maps of the Spearman correlation between sensitivity and CoV"
    Options = CovCorrelationOptions

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        value = maps.check_value(results, options.value)
        variables = maps.map_rows(results)
        checkpoints = maps.checkpoints(results)
        per_checkpoint: dict[str, Any] = {}
        summary = np.zeros((2, len(variables), len(checkpoints)))
        for k, checkpoint in enumerate(checkpoints):
            sens = maps.sensitivity(results, value, checkpoint)
            cov = maps.coefficient_of_variation(results, checkpoint)
            spatial = cov.shape[1:] if cov.ndim > 1 else ()
            rho = spearman_with(unit_as_observations(sens), cov.reshape(cov.shape[0], -1))  # (V, P)
            nan = np.isnan(rho)
            with warnings.catch_warnings():  # all-NaN rows (a constant map) stay NaN: flagged, not 0
                warnings.simplefilter("ignore", RuntimeWarning)
                summary[0, :, k] = np.nanmean(rho, axis=1)
                summary[1, :, k] = np.nanstd(rho, axis=1, ddof=1) if rho.shape[1] > 1 else 0.0
            per_checkpoint[checkpoint] = {"map": rho.reshape(len(variables), *spatial), "nan": nan.sum(axis=1)}
        return {"variables": np.array(variables), "checkpoints": np.array(checkpoints), "value": value,
                "maps": per_checkpoint, "mean": summary[0], "std": summary[1]}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        variables = [str(v) for v in outputs["variables"]]
        checkpoints = [str(c) for c in outputs["checkpoints"]]
        print_matrix(console, f"Spearman({outputs['value']}, CoV) across units, mean over pixels", variables,
                     checkpoints, outputs["mean"])
        print_matrix(console, "... std over pixels", variables, checkpoints, outputs["std"])

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        plt = pyplot()
        variables = [str(v) for v in outputs["variables"]]
        spatial = [c for c, m in outputs["maps"].items() if np.asarray(m["map"]).ndim == 3]
        written = [heatmap(outputs["mean"], variables, [str(c) for c in outputs["checkpoints"]], "checkpoint",
                           "variable", f"Spearman({outputs['value']}, CoV), mean over pixels",
                           prefix.with_suffix(".cov-correlation.png"), limits=(-1, 1))]
        if spatial:
            fig, axes = plt.subplots(len(spatial), len(variables), figsize=(1.6 * len(variables), 1.7 * len(spatial)),
                                     squeeze=False)
            for r, checkpoint in enumerate(spatial):
                for c, name in enumerate(variables):
                    ax = axes[r, c]
                    image = ax.imshow(outputs["maps"][checkpoint]["map"][c], cmap="RdBu_r", vmin=-1, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title(name, fontsize=7)
                    if c == 0:
                        ax.set_ylabel(checkpoint, fontsize=7)
            bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02)
            bar.set_label(f"Spearman({outputs['value']}, CoV) across units")
            fig.suptitle(f"Spearman({outputs['value']}, CoV) across the units of each checkpoint, per position",
                         fontsize=9)
            written.append(save(fig, prefix.with_suffix(".cov-correlation-maps.png")))
        return written
