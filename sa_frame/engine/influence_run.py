"""``sa-frame influence``: images from a data source, fixed disturbances of the test images, the test side solved
once, the training set streamed once (resumable; torchrun shards its batches), results under `/influence`.

The saved state holds the test side's inverse-Hessian products and the accumulators after a prefix of training
batches, so that a resumed or merged run equals an uninterrupted one (docs/influence.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import Tensor

from sa_frame._version import __version__
from sa_frame.core.augmentation import Augmentation
from sa_frame.core.data import ImageSet
from sa_frame.core.errors import UsageError
from sa_frame.core.options import parse_pairs
from sa_frame.core.registry import lookup
from sa_frame.engine.distributed import World, join, leave, local_device, merged_on_main
from sa_frame.engine.influence import TOTAL, InfluenceAccumulator, InfluenceSpec, layer_scores, self_scores, solve_tests
from sa_frame.engine.labels import network_labels
from sa_frame.engine.parameter_blocks import NetworkFunctions, union_block
from sa_frame.engine.plan import open_data, resolve_device
from sa_frame.engine.regions import parse_named, partition_index, select_images
from sa_frame.engine.stop import RunInterrupted, StopRequest
from sa_frame.results.lock import WriterLock
from sa_frame.results.store import COMPLETE, RUNNING, SCHEMA_VERSION, ResultsFile, state_tree

ORIGINAL = "original"
SIGN_CONVENTION = ("I_up_loss (Koh & Liang): -g_test^T (H + damping I)^-1 g_train; negative = up-weighting the "
                   "training image lowers the test loss (a proponent), positive = an opponent")
TEST_LABELS = ("true", "predicted")
#: the network's copy is cast to this for every gradient and product: float32 products carry ~1e-7 relative noise,
#: which a condition number of 1e4 turns into a 1e-3 residual no solver can get under
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}
Progress = Callable[[int], None]


@dataclass
class InfluenceConfig:
    """Everything an influence run depends on (stored in the results file; `--resume` reads it back)."""

    model: str = "demo-cnn"
    weights: str | None = None
    data: str = "demo"
    train_partition: str = "train"
    train_per_class: int | None = None
    train_images: int | None = None
    test_partition: str | None = None
    test_per_class: int | None = None
    test_images: int | None = None
    disturbances: list[str] = field(default_factory=lambda: [ORIGINAL])
    test_label: str = "true"
    layers: list[str] | str = "weighted"
    layer_mode: str = "block"
    solver: str = "auto"
    damping: float | str = "auto"
    curvature: str = "hessian"
    hvp: str = "double-backward"
    l2: float = 0.0
    hessian_samples: int | None = 200
    precision: str = "float64"
    top_k: int = 10
    keep_scores: bool = False
    self_influence: bool = False
    batch_size: int = 64
    save_every: int = 10
    seed: int = 0
    device: str = "cpu"
    out: str = "influence.h5"

    #: fields that may differ on --resume: they do not change the numbers
    FREE: tuple[str, ...] = ("device", "out", "save_every")

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.FREE}


def parse_disturbances(items: Sequence[str]) -> list[tuple[str, Augmentation | None, dict[str, float]]]:
    """``original,hue:hue=0.45,saturation=0.5,grayscale`` -> (label, augmentation, fixed values) per condition: a
    comma-separated token with ``=`` and no ``:`` continues the previous disturbance's parameters."""
    tokens = [t.strip() for item in items for t in item.split(",") if t.strip()]
    groups: list[list[str]] = []
    for token in tokens:
        if "=" in token and ":" not in token and groups:
            groups[-1].append(token)
        else:
            groups.append([token])
    out = []
    for group in groups:
        label = ",".join(group)
        name, _, first = group[0].partition(":")
        if name == ORIGINAL:
            if first or len(group) > 1:
                raise UsageError(f"disturbance {label!r}: original takes no parameters")
            out.append((label, None, {}))
            continue
        aug: Augmentation = lookup("augmentation", name)
        values = parse_pairs([p for p in [first, *group[1:]] if p], f"disturbance {name!r}")
        unknown = sorted(set(values) - set(aug.params))
        missing = [p for p in aug.params if p not in values]
        if unknown or missing:
            ranges = ", ".join(f"{p} in [{v.bounds[0]:g}, {v.bounds[1]:g}]" for p, v in aug.params.items())
            raise UsageError(f"disturbance {label!r}: give every parameter a fixed value ({ranges or 'none'}); "
                             f"missing {missing}, unknown {unknown}")
        for p, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise UsageError(f"disturbance {label!r}: {p}={v!r} is not a number")
        out.append((label, aug, {p: float(v) for p, v in values.items()}))
    if not out:
        raise UsageError("no disturbance given; use --disturbances original (and e.g. white_background)")
    if len({label for label, _, _ in out}) != len(out):
        raise UsageError(f"a disturbance is given twice: {[label for label, _, _ in out]}")
    return out


