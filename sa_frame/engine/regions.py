"""Region runs (``--regions``): which images, their regions (computed once per image and
stored with the results), the region variables, and one design per image when asked
(--design per-image). The rows go through `region_runner.RegionRunner`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sa_frame.core.data import ImageSet
from sa_frame.core.errors import UsageError, did_you_mean, unknown_name
from sa_frame.core.estimator import Design, DesignBlock
from sa_frame.core.model import Model
from sa_frame.core.options import parse_pairs
from sa_frame.core.problem import Problem
from sa_frame.core.regions import Perturbation, Segmenter
from sa_frame.core.registry import lookup

SCORE = "score"
DESIGN_SHARING = ("shared", "per-image")
SCORES = ("logit", "softmax")
TARGETS = ("true", "predicted", "all")
VALID_PARTITIONS = ("valid", "val")
#: images of one segmentation call (scikit-image segmenters work per image inside it)
SEGMENT_CHUNK = 256


def parse_named(value: str, kind: str) -> tuple[Any, Any]:
    """``name`` or ``name:key=value,key=value`` -> (the registered plugin, its Options)."""
    name, _, rest = value.partition(":")
    plugin = lookup(kind, name.strip())
    pairs = [p for p in rest.split(",") if p.strip()] if rest else []
    return plugin, plugin.options(parse_pairs(pairs, f"{kind} {name.strip()!r}", plugin.Options))


def partition_index(source: ImageSet, partition: str | None) -> int:
    """The partition a region run analyses: the named one, else valid/val, else the last."""
    names = list(source.partitions)
    if partition is None:
        return next((i for i, n in enumerate(names) if n in VALID_PARTITIONS), len(names) - 1)
    if partition not in names:
        raise unknown_name("partition", partition, names)
    return names.index(partition)


def select_images(source: ImageSet, images: int | None, per_class: int | None, part: int) -> tuple[Tensor, Tensor]:
    """(classes, within-class index) of the analysed images: the first `per_class` of every
    class, or `images` taken round-robin over the classes (class 0 image 0, class 1 image 0,
    ...), in that order; default 5 per class."""
    counts = source.counts(part).long()
    if images is not None and per_class is not None:
        raise UsageError("give --images N or --per-class K, not both")
    if per_class is not None or images is None:
        k = 5 if per_class is None else per_class
        if k < 1:
            raise UsageError(f"--per-class must be >= 1, got {k}")
        take = counts.clamp(max=k)
        classes = torch.arange(counts.numel()).repeat_interleave(take)
        index = torch.arange(classes.numel()) - (torch.cumsum(take, 0) - take)[classes]
        return classes, index
    total = int(counts.sum())
    if not 1 <= images <= total:
        raise UsageError(f"--images must lie in 1..{total} (the partition's images), got {images}")
    rounds = int(counts.max())
    classes = torch.arange(counts.numel()).repeat(rounds)
    index = torch.arange(rounds).repeat_interleave(counts.numel())
    keep = index < counts[classes]
    return classes[keep][:images], index[keep][:images]


@dataclass
class RegionSetup:
    """The fixed images of a region run, their regions and how region values become images."""

    segmenter: Segmenter
    segmenter_options: Any
    perturbation: Perturbation
    perturbation_options: Any
    classes: Tensor  # (M,) data classes
    index: Tensor  # (M,) within-class index
    partition: int
    images: Tensor  # (M, 3, H, W) in [0, 1], on the run's device
    labels: Tensor  # (M, H, W) int64 in [0, n_regions), on the run's device
    n_regions: int
    score: str
    target: str
    design_sharing: str
    #: (M,) network output index of each image's class
    true_targets: Tensor

    @property
    def n_images(self) -> int:
        return int(self.classes.numel())

    def problem(self) -> Problem:
        """One variable per region, each its own group, named r0..r{L-1}."""
        variable = self.perturbation.variable(self.perturbation_options)
        return Problem({f"r{k}": variable for k in range(self.n_regions)})

    def region_table(self) -> dict[str, Tensor]:
        """/regions: labels, count (distinct regions per image), size (pixels per region), empty."""
        m, lab = self.n_images, self.labels.flatten(1).cpu()
        size = torch.zeros(m, self.n_regions, dtype=torch.long).scatter_add_(1, lab, torch.ones_like(lab))
        table = {"labels": self.labels.cpu().to(torch.int32), "count": (size > 0).sum(1), "size": size,
                 "empty": (size == 0).to(torch.uint8)}
        names = self.segmenter.region_names(self.segmenter_options)
        if names is not None:
            table["names"] = names[:self.n_regions]  # type: ignore[assignment]
        return table


def setup_regions(config: Any, spec: Model, source: ImageSet, network_classes: list[int] | None,
                  device: torch.device) -> RegionSetup:
    """Select, load and segment the images of a region run (UsageError on bad input)."""
    segmenter, seg_options = parse_named(config.regions, "segmenter")
    perturbation, pert_options = parse_named(config.perturbation, "perturbation")
    perturbation.variable(pert_options)  # its options are checked there
    for flag, value, allowed in (("--score", config.score, SCORES), ("--target", config.target, TARGETS),
                                 ("--design", config.design, DESIGN_SHARING)):
        if value not in allowed:
            raise UsageError(f"{flag} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}"
                             f"{did_you_mean(value, allowed)}")
    size = tuple(spec.input_size)
    n_regions = int(segmenter.max_regions(size, seg_options))
    part = partition_index(source, config.partition)
    classes, index = select_images(source, config.images, config.per_class, part)
    partition = torch.full_like(classes, part)
    images = source.load(classes, index, partition).to(device)
    masks = None
    if segmenter.needs_masks:
        masks = source.masks(classes, index, partition)
        if masks is None:
            raise UsageError(f"segmenter {segmenter.name!r} reads the data's masks, and --data {config.data} has "
                             f"none (the demo has them; a folder has them under <root>/masks/)")
    chunks = []
    for start in range(0, images.shape[0], SEGMENT_CHUNK):
        part_masks = None if masks is None else masks[start:start + SEGMENT_CHUNK]
        chunks.append(segmenter.segment(images[start:start + SEGMENT_CHUNK], part_masks, seg_options))
    labels = torch.cat(chunks).long().to(device)
    if labels.shape != (images.shape[0], *images.shape[-2:]):
        raise UsageError(f"segmenter {segmenter.name!r} returned labels of shape {tuple(labels.shape)}, not "
                         f"{(images.shape[0], *images.shape[-2:])}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_regions):
        raise UsageError(f"segmenter {segmenter.name!r} returned labels outside 0..{n_regions - 1}")
    check_identity(perturbation, pert_options, images[:2], labels[:2], n_regions)
    true = classes if network_classes is None else torch.as_tensor(network_classes)[classes]
    return RegionSetup(segmenter, seg_options, perturbation, pert_options, classes, index, part, images, labels,
                       n_regions, config.score, config.target, config.design, true.long())


def image_seed(seed: int, classes: int, index: int, partition: int) -> int:
    """The design seed of one image under --design per-image: a function of the run's seed and
    the image's identity (class, index, partition), not of its position in the selection."""
    import numpy as np

    return int(np.random.SeedSequence([seed, classes, index, partition]).generate_state(1)[0])


