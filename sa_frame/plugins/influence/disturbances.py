"""Fixed disturbances of test images for influence runs (``--disturbances``): the paper's white background, and
cheap stand-ins for its texture and style transfers on the demo, built from the registered augmentations.

They are augmentations like any other but parameter-free, and the first two need the data's object masks, so
random chains refuse them; an influence run applies them once to every test image.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from sa_frame import Augmentation, lookup

#: the demo's colour families sit 0.6 apart in hue (warm 0.0, cool 0.6): -0.4 = +0.6 modulo 1
FAMILY_SHIFT = -0.4


def _fixed(name: str, images: Tensor, **values: float) -> Tensor:
    """A registered augmentation at fixed parameter values, the same for every image."""
    params = {p: torch.full((len(images),), v, device=images.device, dtype=images.dtype) for p, v in values.items()}
    return lookup("augmentation", name)(images, params)


class WhiteBackground(Augmentation):
    name = "white_background"
    description = "everything outside the objects' masks set to white (the paper's background removal)"
    needs_masks = True

    def apply(self, images: Tensor, params: Mapping[str, Tensor], masks: Tensor | None = None) -> Tensor:
        assert masks is not None
        foreground = (masks > 0).unsqueeze(1)
        return torch.where(foreground, images, torch.ones_like(images))


class TextureSwap(Augmentation):
    name = "texture_swap"
    description = "the objects recoloured into the other colour family (hue +0.6: the demo's warm <-> cool)"
    needs_masks = True

    def apply(self, images: Tensor, params: Mapping[str, Tensor], masks: Tensor | None = None) -> Tensor:
        assert masks is not None
        foreground = (masks > 0).unsqueeze(1)
        return torch.where(foreground, _fixed("hue", images, factor=FAMILY_SHIFT), images)


class Style(Augmentation):
    name = "style"
    description = "a fixed 'style': hue +0.1, saturation x0.5, sharpened, Gaussian blur sigma 1 (a stand-in for Gatys transfer)"

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        out = _fixed("hue", images, factor=0.1)
        out = _fixed("saturation", out, factor=0.5)
        out = _fixed("sharpness", out)
        return _fixed("gaussian_blur", out, sigma=1.0)
