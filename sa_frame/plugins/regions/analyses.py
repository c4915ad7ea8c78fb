"""The region analyses of SBSA: `pir` (Primary Index Ratio statistics, trends across
models), `region-masking` (top vs bottom 20% masked), `sensitivity-n` (Pearson correlation
of summed importances with score drops over random subsets) and `region-groups`
(foreground vs background)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import Analysis, Progress, ResultsFile, UsageError, no_progress, option, rebuild
from sa_frame.plugins.regions._baselines import BASELINES, baseline_rankings
from sa_frame.plugins.regions._figures import masking_figure, pir_figure, sensitivity_figure
from sa_frame.plugins.regions._region_maps import RegionMaps, read_region_maps, top_fraction

TOP = 0.2


def pir_statistics(maps: RegionMaps, top: float = TOP) -> dict[str, Any]:
    """PIR per (region, image) and its summaries: mean, mean over the top-`top` regions by ST,
    the fraction above 1, the per-image mean; sums of S1 and ST per image."""
    pir = maps.pir()
    chosen = top_fraction(maps.ranking("ST"), maps.empty, top, top=True).T  # (L, M)
    finite = np.isfinite(pir)
    with np.errstate(invalid="ignore"):
        per_image = np.nanmean(np.where(finite, pir, np.nan), axis=0) if finite.any() else np.full(maps.n_images,
                                                                                                    np.nan)
    return {"pir": pir, "mean": float(np.nanmean(pir)) if finite.any() else float("nan"),
            "mean_top20": float(np.nanmean(np.where(chosen, pir, np.nan))) if (finite & chosen).any()
            else float("nan"),
            "fraction_gt1": float(np.mean(pir[finite] > 1)) if finite.any() else float("nan"),
            "per_image_mean": per_image, "sum_s1": maps.s1.sum(0), "sum_st": maps.st.sum(0),
            "top20": chosen.astype(np.uint8),
            "defined": int(finite.sum())}


@dataclass
class PirOptions:
    compare: list = option([], "other region results files (e.g. other models) for a trend figure")
    labels: list = option([], "a label per file (this one first; default: the model names)")


class PirAnalysis(Analysis):
    name = "pir"
    description = "Primary Index Ratio S1/ST per region: mean, mean over the top-20% regions by ST, share > 1"
    Options = PirOptions

    def run(self, results: ResultsFile, options: PirOptions, progress: Progress = no_progress) -> dict[str, Any]:
        files = [results] + [ResultsFile(Path(p)) for p in options.compare]
        stats = []
        for f in files:
            if not f.exists():
                raise UsageError(f"pir: compared results file not found: {f.path}")
            stats.append(pir_statistics(read_region_maps(f, self.name)))
        if options.labels and len(options.labels) != len(files):
            raise UsageError(f"pir: {len(options.labels)} labels for {len(files)} results files")
        labels = [str(x) for x in options.labels] or [str(f.attrs()["model"]) for f in files]
        out = {k: v for k, v in stats[0].items()}
        out["trend"] = {"labels": np.array(labels), "mean": np.array([s["mean"] for s in stats]),
                        "mean_top20": np.array([s["mean_top20"] for s in stats]),
                        "fraction_gt1": np.array([s["fraction_gt1"] for s in stats])}
        return out

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"PIR = S1 / ST ({outputs['defined']} defined region indices)")
        for column in ("results", "mean PIR", "mean PIR, top 20% by ST", "PIR > 1"):
            table.add_column(column, justify="right")
        trend = outputs["trend"]
        for i, label in enumerate(trend["labels"]):
            table.add_row(str(label), f"{trend['mean'][i]:.3f}", f"{trend['mean_top20'][i]:.3f}",
                          f"{trend['fraction_gt1'][i]:.1%}")
        console.print(table)
        console.print(f"mean sum S1 = {np.mean(outputs['sum_s1']):.3f}, mean sum ST = {np.mean(outputs['sum_st']):.3f}"
                      f" (sum ST > 1: interactions)")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [pir_figure(outputs, prefix.with_suffix(".pir.png"))]


class RegionScorer:
    """The run's network and perturbation, rebuilt, scoring images with regions masked."""

    def __init__(self, results: ResultsFile, maps: RegionMaps, device: str | None) -> None:
        import torch

        self.rebuilt = rebuild(results, device)
        self.runner = self.rebuilt.region_runner
        setup = self.runner.setup
        if not torch.equal(setup.labels.cpu().to(torch.int64), torch.as_tensor(maps.labels).to(torch.int64)):
            raise UsageError(f"{results.path}: the rebuilt regions differ from the stored ones (the data or the "
                             f"segmenter changed since the run)")
        self.identity = setup.perturbation.identity(setup.perturbation_options)
        self.masked = setup.perturbation.masked(setup.perturbation_options)
        self.base = self.runner.base()["base_score"].double().numpy()

    def drops(self, chosen: np.ndarray, progress: Any = lambda n: None, images: np.ndarray | None = None) \
            -> np.ndarray:
        """(m, K) score drops base - score when the regions `chosen` (m, K, L) of the run's images
        `images` (default: all) are masked."""
        import torch

        which = np.arange(chosen.shape[0]) if images is None else np.asarray(images)
        values = torch.from_numpy(np.where(chosen, self.masked, self.identity))
        scores = self.runner.image_scores(values, progress, torch.from_numpy(which))
        return self.base[which, None] - scores.numpy()