def check_identity(perturbation: Perturbation, options: Any, images: Tensor, labels: Tensor, n_regions: int) -> None:
    """The perturbation at its identity value gives the images back, in their shape (one line if not)."""
    ones = torch.full((images.shape[0], n_regions), float(perturbation.identity(options)), dtype=torch.float64)
    out = perturbation.apply(images, labels, ones, options)
    if out.shape != images.shape:
        raise UsageError(f"perturbation {perturbation.name!r} returned images shaped {tuple(out.shape)} for "
                         f"{tuple(images.shape)}")
    if not torch.equal(out, images):
        raise UsageError(f"perturbation {perturbation.name!r}: its identity value "
                         f"{perturbation.identity(options):g} changes the images (it must leave them exactly "
                         f"unchanged; see sa_frame.testing.check_perturbation)")


class PerImageDesign(Design):
    """One design per image (seeded by `image_seed`) with the row structure of the first: block k
    carries every image's unit rows in `info["image_units"]` (M, rows, n_vars). Valid for
    estimators whose accumulators depend on row positions only (Sobol), which is checked:
    blocks whose `known` masks or info differ between images are refused."""

    def __init__(self, designs: list[Design]) -> None:
        self.designs = designs
        self.base = designs[0]
        self.name = f"per-image {self.base.name}"
        self.unit_rows = self.base.unit_rows

    def __getattr__(self, name: str) -> Any:  # the base design's structure (replicates, rows per point, ...)
        if name in ("base", "designs"):
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def n_blocks(self) -> int:
        return self.base.n_blocks

    @property
    def n_rows(self) -> int:
        return self.base.n_rows

    def block(self, k: int) -> DesignBlock:
        blocks = [d.block(k) for d in self.designs]
        first = blocks[0]
        for other in blocks[1:]:
            same_known = (first.known is None and other.known is None) or (
                first.known is not None and other.known is not None and torch.equal(first.known, other.known))
            if not same_known or not same_info(first.info, other.info) or other.unit.shape != first.unit.shape:
                raise UsageError(f"--design per-image needs a design whose row structure does not depend on its "
                                 f"seed ({self.base.name} does not); use --design shared, or the sobol/sbsa estimator")
        info = {**first.info, "image_units": torch.stack([b.unit for b in blocks])}
        return DesignBlock(index=k, unit=first.unit, known=first.known, info=info)

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "design_sharing": "per-image", "images": len(self.designs)}


def same_info(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two blocks' info dicts are equal (arrays compared by value)."""
    import numpy as np

    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def per_image_design(estimator: Any, problem: Problem, n: int, seed: int, options: Any,
                     setup: RegionSetup) -> PerImageDesign:
    seeds = [image_seed(seed, int(c), int(i), setup.partition) for c, i in zip(setup.classes, setup.index)]
    return PerImageDesign([estimator.design(problem, n, s, options) for s in seeds])
