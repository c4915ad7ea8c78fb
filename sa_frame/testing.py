"""Checks for plugin authors: call them from your own tests on the objects you register.

Each check raises `AssertionError` naming what is wrong, and returns nothing when the
plugin keeps the contract. sa-frame's own test suite runs them over every built-in::

    from sa_frame.testing import check_augmentation

    def test_vignette_keeps_the_contract():
        check_augmentation(Vignette())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame.core.augmentation import Augmentation
from sa_frame.core.data import DataSource, InputFormat
from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import Estimator
from sa_frame.core.model import Model
from sa_frame.core.problem import Problem
from sa_frame.core.regions import Perturbation, Segmenter
from sa_frame.engine.capture import resolve_modules
from sa_frame.engine.laws import SpikeAndSlab, Switch, Uniform


def _draw(aug: Augmentation, batch: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    """One random value per image for every parameter, from the parameter's own law."""
    return {name: variable.from_unit(torch.rand(batch, generator=generator, dtype=torch.float64)).to(device)
            for name, variable in aug.params.items()}


def check_augmentation(aug: Augmentation, size: int = 32, batch: int = 4, device: str | torch.device = "cpu",
                       atol: float = 1e-5) -> None:
    """Identity values are a no-op; shape, dtype, device and the [0, 1] range are kept; the
    same inputs give the same output; and image i of a batch depends only on image i and
    its own parameter values (one value per image honoured, no mixing across the batch).
    Augmentations that read object masks get masks of two halves, and must refuse to run
    without them."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator).to(device)
    where = f"augmentation {aug.name!r}"
    assert isinstance(aug.name, str) and aug.name, f"{where}: needs a non-empty string name"
    masks = None
    if aug.needs_masks:
        masks = (torch.arange(size, device=device) >= size // 2).to(torch.uint8).expand(batch, size, size).clone()
        try:
            aug(images, _draw(aug, batch, torch.Generator().manual_seed(1), device))
        except UsageError:
            pass
        else:
            raise AssertionError(f"{where}: needs masks but runs without them")
    if aug.identity:
        same = aug(images, aug.identity_params(batch, device), masks=masks)
        assert torch.allclose(same, images, atol=atol), f"{where}: its identity values change the images"
    params = _draw(aug, batch, generator, device)
    out = aug(images, params, masks=masks)
    assert out.shape == images.shape, f"{where}: output shape {tuple(out.shape)}, input {tuple(images.shape)}"
    assert out.dtype == images.dtype, f"{where}: output dtype {out.dtype}, input {images.dtype}"
    assert out.device == images.device, f"{where}: output on {out.device}, input on {images.device}"
    assert bool(((out >= 0) & (out <= 1)).all()), f"{where}: values outside [0, 1]"
    assert torch.equal(aug(images, params, masks=masks), out), f"{where}: the same inputs give different outputs"
    for i in (0, batch - 1):
        alone = aug(images[i:i + 1], {k: v[i:i + 1] for k, v in params.items()},
                    masks=None if masks is None else masks[i:i + 1])
        assert torch.allclose(alone[0], out[i], atol=atol), \
            f"{where}: image {i} of a batch differs from the same image augmented alone"


def check_segmenter(segmenter: Segmenter, options: Mapping[str, Any] | None = None, size: int = 32,
                    batch: int = 3) -> None:
    """Labels are (B, H, W) int64 in [0, max_regions), the same for the same images, and image
    i's labels do not depend on the other images of the batch. Segmenters that read masks get
    masks of two halves."""
    where = f"segmenter {segmenter.name!r}"
    assert isinstance(segmenter.name, str) and segmenter.name, f"{where}: needs a non-empty string name"
    opts = segmenter.options(options or {})
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    masks = (torch.arange(size) >= size // 2).to(torch.uint8).expand(batch, size, size).clone() \
        if segmenter.needs_masks else None
    limit = segmenter.max_regions((size, size), opts)
    labels = segmenter.segment(images, masks, opts)
    assert labels.shape == (batch, size, size), f"{where}: labels shaped {tuple(labels.shape)}, not {(batch, size, size)}"
    assert labels.dtype == torch.int64, f"{where}: labels are {labels.dtype}, not torch.int64"
    assert int(labels.min()) >= 0 and int(labels.max()) < limit, f"{where}: labels outside 0..{limit - 1}"
    assert torch.equal(segmenter.segment(images, masks, opts), labels), f"{where}: the same images give other labels"
    alone = segmenter.segment(images[-1:], None if masks is None else masks[-1:], opts)
    assert torch.equal(alone[0], labels[-1]), f"{where}: an image's labels depend on the rest of the batch"


def check_perturbation(perturbation: Perturbation, options: Mapping[str, Any] | None = None, size: int = 16,
                       batch: int = 3) -> None:
    """Identity values give the images back bit for bit; shape, dtype and the [0, 1] range are
    kept; changing one region's value changes only that region's pixels; image i depends only
    on image i and its own values."""
    where = f"perturbation {perturbation.name!r}"
    assert isinstance(perturbation.name, str) and perturbation.name, f"{where}: needs a non-empty string name"
    opts = perturbation.options(options or {})
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator) * 0.98 + 0.01  # no exact 0: every pixel can change
    cells = 4
    labels = ((torch.arange(size) * 2 // size)[:, None] * 2 + torch.arange(size) * 2 // size).expand(batch, -1, -1)
    variable = perturbation.variable(opts)
    identity = float(perturbation.identity(opts))
    low, high = variable.bounds
    assert low <= identity <= high and low <= perturbation.masked(opts) <= high, \
        f"{where}: identity or masked value outside the variable's range [{low:g}, {high:g}]"
    ones = torch.full((batch, cells), identity, dtype=torch.float64)
    assert torch.equal(perturbation.apply(images, labels, ones, opts), images), \
        f"{where}: identity values change the images"
    values = variable.from_unit(torch.rand(batch, cells, generator=generator, dtype=torch.float64))
    out = perturbation.apply(images, labels, values, opts)
    assert out.shape == images.shape and out.dtype == images.dtype, \
        f"{where}: output {tuple(out.shape)} {out.dtype}, input {tuple(images.shape)} {images.dtype}"
    assert bool(((out >= 0) & (out <= 1)).all()), f"{where}: values outside [0, 1]"
    one = ones.clone()
    one[:, 1] = perturbation.masked(opts)
    changed = (perturbation.apply(images, labels, one, opts) != images).any(1)
    assert not bool(changed[labels != 1].any()), f"{where}: changing region 1 changed pixels of other regions"
    alone = perturbation.apply(images[-1:], labels[-1:], values[-1:], opts)
    assert torch.allclose(alone[0], out[-1]), f"{where}: an image differs from the same image perturbed alone"


def check_model(model: Model, weights: str = "random", batch: int = 2) -> None:
    """The network builds, every default checkpoint and the classifier resolve to modules,
    and a batch at `input_size` gives one score per class (where class names are known)."""
    where = f"model {model.name!r}"
    net = model.build(weights)
    assert isinstance(net, torch.nn.Module), f"{where}: build() must return a torch.nn.Module"
    assert not net.training, f"{where}: build() must return the network in eval mode"
    resolve_modules(net, list(model.checkpoints))
    if model.classifier:
        resolve_modules(net, [model.classifier])
    h, w = model.input_size
    x = model.normalize(torch.rand(batch, 3, h, w))
    assert x.shape == (batch, 3, h, w), f"{where}: normalize changed the shape"
    with torch.no_grad():
        scores = net(x)
    assert scores.ndim == 2 and scores.shape[0] == batch, f"{where}: output shape {tuple(scores.shape)}"
    if model.class_names is not None:
        assert scores.shape[1] == len(model.class_names), \
            f"{where}: {scores.shape[1]} outputs but {len(model.class_names)} class names"


def check_data_source(source: DataSource, argument: str, size: tuple[int, int] = (32, 32)) -> None:
    """The opened image set has classes and partitions, counts per class, and `load` gives
    float images in [0, 1] at `size`, the same twice."""
    where = f"data source {source.name!r}"
    images = source.open(argument, InputFormat(tuple(size)))
    assert images.classes, f"{where}: no classes"
    assert 1 <= len(images.partitions) <= 2, f"{where}: one or two partitions, got {images.partitions}"
    for p in range(len(images.partitions)):
        counts = images.counts(p)
        assert counts.shape == (len(images.classes),) and bool((counts > 0).all()), \
            f"{where}: partition {p} needs at least one image per class, counts {counts.tolist()}"
    classes = torch.tensor([0, len(images.classes) - 1])
    index, partition = torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    batch = images.load(classes, index, partition)
    assert batch.shape == (2, 3, *size), f"{where}: load gave shape {tuple(batch.shape)}, expected (2, 3, {size})"
    assert batch.is_floating_point() and bool(((batch >= 0) & (batch <= 1)).all()), \
        f"{where}: images must be float in [0, 1]"
    assert torch.equal(images.load(classes, index, partition), batch), f"{where}: load is not repeatable"


def check_problem() -> Problem:
    """A small problem every built-in estimator accepts: two switched augmentation-like
    blocks (one with a parameter) and one uniform variable."""
    return Problem({"a": SpikeAndSlab({"v": Uniform(0.0, 1.0)}, {"v": 0.0}), "b": Switch(),
                    "c": Uniform(-1.0, 1.0)})


def _outputs(x: Tensor) -> Tensor:
    """Two outputs with main effects and an interaction, in float32 like a network's."""
    y0 = x[:, 1] * (1 + x[:, 2]) + 2 * x[:, 3]
    y1 = x[:, 0] * x[:, 3] + torch.sin(3 * x[:, 2])
    return torch.stack([y0, y1], 1).to(torch.float32)


