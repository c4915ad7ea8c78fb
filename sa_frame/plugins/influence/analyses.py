"""Analyses of an influence run (`sa-frame analyze influence.h5 influence-...`): where the top influencers come
from (the paper's Table 2), influence per layer and condition, layers clustered by their influence profiles, and
each test image beside its top training images.

They read `/influence` only; `influence-top` loads the images again from the run's data source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import (
    Analysis,
    InfluenceImages,
    Progress,
    ResultsFile,
    UsageError,
    flat_clusters,
    no_progress,
    option,
    same_class_share,
)
from sa_frame.plugins.influence.figures import cluster_figure, layers_figure, summary_figure, top_figure

SIDES = ("proponents", "opponents")


def read_influence(results: ResultsFile, analysis: str) -> dict[str, Any]:
    """The `/influence` tree of an influence run (UsageError on any other run)."""
    if results.attrs().get("mode") != "influence":
        raise UsageError(f"analysis {analysis!r} reads influence runs (sa-frame influence ...); {results.path} is "
                         f"not one")
    tree = results.read("influence")
    tree["rows"] = [*map(str, tree["layers"]["names"]), "total"]
    tree["conditions"] = [str(c) for c in results.attrs()["conditions"]]
    tree["class_names"] = [c.decode() if isinstance(c, bytes) else str(c) for c in tree["class_names"]]
    return tree


def class_means(tree: Mapping[str, Any]) -> np.ndarray:
    """(L + 1, T, classes): the mean influence of each training class's images on each test image (NaN for a
    class without training images)."""
    count = np.asarray(tree["class_count"], float)
    return np.asarray(tree["class_sum"], float) / np.where(count > 0, count, np.nan)


def by_condition(values: np.ndarray, tree: Mapping[str, Any]) -> np.ndarray:
    """(..., T, ...) with T on axis 1 -> (conditions, ...): the mean over each condition's test images."""
    condition = np.asarray(tree["test"]["condition"])
    return np.stack([np.nanmean(values[:, condition == c], axis=1) for c in range(len(tree["conditions"]))])


class InfluenceSummaryAnalysis(Analysis):
    name = "influence-summary"
    description = "top influencer class per condition, test class and layer (the paper's Table 2)"

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        tree = read_influence(results, self.name)
        means = class_means(tree)  # (L + 1, T, C)
        test = tree["test"]
        test_classes = np.unique(np.asarray(test["classes"]))
        condition, classes = np.asarray(test["condition"]), np.asarray(test["classes"])
        grouped = np.full((len(tree["conditions"]), len(test_classes), *means[:, 0].shape), np.nan)
        for k in range(len(tree["conditions"])):
            for j, y in enumerate(test_classes):
                pick = (condition == k) & (classes == y)
                if pick.any():
                    grouped[k, j] = means[:, pick].mean(1)
        filled = np.where(np.isnan(grouped), np.inf, grouped)
        return {"conditions": np.array(tree["conditions"]), "rows": np.array(tree["rows"]),
                "class_names": np.array(tree["class_names"]), "test_classes": test_classes,
                "mean_class_influence": grouped,  # (conditions, test classes, L + 1, train classes)
                "top_class": filled.argmin(-1),  # the most negative mean: the strongest proponent class
                "own_class_share": same_class_share(tree)}  # (conditions, L + 1): top-1 proponent of own class

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        names = [str(c) for c in outputs["class_names"]]
        for k, condition in enumerate(outputs["conditions"]):
            table = Table(title=f"{condition}: training class with the most negative mean influence (bold: the "
                                f"test image's own class)")
            table.add_column("test class", no_wrap=True)
            for row in outputs["rows"]:
                table.add_column(str(row), no_wrap=True)
            for j, y in enumerate(outputs["test_classes"]):
                cells = [names[c] for c in outputs["top_class"][k, j]]
                table.add_row(names[y], *(f"[bold]{c}[/]" if c == names[y] else c for c in cells))
            console.print(table)
        share = Table(title="test images whose top-1 proponent is of their own class")
        share.add_column("condition", no_wrap=True)
        for row in outputs["rows"]:
            share.add_column(str(row), justify="right")
        for k, condition in enumerate(outputs["conditions"]):
            share.add_row(str(condition), *(f"{100 * v:.0f}%" for v in outputs["own_class_share"][k]))
        console.print(share)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [summary_figure(outputs, prefix.with_suffix(".influence-summary.png"))]


