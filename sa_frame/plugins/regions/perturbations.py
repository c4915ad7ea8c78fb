"""Built-in perturbations: `scale` (SBSA's multiplier per region, x * alpha, clamped) and
`inpaint` (Fel et al. / Xplique: x * m + (1 - m) * x0 towards a baseline image)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from sa_frame import Perturbation, Uniform, UsageError, option


def region_values(labels: Tensor, values: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, 1, H, W): each pixel's region value, values[b, labels[b, y, x]] (one gather)."""
    b, h, w = labels.shape
    return values.to(device=labels.device, dtype=dtype).gather(1, labels.reshape(b, -1)).view(b, 1, h, w)


@dataclasses.dataclass
class ScaleOptions:
    low: float = option(0.0, "smallest multiplier (0 blacks a region out)")
    high: float = option(2.0, "largest multiplier (the paper's U(0, 2r): masking and doubling equally likely)")


class Scale(Perturbation):
    name = "scale"
    description = "each region's pixels times alpha ~ U(low, high) in [0, 1] space, clamped to [0, 1]"
    Options = ScaleOptions

    def variable(self, options: ScaleOptions) -> Uniform:
        if not 0 <= options.low < 1 < options.high:
            raise UsageError(f"perturbation 'scale' needs 0 <= low < 1 < high (1 leaves a region unchanged), got "
                             f"low={options.low:g}, high={options.high:g}")
        return Uniform(options.low, options.high)

    def identity(self, options: ScaleOptions) -> float:
        return 1.0

    def apply(self, images: Tensor, labels: Tensor, values: Tensor, options: ScaleOptions) -> Tensor:
        return (images * region_values(labels, values, images.dtype)).clamp_(0.0, 1.0)


@dataclasses.dataclass
class InpaintOptions:
    baseline: str = option("zeros", "what a removed region becomes: zeros (black), mean (the image's mean colour) "
                                    "or blur (a Gaussian blur of the image)")
    sigma: float = option(10.0, "blur: the Gaussian's standard deviation in pixels (Xplique's 10)")


BASELINES = ("zeros", "mean", "blur")


class Inpaint(Perturbation):
    name = "inpaint"
    description = "x * m + (1 - m) * x0 per region, m ~ U(0, 1), x0 = zeros, the mean colour or a blur"
    Options = InpaintOptions

    def variable(self, options: InpaintOptions) -> Uniform:
        if options.baseline not in BASELINES:
            from sa_frame import unknown_name

            raise unknown_name("inpaint baseline", options.baseline, BASELINES)
        if options.baseline == "blur" and not options.sigma > 0:
            raise UsageError(f"perturbation 'inpaint': sigma must be > 0, got {options.sigma:g}")
        return Uniform(0.0, 1.0)

    def identity(self, options: InpaintOptions) -> float:
        return 1.0

    def baseline(self, images: Tensor, options: InpaintOptions) -> Tensor:
        if options.baseline == "zeros":
            return torch.zeros_like(images)
        if options.baseline == "mean":
            return images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
        import torchvision.transforms.v2.functional as F

        radius = min(int(math.ceil(3 * options.sigma)), (min(images.shape[-2:]) - 1) // 2)
        return F.gaussian_blur(images, [2 * radius + 1] * 2, [options.sigma] * 2)

    def apply(self, images: Tensor, labels: Tensor, values: Tensor, options: InpaintOptions) -> Tensor:
        m = region_values(labels, values, images.dtype)
        return (images * m).add_((1 - m) * self.baseline(images, options)).clamp_(0.0, 1.0)
