"""The embedded demo set (``--data demo``): procedurally generated, deterministic images of
10 classes in which both colour and shape matter (warm/cool x disc, square, triangle,
cross, ring), with train and valid partitions and no files.

Images are rendered in batches from per-image parameters with coordinate grids; image
(partition, class, index) is a deterministic function of the seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sa_frame import DataSource, ImageSet, InputFormat, UsageError

DEMO_SHAPES = ("disc", "square", "triangle", "cross", "ring")
DEMO_COLOURS = {"warm": 0.0, "cool": 0.6}  # hue centres (red, blue)
DEMO_PARTITIONS = ("train", "valid")
HUE_JITTER = 0.06


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """(B,) HSV in [0, 1] -> (B, 3) RGB (the standard hexcone formula)."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def render_demo(classes: Tensor, params: dict[str, Tensor], size: int, return_mask: bool = False) \
        -> Tensor | tuple[Tensor, Tensor]:
    """Images (B, 3, size, size) in [0, 1] for classes (B,) and per-image parameters (B,); with
    `return_mask`, also the exact (B, size, size) shape masks (1 shape, 0 background)."""
    b = classes.shape[0]
    p = {k: v.to(torch.float32).view(b, 1, 1) for k, v in params.items()}
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = grid.view(1, size, 1), grid.view(1, 1, size)
    # background: two greyish colours blended along a random sinusoidal direction
    wave = 0.5 + 0.5 * torch.sin(p["freq"] * (xx * torch.cos(p["phi"]) + yy * torch.sin(p["phi"])) * 2 * math.pi
                                 + p["phase"])
    c1 = torch.stack([params[f"bg1_{c}"] for c in "rgb"], 1).float().view(b, 3, 1, 1)
    c2 = torch.stack([params[f"bg2_{c}"] for c in "rgb"], 1).float().view(b, 3, 1, 1)
    background = c1 + (c2 - c1) * wave.unsqueeze(1)
    # the shape, in coordinates rotated and scaled to the shape's frame
    dx, dy = xx - p["cx"], yy - p["cy"]
    u = (dx * torch.cos(p["angle"]) + dy * torch.sin(p["angle"])) / p["scale"]
    v = (-dx * torch.sin(p["angle"]) + dy * torch.cos(p["angle"])) / p["scale"]
    r = torch.sqrt(u * u + v * v)
    masks = torch.stack([
        r <= 1.0,
        torch.maximum(u.abs(), v.abs()) <= 0.8,
        (v >= -0.6) & (v <= 1.0 - 1.8 * u.abs()),
        ((u.abs() <= 0.3) & (v.abs() <= 1.0)) | ((v.abs() <= 0.3) & (u.abs() <= 1.0)),
        (r <= 1.0) & (r >= 0.55),
    ], 1)  # (B, shapes, H, W)
    shape = classes % len(DEMO_SHAPES)
    mask = masks[torch.arange(b), shape].unsqueeze(1)
    centre = torch.tensor(list(DEMO_COLOURS.values()))[classes // len(DEMO_SHAPES)]
    rgb = _hsv_to_rgb((centre + params["hue"].float()) % 1.0, params["sat"].float(), params["val"].float())
    images = torch.where(mask, rgb.view(b, 3, 1, 1), background).clamp(0.0, 1.0)
    return (images, mask.squeeze(1).to(torch.uint8)) if return_mask else images


def draw_demo_params(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Random rendering parameters for images laid out in `shape`."""
    u = lambda lo, hi: rng.uniform(lo, hi, size=shape)  # noqa: E731
    grey = {f"bg{i}_{c}": None for i in (1, 2) for c in "rgb"}
    params = {"cx": u(0.3, 0.7), "cy": u(0.3, 0.7), "scale": u(0.16, 0.28), "angle": u(0, 2 * math.pi),
              "hue": u(-HUE_JITTER, HUE_JITTER), "sat": u(0.65, 1.0), "val": u(0.65, 1.0),
              "freq": u(0.5, 3.0), "phi": u(0, 2 * math.pi), "phase": u(0, 2 * math.pi)}
    for i in (1, 2):
        level, tint = u(0.15, 0.85), rng.uniform(-0.08, 0.08, size=shape + (3,))
        for k, c in enumerate("rgb"):
            grey[f"bg{i}_{c}"] = np.clip(level + tint[..., k], 0, 1)
    return params | grey


class DemoImages:
    """The embedded demo image set (`--data demo`)."""

    name = "demo"

    def __init__(self, size: int = 64, train_per_class: int = 100, valid_per_class: int = 20, seed: int = 0) -> None:
        if size < 16:
            raise UsageError(f"demo images need size >= 16, got {size}")
        self.size, self.seed = int(size), int(seed)
        self.per_class = {"train": int(train_per_class), "valid": int(valid_per_class)}
        self.classes = [f"{colour} {shape}" for colour in DEMO_COLOURS for shape in DEMO_SHAPES]
        self.partitions = list(DEMO_PARTITIONS)
        self._params: dict[str, dict[str, Tensor]] = {}

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def _table(self, partition: str) -> dict[str, Tensor]:
        if partition not in self._params:
            rng = np.random.default_rng([self.seed, DEMO_PARTITIONS.index(partition)])
            drawn = draw_demo_params(rng, (self.n_classes, self.per_class[partition]))
            self._params[partition] = {k: torch.from_numpy(v) for k, v in drawn.items()}
        return self._params[partition]

    def images(self, classes: Tensor, index: Tensor, partition: str, return_mask: bool = False) \
            -> Tensor | tuple[Tensor, Tensor]:
        """Images (B, 3, size, size) of classes (B,) and within-class indices (B,) of one partition
        (and their shape masks, with `return_mask`)."""
        if partition not in self.per_class:
            raise UsageError(f"unknown partition {partition!r}; the demo set has {', '.join(self.partitions)}")
        classes, index = classes.long(), index.long()
        if bool((index < 0).any()) or bool((index >= self.per_class[partition]).any()):
            raise UsageError(f"demo image index outside 0..{self.per_class[partition] - 1}")
        table = self._table(partition)
        return render_demo(classes, {k: v[classes, index] for k, v in table.items()}, self.size, return_mask)

    def all_images(self, partition: str) -> tuple[Tensor, Tensor]:
        """Every image of a partition and its labels."""
        n = self.per_class[partition]
        classes = torch.arange(self.n_classes).repeat_interleave(n)
        index = torch.arange(n).repeat(self.n_classes)
        return self.images(classes, index, partition), classes


class DemoSet(ImageSet):
    """The embedded demo set, rendered at the model's input size."""

    def __init__(self, size: tuple[int, int]) -> None:
        if size[0] != size[1]:
            raise UsageError(f"the demo set renders square images; the model wants {size}")
        self.images = DemoImages(size=size[0])
        self.classes, self.partitions = self.images.classes, self.images.partitions

    def counts(self, partition: int) -> Tensor:
        return torch.full((len(self.classes),), self.images.per_class[self.partitions[partition]])

    def load(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        return self._render(classes, index, partition, masks=False)

    def masks(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        """The exact shape masks the renderer draws (1 shape, 0 background)."""
        return self._render(classes, index, partition, masks=True)

    def _render(self, classes: Tensor, index: Tensor, partition: Tensor, masks: bool) -> Tensor:
        size = self.images.size
        out = torch.empty((classes.shape[0], size, size) if masks else (classes.shape[0], 3, size, size),
                          dtype=torch.uint8 if masks else torch.float32)
        for p, name in enumerate(self.partitions):  # a loop over partitions, not images
            rows = (partition == p).nonzero().squeeze(1)
            if rows.numel():
                rendered = self.images.images(classes[rows], index[rows], name, return_mask=masks)
                out[rows] = rendered[1] if masks else rendered
        return out




class DemoSource(DataSource):
    """``--data demo``: the embedded, procedurally rendered demo set (no files)."""

    name = "demo"
    description = "the embedded demo set: 10 classes (colour x shape), train and valid partitions, no files"

    def open(self, argument: str, fmt: InputFormat) -> DemoSet:
        if argument not in ("", self.name):
            raise UsageError(f"the demo data source takes no argument, got {argument!r} (use --data demo)")
        return DemoSet(tuple(fmt.size))
