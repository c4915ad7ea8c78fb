"""Built-in augmentations and the sets A1 and A2 of the paper (Table A.1).

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl

A1 = ["erasing", "sharpness", "rolling", "grayscale", "gaussian_blur"]
A2 = ["brightness", "contrast", "saturation", "hue", "hflip", "rotation", "elliptic_blur"]


@hookimpl
def register_augmentations(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.augmentations.blur import EllipticBlur, GaussianBlur
    from sa_frame.plugins.augmentations.geometric import Erasing, HorizontalFlip, Rolling, Rotation
    from sa_frame.plugins.augmentations.photometric import (Brightness, Contrast, Grayscale, Hue, Saturation,
                                                            Sharpness)

    for aug in (Erasing(), Sharpness(), Rolling(), Grayscale(), GaussianBlur(), Brightness(), Contrast(),
                Saturation(), Hue(), HorizontalFlip(), Rotation(), EllipticBlur()):
        register(aug)


@hookimpl
def register_augmentation_sets(register: Callable[[str, list[str]], None]) -> None:
    register("a1", A1)
    register("a2", A2)
