"""Images in ImageFolder layout (``--data PATH`` or ``--data folder:PATH``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from sa_frame import DataSource, ImageSet, InputFormat, UsageError, prepare_image, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
#: masks beside the images: <root>/masks/<partition folder>/<class>/<stem>.png (or <root>/masks/<class>/...)
MASKS_DIR = "masks"
PARTITION_DIRS = {"train": ("train",), "valid": ("valid", "val")}


def scan(folder: Path, classes: list[str]) -> list[list[Path]]:
    """The image files of each class folder (any depth, sorted), by torchvision's ImageFolder scan."""
    from torchvision.datasets.folder import make_dataset

    per_class: list[list[Path]] = [[] for _ in classes]
    if not classes:  # torchvision refuses an empty class list; the caller names the problem
        return per_class
    for path, index in make_dataset(str(folder), {c: k for k, c in enumerate(classes)}, extensions=IMAGE_SUFFIXES,
                                    allow_empty=True):
        per_class[index].append(Path(path))
    return per_class


class FolderSet(ImageSet):
    """Images in ImageFolder layout: root/train/<class>/*.jpg and root/valid (or val)/<class>/...,
    or root/<class>/*.jpg (one partition, no partition variable). Each image is prepared in the
    model's input format (shorter side to size / crop_pct, centre crop)."""

    def __init__(self, root: Path, fmt: InputFormat, cache_images: int = 4096) -> None:
        from functools import lru_cache

        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"data folder not found: {root} (use 'demo' or a folder in ImageFolder layout)")
        found = {}
        for part, names in PARTITION_DIRS.items():
            for dirname in names:
                if (root / dirname).is_dir():
                    found[part] = root / dirname
                    break
        roots = found if found else {"all": root}
        self.partitions = list(roots)
        self.roots = roots
        self.files: list[list[list[Path]]] = []
        class_sets = []
        for folder in roots.values():
            masks_here = not found  # one partition: root/masks sits beside the class folders
            classes = sorted(d.name for d in folder.iterdir()
                             if d.is_dir() and not (masks_here and d.name == MASKS_DIR))
            class_sets.append(classes)
            self.files.append(scan(folder, classes))
        if not class_sets[0]:
            raise UsageError(f"data folder {root} has no class sub-folders ({root}/<class>/<image> expected)")
        if any(cs != class_sets[0] for cs in class_sets):
            raise UsageError(f"data folder {root}: partitions {self.partitions} have different classes")
        self.classes = class_sets[0]
        for part, per_class in zip(self.partitions, self.files):
            empty = [c for c, files in zip(self.classes, per_class) if not files]
            if empty:
                raise UsageError(f"data folder {root}: class folder {empty[0]!r} of partition {part!r} has no images")
        self.fmt, self.root = fmt, root
        self._load_one = lru_cache(maxsize=cache_images)(self._read)

    def counts(self, partition: int) -> Tensor:
        return torch.tensor([len(files) for files in self.files[partition]])

    def fingerprint(self) -> str:
        """A digest of the listing: every file's path, size and modification time."""
        import hashlib

        digest = hashlib.sha256()
        for per_class in self.files:
            for files in per_class:
                for f in files:
                    info = f.stat()
                    digest.update(f"{f.relative_to(self.root)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        return f"folder:{digest.hexdigest()}"

    def _read(self, partition: int, cls: int, index: int) -> Tensor:
        return prepare_image(read_image(self.files[partition][cls][index]), self.fmt)

    def load(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        # one file per image: reading is I/O, decoded images are cached (rows share images)
        return torch.stack([self._load_one(int(p), int(c), int(i))
                            for c, i, p in zip(classes.tolist(), index.tolist(), partition.tolist())])

    def mask_path(self, partition: int, cls: int, index: int) -> Path:
        image = self.files[partition][cls][index]
        folder = self.roots[self.partitions[partition]]
        base = self.root / MASKS_DIR / (folder.name if folder != self.root else "")
        return base / image.relative_to(folder).with_suffix(".png")

    def masks(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor | None:
        """Integer masks from <root>/masks/...: 8-bit PNGs whose pixel values are region labels,
        resized (nearest) and centre-cropped exactly as the images are. None without a masks/ folder."""
        if not (self.root / MASKS_DIR).is_dir():
            return None
        return torch.stack([self._read_mask(int(p), int(c), int(i))
                            for c, i, p in zip(classes.tolist(), index.tolist(), partition.tolist())])

    def _read_mask(self, partition: int, cls: int, index: int) -> Tensor:
        import numpy as np
        import torchvision.transforms.v2.functional as F
        from PIL import Image
        from torchvision.transforms import InterpolationMode

        path = self.mask_path(partition, cls, index)
        if not path.is_file():
            raise UsageError(f"mask file not found: {path} (every image needs one under {self.root / MASKS_DIR}, "
                             f"same relative path, .png)")
        try:
            with Image.open(path) as pil:
                mask = torch.from_numpy(np.asarray(pil.convert("L") if pil.mode not in ("L", "P") else pil).copy())
        except OSError as exc:
            raise UsageError(f"cannot read mask {path}: {exc}") from None
        h, w = self.fmt.size
        mask = F.resize(mask[None], [round(min(h, w) / self.fmt.crop_pct)], interpolation=InterpolationMode.NEAREST)
        return F.center_crop(mask, [h, w])[0].to(torch.uint8)




class FolderSource(DataSource):
    """``--data PATH``: a folder in ImageFolder layout, with or without partitions."""

    name = "folder"
    description = "a folder root/<class>/<image> or root/{train,valid|val}/<class>/<image>"

    def claims(self, value: str) -> bool:
        return True  # a value that names no source is a path (a missing one gets a clear error)

    def open(self, argument: str, fmt: InputFormat) -> FolderSet:
        return FolderSet(Path(argument), fmt)
