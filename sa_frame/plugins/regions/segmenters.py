"""Built-in segmenters: a regular grid (a tensor op), scikit-image's superpixels (slic,
felzenszwalb, quickshift, watershed; extra ``sa-frame[regions]``), the data's own masks,
and the demo's exact foreground/background split."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sa_frame import Segmenter, UsageError, option


@dataclasses.dataclass
class GridOptions:
    cells: int = option(4, "cells per side (a cells x cells grid) when rows/cols are 0")
    rows: int = option(0, "grid rows (0: cells)")
    cols: int = option(0, "grid columns (0: cells)")


class Grid(Segmenter):
    name = "grid"
    description = "a regular rows x cols grid of patches (the paper's 4x4, 8x8, 14x14, 16x16)"
    Options = GridOptions

    @staticmethod
    def shape(options: GridOptions) -> tuple[int, int]:
        rows, cols = options.rows or options.cells, options.cols or options.cells
        if rows < 1 or cols < 1:
            raise UsageError(f"segmenter 'grid' needs at least one row and column, got {rows} x {cols}")
        return rows, cols

    def max_regions(self, size: tuple[int, int], options: GridOptions) -> int:
        rows, cols = self.shape(options)
        if rows > size[0] or cols > size[1]:
            raise UsageError(f"segmenter 'grid': a {rows} x {cols} grid does not fit images of {size[0]} x "
                             f"{size[1]} pixels; use at most {min(size)} cells per side")
        return rows * cols

    def segment(self, images: Tensor, masks: Tensor | None, options: GridOptions) -> Tensor:
        rows, cols = self.shape(options)
        b, _, h, w = images.shape
        r = torch.arange(h, device=images.device) * rows // h
        c = torch.arange(w, device=images.device) * cols // w
        return (r[:, None] * cols + c[None, :]).expand(b, h, w).clone()


def merge_beyond(labels: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..k-1 by first appearance (row-major); when k > `limit`, the
    smallest regions beyond limit - 1 are merged into label limit - 1. Returns the labels and
    how many regions were merged (0: none)."""
    _, first, inverse, sizes = np.unique(labels.ravel(), return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")  # labels by first appearance: deterministic, 0-based
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    merged = 0
    if order.size > limit:
        by_size = np.argsort(-sizes, kind="stable")
        keep = np.zeros(order.size, dtype=bool)
        keep[by_size[:limit - 1]] = True
        kept = np.flatnonzero(keep)
        new = np.full(order.size, limit - 1)
        new[kept[np.argsort(first[kept], kind="stable")]] = np.arange(kept.size)
        rank, merged = new, int(order.size - limit + 1)
    return rank[inverse].reshape(labels.shape), merged


class SkimageSegmenter(Segmenter):
    """A scikit-image segmentation function, run per image on the CPU (its API is per image)."""

    limit_option = "max_regions"

    def max_regions(self, size: tuple[int, int], options: Any) -> int:
        limit = int(getattr(options, self.limit_option))
        if limit < 1:
            raise UsageError(f"segmenter {self.name!r}: {self.limit_option} must be >= 1, got {limit}")
        return limit

    def segment(self, images: Tensor, masks: Tensor | None, options: Any) -> Tensor:
        try:
            import skimage  # noqa: F401
        except ImportError:
            raise UsageError(f"segmenter {self.name!r} needs scikit-image: pip install 'sa-frame[regions]'") from None
        limit = self.max_regions(tuple(images.shape[-2:]), options)
        pictures = images.detach().permute(0, 2, 3, 1).cpu().double().numpy()
        # the library segments one image per call
        out = [merge_beyond(self.labels(picture, options), limit)[0] for picture in pictures]
        return torch.from_numpy(np.stack(out)).long().to(images.device)

    def labels(self, picture: np.ndarray, options: Any) -> np.ndarray:
        raise NotImplementedError


@dataclasses.dataclass
class SlicOptions:
    n_segments: int = option(16, "target number of superpixels (SLIC returns about this many)")
    compactness: float = option(10.0, "colour vs space trade-off (images in [0, 1])")
    sigma: float = option(0.0, "Gaussian smoothing before segmenting")
    max_regions: int = option(0, "region variables; beyond them the smallest regions merge (0: n_segments)")


class Slic(SkimageSegmenter):
    name = "slic"
    description = "SLIC superpixels (scikit-image); labels renumbered 0..L-1 per image"
    Options = SlicOptions

    def max_regions(self, size: tuple[int, int], options: SlicOptions) -> int:
        limit = options.max_regions or options.n_segments
        if limit < 1 or options.n_segments < 1:
            raise UsageError(f"segmenter 'slic' needs n_segments >= 1, got {options.n_segments}")
        return limit

    def labels(self, picture: np.ndarray, options: SlicOptions) -> np.ndarray:
        from skimage.segmentation import slic

        return slic(picture, n_segments=options.n_segments, compactness=options.compactness, sigma=options.sigma,
                    start_label=0, channel_axis=-1)


@dataclasses.dataclass
class FelzenszwalbOptions:
    scale: float = option(100.0, "higher: larger regions")
    sigma: float = option(0.5, "Gaussian smoothing before segmenting")
    min_size: int = option(50, "smallest region in pixels")
    max_regions: int = option(64, "region variables; beyond them the smallest regions merge")


class Felzenszwalb(SkimageSegmenter):
    name = "felzenszwalb"
    description = "Felzenszwalb's graph segmentation (scikit-image); counts vary per image"
    Options = FelzenszwalbOptions

    def labels(self, picture: np.ndarray, options: FelzenszwalbOptions) -> np.ndarray:
        from skimage.segmentation import felzenszwalb

        return felzenszwalb(picture, scale=options.scale, sigma=options.sigma, min_size=options.min_size,
                            channel_axis=-1)


@dataclasses.dataclass
class QuickshiftOptions:
    ratio: float = option(0.2, "colour vs space trade-off (LIME's default)")
    kernel_size: float = option(4.0, "Gaussian kernel width (LIME's default)")
    max_dist: float = option(200.0, "cut-off of the data distance (LIME's default)")
    max_regions: int = option(64, "region variables; beyond them the smallest regions merge")


class Quickshift(SkimageSegmenter):
    name = "quickshift"
    description = "quickshift mode seeking (scikit-image) with LIME's defaults"
    Options = QuickshiftOptions

    def labels(self, picture: np.ndarray, options: QuickshiftOptions) -> np.ndarray:
        from skimage.segmentation import quickshift

        return quickshift(picture, ratio=options.ratio, kernel_size=options.kernel_size, max_dist=options.max_dist,
                          channel_axis=-1)


@dataclasses.dataclass
class WatershedOptions:
    markers: int = option(16, "number of watershed seeds")
    compactness: float = option(0.001, "higher: more regular regions")
    max_regions: int = option(0, "region variables; beyond them the smallest regions merge (0: markers)")


class Watershed(SkimageSegmenter):
    name = "watershed"
    description = "compact watershed of the Sobel gradient (scikit-image)"
    Options = WatershedOptions

    def max_regions(self, size: tuple[int, int], options: WatershedOptions) -> int:
        return options.max_regions or max(1, options.markers)

    def labels(self, picture: np.ndarray, options: WatershedOptions) -> np.ndarray:
        from skimage.color import rgb2gray
        from skimage.filters import sobel
        from skimage.segmentation import watershed

        return watershed(sobel(rgb2gray(picture)), markers=options.markers, compactness=options.compactness)


@dataclasses.dataclass
class MasksOptions:
    max_regions: int = option(2, "region variables: mask values 0..max_regions-1 (0 is the background)")


class Masks(Segmenter):
    name = "masks"
    description = "the data's own masks (demo shapes; <root>/masks/<partition>/<class>/<stem>.png for folders)"
    Options = MasksOptions
    needs_masks = True

    def max_regions(self, size: tuple[int, int], options: MasksOptions) -> int:
        if options.max_regions < 1:
            raise UsageError(f"segmenter 'masks': max_regions must be >= 1, got {options.max_regions}")
        return options.max_regions

    def segment(self, images: Tensor, masks: Tensor | None, options: MasksOptions) -> Tensor:
        assert masks is not None  # the engine refuses data without masks first
        labels = masks.long().to(images.device)
        if labels.numel() and int(labels.max()) >= options.max_regions:
            raise UsageError(f"segmenter 'masks': a mask holds value {int(labels.max())}, beyond max_regions = "
                             f"{options.max_regions}; give -o max_regions={int(labels.max()) + 1} "
                             f"(--regions masks:max_regions={int(labels.max()) + 1})")
        return labels

    def region_names(self, options: MasksOptions) -> list[str] | None:
        return ["background"] + [f"object {k}" for k in range(1, options.max_regions)]


class DemoForeground(Segmenter):
    name = "demo-foreground"
    description = "two regions from the data's masks: background (0) and foreground (1), exact for the demo shapes"
    needs_masks = True

    def max_regions(self, size: tuple[int, int], options: Any) -> int:
        return 2

    def segment(self, images: Tensor, masks: Tensor | None, options: Any) -> Tensor:
        assert masks is not None
        return (masks > 0).long().to(images.device)

    def region_names(self, options: Any) -> list[str] | None:
        return ["background", "foreground"]
