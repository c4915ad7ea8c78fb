"""Image files as a data source's loading code reads them: decoded to RGB, then prepared in
a model's input format (shorter side resized, centre crop)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from torch import Tensor

from sa_frame.core.data import InputFormat
from sa_frame.core.errors import UsageError

PIXELS_ENV = "SA_FRAME_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000  # 10,000 x 10,000: a decompression bomb beyond it


def max_image_pixels() -> int:
    """The largest image (in pixels) read, from SA_FRAME_MAX_IMAGE_PIXELS or the default."""
    try:
        return int(os.environ.get(PIXELS_ENV, DEFAULT_MAX_PIXELS))
    except ValueError:
        raise UsageError(f"{PIXELS_ENV} must be a whole number of pixels, got {os.environ[PIXELS_ENV]!r}") from None


def prepare_image(image: Tensor, fmt: InputFormat) -> Tensor:
    """A (3, H, W) uint8 (or float in [0, 1]) image as a float (3, *fmt.size) image in [0, 1]:
    the shorter side resized to min(size) / crop_pct with the format's interpolation, then a
    centre crop."""
    import torch
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms import InterpolationMode

    h, w = fmt.size
    mode = InterpolationMode(fmt.interpolation)
    image = F.resize(image, [round(min(h, w) / fmt.crop_pct)], interpolation=mode, antialias=True)
    image = F.center_crop(image, [h, w])
    return (image.float() / 255.0 if image.dtype == torch.uint8 else image.float()).clamp_(0.0, 1.0)


def read_image(path: Path) -> Tensor:
    """An image file as a (3, H, W) RGB tensor: uint8 for 8-bit files, float32 in [0, 1] for
    16-bit ones (scaled by 65535, where converting to RGB would clip them to white); 32-bit
    and floating-point images are refused with the file named (their range is unknown)."""
    import numpy as np
    import torch
    import torchvision.transforms.v2.functional as F
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise UsageError(f"image file not found: {path}")
    Image.MAX_IMAGE_PIXELS = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # beyond the limit: refused
            pil = Image.open(path)
            pil.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"image {path} is larger than the limit of {Image.MAX_IMAGE_PIXELS:,} pixels ({exc}); "
                         f"set {PIXELS_ENV} to a larger number to read it knowingly") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None
    try:
        with pil:
            if pil.mode.startswith("I;16"):
                grey = torch.from_numpy(np.asarray(pil, dtype=np.uint16).astype(np.float32) / 65535.0)
                return grey.unsqueeze(0).expand(3, -1, -1).contiguous()
            if pil.mode in ("I", "F"):
                raise UsageError(f"image {path} is {'32-bit integer' if pil.mode == 'I' else 'floating-point'} "
                                 f"(mode {pil.mode}); its range is unknown: convert it to 8 or 16 bits")
            return F.pil_to_tensor(pil.convert("RGB"))
    except OSError as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None
