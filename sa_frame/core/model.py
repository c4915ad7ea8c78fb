"""The Model contract (docs/architecture.md) and weight loading shared by every model plugin.

A model plugin knows how to build the network, which modules are its default checkpoints, which module classifies,
its input size and normalisation. Weights are ``imagenet`` (the plugin's pretrained weights through the library's
own cache), ``random`` or a path to a state-dict file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sa_frame.core.data import InputFormat
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
    #: preprocessing of a photo: shorter side to min(input_size) / crop_pct, centre crop
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    @property
    def class_names(self) -> list[str] | None:
        """Human-readable class names, index -> name, when known."""
        return None

    @property
    def class_ids(self) -> list[str] | None:
        """Identifiers of the output classes (WordNet ids for ImageNet), index -> id, when known:
        data folders named by them are labelled in the network's class space."""
        return None

    def input_format(self) -> InputFormat:
        """The size and preprocessing data sources give this model's images."""
        return InputFormat(tuple(self.input_size), self.crop_pct, self.interpolation)

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


def read_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` file or a PyTorch checkpoint, unwrapped from the
    ``state_dict``/``model`` entries and ``module.`` prefixes that training scripts add."""
    if not path.is_file():
        raise UsageError(f"weights file not found: {path} (use 'imagenet', 'random' or a state-dict file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the readers raise many types for a corrupt file
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch state dict"
        raise UsageError(f"weights file {path} is not a readable {kind}: {exc}".splitlines()[0]) from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UsageError(f"weights file {path} does not hold a state dict (name -> tensor)")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_file(module: nn.Module, path: Path, model_name: str) -> None:
    """Load a weights file into `module`; a mismatch names the first few missing or unexpected
    keys, or the first key of another shape."""
    state, expected = read_weights(path), module.state_dict()
    where = f"weights file {path} does not fit {model_name}"

    def listed(what: str, keys: list[str]) -> str:
        more = f" (and {len(keys) - 1} more: {', '.join(map(repr, keys[1:4]))}{', ...' if len(keys) > 4 else ''})"
        return f"{what} key {keys[0]!r}{more if len(keys) > 1 else ''}"

    missing, unexpected = [k for k in expected if k not in state], [k for k in state if k not in expected]
    if missing or unexpected:
        raise UsageError(f"{where}: " + "; ".join(listed(w, k) for w, k in (("missing", missing),
                                                                            ("unexpected", unexpected)) if k))
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise UsageError(f"{where}: key {key!r} has shape {tuple(state[key].shape)}, the model expects "
                             f"{tuple(tensor.shape)}")
    module.load_state_dict(state)
