"""The region contracts (docs/regions.md): a `Segmenter` splits images into integer regions and a `Perturbation`
turns one value per region into an image, so that the Sobol or Shapley machinery can treat regions as the
variables of a fixed image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from sa_frame.core.options import NoOptions, make_options
from sa_frame.core.variables import Variable


class Segmenter(ABC):
    """Images -> region labels (``register_segmenters``)."""

    name: str = ""
    description: str = ""
    Options: type = NoOptions
    #: whether `segment` reads the data's masks (`ImageSet.masks`)
    needs_masks: bool = False

    def options(self, values: Mapping[str, Any] | None = None) -> Any:
        return make_options(self.Options, values or {}, f"segmenter {self.name!r}")

    @abstractmethod
    def max_regions(self, size: tuple[int, int], options: Any) -> int:
        """L_max for images of `size` (H, W): the number of region variables of a run."""

    @abstractmethod
    def segment(self, images: Tensor, masks: Tensor | None, options: Any) -> Tensor:
        """(B, H, W) int64 labels in [0, L_max) of images (B, 3, H, W) in [0, 1] (`masks`: the data's, or None)."""

    def region_names(self, options: Any) -> list[str] | None:
        """Names of the labels when they mean the same in every image (foreground, background); else None."""
        return None


class Perturbation(ABC):
    """One value per region -> a perturbed image (``register_perturbations``)."""

    name: str = ""
    description: str = ""
    Options: type = NoOptions

    def options(self, values: Mapping[str, Any] | None = None) -> Any:
        return make_options(self.Options, values or {}, f"perturbation {self.name!r}")

    @abstractmethod
    def variable(self, options: Any) -> Variable:
        """The law of one region's value (every region has the same)."""

    @abstractmethod
    def identity(self, options: Any) -> float:
        """The value that leaves a region exactly unchanged."""

    def masked(self, options: Any) -> float:
        """The value that removes a region (the metrics' "masked"; default: the lowest value)."""
        return self.variable(options).bounds[0]

    @abstractmethod
    def apply(self, images: Tensor, labels: Tensor, values: Tensor, options: Any) -> Tensor:
        """Images (B, 3, H, W) in [0, 1], region `labels` (B, H, W), `values` (B, L) -> images in [0, 1]."""