class InfluenceLayersAnalysis(Analysis):
    name = "influence-layers"
    description = "mean influence per layer and condition: over all training images, and of the top-k"

    def run(self, results: ResultsFile, options: Any, progress: Progress = no_progress) -> dict[str, Any]:
        tree = read_influence(results, self.name)
        n_train = len(tree["train"]["classes"])
        every = np.asarray(tree["class_sum"], float).sum(-1) / n_train  # (L + 1, T)
        out: dict[str, Any] = {"conditions": np.array(tree["conditions"]), "rows": np.array(tree["rows"]),
                               "mean": by_condition(every[..., None], tree)[..., 0]}  # (conditions, L + 1)
        for side in SIDES:
            values = np.asarray(tree[side]["value"], float)  # (L + 1, T, k)
            out[f"mean_{side}"] = by_condition(values.mean(-1)[..., None], tree)[..., 0]
        return out

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        for key, title in (("mean", "mean influence over all training images"),
                           ("mean_proponents", "mean influence of the top-k proponents"),
                           ("mean_opponents", "mean influence of the top-k opponents")):
            table = Table(title=title)
            table.add_column("condition", no_wrap=True)
            for row in outputs["rows"]:
                table.add_column(str(row), justify="right")
            for k, condition in enumerate(outputs["conditions"]):
                table.add_row(str(condition), *(f"{v:.3g}" for v in outputs[key][k]))
            console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [layers_figure(outputs, prefix.with_suffix(".influence-layers.png"))]


@dataclasses.dataclass
class ClusterOptions:
    profile: str = option("auto", "auto (scores if kept, else class means), scores (needs --keep-scores) or "
                                  "class-means: what a layer's profile over the test images is")
    condition: str = option("all", "all, or one condition's name: the test images the profiles cover")
    cut: float = option(0.0, "1 - Pearson r at which the dendrogram is cut into clusters (0: in the largest gap "
                             "between merge heights)")


class InfluenceClusterAnalysis(Analysis):
    name = "influence-cluster"
    description = "layers clustered by their influence profiles: average linkage on 1 - Pearson r"
    Options = ClusterOptions

    def run(self, results: ResultsFile, options: ClusterOptions, progress: Progress = no_progress) -> dict[str, Any]:
        from scipy.cluster import hierarchy
        from scipy.spatial.distance import squareform

        tree = read_influence(results, self.name)
        layers = tree["rows"][:-1]
        if len(layers) < 2:
            raise UsageError("influence-cluster needs a run over at least two layers (--layers)")
        profile = options.profile
        if profile == "auto":
            profile = "scores" if "scores" in tree else "class-means"
        if profile == "scores" and "scores" not in tree:
            raise UsageError(f"profile=scores needs a run with --keep-scores; {results.path} has none (use "
                             f"profile=class-means)")
        if profile not in ("scores", "class-means"):
            raise UsageError(f"profile must be auto, scores or class-means, got {options.profile!r}")
        values = np.asarray(tree["scores"], float) if profile == "scores" else class_means(tree)
        condition = np.asarray(tree["test"]["condition"])
        if options.condition != "all":
            if options.condition not in tree["conditions"]:
                raise UsageError(f"condition {options.condition!r} is not in this run: {', '.join(tree['conditions'])}")
            values = values[:, condition == tree["conditions"].index(options.condition)]
        flat = values[:-1].reshape(len(layers), -1)
        flat = flat[:, np.isfinite(flat).all(0)]
        pearson = np.corrcoef(flat)
        distance = np.clip(1 - pearson, 0, 2)
        np.fill_diagonal(distance, 0)
        linkage = hierarchy.linkage(squareform(distance, checks=False), method="average")
        clusters, cut = flat_clusters(linkage, options.cut)
        return {"layers": np.array(layers), "profile": profile, "pearson": pearson, "linkage": linkage,
                "clusters": clusters, "cut": cut}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        layers = [str(x) for x in outputs["layers"]]
        table = Table(title=f"Pearson r of the layers' influence profiles ({outputs['profile']})")
        table.add_column("", no_wrap=True)
        for name in layers:
            table.add_column(name, justify="right")
        for name, row in zip(layers, outputs["pearson"]):
            table.add_row(name, *(f"{v:.2f}" for v in row))
        console.print(table)
        for k in np.unique(outputs["clusters"]):
            console.print(f"cluster {k}: {', '.join(n for n, c in zip(layers, outputs['clusters']) if c == k)}")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [cluster_figure(outputs, prefix.with_suffix(".influence-cluster.png"))]


