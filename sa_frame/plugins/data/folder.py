"""Images in ImageFolder layout (``--data PATH`` or ``--data folder:PATH``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from sa_frame import DataSource, ImageSet, InputFormat, UsageError, prepare_image, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
PARTITION_DIRS = {"train": ("train",), "valid": ("valid", "val")}


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
        self.files: list[list[list[Path]]] = []
        class_sets = []
        for folder in roots.values():
            classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
            class_sets.append(classes)
            self.files.append([sorted(f for f in (folder / c).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
                               for c in classes])
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




class FolderSource(DataSource):
    """``--data PATH``: a folder in ImageFolder layout, with or without partitions."""

    name = "folder"
    description = "a folder root/<class>/<image> or root/{train,valid|val}/<class>/<image>"

    def claims(self, value: str) -> bool:
        return True  # a value that names no source is a path (a missing one gets a clear error)

    def open(self, argument: str, fmt: InputFormat) -> FolderSet:
        return FolderSet(Path(argument), fmt)
