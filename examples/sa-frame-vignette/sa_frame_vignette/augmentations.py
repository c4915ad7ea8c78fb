"""The augmentations: functions of (images, parameters) only, batched over the images."""

import torch

from sa_frame import Augmentation, Uniform


class Invert(Augmentation):
    """Parameter-free: no SA variable of its own. sa-frame switches it on or off per image."""

    name = "invert"
    description = "colour inversion, 1 - x (parameter-free: switched)"

    def apply(self, images, params):
        return 1.0 - images


class Vignette(Augmentation):
    """Multiply each pixel by 1 - strength * (r / r_corner)^2, r = distance to the centre."""

    name = "vignette"
    description = "darken the corners (strength 0 = no-op, 1 = black corners)"
    params = {"strength": Uniform(0.0, 1.0)}  # its SA variables: one group, "vignette"
    identity = {"strength": 0.0}              # values that leave the image unchanged

    def apply(self, images, params):          # images (B, 3, H, W) in [0, 1]; params["strength"] (B,)
        _, _, h, w = images.shape
        y = torch.linspace(-1.0, 1.0, h, device=images.device, dtype=images.dtype)
        x = torch.linspace(-1.0, 1.0, w, device=images.device, dtype=images.dtype)
        r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0  # 1 at the corners
        strength = params["strength"].to(images.dtype).view(-1, 1, 1, 1)
        return images * (1.0 - strength * r2)