@dataclasses.dataclass
class TopOptions:
    tests: int = option(4, "test rows shown (the first N, spread over the conditions)")
    k: int = option(5, "training images per layer (at most the run's --top-k)")
    side: str = option("proponents", "proponents (most negative) or opponents (most positive)")


class InfluenceTopAnalysis(Analysis):
    name = "influence-top"
    description = "each test image beside its top-k training images per layer (a picture)"
    Options = TopOptions

    def run(self, results: ResultsFile, options: TopOptions, progress: Progress = no_progress) -> dict[str, Any]:
        tree = read_influence(results, self.name)
        if options.side not in SIDES:
            raise UsageError(f"side must be proponents or opponents, got {options.side!r}")
        index = np.asarray(tree[options.side]["index"])  # (L + 1, T, k)
        if options.tests < 1 or not 1 <= options.k <= index.shape[-1]:
            raise UsageError(f"tests must be >= 1 and k in 1..{index.shape[-1]} (the run's --top-k), got "
                             f"tests={options.tests}, k={options.k}")
        n_test = index.shape[1]
        per_condition = n_test // len(tree["conditions"])
        rows = np.unique(np.linspace(0, n_test - 1, min(options.tests, n_test)).round().astype(int)) \
            if per_condition == 0 else np.array([c * per_condition + i for i in range(per_condition)
                                                  for c in range(len(tree["conditions"]))][:options.tests])
        chosen = index[:, rows, :options.k]  # (L + 1, N, k)
        images = InfluenceImages(results)
        tests = images.test(rows.tolist()).numpy()
        train = images.train(chosen.reshape(-1).tolist()).numpy().reshape(*chosen.shape, *tests.shape[1:])
        values = np.asarray(tree[options.side]["value"])[:, rows, :options.k]
        return {"test_rows": rows, "train_positions": chosen, "values": values, "rows": np.array(tree["rows"]),
                "conditions": np.array(tree["conditions"]), "class_names": np.array(tree["class_names"]),
                "test_classes": np.asarray(tree["test"]["classes"])[rows],
                "test_condition": np.asarray(tree["test"]["condition"])[rows],
                "train_classes": np.asarray(tree["train"]["classes"])[chosen], "side": options.side,
                "test_images": (tests * 255).round().astype(np.uint8),  # (N, 3, H, W)
                "train_images": (train * 255).round().astype(np.uint8)}  # (L + 1, N, k, 3, H, W)

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        names = [str(c) for c in outputs["class_names"]]
        conditions = [str(c) for c in outputs["conditions"]]
        for i, row in enumerate(outputs["test_rows"]):
            console.print(f"test row {row} ({names[outputs['test_classes'][i]]}, "
                          f"{conditions[outputs['test_condition'][i]]}): top {outputs['side']} per layer")
            for r, layer in enumerate(outputs["rows"]):
                picks = ", ".join(f"{names[c]} {v:.3g}" for c, v in zip(outputs["train_classes"][r, i],
                                                                       outputs["values"][r, i]))
                console.print(f"  {layer}: {picks}")

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [top_figure(outputs, prefix.with_suffix(".influence-top.png"))]
