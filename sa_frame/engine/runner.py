"""A plan executed block by block: design rows -> images chosen by class and partition ->
augmentations on the device -> forward with capture -> the estimator's accumulator.

Nothing stores raw activations: each forward batch is folded into the accumulator and
dropped before the next one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from sa_frame.core.estimator import Accumulator
from sa_frame.engine.capture import Capture
from sa_frame.engine.laws import Categorical
from sa_frame.engine.plan import CLASS, PARTITION, RunPlan

Progress = Callable[[int], None]
CHUNK_BYTES = 20 * 2**20  # CPU input preparation chunk: 33 images of 224 px, below glibc's 32 MiB mmap ceiling


def minmax(images: Tensor) -> Tensor:
    """The research code's per-image, per-channel min-max rescale, as an option."""
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
            else torch.full((unit.shape[0],), run.partition, dtype=torch.long)
        index = run.source.select(classes.long(), within, partition)
        # rows of a base point / inner group share their image: load each distinct one once
        key = torch.stack([classes.long(), index, partition], 1)
        distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
        images = run.source.load(distinct[:, 0], distinct[:, 1], distinct[:, 2]).to(run.device)[inverse.to(run.device)]
        columns = {name: values[:, i].to(run.device) for i, name in enumerate(run.problem.names)}
        if run.chain is not None:
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
                progress: Progress, forward: Callable[[Tensor, Tensor], dict[str, Tensor]] | None = None,
                capture: bool = True) -> None:
        """Fold design `blocks` into `acc`; after each, `on_block_done(number of blocks done here)`.
        `forward` maps rows to outputs (default: the network's checkpoints; segment analyses and
        step-wise runs pass their own); `capture=False` leaves the capture hooks (and the
        classifier's softmax) out."""
        run = self.run
        step = run.rows_per_batch
        forward = forward or self.forward
        with torch.no_grad(), self.capture if capture else contextlib.nullcontext():
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
