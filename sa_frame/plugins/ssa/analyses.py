"""The analyses of a step-wise (ssa) run: `ssa-graph` (per-class dependency graphs),
`ssa-eval` (the graphs as pruned classifiers, with FPR, precision and balanced accuracy next
to TPR, over a sweep of keep fractions in one stacked forward) and `ssa-cluster` (classes
clustered by the neurons their graphs share)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sa_frame import (
    Analysis,
    Graph,
    Progress,
    ResultsFile,
    UsageError,
    dependency_graph,
    flat_clusters,
    no_progress,
    option,
    rebuild,
    split_pair,
)
from sa_frame.plugins.ssa._figures import cluster_figure, eval_figure, graph_figure

AGGREGATIONS = {"mean": "relevance", "tukey": "outlier_frequency"}


@dataclass
class SsaMaps:
    """A relevance run's maps: {pair: (groups, K_up, K_low)}, pairs top-down, group names."""

    maps: dict[str, np.ndarray]
    pairs: list[str]
    groups: list[str]  # the classes, then "all"

    @property
    def checkpoints(self) -> list[str]:
        """Checkpoints top-down: the top's upper, then each pair's lower."""
        return [split_pair(self.pairs[0])[0], *(split_pair(p)[1] for p in self.pairs)]

    def sizes(self) -> dict[str, int]:
        out = {split_pair(self.pairs[0])[0]: self.maps[self.pairs[0]].shape[1]}
        out.update({split_pair(p)[1]: self.maps[p].shape[2] for p in self.pairs})
        return out

    def graph(self, group: int, mode: str, keep: float, branching: int, b_prime: int) -> Graph:
        """The graph of group `group` (a class: from its own logit when the top checkpoint has one
        output per class; "all": from every top neuron)."""
        n_top = self.maps[self.pairs[0]].shape[1]
        is_class = group < len(self.groups) - 1
        top = [group] if is_class and n_top == len(self.groups) - 1 else None
        return dependency_graph({p: m[group] for p, m in self.maps.items()}, self.pairs, top, mode, keep,
                                branching, b_prime)


def read_ssa_maps(results: ResultsFile, analysis: str, aggregation: str = "mean") -> SsaMaps:
    attrs = results.attrs()
    if attrs.get("mode") != "relevance":
        raise UsageError(f"analysis {analysis!r} reads step-wise runs (sa-frame run --estimator ssa ...); "
                         f"{results.path} is a{'n augmentation' if attrs.get('mode') != 'regions' else ' region'} run")
    if aggregation not in AGGREGATIONS:
        raise UsageError(f"aggregation must be mean or tukey, got {aggregation!r}")
    stored = results.checkpoint_maps()
    pairs = [str(p) for p in attrs["checkpoints"]]
    maps = {p: np.asarray(stored[p][AGGREGATIONS[aggregation]], float) for p in pairs}
    return SsaMaps(maps, pairs, [str(g) for g in attrs["map_rows"]])


@dataclass
class GraphOptions:
    mode: str = option("global", "global (mean over the selected upper neurons) or local (nominations)")
    aggregation: str = option("mean", "mean relevance, or tukey (the outlier frequency)")
    keep: float = option(0.5, "global: share of each lower checkpoint kept (0.5: the paper's 50th percentile)")
    branching: int = option(3, "local: lower neurons kept per checkpoint (b)")
    b_prime: int = option(3, "local: nominations per upper neuron (b')")
    draw: list = option([], "groups drawn as figures (default: the first class and all)")
    export: bool = option(False, "also write each graph as GraphML (networkx, extra sa-frame[graphs])")


