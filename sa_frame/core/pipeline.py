"""The main job (DESIGN §3): design blocks -> images -> augmentations on the device ->
forward with capture -> streaming accumulator; state saved every K blocks; indices
written to the results file.

Nothing stores raw activations: each forward batch is folded into the accumulator and
dropped. A resumed run continues from the last saved block with the saved state and
ends with exactly the numbers of an uninterrupted run of the same configuration.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sa_frame.core.capture import Capture, resolve_modules
from sa_frame.core.chain import AugmentationChain, resolve_augmentations
from sa_frame.core.config import RunConfig, estimator_sizes
from sa_frame.core.contracts import Accumulator, Design, Estimator
from sa_frame.core.data import ImageSource, open_source
from sa_frame.core.distributed import World, join, leave, local_device, merged_on_main
from sa_frame.core.errors import UsageError
from sa_frame.core.lock import WriterLock
from sa_frame.core.model import Model
from sa_frame.core.plugins import lookup, registered, registry
from sa_frame.core.problem import Problem
from sa_frame.core.store import COMPLETE, RUNNING, SCHEMA_VERSION, ResultsFile, state_tree
from sa_frame.core.variables import Categorical

CLASS, PARTITION = "class", "partition"
SWITCHED_ESTIMATORS = ("shapley", "contrast")  # scheme 2 by default (every augmentation switched)

Progress = Callable[[int], None]
CHUNK_BYTES = 20 * 2**20  # CPU input preparation chunk: 33 images of 224 px, below glibc's 32 MiB mmap ceiling


@dataclass
class RunPlan:
    """Everything a run needs, resolved and checked before any heavy work."""

    config: RunConfig
    spec: Model
    net: nn.Module
    device: torch.device
    checkpoints: list[str]
    source: ImageSource
    chain: AugmentationChain
    problem: Problem
    estimator: Estimator
    design: Design
    sizes: dict[str, Any]

    @property
    def rows_per_batch(self) -> int:
        unit = self.design.unit_rows
        return max(unit, self.config.batch_size // unit * unit)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} was asked for but CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def build_problem(chain: AugmentationChain, source: ImageSource) -> Problem:
    """The chain's variables plus class (which also picks the image) and partition."""
    blocks, groups = chain.variables()
    blocks[CLASS] = Categorical(len(source.classes), labels=source.classes)
    groups[CLASS] = [CLASS]
    if len(source.partitions) == 2:
        blocks[PARTITION] = Categorical(2, labels=source.partitions)
        groups[PARTITION] = [PARTITION]
    return Problem(blocks, groups)


def estimator_options(config: RunConfig, sizes: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in sizes.items() if k != "n"}
    if config.estimator == "sobol":
        options["second_order"] = config.second_order
    if config.estimator == "shapley" and config.players:
        options["players"] = config.players
    options.update(config.extra)
    return options


def plan(config: RunConfig) -> RunPlan:
    """Resolve names, build the problem and design, load the model (UsageError on bad input)."""
    spec = lookup("model", config.model)
    estimator = lookup("estimator", config.estimator)
    augmentations = resolve_augmentations(config.aug)
    device = local_device(resolve_device(config.device))
    source = open_source(config.data, tuple(spec.input_size))
    scheme = config.scheme or (2 if config.estimator in SWITCHED_ESTIMATORS else 1)
    chain = AugmentationChain(augmentations, scheme=scheme, permute=config.estimator != "contrast")
    problem = build_problem(chain, source)
    sizes = estimator_sizes(config, is_demo=config.data == "demo" and config.model == "demo-cnn")
    design = estimator.design(problem, sizes["n"], config.seed, **estimator_options(config, sizes))
    net = spec.build(config.weights).to(device)
    checkpoints = list(config.checkpoints or registered("checkpoint").get(spec.name) or spec.checkpoints)
    resolve_modules(net, checkpoints)
    if config.classifier_output not in ("softmax", "logits"):
        raise UsageError(f"classifier_output must be softmax or logits, got {config.classifier_output!r}")
    return RunPlan(config, spec, net, device, checkpoints, source, chain, problem, estimator, design, sizes)


