"""Colour augmentations with one factor per image, on the whole batch.

Each equals torchvision's functional op applied image by image (tested): the blends
are torchvision's `_blend` with the factor broadcast per image, and hue uses
torchvision's own RGB<->HSV conversions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor

# torchvision's batched RGB<->HSV kernels (private, but what adjust_hue itself uses);
# they take whole batches, so a per-image hue shift is one broadcast add.
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from sa_frame import Augmentation, Uniform


def _per_image(value: Tensor, images: Tensor) -> Tensor:
    return value.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = _per_image(factor, images)
    return (f * images + (1.0 - f) * other).clamp_(0.0, 1.0)


class Brightness(Augmentation):
    name = "brightness"
    description = "multiply intensities by a factor (torchvision adjust_brightness)"
    params = {"factor": Uniform(0.1, 2.5)}
    identity = {"factor": 1.0}

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return _blend(images, torch.zeros_like(images), params["factor"])


class Contrast(Augmentation):
    name = "contrast"
    description = "blend with the image's mean grey level (torchvision adjust_contrast)"
    params = {"factor": Uniform(0.01, 3.5)}
    identity = {"factor": 1.0}

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        mean = F.rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(images, mean, params["factor"])


class Saturation(Augmentation):
    name = "saturation"
    description = "blend with the grey image (torchvision adjust_saturation)"
    params = {"factor": Uniform(0.01, 3.5)}
    identity = {"factor": 1.0}

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return _blend(images, F.rgb_to_grayscale(images), params["factor"])


class Hue(Augmentation):
    name = "hue"
    description = "rotate the hue channel by a factor in [-0.5, 0.5] (torchvision adjust_hue)"
    params = {"factor": Uniform(-0.5, 0.5)}
    identity = {"factor": 0.0}  # the research code's 1.0 was a bug

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        hsv = _rgb_to_hsv(images)
        h, s, v = hsv.unbind(dim=-3)
        factor = _per_image(params["factor"], images)
        h = (h + factor[:, 0]).remainder(1.0)
        # factor 0 is exactly the identity (the HSV round trip is off by ~1e-7)
        return torch.where(factor == 0, images, _hsv_to_rgb(torch.stack((h, s, v), dim=-3)))


class Grayscale(Augmentation):
    name = "grayscale"
    description = "ITU-R 601 luma replicated to 3 channels (parameter-free: switched)"

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return F.rgb_to_grayscale(images, num_output_channels=3)


class Sharpness(Augmentation):
    name = "sharpness"
    description = "sharpen by a factor of 1.5 (torchvision adjust_sharpness; parameter-free: switched)"
    factor = 1.5

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return sharpen(images, self.factor)


def sharpen(images: Tensor, factor: float) -> Tensor:
    """torchvision's adjust_sharpness (blend with the 3x3 [1 1 1; 1 5 1; 1 1 1]/13 smoothing, borders
    kept): the kernel is a separable 3x3 box sum plus 4x the centre, so four adds of shifted
    views — on CPU half the time of a nine-view sum and an eighth of torchvision's batched conv."""
    h, w = images.shape[-2:]
    if h <= 2 or w <= 2:
        return images.clone()
    rows = images[..., :, :-2] + images[..., :, 1:-1]
    rows += images[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :]
    box += rows[..., 2:, :]
    degenerate = images.clone()
    degenerate[..., 1:-1, 1:-1] = box.add_(images[..., 1:-1, 1:-1], alpha=4).div_(13)
    return degenerate.mul_(1.0 - factor).add_(images, alpha=factor).clamp_(0.0, 1.0)