class SsaGraphAnalysis(Analysis):
    name = "ssa-graph"
    description = "per-class dependency graphs from the top logit down (global or local, mean or Tukey)"
    Options = GraphOptions

    def run(self, results: ResultsFile, options: GraphOptions, progress: Progress = no_progress) -> dict[str, Any]:
        data = read_ssa_maps(results, self.name, options.aggregation)
        sizes = data.sizes()
        graphs = [data.graph(g, options.mode, options.keep, options.branching, options.b_prime)
                  for g in range(len(data.groups))]
        nodes = {c: np.stack([gr.mask(c, sizes[c]) for gr in graphs]).astype(np.uint8) for c in data.checkpoints}
        edges = {}
        for pair in data.pairs:
            upper, lower = split_pair(pair)
            e = np.zeros((len(graphs), sizes[upper], sizes[lower]), dtype=np.float32)
            for g, gr in enumerate(graphs):
                e[g, gr.edges[pair][:, 0], gr.edges[pair][:, 1]] = gr.weights[pair]
            edges[pair] = e
        return {"groups": np.array(data.groups), "checkpoints": np.array(data.checkpoints), "nodes": nodes,
                "edges": edges, "size": np.array([[len(gr.nodes[c]) for c in data.checkpoints] for gr in graphs]),
                "total": np.array([sizes[c] for c in data.checkpoints]), "mode": options.mode,
                "draw": np.array([str(d) for d in options.draw] or [data.groups[0], "all"]),
                "export": options.export}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"dependency graphs ({outputs['mode']}): kept / total neurons per checkpoint")
        table.add_column("group")
        for c, total in zip(outputs["checkpoints"], outputs["total"]):
            table.add_column(f"{c} ({total})", justify="right")
        for g, name in enumerate(outputs["groups"]):
            table.add_row(str(name), *(str(v) for v in outputs["size"][g]))
        console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        groups = [str(g) for g in outputs["groups"]]
        paths = []
        for name in [str(d) for d in outputs["draw"]]:
            if name not in groups:
                raise UsageError(f"ssa-graph: cannot draw {name!r}; groups: {', '.join(groups)}")
            g = groups.index(name)
            slug = name.replace(" ", "-").replace("/", "-")
            paths.append(graph_figure(outputs, g, prefix.with_suffix(f".graph-{slug}.png")))
        if outputs["export"]:
            paths += export_graphml(outputs, prefix)
        return paths