def minmax(images: Tensor) -> Tensor:
    """The research code's per-image, per-channel min-max rescale (SPEC B §1.3), as an option."""
    low = images.amin(dim=(-2, -1), keepdim=True)
    shifted = images - low
    high = shifted.amax(dim=(-2, -1), keepdim=True)
    return shifted / torch.where(high < 1e-6, torch.ones_like(high), high)


class Runner:
    """Executes a plan block by block into an accumulator."""

    def __init__(self, run: RunPlan) -> None:
        self.run = run
        names = run.problem.names
        self.class_col = names.index(CLASS)
        self.partition_col = names.index(PARTITION) if PARTITION in names else None
        self.class_variable: Categorical = run.problem.variable(CLASS)  # type: ignore[assignment]
        classifier = run.spec.classifier or None
        self.capture = Capture(run.net, run.checkpoints, classifier=classifier,  # type: ignore[arg-type]
                               classifier_output=run.config.classifier_output, copy=False)
        self._buffer: Tensor | None = None  # the reused input batch (see forward)

    def inputs(self, unit: Tensor, values: Tensor, normalize: bool = True, out: Tensor | None = None) -> Tensor:
        """Network inputs for design rows: images chosen by class/partition, augmented, normalised
        (or left in [0, 1] with normalize=False); written into `out` when given.

        On the CPU the rows are prepared a chunk at a time (`chunk_rows`): a chunk's
        intermediates stay cache-sized and are reused by the allocator, where whole-batch
        intermediates (173 MB at 288 rows of 224 px) are fresh page-faulted memory for every
        op — 2-3x slower for the same per-image arithmetic, and identical results."""
        n = unit.shape[0]
        step = self.chunk_rows() if self.run.device.type == "cpu" else n
        if out is None and step >= n:
            return self._prepare(unit, values, normalize)
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            chunk = self._prepare(unit[rows], values[rows], normalize)
            if out is None:
                out = chunk.new_empty((n, *chunk.shape[1:]))
            out[rows] = chunk
        assert out is not None
        return out

    def chunk_rows(self) -> int:
        """Rows per CPU preparation chunk: about CHUNK_BYTES of float32 images."""
        h, w = self.run.spec.input_size
        return max(1, CHUNK_BYTES // (3 * h * w * 4))

    def _prepare(self, unit: Tensor, values: Tensor, normalize: bool) -> Tensor:
        run = self.run
        classes, within = self.class_variable.split(unit[:, self.class_col])
        partition = values[:, self.partition_col].long() if self.partition_col is not None \
            else torch.zeros(unit.shape[0], dtype=torch.long)
        index = run.source.select(classes.long(), within, partition)
        # rows of a base point / inner group share their image: load each distinct one once
        key = torch.stack([classes.long(), index, partition], 1)
        distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
        images = run.source.load(distinct[:, 0], distinct[:, 1], distinct[:, 2]).to(run.device)[inverse.to(run.device)]
        columns = {name: values[:, i].to(run.device) for i, name in enumerate(run.problem.names)}
        images = run.chain.apply(images, columns)
        if run.config.postprocess == "minmax":
            images = minmax(images)
        return run.spec.normalize(images) if normalize else images

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-image output shapes of the checkpoints (one forward of one image)."""
        block = self.run.design.block(0)
        unit = block.unit[:1]
        with torch.no_grad(), self.capture as cap:
            self.run.net(self.inputs(unit, self.run.problem.values(unit)))
        return cap.shapes()

    def forward(self, unit: Tensor, values: Tensor) -> dict[str, Tensor]:
        """Checkpoint outputs of the network for design rows (inside `process`).

        The input batch lives in one buffer reused by every forward: the previous batch's
        activations are folded into the accumulator before it is overwritten."""
        n = unit.shape[0]
        reuse = self._buffer is not None and self._buffer.shape[0] >= n
        batch = self.inputs(unit, values, out=self._buffer[:n] if reuse else None)  # type: ignore[index]
        if not reuse:
            self._buffer = batch
        self.run.net(batch)
        self.capture.verify()
        return self.capture.outputs

    def process(self, acc: Accumulator, blocks: Iterable[int], on_block_done: Callable[[int], None],
                progress: Progress, forward: Callable[[Tensor, Tensor], dict[str, Tensor]] | None = None) -> None:
        """Fold design `blocks` into `acc`; after each, `on_block_done(number of blocks done here)`.
        `forward` maps rows to activations (default: the network's checkpoints; segment analyses
        pass their own)."""
        run = self.run
        step = run.rows_per_batch
        forward = forward or self.forward
        with torch.no_grad(), self.capture:
            for done, k in enumerate(blocks, 1):
                block = run.design.block(k)
                values = run.problem.values(block.unit, block.known)
                for start in range(0, block.n_rows, step):
                    rows = slice(start, min(start + step, block.n_rows))
                    outputs = forward(block.unit[rows], values[rows])
                    acc.update(block, outputs, rows)
                    outputs.clear()  # free this batch's activations before the next forward
                    progress(rows.stop - rows.start)
                on_block_done(done)


def versions() -> dict[str, str]:
    """Package versions of sa-frame, its main libraries and every plugin provider."""
    out = {}
    for dist in ("sa-frame", "torch", "torchvision", "timm", "numpy", "scipy", "h5py"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    for kind in ("model", "augmentation", "estimator"):
        for reg in registry().entries(kind).values():
            out.setdefault(reg.provider, reg.version)
    return out


def variables_section(run: RunPlan) -> dict[str, Any]:
    problem = run.problem
    rows = problem.describe()
    return {"names": np.array(problem.names), "groups": np.array(problem.group_names),
            "group_of_column": problem.group_of_column, "distributions": np.array([r[2] for r in rows]),
            "classes": np.array(run.source.classes), "partitions": np.array(run.source.partitions)}


def base_attrs(run: RunPlan, status: str, blocks_done: int) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "status": status, "config": run.config.to_yaml(),
            "identity": run.config.identity(), "versions": versions(),
            "seed": run.config.seed, "estimator": run.config.estimator, "model": run.spec.name,
            "design": run.design.config(), "n_rows": run.design.n_rows, "n_blocks": run.design.n_blocks,
            "blocks_done": blocks_done, "checkpoints": run.checkpoints,
            # what the leading axis of the index maps means: groups, or (contrast) treatments
            "map_rows": list(getattr(run.design, "treatment_names", run.problem.group_names)),
            "rows_per_batch": run.rows_per_batch}


def check_existing(results: ResultsFile, config: RunConfig) -> int:
    """Blocks already done (0 for a fresh run); refuse to clobber or to resume another config."""
    if not results.exists():
        if config.resume:
            raise UsageError(f"nothing to resume: {results.path} does not exist")
        return 0
    if config.force:
        return 0
    try:
        attrs = results.attrs()
    except UsageError as exc:
        raise UsageError(f"{exc}; the file may be truncated or damaged: use --force to start over "
                         f"(or --out for another file)") from None
    status = attrs.get("status")
    if status == COMPLETE:
        raise UsageError(f"{results.path} already holds a complete run; use --force to overwrite it or --out "
                         f"for another file")
    if not config.resume:
        raise UsageError(f"{results.path} holds an unfinished run; use --resume to continue it or --force to "
                         f"start over")
    stored = attrs["identity"]
    new = config.identity()
    differing = sorted(k for k in set(stored) | set(new) if stored.get(k) != new.get(k))
    if differing:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in differing)
        raise UsageError(f"cannot resume {results.path} with another configuration ({detail})")
    return int(attrs["blocks_done"])


def execute(config: RunConfig, progress_factory: Callable[[int, int], Progress] | None = None) \
        -> tuple[RunPlan, dict[str, dict[str, np.ndarray]] | None, float]:
    """Run (or resume) a configuration, alone or as one of torchrun's processes; returns the plan,
    the index maps (None on ranks other than 0) and the wall time."""
    results = ResultsFile(config.out)
    start_block = check_existing(results, config)
    world = join(resolve_device(config.device))
    with WriterLock(config.out) if world.is_main else contextlib.nullcontext():
        return _execute(config, results, start_block, world, progress_factory)


def _execute(config: RunConfig, results: ResultsFile, start_block: int, world: World,
             progress_factory: Callable[[int, int], Progress] | None) \
        -> tuple[RunPlan, dict[str, dict[str, np.ndarray]] | None, float]:
    run = plan(config)
    if world.size > 1 and getattr(run.design, "mode", None) == "binned":
        raise UsageError("contrast in binned mode cannot be split across processes (its bins come from the first "
                         "block each process sees); use mode exact or a single process")
    runner = Runner(run)
    shapes = runner.shapes()

    def fresh() -> Accumulator:
        return run.estimator.accumulator(run.problem, run.design, shapes, device=run.device)

    acc = fresh()
    variables = variables_section(run)
    if start_block and world.is_main:  # the saved state covers blocks [0, start_block): one copy of it
        try:
            state = results.state()
            if not any("/" in key for key in state):
                raise ValueError("no accumulator state was saved")
            acc.load_state(state)
        except (KeyError, ValueError, RuntimeError, OSError, UsageError) as exc:
            raise UsageError(f"{results.path}: the saved state cannot be resumed ({exc}); use --force to start "
                             f"over") from None
    elif world.is_main:
        results.write(base_attrs(run, RUNNING, 0), {"variables": variables})
    world.barrier()
    started = time.perf_counter()
    n_blocks = run.design.n_blocks
    rounds_per_save = max(1, config.save_every // world.size)

    def save(rounds_done: int) -> None:
        # every rank has finished `rounds_done` rounds of W blocks: the merged state is a prefix
        prefix = start_block + rounds_done * world.size
        if rounds_done % rounds_per_save == 0 and prefix < n_blocks:
            merged = merged_on_main(world, acc, fresh)
            if merged is not None:
                results.write(base_attrs(run, RUNNING, prefix), {"variables": variables,
                                                                 "state": state_tree(merged.state())})

    rows_per_block = run.design.n_rows // n_blocks
    progress = progress_factory(run.design.n_rows, start_block * rows_per_block) \
        if progress_factory and world.is_main else (lambda n: None)
    runner.process(acc, world.blocks(start_block, n_blocks), save,
                   (lambda n: progress(n * world.size)) if world.size > 1 else progress)
    merged = merged_on_main(world, acc, fresh)
    elapsed = time.perf_counter() - started
    if merged is None:
        leave(world)
        return run, None, elapsed
    maps = merged.finalize()
    attrs = base_attrs(run, COMPLETE, n_blocks) | {"elapsed_s": elapsed, "processes": world.size,
                                                   "nonfinite_values": nonfinite_summary(maps)}
    sections = {"variables": variables, "checkpoints": maps}
    if config.keep_state:  # float64 sums: to check exactness, or to merge with other runs later
        sections["state"] = state_tree(merged.state())
    results.write(attrs, sections)
    leave(world)
    return run, maps, elapsed


def nonfinite_summary(maps: dict[str, dict[str, np.ndarray]]) -> dict[str, list[int]]:
    """{checkpoint: [activations with non-finite outputs, non-finite values]} where there were any."""
    out = {}
    for name, stats in maps.items():
        counts = stats.get("nonfinite")
        if counts is not None and np.any(counts > 0):
            out[name] = [int(np.count_nonzero(counts)), int(np.sum(counts))]
    return out
