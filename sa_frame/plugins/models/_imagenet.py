"""ImageNet-1k's class list (descriptions and WordNet ids, index order), from the copy that
ships with timm (a dependency), for models whose head has 1,000 outputs."""

from __future__ import annotations

from functools import lru_cache

IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_names() -> list[str]:
    """Short descriptions, e.g. 'espresso' for class 967 (the first of each synonym list)."""
    from timm.data import ImageNetInfo

    return [description.split(",")[0] for description in ImageNetInfo().label_descriptions()]


@lru_cache(maxsize=1)
def imagenet_wnids() -> list[str]:
    """WordNet ids, e.g. 'n07920052' for class 967."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())