def export_graphml(outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
    """One GraphML file per group: nodes "checkpoint:index", weighted edges upper -> lower."""
    try:
        import networkx as nx
    except ImportError:
        raise UsageError("-o export=true needs networkx: pip install 'sa-frame[graphs]'") from None
    paths = []
    for g, name in enumerate(outputs["groups"]):
        graph = nx.DiGraph(group=str(name))
        for c in outputs["checkpoints"]:
            for k in np.flatnonzero(outputs["nodes"][str(c)][g]):
                graph.add_node(f"{c}:{k}", checkpoint=str(c), index=int(k))
        for pair, e in outputs["edges"].items():
            upper, lower = split_pair(pair)
            for n, k in zip(*np.nonzero(e[g])):
                graph.add_edge(f"{upper}:{n}", f"{lower}:{k}", weight=float(e[g][n, k]))
        path = prefix.with_suffix(f".{str(name).replace(' ', '-')}.graphml")
        nx.write_graphml(graph, path)
        paths.append(path)
    return paths


@dataclass
class EvalOptions:
    keep: list = option([0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0], "keep fractions of the global graphs swept")
    aggregation: str = option("mean", "mean relevance, or tukey (the outlier frequency)")
    partitions: list = option(["train", "valid"], "partitions evaluated (those the data has)")
    per_class: int = option(20, "images per class and partition")
    batch_size: int = option(4, "images per stacked forward (x groups x keep fractions rows; small batches keep the "
                                "stacked rows in cache: benchmarks/ssa.py)")
    device: str = option("", "device of the forwards (default: the run's)")


def nan_mean(values: np.ndarray) -> float:
    """The mean of the defined values (NaN when there are none: e.g. a precision nobody predicted)."""
    finite = np.isfinite(values)
    return float(values[finite].mean()) if finite.any() else float("nan")


def binary_metrics(predicted: np.ndarray, labels: np.ndarray, c: int) -> tuple[float, float, float, float]:
    """(TPR, FPR, precision, balanced accuracy) of 'predicted == c' as a detector of class c."""
    positive, said = labels == c, predicted == c
    tpr = float(said[positive].mean()) if positive.any() else float("nan")
    fpr = float(said[~positive].mean()) if (~positive).any() else float("nan")
    precision = float(positive[said].mean()) if said.any() else float("nan")
    return tpr, fpr, precision, (tpr + 1 - fpr) / 2


class SsaEvalAnalysis(Analysis):
    name = "ssa-eval"
    description = "graphs as pruned classifiers: accuracy, per-class TPR, FPR, precision, balanced accuracy vs keep"
    Options = EvalOptions

    def run(self, results: ResultsFile, options: EvalOptions, progress: Progress = no_progress) -> dict[str, Any]:
        import torch

        data = read_ssa_maps(results, self.name, options.aggregation)
        keeps = [float(k) for k in options.keep]
        if not keeps or any(not 0 < k <= 1 for k in keeps):
            raise UsageError(f"ssa-eval: keep fractions must lie in (0, 1], got {keeps}")
        rebuilt = rebuild(results, options.device or None)
        sizes, masked = data.sizes(), data.checkpoints[1:]  # the top (the logits) is never masked
        n_groups, n_keep = len(data.groups), len(keeps)
        graphs = [[data.graph(g, "global", k, 3, 3) for k in keeps] for g in range(n_groups)]
        factors = {}
        shapes = rebuilt_shapes(rebuilt, masked)
        for c in masked:
            shape = shapes[c]
            rows = [torch.from_numpy(graphs[g][t].mask(c, sizes[c])).float().view(-1, *[1] * (len(shape) - 1))
                    .expand(shape) for g in range(n_groups) for t in range(n_keep)]
            factors[c] = torch.stack([torch.ones(shape), *rows])  # config 0: the unpruned network
        configs = 1 + n_groups * n_keep
        names = [p for p in options.partitions if p in rebuilt.source.partitions]
        if not names:
            raise UsageError(f"ssa-eval: partitions {options.partitions} not in the data's {rebuilt.source.partitions}")
        out: dict[str, Any] = {"keep": np.array(keeps), "groups": np.array(data.groups), "partitions": np.array(names)}
        per = {k: np.full((len(names), n_groups - 1, n_keep), np.nan) for k in ("tpr", "fpr", "precision",
                                                                              "balanced_accuracy")}
        accuracy = np.full((len(names), n_keep), np.nan)
        unpruned = np.full(len(names), np.nan)
        for p, partition in enumerate(names):
            images = rebuilt.evaluation_images(options.per_class, partition)
            labels = rebuilt.network_labels(images[0]).numpy()
            advance = progress(f"stacked forwards ({partition})", len(labels))
            predicted = masked_predictions(rebuilt, factors, configs, images, options.batch_size, advance)
            unpruned[p] = float((predicted[0] == labels).mean())
            for t in range(n_keep):
                accuracy[p, t] = float((predicted[1 + (n_groups - 1) * n_keep + t] == labels).mean())
                for c in range(n_groups - 1):
                    metrics = binary_metrics(predicted[1 + c * n_keep + t], labels, c)
                    for key, value in zip(("tpr", "fpr", "precision", "balanced_accuracy"), metrics):
                        per[key][p, c, t] = value
        size = np.array([[sum(len(graphs[g][t].nodes[c]) for c in masked) / sum(sizes[c] for c in masked)
                          for t in range(n_keep)] for g in range(n_groups)])
        out.update(per, accuracy=accuracy, unpruned_accuracy=unpruned, size=size)
        return out

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        for p, partition in enumerate(outputs["partitions"]):
            table = Table(title=f"{partition}: pruned by the graphs (unpruned accuracy "
                                f"{outputs['unpruned_accuracy'][p]:.3f}); class columns are means over classes")
            for column in ("keep", "size", "accuracy (all)", "TPR", "FPR", "precision", "balanced acc."):
                table.add_column(column, justify="right")
            for t, keep in enumerate(outputs["keep"]):
                means = [nan_mean(outputs[k][p, :, t]) for k in ("tpr", "fpr", "precision", "balanced_accuracy")]
                table.add_row(f"{keep:.2f}", f"{outputs['size'][-1, t]:.2f}", f"{outputs['accuracy'][p, t]:.3f}",
                              *(f"{v:.3f}" for v in means))
            console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [eval_figure(outputs, prefix.with_suffix(".ssa-eval.png"))]


def masked_predictions(rebuilt: Any, factors: Mapping[str, Any], configs: int, images: tuple[Any, Any, Any],
                       batch_size: int, advance: Any) -> np.ndarray:
    """(configs, N) top-1 classes of the evaluation `images` (classes, index, partition) under every
    masking configuration, `batch_size` images per stacked forward."""
    classes, index, part = images
    predicted = np.empty((configs, len(classes)), dtype=np.int64)
    for start in range(0, len(classes), batch_size):
        rows = slice(start, start + batch_size)
        loaded = rebuilt.source.load(classes[rows], index[rows], part[rows]).to(rebuilt.device)
        predicted[:, rows] = stacked_predictions(rebuilt.net, factors, rebuilt.inputs(loaded), configs)
        advance(loaded.shape[0])
    return predicted


def stacked_predictions(net: Any, factors: Mapping[str, Any], x: Any, configs: int) -> np.ndarray:
    """(configs, B) top-1 classes of a batch under every masking configuration, in one forward:
    the layers before the first masked checkpoint run once (its output is repeated); where a
    skip connection jumps over it the shapes disagree, and the input is repeated instead."""
    import torch

    from sa_frame import StackedMasking

    for shared in (True, False):
        try:
            with torch.no_grad(), StackedMasking(net, factors, shared_prefix=shared) as stacked:
                stacked.active, stacked.batch = slice(0, configs), x.shape[0]
                logits = net(x if shared else x.repeat(configs, *[1] * (x.ndim - 1)))
            if logits.shape[0] == configs * x.shape[0]:
                return logits.argmax(1).view(configs, -1).cpu().numpy()
        except RuntimeError:
            if not shared:
                raise
    raise UsageError("ssa-eval: the network's output does not follow the stacked masks (batch sizes disagree)")


def rebuilt_shapes(rebuilt: Any, checkpoints: list[str]) -> dict[str, tuple[int, ...]]:
    """Per-image output shapes of checkpoints of the rebuilt network (one forward of one image)."""
    import torch

    from sa_frame import Capture

    source = rebuilt.source
    one = source.load(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                      torch.zeros(1, dtype=torch.long)).to(rebuilt.device)
    with torch.no_grad(), Capture(rebuilt.net, checkpoints) as cap:
        rebuilt.net(rebuilt.inputs(one))
    return cap.shapes()


@dataclass
class AblationOptions:
    partition: str = option("valid", "partition evaluated")
    per_class: int = option(10, "images per class")
    batch_size: int = option(4, "images per stacked forward")
    device: str = option("", "device of the forwards (default: the run's)")


class SsaAblationAnalysis(Analysis):
    name = "ssa-ablation"
    description = "gold standard: accuracy drop of zeroing each neuron alone, Spearman with the relevance ranking"
    Options = AblationOptions

    def run(self, results: ResultsFile, options: AblationOptions, progress: Progress = no_progress) \
            -> dict[str, Any]:
        import torch
        from scipy.stats import spearmanr

        data = read_ssa_maps(results, self.name)
        rebuilt = rebuild(results, options.device or None)
        if options.partition not in rebuilt.source.partitions:
            raise UsageError(f"ssa-ablation: partition {options.partition!r} not in {rebuilt.source.partitions}")
        images = rebuilt.evaluation_images(options.per_class, options.partition)
        labels = rebuilt.network_labels(images[0]).numpy()
        sizes, out = data.sizes(), {}
        lower_of = {split_pair(p)[1]: p for p in data.pairs}
        shapes = rebuilt_shapes(rebuilt, data.checkpoints[1:])
        for c in data.checkpoints[1:]:
            shape = shapes[c]
            k = sizes[c]
            off = torch.ones(k + 1, k)
            off[torch.arange(1, k + 1), torch.arange(k)] = 0.0  # config 0: nothing zeroed; config j: neuron j-1
            factors = {c: off.view(k + 1, k, *[1] * (len(shape) - 1)).expand(k + 1, *shape).contiguous()}
            advance = progress(f"ablation forwards ({c})", len(labels))
            predicted = masked_predictions(rebuilt, factors, k + 1, images, options.batch_size, advance)
            accuracy = (predicted == labels[None]).mean(1)
            drop = accuracy[0] - accuracy[1:]
            importance = data.maps[lower_of[c]][-1].mean(0)  # the "all" group, mean over upper neurons
            rho = spearmanr(importance, drop).statistic if np.ptp(drop) > 0 and np.ptp(importance) > 0 else np.nan
            out[c] = {"drop": drop, "importance": importance, "rho": float(rho), "base_accuracy": float(accuracy[0])}
        return {"checkpoints": out, "relevance": str(results.attrs().get("relevance"))}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"ablation gold standard vs the {outputs['relevance']} ranking (Spearman rho)")
        for column in ("checkpoint", "neurons", "largest drop", "rho"):
            table.add_column(column, justify="right")
        for c, v in outputs["checkpoints"].items():
            table.add_row(c, str(len(v["drop"])), f"{np.max(v['drop']):.3f}", f"{v['rho']:.3f}")
        console.print(table)


