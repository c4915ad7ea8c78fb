"""Geometric augmentations with per-image parameters, whole batch at once.

Positions and sizes are fractions of the image side, so the same problem works at any
resolution; at 224x224 they are the paper's pixel ranges (Table A.1): erasing centres in
[44, 180] px and rolls of up to 44 px (H // 5), written as fractions of 224.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as nnf
from torch import Tensor

from sa_frame import Augmentation, Uniform


def _pixel_grid(images: Tensor) -> tuple[Tensor, Tensor]:
    _, _, h, w = images.shape
    yy = torch.arange(h, device=images.device).view(1, h, 1)
    xx = torch.arange(w, device=images.device).view(1, 1, w)
    return yy, xx


class Erasing(Augmentation):
    """Set a rectangle to 0; the rectangle is clipped to the image, so every draw
    erases something, unlike the research code which skipped ~16% of draws."""

    name = "erasing"
    description = "erase a rectangle (centre, area fraction, log aspect ratio), clipped to the image"
    params = {"center_y": Uniform(44 / 224, 180 / 224), "center_x": Uniform(44 / 224, 180 / 224),
              "scale": Uniform(0.02, 0.33),
              "log_ratio": Uniform(math.log(0.3), math.log(3.3))}
    identity = {"center_y": 0.5, "center_x": 0.5, "scale": 0.0, "log_ratio": 0.0}

    def rectangles(self, images: Tensor, params: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """(top, left, height, width) per image in pixels, already clipped to the image."""
        _, _, h, w = images.shape
        dev = images.device
        area = params["scale"].to(dev, torch.float64) * h * w
        ratio = torch.exp(params["log_ratio"].to(dev, torch.float64))
        rh = torch.round(torch.sqrt(area * ratio))
        rw = torch.round(torch.sqrt(area / ratio))
        cy = torch.round(params["center_y"].to(dev, torch.float64) * h)
        cx = torch.round(params["center_x"].to(dev, torch.float64) * w)
        top = (cy - torch.div(rh, 2, rounding_mode="floor")).clamp(0, h)
        left = (cx - torch.div(rw, 2, rounding_mode="floor")).clamp(0, w)
        bottom = (top + rh).clamp(max=h)
        right = (left + rw).clamp(max=w)
        return top.long(), left.long(), (bottom - top).long(), (right - left).long()

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        top, left, rh, rw = (t.view(-1, 1, 1) for t in self.rectangles(images, params))
        yy, xx = _pixel_grid(images)
        inside = (yy >= top) & (yy < top + rh) & (xx >= left) & (xx < left + rw)
        return images.masked_fill(inside.unsqueeze(1), 0.0)


class Rolling(Augmentation):
    name = "rolling"
    description = "circular shift by (dy, dx), fractions of the side rounded to pixels (torch.roll)"
    params = {"dy": Uniform(-44 / 224, 44 / 224), "dx": Uniform(-44 / 224, 44 / 224)}
    identity = {"dy": 0.0, "dx": 0.0}

    @staticmethod
    def shifts(images: Tensor, params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Integer shifts in pixels per image."""
        _, _, h, w = images.shape
        dev = images.device
        dy = torch.round(params["dy"].to(dev, torch.float64) * h).long()
        dx = torch.round(params["dx"].to(dev, torch.float64) * w).long()
        return dy, dx

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        b, c, h, w = images.shape
        dy, dx = self.shifts(images, params)
        iy = (torch.arange(h, device=images.device).view(1, h) - dy.view(-1, 1)).remainder(h)
        ix = (torch.arange(w, device=images.device).view(1, w) - dx.view(-1, 1)).remainder(w)
        # one gather over the flattened plane (source pixel of every output pixel): ~4x faster
        # on CPU than gathering rows then columns
        source = (iy.view(b, h, 1) * w + ix.view(b, 1, w)).view(b, 1, h * w)
        return images.reshape(b, c, h * w).gather(2, source.expand(b, c, h * w)).view(b, c, h, w)


class HorizontalFlip(Augmentation):
    name = "hflip"
    description = "mirror left-right (parameter-free: switched)"

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return images.flip(-1)


def rotation_theta(angle_deg: Tensor, zoom: Tensor, height: int, width: int) -> Tensor:
    """affine_grid matrices (B, 2, 3): output coordinates -> input coordinates.

    The output pixel at normalised (x, y) samples the input at zoom * R(angle) (x, y)
    (in pixel units, about the centre), i.e. the image rotated by `angle` (counter-
    clockwise, as torchvision) and magnified by 1 / zoom.
    """
    a = torch.deg2rad(angle_deg.to(torch.float64))
    cos, sin = torch.cos(a) * zoom, torch.sin(a) * zoom
    # pixel-unit rotation expressed in normalised coordinates of a possibly non-square image
    theta = torch.zeros(angle_deg.shape[0], 2, 3, dtype=torch.float64, device=angle_deg.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * height / width
    theta[:, 1, 0] = sin * width / height
    theta[:, 1, 1] = cos
    return theta


class Rotation(Augmentation):
    """Rotate about the centre, crop the largest centred axis-aligned square free of the
    black corners and resize it back: one affine grid sample (rotation and zoom in one
    matrix). Bilinear by default; ``interpolation="nearest"`` is the research code's."""

    name = "rotation"
    description = "rotate by an angle in degrees, crop the black corners, resize back"
    params = {"angle": Uniform(-10.0, 10.0)}
    identity = {"angle": 0.0}

    def __init__(self, interpolation: str = "bilinear", crop: bool = True) -> None:
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"rotation interpolation must be bilinear or nearest, got {interpolation!r}")
        self.interpolation, self.crop = interpolation, crop

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        b, _, h, w = images.shape
        angle = params["angle"].to(images.device)
        t = torch.tan(torch.deg2rad(angle.abs().to(torch.float64)))
        # crop margin S t / (1 + t) on each side (the research code's formula, without its rounding):
        # the kept centred square has side S (1 - t) / (1 + t)
        zoom = (1 - t) / (1 + t) if self.crop else torch.ones_like(t)
        theta = rotation_theta(angle, zoom, h, w).to(images.dtype)
        grid = nnf.affine_grid(theta, [b, 3, h, w], align_corners=False)
        out = nnf.grid_sample(images, grid, mode=self.interpolation, padding_mode="zeros", align_corners=False)
        # angle 0 is exactly the identity (resampling at pixel centres is off by ~1e-5 in float32)
        return torch.where((angle == 0).view(-1, 1, 1, 1), images, out)
