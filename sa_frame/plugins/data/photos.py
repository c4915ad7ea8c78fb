"""``--data photos``: real photographs that ship with scikit-image and scikit-learn, each
labelled with its ImageNet class, so the main job runs on a real network with no download
(``pip install "sa-frame[real]"``).

Ten deterministic views of each photo (square crops at three scales and several places,
some mirrored) make the images: the first six the ``train`` partition, the last four
``valid``. Each view is then prepared in the model's input format.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from sa_frame import DataSource, ImageSet, InputFormat, UsageError, prepare_image

EXTRA = 'pip install "sa-frame[real]"'
# class name, ImageNet WordNet id (index), where the photo comes from
PHOTOS = (
    ("espresso", "n07920052", "skimage:coffee"),      # 967
    ("tabby", "n02123045", "skimage:chelsea"),        # 281
    ("missile", "n03773504", "skimage:rocket"),       # 657
    ("moped", "n03785016", "skimage:stereo_motorcycle"),  # 665
    ("palace", "n03877845", "sklearn:china.jpg"),     # 698
    ("daisy", "n11939491", "sklearn:flower.jpg"),     # 985
)
# (side as a fraction of the shorter side, centre x, centre y as fractions, mirrored)
VIEWS = ((1.0, 0.5, 0.5, False), (0.85, 0.45, 0.5, False), (0.85, 0.55, 0.45, True), (0.7, 0.4, 0.4, False),
         (0.7, 0.6, 0.6, True), (0.7, 0.5, 0.5, True),
         (1.0, 0.5, 0.5, True), (0.85, 0.5, 0.55, False), (0.7, 0.45, 0.55, False), (0.7, 0.55, 0.45, True))
TRAIN_VIEWS = 6


@lru_cache(maxsize=len(PHOTOS))
def photo(source: str) -> np.ndarray:
    """An (H, W, 3) uint8 photograph from scikit-image or scikit-learn."""
    library, name = source.split(":")
    try:
        if library == "skimage":
            import skimage.data

            image = getattr(skimage.data, name)()
            image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left view
        else:
            from sklearn.datasets import load_sample_image

            image = load_sample_image(name)
    except ImportError:
        raise UsageError(f"--data photos needs scikit-image (`{EXTRA}`)") from None
    return np.ascontiguousarray(image[..., :3])


def view(image: np.ndarray, side: float, cx: float, cy: float, mirrored: bool) -> np.ndarray:
    """A square crop of `image` (side a fraction of its shorter side, centred near (cx, cy),
    kept inside the image), mirrored left-right when asked."""
    h, w = image.shape[:2]
    s = int(round(side * min(h, w)))
    x0 = int(np.clip(round(cx * w - s / 2), 0, w - s))
    y0 = int(np.clip(round(cy * h - s / 2), 0, h - s))
    crop = image[y0:y0 + s, x0:x0 + s]
    return np.ascontiguousarray(crop[:, ::-1] if mirrored else crop)


def views(partition: int) -> tuple[tuple[float, float, float, bool], ...]:
    return VIEWS[:TRAIN_VIEWS] if partition == 0 else VIEWS[TRAIN_VIEWS:]


class PhotoSet(ImageSet):
    def __init__(self, fmt: InputFormat) -> None:
        self.classes = [name for name, _, _ in PHOTOS]
        self.class_ids = [wnid for _, wnid, _ in PHOTOS]
        self.partitions = ["train", "valid"]
        self.fmt = fmt
        self._prepared = lru_cache(maxsize=len(PHOTOS) * len(VIEWS))(self._prepare)

    def fingerprint(self) -> str:
        import importlib.metadata as metadata

        return f"photos:scikit-image {metadata.version('scikit-image')}, views {len(VIEWS)}"

    def counts(self, partition: int) -> Tensor:
        return torch.full((len(self.classes),), len(views(partition)))

    def _prepare(self, cls: int, index: int, partition: int) -> Tensor:
        image = view(photo(PHOTOS[cls][2]), *views(partition)[index])
        return prepare_image(torch.from_numpy(image).permute(2, 0, 1).contiguous(), self.fmt)

    def load(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        # 60 prepared views at most, cached: rows of a run share them
        return torch.stack([self._prepared(c, i, p) for c, i, p in
                            zip(classes.tolist(), index.tolist(), partition.tolist())])


class PhotoSource(DataSource):
    name = "photos"
    description = "six real photographs (scikit-image, scikit-learn) labelled with ImageNet classes, 10 views each"

    def open(self, argument: str, fmt: InputFormat) -> PhotoSet:
        if argument not in ("", self.name):
            raise UsageError(f"the photos data source takes no argument, got {argument!r} (use --data photos)")
        photo(PHOTOS[0][2])  # fail now, with the extra named, if scikit-image is missing
        return PhotoSet(fmt)