@dataclass
class ClusterOptions:
    keep: float = option(0.5, "keep fraction of the global class graphs compared")
    aggregation: str = option("mean", "mean relevance, or tukey (the outlier frequency)")
    linkage: str = option("average", "average (with cosine distances) or ward (on L2-normalised rows)")
    cut: float = option(0.0, "distance at which flat clusters are cut (0: in the largest gap between merge heights)")


class SsaClusterAnalysis(Analysis):
    name = "ssa-cluster"
    description = "classes clustered by the neurons their dependency graphs share (bag of nodes)"
    Options = ClusterOptions

    def run(self, results: ResultsFile, options: ClusterOptions, progress: Progress = no_progress) -> dict[str, Any]:
        from scipy.cluster import hierarchy
        from scipy.spatial.distance import pdist

        data = read_ssa_maps(results, self.name, options.aggregation)
        sizes = data.sizes()
        inner = data.checkpoints[1:]
        classes = data.groups[:-1]
        if len(classes) < 2:
            raise UsageError("ssa-cluster needs at least two classes")
        bags = np.stack([np.concatenate([data.graph(g, "global", options.keep, 3, 3).mask(c, sizes[c])
                                         for c in inner]) for g in range(len(classes))])
        if options.linkage == "average":
            linkage = hierarchy.linkage(pdist(bags, metric="cosine"), method="average")
        elif options.linkage == "ward":  # squared Euclidean of unit rows = 2 - 2 cos
            unit = bags / np.maximum(np.linalg.norm(bags, axis=1, keepdims=True), 1e-12)
            linkage = hierarchy.linkage(unit, method="ward")
        else:
            raise UsageError(f"ssa-cluster: linkage must be average or ward, got {options.linkage!r}")
        shared = bags @ bags.T
        return {"classes": np.array(classes), "bags": bags.astype(np.uint8), "shared": shared,
                "jaccard": shared / np.maximum(bags.sum(1)[:, None] + bags.sum(1)[None] - shared, 1),
                "linkage": linkage, **dict(zip(("clusters", "cut"), flat_clusters(linkage, options.cut)))}

    def report(self, outputs: Mapping[str, Any], console: Any) -> None:
        from rich.table import Table

        table = Table(title="classes clustered by shared graph neurons")
        table.add_column("cluster", justify="right")
        table.add_column("classes")
        classes = [str(c) for c in outputs["classes"]]
        for k in np.unique(outputs["clusters"]):
            table.add_row(str(k), ", ".join(c for c, m in zip(classes, outputs["clusters"]) if m == k))
        console.print(table)

    def figures(self, outputs: Mapping[str, Any], prefix: Path) -> list[Path]:
        return [cluster_figure(outputs, prefix.with_suffix(".ssa-cluster.png"))]
