"""A region run's forwards: every design row of region values is applied to all M fixed
images (or, per-image designs, each image's own row), the network's class score is the
output — a virtual ``score`` checkpoint — and real checkpoints may be added. The
accumulator sees M columns per row (M x activations for real checkpoints), so the Sobol
and Shapley code is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import Accumulator, DesignBlock
from sa_frame.engine.capture import Capture
from sa_frame.engine.regions import SCORE, RegionSetup

#: the largest buffer of real-checkpoint outputs one update may hold (rows x images x activations)
CHECKPOINT_BUFFER_BYTES = 2 * 2**30
#: images stored as uint8 thumbnails with the results, for the region figure
PREVIEW_IMAGES = 8


class RegionRunner:
    """Design rows x fixed images -> perturbed inputs -> scores (and checkpoints) -> accumulator."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.setup: RegionSetup = run.regions
        self.net: nn.Module = run.net
        self.checkpoints = [c for c in run.checkpoints if c != SCORE]
        self.capture = Capture(self.net, self.checkpoints, copy=True) if self.checkpoints else None
        self._base: dict[str, Tensor] | None = None

    def base(self) -> dict[str, Tensor]:
        """The unperturbed images' scores: logits (M, C), predicted class, target and its score."""
        if self._base is None:
            s = self.setup
            with torch.no_grad():
                logits = torch.cat([self.net(self.run.spec.normalize(s.images[i:i + self.run.config.batch_size]))
                                    for i in range(0, s.n_images, self.run.config.batch_size)])
            predicted = logits.argmax(1)
            target = predicted if s.target == "predicted" else s.true_targets.to(logits.device)
            if s.target != "all" and int(target.max()) >= logits.shape[1]:
                raise UsageError(f"class index {int(target.max())} is beyond the network's {logits.shape[1]} "
                                 f"outputs; give --class-map or --target predicted")
            score = self.score(logits)
            base = score if s.target == "all" else score.gather(1, target.view(-1, 1)).squeeze(1)
            self._base = {"predicted": predicted.cpu(), "target": target.cpu(), "base_score": base.cpu()}
        return self._base

    def score(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1) if self.setup.score == "softmax" else logits

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-row output shapes: score (M,) or (M, C); real checkpoints (M, *activation)."""
        s, m = self.setup, self.setup.n_images
        base = self.base()
        shapes = {SCORE: (m,) if s.target != "all" else (m, int(base["base_score"].shape[1]))}
        if self.capture is not None:
            with torch.no_grad(), self.capture as cap:
                self.net(self.run.spec.normalize(s.images[:1]))
            for name, shape in cap.shapes().items():
                shapes[name] = (m, *shape)
            rows = self.rows_per_update()
            need = sum(rows * m * int(torch.tensor(shape[1:]).prod()) * 4 for n, shape in shapes.items() if n != SCORE)
            if need > CHECKPOINT_BUFFER_BYTES:
                raise UsageError(f"real checkpoints {self.checkpoints} over {m} images need {need / 2**30:.1f} GiB "
                                 f"per update of {rows} rows; analyse fewer images (--images / --per-class)")
        return shapes

    def rows_per_update(self) -> int:
        unit = self.run.design.unit_rows
        return max(unit, self.run.config.batch_size // max(1, unit * self.setup.n_images) * unit)

    def forward(self, values: Tensor) -> dict[str, Tensor]:
        """Outputs of design rows' region `values` on every image: {name: (R, M, ...)}; `values`
        (R, L) are shared by the images, (R, M, L) are per image (--design per-image)."""
        s, run = self.setup, self.run
        r_count, m = values.shape[0], s.n_images
        device = s.images.device
        values = values.to(device=device)  # float64: the perturbation casts to the images' dtype
        base = self.base()
        target = base["target"].to(device)
        pairs = r_count * m
        out: dict[str, Tensor] = {}
        batch = run.config.batch_size
        for start in range(0, pairs, batch):
            p = torch.arange(start, min(start + batch, pairs), device=device)
            row, image = p // m, p % m
            rows = values[row] if values.dim() == 2 else values[row, image]
            x = s.perturbation.apply(s.images[image], s.labels[image], rows, s.perturbation_options)
            logits = self.net(run.spec.normalize(x))
            score = self.score(logits)
            got = {SCORE: score if s.target == "all" else score.gather(1, target[image].view(-1, 1)).squeeze(1)}
            if self.capture is not None:
                got.update(self.capture.outputs)
            for name, y in got.items():
                if name not in out:
                    out[name] = y.new_empty((pairs, *y.shape[1:]))
                out[name][start:start + y.shape[0]] = y
        return {name: y.view(r_count, m, *y.shape[1:]) for name, y in out.items()}

    def image_scores(self, values: Tensor, progress: Callable[[int], None] = lambda n: None,
                     images: Tensor | None = None) -> Tensor:
        """Target scores (m, K) of images under K region-value configurations of their own,
        `values` (m, K, L) (masking and sensitivity-n evaluate these); `images` the (m,) indices of
        the run's images they belong to (default: all M, in order)."""
        s, batch = self.setup, self.run.config.batch_size
        m, k = values.shape[:2]
        values = torch.as_tensor(values).to(s.images.device)
        which = torch.arange(m) if images is None else torch.as_tensor(images).long()
        target = self.base()["target"][which].to(s.images.device)
        pictures, labels = s.images[which.to(s.images.device)], s.labels[which.to(s.images.device)]
        out = torch.empty(m * k, dtype=torch.float64)
        with torch.no_grad():
            for start in range(0, m * k, batch):
                p = torch.arange(start, min(start + batch, m * k), device=s.images.device)
                image, config = p // k, p % k
                x = s.perturbation.apply(pictures[image], labels[image], values[image, config], s.perturbation_options)
                score = self.score(self.net(self.run.spec.normalize(x)))
                out[start:start + p.numel()] = score.gather(1, target[image].view(-1, 1)).squeeze(1).double().cpu()
                progress(p.numel())
        return out.view(m, k)

    def process(self, acc: Accumulator, blocks: Iterable[int], on_block_done: Callable[[int], None],
                progress: Callable[[int], None], forward: Callable[..., dict[str, Tensor]] | None = None) -> None:
        """Fold design `blocks` into `acc` (the engine's Runner.process contract)."""
        run = self.run
        step = self.rows_per_update()
        hooks = self.capture if self.capture is not None else contextlib.nullcontext()
        with torch.no_grad(), hooks:
            for done, k in enumerate(blocks, 1):
                block = run.design.block(k)
                values = self.values(block)
                for start in range(0, block.n_rows, step):
                    rows = slice(start, min(start + step, block.n_rows))
                    outputs = self.forward(values[rows])
                    acc.update(block, outputs, rows)
                    outputs.clear()
                    progress(rows.stop - rows.start)
                on_block_done(done)

    def values(self, block: DesignBlock) -> Tensor:
        """Region values of a block: (rows, L), or (rows, M, L) for per-image designs."""
        units = block.info.get("image_units")
        if units is None:
            return self.run.problem.values(block.unit, block.known)
        m, rows, n_vars = units.shape
        known = None if block.known is None else block.known.repeat(m, 1)
        return self.run.problem.values(units.reshape(m * rows, n_vars), known).view(m, rows, -1).transpose(0, 1)

    def sections(self) -> dict[str, dict[str, Any]]:
        """/images and /regions of the results file."""
        s = self.setup
        preview = (s.images[:PREVIEW_IMAGES].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        images = {"classes": s.classes, "index": s.index, "partition": torch.full_like(s.classes, s.partition),
                  **self.base(), "preview": preview}
        return {"images": images, "regions": s.region_table()}