@dataclass
class MaskingOptions:
    fraction: float = option(TOP, "share of each image's regions masked (top and bottom by the ranking)")
    rank_by: list = option(["ST", "S1", "random"], f"rankings compared: ST, S1, random and, with the extra "
                                                   f"sa-frame[baselines] (Captum), {', '.join(BASELINES)}")
    samples: int = option(200, "kernelshap/lime: perturbed samples per image")
    seed: int = option(0, "random ranking and baseline sampling")
    device: str = option("", "device of the forwards (default: the run's)")


def rankings(maps: RegionMaps, methods: list[str], scorer: RegionScorer, samples: int, seed: int,
             progress: Progress) -> dict[str, np.ndarray]:
    """{method: (M, L) importance}: the run's own maps, random, and Captum baselines."""
    own = {m: maps.ranking(m, seed) for m in methods if m not in BASELINES}
    asked = [m for m in methods if m in BASELINES]
    if asked:
        own.update(baseline_rankings(scorer.runner, asked, samples, seed, progress))
        own = {m: np.where(maps.empty, -np.inf, own[m]) for m in methods}
    return {m: own[m] for m in methods}


class RegionMaskingAnalysis(Analysis):
    name = "region-masking"
    description = "score drop when the top vs the bottom 20% of regions (by ST, S1, random, baselines) are masked"
    Options = MaskingOptions

    def run(self, results: ResultsFile, options: MaskingOptions, progress: Progress = no_progress) -> dict[str, Any]:
        if not 0 < options.fraction < 1:
            raise UsageError(f"region-masking: fraction must lie in (0, 1), got {options.fraction}")
        maps = read_region_maps(results, self.name)
        scorer = RegionScorer(results, maps, options.device or None)
        ranked = rankings(maps, list(options.rank_by), scorer, options.samples, options.seed, progress)
        chosen = np.stack([np.stack([top_fraction(r, maps.empty, options.fraction, top) for top in (True, False)], 1)
                           for r in ranked.values()], 1)  # (M, methods, 2, L)
        m, k = chosen.shape[:2]
        advance = progress("masked forwards", m * k * 2)
        drops = scorer.drops(chosen.reshape(m, k * 2, -1), advance).reshape(m, k, 2)
        return {"methods": np.array(list(ranked)), "base": scorer.base, "drop_top": drops[:, :, 0].T,
                "drop_bottom": drops[:, :, 1].T, "mean_top": drops[:, :, 0].mean(0),
                "mean_bottom": drops[:, :, 1].mean(0), "fraction": options.fraction}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"score drop with {outputs['fraction']:.0%} of the regions masked "
                            f"({outputs['drop_top'].shape[1]} images)")
        for column in ("ranking", "top masked", "bottom masked", "top - bottom"):
            table.add_column(column, justify="right")
        for i, method in enumerate(outputs["methods"]):
            top, bottom = outputs["mean_top"][i], outputs["mean_bottom"][i]
            table.add_row(str(method), f"{top:.4f}", f"{bottom:.4f}", f"{top - bottom:.4f}")
        console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [masking_figure(outputs, prefix.with_suffix(".masking.png"))]


