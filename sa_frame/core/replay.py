"""The model, images and augmentations of a finished run, rebuilt from its results file.

Prediction analyses (accuracy, guided masking) run the network again on the run's own
data with the run's own augmentations; they get them from here, so an analysis cannot
silently use another model or other weights than the maps it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sa_frame.core.augmentation import Augmentation
from sa_frame.core.chain import resolve_augmentations
from sa_frame.core.data import ImageSource, open_source
from sa_frame.core.errors import UsageError
from sa_frame.core.model import Model
from sa_frame.core.plugins import lookup
from sa_frame.core.store import ResultsFile

VALID_PARTITIONS = ("valid", "val")


@dataclass
class Replay:
    """A run's network (eval mode, on `device`), image source and augmentations."""

    spec: Model
    net: nn.Module
    device: torch.device
    source: ImageSource
    augmentations: list[Augmentation]
    postprocess: str

    @classmethod
    def from_results(cls, results: ResultsFile, device: str | None = None) -> Replay:
        from sa_frame.core.pipeline import resolve_device

        config: dict[str, Any] = results.config()
        spec = lookup("model", config["model"])
        target = resolve_device(device or config.get("device", "cpu"))
        net = spec.build(config.get("weights")).to(target).eval()
        source = open_source(config["data"], tuple(spec.input_size))
        return cls(spec, net, target, source, resolve_augmentations(config["aug"]),
                   config.get("postprocess", "none"))

    def evaluation_images(self, per_class: int, partition: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(classes, within-class index, partition index) of the first `per_class` images of every
        class of the validation partition (or the only one); fewer where a class has fewer."""
        names = list(self.source.partitions)
        if partition is None:
            part = next((i for i, n in enumerate(names) if n in VALID_PARTITIONS), len(names) - 1)
        elif partition in names:
            part = names.index(partition)
        else:
            raise UsageError(f"unknown partition {partition!r}; the data has {', '.join(names)}")
        counts = self.source.counts(part)
        classes = torch.arange(len(counts)).repeat_interleave(torch.clamp(counts, max=per_class))
        starts = torch.cumsum(torch.clamp(counts, max=per_class), 0) - torch.clamp(counts, max=per_class)
        index = torch.arange(classes.numel()) - starts[classes]
        return classes, index, torch.full_like(classes, part)

    def inputs(self, images: Tensor) -> Tensor:
        """[0, 1] images -> the network's input (post-processing of the run, then normalisation)."""
        if self.postprocess == "minmax":
            from sa_frame.core.pipeline import minmax

            images = minmax(images)
        return self.spec.normalize(images)
