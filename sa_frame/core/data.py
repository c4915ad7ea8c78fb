"""The data-source contract: where a run's images come from.

A `DataSource` plugin is registered by name and opened with an argument (``--data demo``, ``--data
name:argument``, or a bare value such as a folder path that a source `claims`) into an `ImageSet`: classes, one or
two partitions, image counts, and `load` of float images in [0, 1] at the model's input size. The class variable
decides the image: the design gives a class index and a value in [0, 1) that `select` maps to an image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class InputFormat:
    """How images reach a model: `size` (H, W); shorter side resized to min(size) / `crop_pct` with
    `interpolation`, then a centre crop."""

    size: tuple[int, int]
    crop_pct: float = 0.875
    interpolation: str = "bilinear"


class ImageSet(ABC):
    """Images of an opened data source, addressed by (class, index within class, partition)."""

    #: class names; index i is the label the run uses for class i
    classes: list[str]
    #: partition names (``train``/``valid``, or one partition); two make a partition variable
    partitions: list[str]
    #: the classes' ids in a network's class space (WordNet ids), mapped via `Model.class_ids`
    class_ids: list[str] | None = None

    @abstractmethod
    def counts(self, partition: int) -> Tensor:
        """(n_classes,) number of images per class in partition `partition`."""

    @abstractmethod
    def load(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        """Images (B, 3, H, W) float in [0, 1] for (B,) class, within-class index and partition."""

    def masks(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor | None:
        """(B, H, W) integer masks (0 background, 1.. objects) for segmenters that read them; None: no masks."""
        return None

    def fingerprint(self) -> str:
        """What the images depend on (a listing digest, a version); a resume refuses a change."""
        return type(self).__name__

    def select(self, classes: Tensor, within: Tensor, partition: Tensor) -> Tensor:
        """Image indices for design values: floor(within * count of (class, partition))."""
        counts = torch.stack([self.counts(p) for p in range(len(self.partitions))])  # (partitions, classes)
        n = counts[partition.long(), classes.long()]
        return torch.minimum((within * n).floor().long(), n - 1)


class DataSource(ABC):
    """A registered kind of image data (``register_data_sources``)."""

    name: str = ""
    description: str = ""

    def claims(self, value: str) -> bool:
        """Whether a bare ``--data`` value (no ``name:`` prefix) is meant for this source (default: its name)."""
        return value == self.name

    @abstractmethod
    def open(self, argument: str, fmt: InputFormat) -> ImageSet:
        """The images of ``--data`` `argument` in the model's format (`sa_frame.prepare_image`); else UsageError."""