@dataclass
class SensitivityOptions:
    fractions: list = option([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "shares of the regions masked")
    subsets: int = option(100, "random subsets per fraction and image")
    rank_by: list = option(["ST", "S1", "random"], "importances correlated: ST, S1, random, baselines")
    samples: int = option(200, "kernelshap/lime: perturbed samples per image")
    seed: int = option(0, "subsets, random importances and baseline sampling")
    device: str = option("", "device of the forwards (default: the run's)")


#: cells of one chunk's random-subset array (images x fractions x subsets x regions): ~160 MB of bools
SUBSET_CELLS = 2 * 10**7


def random_subsets(empty: np.ndarray, fractions: np.ndarray, subsets: int, rng: np.random.Generator) -> np.ndarray:
    """(m, F, S, L) bool: per image and fraction f, `subsets` random sets of round(f x its
    non-empty regions) regions (at least one): the first k of a random order of them."""
    m, n = empty.shape
    present = (~empty).sum(1)
    keys = np.where(empty[:, None, None, :], np.inf, rng.random((m, fractions.size, subsets, n)))
    position = np.argsort(np.argsort(keys, axis=-1, kind="stable"), axis=-1, kind="stable")
    k = np.maximum(1, np.rint(fractions[None, :] * present[:, None])).astype(int)  # (m, F)
    return position < k[:, :, None, None]


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis (NaN where either side is constant)."""
    xc, yc = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(-1) / np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))


class SensitivityNAnalysis(Analysis):
    name = "sensitivity-n"
    description = "Pearson correlation of summed region importances with the score drop of random masked subsets"
    Options = SensitivityOptions

    def run(self, results: ResultsFile, options: SensitivityOptions,
            progress: Progress = no_progress) -> dict[str, Any]:
        fractions = np.asarray(options.fractions, float)
        if not fractions.size or np.any((fractions <= 0) | (fractions >= 1)) or options.subsets < 3:
            raise UsageError("sensitivity-n: fractions must lie in (0, 1) and subsets be >= 3")
        maps = read_region_maps(results, self.name)
        scorer = RegionScorer(results, maps, options.device or None)
        ranked = rankings(maps, list(options.rank_by), scorer, options.samples, options.seed, progress)
        m, n = maps.n_images, maps.n_regions
        advance = progress("masked forwards", m * fractions.size * options.subsets)
        # images in chunks, so that the (images, fractions, subsets, regions) subsets stay ~SUBSET_CELLS
        chunk = max(1, SUBSET_CELLS // (fractions.size * options.subsets * n))
        parts = []
        for start in range(0, m, chunk):
            images = np.arange(start, min(start + chunk, m))
            subsets = random_subsets(maps.empty[images], fractions, options.subsets,
                                     np.random.default_rng([options.seed, start]))  # (m, F, S, L)
            drops = scorer.drops(subsets.reshape(len(images), -1, n), advance, images)
            drops = drops.reshape(len(images), fractions.size, options.subsets)
            summed = [np.where(subsets, np.nan_to_num(r[images], neginf=0.0)[:, None, None, :], 0.0).sum(-1)
                      for r in ranked.values()]  # each (m, F, S): the subsets' summed importance
            parts.append(np.stack([pearson_rows(x, drops) for x in summed]))  # (K, m, F)
        correlation = np.concatenate(parts, axis=1).transpose(0, 2, 1)  # (K, F, M)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(correlation, axis=-1)
        return {"methods": np.array(list(ranked)), "fractions": fractions, "correlation": correlation,
                "mean": mean, "subsets": options.subsets}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"sensitivity-n: mean Pearson correlation over images ({outputs['subsets']} subsets)")
        table.add_column("masked")
        for method in outputs["methods"]:
            table.add_column(str(method), justify="right")
        for j, f in enumerate(outputs["fractions"]):
            table.add_row(f"{f:.0%}", *(f"{outputs['mean'][i, j]:.3f}" for i in range(len(outputs["methods"]))))
        console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [sensitivity_figure(outputs, prefix.with_suffix(".sensitivity-n.png"))]


class RegionGroupsAnalysis(Analysis):
    name = "region-groups"
    description = "foreground vs background: ST(objects) - ST(background), PIR per group (demo-foreground, masks)"

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        maps = read_region_maps(results, self.name)
        if maps.names is None:
            raise UsageError(f"region-groups needs regions with names (segmenter demo-foreground or masks); "
                             f"{results.path} used {maps.attrs.get('segmenter')!r}")
        pir = maps.pir()
        st_diff = maps.st[1:].sum(0) - maps.st[0]
        s1_diff = maps.s1[1:].sum(0) - maps.s1[0]
        return {"groups": np.array(maps.names), "st_by_group": maps.st, "s1_by_group": maps.s1,
                "pir_by_group": pir, "st_diff": st_diff, "s1_diff": s1_diff,
                "fraction_objects_greater": float(np.mean(st_diff > 0)),
                "object_share": (maps.labels > 0).mean((1, 2))}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"region groups over {outputs['st_diff'].size} images")
        for column in ("group", "mean ST", "mean S1", "mean PIR"):
            table.add_column(column, justify="right")
        for g, name in enumerate(outputs["groups"]):
            with np.errstate(invalid="ignore"):
                pir = np.nanmean(outputs["pir_by_group"][g]) if np.isfinite(outputs["pir_by_group"][g]).any() \
                    else float("nan")
            table.add_row(str(name), f"{outputs['st_by_group'][g].mean():.3f}",
                          f"{outputs['s1_by_group'][g].mean():.3f}", f"{pir:.3f}")
        console.print(table)
        console.print(f"ST(objects) - ST(background): mean {outputs['st_diff'].mean():.3f}; objects above the "
                      f"background in {outputs['fraction_objects_greater']:.0%} of images")