def disturbed(images: Tensor, masks: Callable[[], Tensor | None], conditions: Sequence[tuple[str, Any, dict]],
              data: str) -> Tensor:
    """(conditions x B, 3, H, W): every image under every condition, condition-major."""
    out = []
    for label, aug, values in conditions:
        if aug is None:
            out.append(images)
            continue
        params = {p: torch.full((len(images),), v, device=images.device) for p, v in values.items()}
        mask = masks() if aug.needs_masks else None
        if aug.needs_masks and mask is None:
            raise UsageError(f"disturbance {label!r} needs object masks, and --data {data} has none (the demo has "
                             f"them; a folder has them under <root>/masks/)")
        out.append(aug(images, params, masks=None if mask is None else mask.to(images.device)))
    return torch.cat(out)


@dataclass
class InfluencePlan:
    """A resolved configuration: network, images of both sides, the spec, the accumulator's sizes."""

    config: InfluenceConfig
    spec: InfluenceSpec
    functions: NetworkFunctions
    normalize: Callable[[Tensor], Tensor]
    source: ImageSet
    device: torch.device
    train: tuple[Tensor, Tensor, int]  # classes, within-class index, partition
    test: tuple[Tensor, Tensor, int]
    conditions: list[tuple[str, Any, dict]]
    network_classes: Tensor  # data class -> network output

    @property
    def n_classes(self) -> int:
        """Training classes the class sums are kept for: the data's."""
        return len(self.source.classes)

    @property
    def n_train(self) -> int:
        return len(self.train[0])

    @property
    def n_test(self) -> int:
        return len(self.test[0]) * len(self.conditions)

    @property
    def n_batches(self) -> int:
        return -(-self.n_train // self.config.batch_size)

    def train_batch(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Batch k of the training selection: (normalised inputs, network labels, train indices, data classes)."""
        start = k * self.config.batch_size
        index = torch.arange(start, min(start + self.config.batch_size, self.n_train))
        classes, within, part = self.train[0][index], self.train[1][index], self.train[2]
        images = self.source.load(classes, within, torch.full_like(classes, part)).to(self.device)
        return self.normalize(images), self.network_classes[classes].to(self.device), index, classes


def _selection(source: ImageSet, partition: str | None, images: int | None, per_class: int | None,
               everything: bool) -> tuple[Tensor, Tensor, int]:
    part = partition_index(source, partition)
    if everything and images is None and per_class is None:
        per_class = int(source.counts(part).max())
    classes, index = select_images(source, images, per_class, part)
    return classes, index, part


def plan_influence(config: InfluenceConfig) -> InfluencePlan:
    """Resolve names and load what the run needs (UsageError on bad input, before any long work)."""
    if config.top_k < 1 or config.batch_size < 1:
        raise UsageError(f"--top-k and --batch-size must be >= 1, got {config.top_k}, {config.batch_size}")
    if config.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    if config.hessian_samples is not None and config.hessian_samples < 1:
        raise UsageError(f"--hessian-samples must be >= 1, got {config.hessian_samples}")
    if config.test_label not in TEST_LABELS:
        raise UsageError(f"--test-label must be true or predicted, got {config.test_label!r}")
    model = lookup("model", config.model)
    solver, solver_options = parse_named(config.solver, "ihvp")
    spec = InfluenceSpec(solver, solver_options, config.layers, config.layer_mode, config.damping, config.curvature,
                         config.hvp, config.l2, config.batch_size)
    if isinstance(config.damping, str) and config.damping != "auto" or \
            not isinstance(config.damping, str) and not config.damping >= 0:
        raise UsageError(f"--damping must be a number >= 0 or auto, got {config.damping!r}")
    conditions = parse_disturbances(config.disturbances)
    device = local_device(resolve_device(config.device))
    source = open_data(config.data, model.input_format())
    names = model.class_names
    n_outputs = len(names) if names else None
    labels = network_labels(source, model, n_outputs)
    network_classes = torch.as_tensor(labels.network_classes or list(range(len(source.classes)))).long()
    train = _selection(source, config.train_partition, config.train_images, config.train_per_class, everything=True)
    test = _selection(source, config.test_partition or next((p for p in source.partitions if p != config.train_partition),
                                                            source.partitions[-1]),
                      config.test_images, config.test_per_class, everything=False)
    net = model.build(config.weights).to(device=device, dtype=PRECISIONS[config.precision])
    from sa_frame.engine.parameter_blocks import parameter_blocks

    parameter_blocks(net, config.layers)  # a bad layer fails here, before any image is loaded
    dtype = PRECISIONS[config.precision]
    return InfluencePlan(config, spec, NetworkFunctions(net), lambda x: model.normalize(x).to(dtype), source, device,
                         train, test, conditions, network_classes)


def test_side(run: InfluencePlan, notify: Callable[[str], None],
              known: tuple[Tensor, Sequence[float]] | None = None) -> tuple[Any, Tensor, Tensor]:
    """Disturbed test inputs, their labels and the solved test side (`known`: restored from a saved state)."""
    classes, within, part = run.test
    partition = torch.full_like(classes, part)
    images = run.source.load(classes, within, partition).to(run.device)
    inputs = run.normalize(disturbed(images, lambda: run.source.masks(classes, within, partition), run.conditions,
                                     run.config.data))
    true = run.network_classes[classes].repeat(len(run.conditions)).to(run.device)
    if run.config.test_label == "predicted":
        with torch.no_grad():
            labels = torch.cat([run.functions.net(x).argmax(1) for x in inputs.split(run.config.batch_size)])
    else:
        labels = true
    n = run.config.hessian_samples or run.n_train
    pick = torch.linspace(0, run.n_train - 1, min(n, run.n_train)).round().long().unique()
    h_classes, h_within = run.train[0][pick], run.train[1][pick]
    h_images = run.source.load(h_classes, h_within, torch.full_like(h_classes, run.train[2])).to(run.device)
    solved = solve_tests(run.functions, run.spec, inputs, labels, run.normalize(h_images),
                         run.network_classes[h_classes].to(run.device), run.config.batch_size, notify, known)
    return solved, labels, true


def _attrs(run: InfluencePlan, solved: Any, status: str, done: int, extra: dict[str, Any] | None = None) -> dict:
    config = run.config
    return {"schema_version": SCHEMA_VERSION, "status": status, "mode": "influence", "estimator": "influence",
            "model": config.model, "checkpoints": [*solved.layer_names, TOTAL], "blocks_done": done,
            "n_blocks": run.n_batches, "seed": config.seed, "sa_frame_version": __version__,
            "config": yaml.safe_dump(dataclasses.asdict(config), sort_keys=True),
            "solver": config.solver, "layer_mode": config.layer_mode, "curvature": config.curvature, "l2": config.l2,
            "n_train": run.n_train, "n_test": run.n_test, "sign_convention": SIGN_CONVENTION,
            "conditions": [label for label, _, _ in run.conditions], **(extra or {})}


def _tables(run: InfluencePlan, solved: Any, labels: Tensor, true: Tensor) -> dict[str, Any]:
    classes, within, part = run.test
    c = len(run.conditions)
    reports = solved.reports
    if len(reports) == 1 and len(solved.blocks) > 1:  # masked mode: one solve for every block
        reports = reports * len(solved.blocks)
    dampings = solved.dampings * (len(solved.blocks) if len(solved.dampings) == 1 else 1)
    return {
        "test": {"classes": classes.repeat(c).numpy(), "index": within.repeat(c).numpy(),
                 "partition": [run.source.partitions[part]] * (len(classes) * c),
                 "condition": torch.arange(c).repeat_interleave(len(classes)).numpy(),
                 "label": labels.cpu().numpy(), "true_label": true.cpu().numpy()},
        "train": {"classes": run.train[0].numpy(), "index": run.train[1].numpy()},
        "class_names": list(run.source.classes),
        "layers": {"names": solved.layer_names, "parameters": [b.dim for b in solved.blocks]},
        "diagnostics": {key: torch.tensor([float(getattr(r, key)) for r in reports], dtype=torch.float64).numpy()
                        for key in ("lambda_max", "lambda_min", "rel_change", "residual", "iterations")}
                       | {"damping": torch.tensor(dampings, dtype=torch.float64).numpy(),
                          "converged": torch.tensor([r.converged for r in reports]).numpy()},
    }


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Tensor]:
    """A nested section read back as ``{"a/b/c": tensor}``."""
    flat: dict[str, Tensor] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = torch.as_tensor(value)
    return flat


def execute_influence(config: InfluenceConfig, progress: Callable[[int, int], Progress] | None = None,
                      notify: Callable[[str], None] = lambda _m: None, resume: bool = False) -> dict[str, Any] | None:
    """Run or resume an influence run; the `/influence` tree (None on torchrun ranks other than 0)."""
    results = ResultsFile(config.out)
    world = join(resolve_device(config.device))
    stop = StopRequest()
    with WriterLock(config.out) if world.is_main else contextlib.nullcontext(), \
            stop if world.size == 1 else contextlib.nullcontext():
        return _execute(config, results, world, progress, notify, stop, resume)


def _check_resume(results: ResultsFile, config: InfluenceConfig) -> None:
    attrs = results.attrs()
    if attrs.get("mode") != "influence":
        raise UsageError(f"{results.path} is not an influence run; it cannot be resumed by sa-frame influence")
    if attrs["status"] == COMPLETE:
        raise UsageError(f"{results.path} is already complete; nothing to resume")
    stored = InfluenceConfig(**{k: v for k, v in yaml.safe_load(attrs["config"]).items()
                                if k in {f.name for f in dataclasses.fields(InfluenceConfig)}}).identity()
    changed = [k for k, v in config.identity().items() if stored.get(k) != v]
    if changed:
        k = changed[0]
        raise UsageError(f"--resume: {k} is {config.identity()[k]!r} here but {stored.get(k)!r} in {results.path}; "
                         f"resume with the stored configuration (`sa-frame influence --resume --out {results.path}`)")


def _execute(config: InfluenceConfig, results: ResultsFile, world: World,
             progress: Callable[[int, int], Progress] | None, notify: Callable[[str], None], stop: StopRequest,
             resume: bool) -> dict[str, Any] | None:
    if resume:
        _check_resume(results, config)
    elif results.exists():
        raise UsageError(f"{results.path} exists; give another --out, or --resume to continue it")
    run = plan_influence(config)
    started = time.perf_counter()
    start, state, known = 0, {}, None
    if resume:  # the saved test side: the solves are the expensive part, and a resume on another device is exact
        state = _flatten(results.read("state"))
        start = int(results.attrs()["blocks_done"])
        stored = results.read("influence")
        known = (state["test_side/solutions"], [float(d) for d in stored["diagnostics"]["damping"]])
    solved, labels, true = test_side(run, notify, known)
    n_rows = len(solved.blocks) + 1

    def fresh() -> InfluenceAccumulator:
        return InfluenceAccumulator(n_rows, run.n_test, run.n_classes, config.top_k, run.n_train,
                                    config.keep_scores, config.self_influence)

    acc = fresh()
    if resume and world.is_main:
        acc.load_state({k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("acc/")})
    tables = stored if resume else _tables(run, solved, labels, true)

    def save(done: int) -> None:
        merged = merged_on_main(world, acc, fresh)
        if merged is not None:
            saved = {f"acc/{k}": v for k, v in merged.state().items()} | {"test_side/solutions": solved.solutions}
            results.write(_attrs(run, solved, RUNNING, done), {"influence": tables, "state": state_tree(saved)})

    if world.is_main and not resume:
        save(0)
    union = union_block(solved.blocks)
    advance = progress(run.n_batches, start) if progress and world.is_main else (lambda n: None)
    rounds = range(start, run.n_batches, world.size)
    for round_number, first in enumerate(rounds, 1):
        k = first + world.rank
        if k < run.n_batches:
            inputs, targets, index, classes = run.train_batch(k)
            g = run.functions.per_example_grads(union, inputs, targets, config.batch_size)
            acc.update(layer_scores(solved, g).cpu(), index, classes,
                       self_scores(solved, run.spec, g).cpu() if config.self_influence else None)
        advance(world.size)
        done = min(first + world.size, run.n_batches)
        stopping = stop.requested is not None and world.size == 1
        if done < run.n_batches and (round_number % max(1, config.save_every // world.size) == 0 or stopping):
            save(done)
        if stopping and done < run.n_batches:
            raise RunInterrupted(f"interrupted ({stop.requested}) after {done} of {run.n_batches} training batches; "
                                 f"the state is saved in {results.path}: `sa-frame influence --resume --out "
                                 f"{results.path}` continues it")
    merged = merged_on_main(world, acc, fresh)
    if merged is None:
        leave(world)
        return None
    tree = tables | merged.finalize()
    elapsed = time.perf_counter() - started
    results.write(_attrs(run, solved, COMPLETE, run.n_batches, {"elapsed_s": elapsed, "processes": world.size}),
                  {"influence": tree})
    leave(world)
    return tree


class InfluenceImages:
    """The images an influence results file refers to, loaded again from its data source: training images by
    position in `/influence/train`, test images by row of `/influence/test`, disturbed as they were scored."""

    def __init__(self, results: ResultsFile) -> None:
        known = {f.name for f in dataclasses.fields(InfluenceConfig)}
        self.config = InfluenceConfig(**{k: v for k, v in results.config().items() if k in known})
        self.source = open_data(self.config.data, lookup("model", self.config.model).input_format())
        self.conditions = parse_disturbances(self.config.disturbances)
        tree = results.read("influence")
        self.train_table, self.test_table = tree["train"], tree["test"]
        self.train_part = partition_index(self.source, self.config.train_partition)

    def train(self, positions: Sequence[int]) -> Tensor:
        """(N, 3, H, W) in [0, 1]: training images at these positions."""
        at = torch.as_tensor(list(positions), dtype=torch.long)
        classes = torch.as_tensor(self.train_table["classes"])[at].long()
        return self.source.load(classes, torch.as_tensor(self.train_table["index"])[at].long(),
                                torch.full_like(classes, self.train_part))

    def test(self, rows: Sequence[int]) -> Tensor:
        """(N, 3, H, W) in [0, 1]: test rows, each under its own condition."""
        at = torch.as_tensor(list(rows), dtype=torch.long)
        table = self.test_table
        classes, within = torch.as_tensor(table["classes"])[at].long(), torch.as_tensor(table["index"])[at].long()
        names = [p.decode() if isinstance(p, bytes) else str(p) for p in table["partition"]]
        partition = torch.as_tensor([list(self.source.partitions).index(names[r]) for r in at.tolist()])
        images = self.source.load(classes, within, partition)
        condition = torch.as_tensor(table["condition"])[at]
        out = images.clone()
        for c in condition.unique().tolist():
            pick = condition == c
            out[pick] = disturbed(images[pick], lambda p=pick: self.source.masks(classes[p], within[p], partition[p]),
                                  [self.conditions[c]], self.config.data)
        return out