def _finalize(acc: Any) -> dict[str, np.ndarray]:
    return acc.finalize()["y"]


def check_estimator(estimator: Estimator, options: Mapping[str, Any] | None = None, n: int | None = None,
                    seed: int = 0, problem: Problem | None = None) -> None:
    """Blocks are deterministic; folding the blocks into two accumulators and merging them
    gives the single-accumulator result (unless the estimator says its design cannot be
    split); a state saved and loaded into a fresh accumulator finalizes to the same maps;
    options round-trip through their record; `intervals` names method, level, dof and detail. The design needs at least two blocks: give
    `n` or a block-size option where the quick size makes one; `problem` replaces `check_problem()`
    (e.g. one with the ``class`` variable an estimator groups by)."""
    where = f"estimator {estimator.name!r}"
    problem = problem or check_problem()
    quick = dict(estimator.sizes.get("quick") or {})
    size = n if n is not None else quick.pop("n", 64)
    quick.pop("n", None)
    opts = estimator.options({**quick, **(options or {})})
    assert estimator.options(estimator.options_record(opts)) == opts, f"{where}: options do not round-trip"
    design = estimator.design(problem, size, seed, opts)
    assert design.n_blocks >= 2, f"{where}: the check needs at least two blocks (got {design.n_blocks})"
    first = design.block(0)
    assert torch.equal(first.unit, design.block(0).unit), f"{where}: block 0 is not a function of (seed, 0)"
    intervals = estimator.intervals(design)
    assert not intervals or {"method", "level", "dof", "detail"} <= set(intervals), \
        f"{where}: intervals() gives {sorted(intervals)}, not method, level, dof and detail"
    shapes = {"y": (2,)}

    def fold(blocks: range) -> Any:
        acc = estimator.accumulator(problem, design, shapes)
        for k in blocks:
            block = design.block(k)
            acc.update(block, {"y": _outputs(problem.values(block.unit, block.known))})
        return acc

    whole = fold(range(design.n_blocks))
    reloaded = estimator.accumulator(problem, design, shapes)
    reloaded.load_state(whole.state())
    compared = [("reloaded", _finalize(reloaded))]
    if estimator.split_error(design) is None:
        half = design.n_blocks // 2
        merged = fold(range(half))
        merged.merge(fold(range(half, design.n_blocks)))
        compared.append(("merged", _finalize(merged)))
    expected = _finalize(whole)
    for name, other in compared:
        assert set(other) == set(expected), f"{where}: {name} maps {sorted(other)} vs {sorted(expected)}"
        for key, value in expected.items():
            np.testing.assert_allclose(other[key], value, rtol=1e-9, atol=1e-12, equal_nan=True,
                                       err_msg=f"{where}: {name} map {key!r} differs from one accumulator's")
    missing = [key for key in estimator.summary if key not in expected]
    assert not missing, f"{where}: summary maps {missing} are not among the outputs {sorted(expected)}"
    for value, (source, transform) in estimator.analysis_maps.items():
        assert source in expected, f"{where}: analysis value {value!r} reads {source!r}, which it does not output"
        assert transform in ("shares", "clip", "abs"), f"{where}: analysis value {value!r}: unknown transform"


__all__ = ["check_augmentation", "check_data_source", "check_estimator", "check_model", "check_problem"]
