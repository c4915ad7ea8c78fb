"""The Augmentation contract (docs/architecture.md) that built-in and third-party augmentations implement.

An augmentation works on a whole batch: `apply(images, params)` gets a (B, 3, H, W) float tensor in [0, 1] on any
device and one value per image for every parameter, as (B,) tensors; no per-image Python loop. Calling the object
validates its inputs first, so a wrong shape, dtype or out-of-range value fails with a message naming the
augmentation and the parameter, and user values are never silently clamped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.variables import Variable


class Augmentation(ABC):
    """A randomly parameterised image transformation whose effect sa-frame measures."""

    name: str = ""
    description: str = ""
    #: ordered parameter name -> SA variable (the augmentation's group of variables)
    params: Mapping[str, Variable] = {}
    #: parameter values that make `apply` a no-op (empty for parameter-free augmentations)
    identity: Mapping[str, float] = {}
    #: True when `apply` also needs the images' (B, H, W) object masks, as ``apply(images, params, masks=...)``
    needs_masks: bool = False

    @abstractmethod
    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        """The augmented batch, same shape, dtype and device, values in [0, 1]."""

    def check(self, images: Tensor, params: Mapping[str, Tensor]) -> None:
        """Raise UsageError naming the augmentation and parameter for any bad input."""
        where = f"augmentation {self.name!r}"
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise UsageError(f"{where}: images must be a (B, 3, H, W) tensor, got {shape}")
        if not images.is_floating_point():
            raise UsageError(f"{where}: images must be float in [0, 1], got {images.dtype} "
                             f"(convert uint8 with images.float() / 255)")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise UsageError(f"{where}: image values must lie in [0, 1], got "
                             f"[{float(images.min()):g}, {float(images.max()):g}]")
        unknown = set(params) - set(self.params)
        missing = set(self.params) - set(params)
        if unknown or missing:
            raise UsageError(f"{where}: parameters must be {list(self.params)}; "
                             f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        for pname, variable in self.params.items():
            value = params[pname]
            if not isinstance(value, Tensor) or value.shape != (images.shape[0],):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise UsageError(f"{where}, parameter {pname!r}: expected one value per image, shape "
                                 f"({images.shape[0]},), got {shape}")
            if pname in self.identity:  # identity values may lie outside the sampled range
                value = value[value != float(self.identity[pname])]
            variable.check(value, f"{where}, parameter {pname!r}")

    def __call__(self, images: Tensor, params: Mapping[str, Tensor] | None = None, masks: Tensor | None = None) -> Tensor:
        params = dict(params or {})
        self.check(images, params)
        if not self.needs_masks:
            return self.apply(images, params)
        if masks is None or masks.shape != (images.shape[0], *images.shape[2:]):
            raise UsageError(f"augmentation {self.name!r} needs the images' (B, H, W) object masks; the data source "
                             "gives none (the demo and folders with a masks/ tree do)")
        return self.apply(images, params, masks=masks)  # type: ignore[call-arg]

    def identity_params(self, batch: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Identity values for a batch, as (B,) tensors."""
        return {k: torch.full((batch,), float(v), device=device) for k, v in self.identity.items()}
