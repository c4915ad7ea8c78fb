"""Image files as a data source's loading code reads them: decoded to RGB, then prepared in
a model's input format (shorter side resized, centre crop)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from sa_frame.core.data import InputFormat
from sa_frame.core.errors import UsageError


def prepare_image(image: Tensor, fmt: InputFormat) -> Tensor:
    """A (3, H, W) uint8 image as a float (3, *fmt.size) image in [0, 1]: the shorter side
    resized to min(size) / crop_pct with the format's interpolation, then a centre crop."""
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms import InterpolationMode

    h, w = fmt.size
    mode = InterpolationMode(fmt.interpolation)
    image = F.resize(image, [round(min(h, w) / fmt.crop_pct)], interpolation=mode, antialias=True)
    return (F.center_crop(image, [h, w]).float() / 255.0).clamp_(0.0, 1.0)


def read_image(path: Path) -> Tensor:
    """An image file as a (3, H, W) uint8 RGB tensor (UsageError naming an unreadable file)."""
    import torchvision.transforms.v2.functional as F
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise UsageError(f"image file not found: {path}")
    try:
        with Image.open(path) as pil:
            return F.pil_to_tensor(pil.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None
