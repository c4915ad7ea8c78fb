"""torchvision classifiers: AlexNet, VGG11, ResNet18 with the paper's checkpoints,
and every other torchvision classification model with generic default checkpoints."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from sa_frame import Model, UsageError, did_you_mean
from sa_frame.plugins.models._imagenet import IMAGENET_CLASSES, imagenet_wnids
from sa_frame.plugins.models._offline import offline_weights_error

PAPER_CHECKPOINTS = {
    "alexnet": ["features.2", "features.5", "features.7", "features.9", "avgpool", "classifier.2",
                "classifier.5", "classifier.6"],
    "vgg11": ["features.2", "features.5", "features.10", "features.15", "avgpool", "classifier.1",
              "classifier.4", "classifier.6"],
    "resnet18": ["maxpool", "layer1", "layer2", "layer3", "avgpool", "fc"],
}
# Modules whose output repeats their input's information (skipped by the generic rule).
PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Dropout, nn.Flatten,
                nn.Identity)


def generic_checkpoints(module: nn.Module) -> list[str]:
    """Top-level children, with sequential stages expanded one level; pass-through modules skipped."""
    names = []
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential) and len(child) > 1:
            names += [f"{name}.{n}" for n, c in child.named_children() if not isinstance(c, PASS_THROUGH)]
        elif not isinstance(child, PASS_THROUGH):
            names.append(name)
    return names


def last_linear(module: nn.Module) -> str:
    """Name of the last nn.Linear module: the classifier of torchvision classification models."""
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][-1]


class TorchvisionModel(Model):
    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"torchvision {name}" + (" (paper checkpoints)" if name in PAPER_CHECKPOINTS else "")
        self._skeleton: nn.Module | None = None

    def _meta(self) -> nn.Module:
        """The architecture without memory (meta device): enough to read module names."""
        if self._skeleton is None:
            with torch.device("meta"):
                self._skeleton = torchvision.models.get_model(self.name, weights=None)
        return self._skeleton

    @property
    def checkpoints(self) -> list[str]:  # type: ignore[override]
        return PAPER_CHECKPOINTS.get(self.name) or generic_checkpoints(self._meta())

    @property
    def classifier(self) -> str:  # type: ignore[override]
        return last_linear(self._meta())

    @property
    def class_names(self) -> list[str] | None:
        weights = torchvision.models.get_model_weights(self.name).DEFAULT
        return list(weights.meta.get("categories") or []) or None

    @property
    def class_ids(self) -> list[str] | None:
        """WordNet ids for the ImageNet heads (torchvision's class order is ImageNet's)."""
        names = self.class_names
        return imagenet_wnids() if names is not None and len(names) == IMAGENET_CLASSES else None

    def weight_names(self) -> list[str]:
        """torchvision's names of this model's pretrained weights (``DEFAULT`` = ``imagenet``)."""
        return ["DEFAULT", *(w.name for w in torchvision.models.get_model_weights(self.name))]

    def build(self, weights: str | Path | None = None) -> nn.Module:
        """As `Model.build`, and torchvision's weight names too: ``IMAGENET1K_V2`` or
        ``ResNet50_Weights.IMAGENET1K_V2`` (a file of that name, if it exists, wins)."""
        if isinstance(weights, str) and weights not in ("imagenet", "random") and not Path(weights).exists():
            name = weights.rsplit(".", 1)[-1] if weights.startswith(f"{self._weights_enum().__name__}.") else weights
            if name in self.weight_names():
                return self._pretrained(self._weights_enum()[name]).eval()
            if name.isupper() and "/" not in name:  # looks like a weight name, not a path
                raise UsageError(f"unknown weights {weights!r} for {self.name}{did_you_mean(name, self.weight_names())}"
                                 f"; torchvision has {', '.join(self.weight_names())} (or: imagenet, random, a "
                                 f"state-dict file)")
        return super().build(weights)

    def _weights_enum(self):  # noqa: ANN202 - a torchvision WeightsEnum subclass
        return torchvision.models.get_model_weights(self.name)

    def build_module(self, pretrained: bool) -> nn.Module:
        if not pretrained:
            return torchvision.models.get_model(self.name, weights=None)
        return self._pretrained(self._weights_enum().DEFAULT)

    def _pretrained(self, weights: torchvision.models.WeightsEnum) -> nn.Module:
        """The network with `weights`, from torch's hub cache (offline: where to put the file)."""
        try:
            return torchvision.models.get_model(self.name, weights=weights)
        except OSError:  # offline (URLError) and not in the hub cache
            file_name = Path(urlparse(weights.url).path).name
            raise offline_weights_error(self.name, file_name, Path(torch.hub.get_dir()) / "checkpoints",
                                        f"from {weights.url}") from None


def classification_model_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))
