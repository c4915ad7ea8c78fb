"""The Model contract (docs/architecture.md) and weight loading shared by every model plugin.

A model plugin knows how to build the network, which modules are its default
checkpoints, which module classifies, its input size and normalisation. Weights are
``imagenet`` (the plugin's pretrained weights through the library's own cache),
``random`` or a path to a state-dict file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from sa_frame.core.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_CHOICES = ("imagenet", "random")


class Model(ABC):
    """An image classifier whose activations sa-frame dissects."""

    name: str = ""
    description: str = ""
    #: default checkpoints (module names); a `register_checkpoints` plugin may override them
    checkpoints: Sequence[str] = ()
    #: the module whose output is the class scores (recorded as probabilities by default)
    classifier: str = ""
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_weights: str = "imagenet"

    @property
    def class_names(self) -> list[str] | None:
        """Human-readable class names, index -> name, when known."""
        return None

    @abstractmethod
    def build_module(self, pretrained: bool) -> nn.Module:
        """The network (eval mode is set by `build`), with pretrained weights or random ones."""

    def build(self, weights: str | Path | None = None) -> nn.Module:
        """The network in eval mode with `weights`: imagenet, random or a state-dict file."""
        weights = self.default_weights if weights is None else weights
        if isinstance(weights, Path) or weights not in WEIGHT_CHOICES:
            module = self.build_module(pretrained=False)
            load_state_dict_file(module, Path(weights), self.name)
        else:
            module = self.build_module(pretrained=weights == "imagenet")
        return module.eval()

    def normalize(self, images: Tensor) -> Tensor:
        """Map [0, 1] images to the network's input scale (mean/std normalisation)."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean).div_(std)


def load_state_dict_file(module: nn.Module, path: Path, model_name: str) -> None:
    """Load a state dict into `module`, with errors naming the file and the first bad key."""
    if not path.is_file():
        raise UsageError(f"weights file not found: {path} (use 'imagenet', 'random' or a state-dict file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise UsageError(f"weights file {path} is not a readable PyTorch state dict: {exc}".splitlines()[0]) \
            from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UsageError(f"weights file {path} does not hold a state dict (name -> tensor)")
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise UsageError(f"weights file {path} does not fit {model_name}: missing key {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise UsageError(f"weights file {path} does not fit {model_name}: key {key!r} has shape "
                             f"{tuple(state[key].shape)}, the model expects {tuple(tensor.shape)}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise UsageError(f"weights file {path} does not fit {model_name}: unexpected key {unexpected[0]!r}")
    module.load_state_dict(state)
