"""A third-party sa-frame plugin: darken the corners of an image (a vignette).

Install it (``pip install ./examples/sa-frame-vignette``) and ``sa-frame plugins``
lists it; ``--aug vignette`` (or any set containing it) then uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from sa_frame import Augmentation, Uniform, hookimpl


class Vignette(Augmentation):
    """Multiply each pixel by 1 - strength * (r / r_corner)^2, r = distance to the centre."""

    name = "vignette"
    description = "darken the corners (strength 0 = no-op, 1 = black corners)"
    params = {"strength": Uniform(0.0, 1.0)}
    identity = {"strength": 0.0}

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        _, _, h, w = images.shape
        y = torch.linspace(-1.0, 1.0, h, device=images.device, dtype=images.dtype)
        x = torch.linspace(-1.0, 1.0, w, device=images.device, dtype=images.dtype)
        r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0  # 1 at the corners
        strength = params["strength"].to(images.dtype).view(-1, 1, 1, 1)
        return images * (1.0 - strength * r2)


@hookimpl
def register_augmentations(register: Callable[[Any], None]) -> None:
    register(Vignette())
