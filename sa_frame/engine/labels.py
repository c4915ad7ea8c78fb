"""The data's classes in the network's class space, so that accuracies, masking and
single-class analyses compare labels with the right outputs on a subset of the network's
classes (a few ImageNet classes, ImageNette, ...).

Rules, first that maps every class wins: a ``--class-map`` file (class -> output index or
class id); the data source's own class ids; folder names that are class ids of the model
(WordNet ids such as ``n07920052``); folder names that start with an output index
(``967`` or ``967_espresso``). Otherwise the labels are the data's class indices 0..C-1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sa_frame.core.data import ImageSet
from sa_frame.core.errors import UsageError
from sa_frame.core.model import Model
from sa_frame.engine.config import read_yaml_file

INDEX_NAME = re.compile(r"^(\d+)(?:[_\- ].*)?$")


@dataclass(frozen=True)
class Labels:
    """Output index of each data class (None: class i is output i) and how that was decided."""

    network_classes: list[int] | None
    how: str


def read_class_map(path: str) -> dict[str, Any]:
    """A YAML/JSON mapping class name -> output index or class id."""
    file = Path(path)
    data = read_yaml_file(file, "class map")
    if not isinstance(data, dict):
        raise UsageError(f"{file}: a class map is a mapping of class name -> output index or class id")
    return {str(k): v for k, v in data.items()}


def network_labels(source: ImageSet, model: Model, n_outputs: int | None, class_map: str | None = None) -> Labels:
    """How the data's classes map to the model's outputs (see the module docstring)."""
    classes = list(source.classes)
    ids = model.class_ids
    position = {cid: i for i, cid in enumerate(ids)} if ids else {}

    def resolve(value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value if n_outputs is None or 0 <= value < n_outputs else None
        return position.get(str(value))

    if class_map:
        mapping = read_class_map(class_map)
        missing = [c for c in classes if c not in mapping]
        if missing:
            raise UsageError(f"class map {class_map} has no entry for class {missing[0]!r} "
                             f"({len(missing)} of {len(classes)} missing)")
        out = [resolve(mapping[c]) for c in classes]
        bad = [c for c, o in zip(classes, out) if o is None]
        if bad:
            raise UsageError(f"class map {class_map}: {bad[0]!r} -> {mapping[bad[0]]!r} is not an output index "
                             f"or a class id of {model.name}")
        return Labels(out, f"class map {class_map}")
    for names, how in ((source.class_ids, "the data source's class ids"), (classes, "folder names as class ids")):
        if names and position and all(n in position for n in names):
            return Labels([position[n] for n in names], how)
    matches = [INDEX_NAME.match(c) for c in classes]
    if all(matches):
        out = [int(m.group(1)) for m in matches]  # type: ignore[union-attr]
        if n_outputs is None or all(0 <= o < n_outputs for o in out):
            return Labels(out, "folder names as output indices")
    return Labels(None, "class indices of the data (0..C-1)")


def label_warning(labels: Labels, n_classes: int, n_outputs: int | None) -> str:
    """A warning when the data's class indices are used but cannot be the network's outputs."""
    if labels.network_classes is not None or n_outputs is None or n_outputs == n_classes:
        return ""
    return (f"the data has {n_classes} classes but the network {n_outputs} outputs and no rule maps them: labels are "
            f"the data's class indices 0..{n_classes - 1}, so accuracies are not meaningful; name the class folders "
            f"by class id or output index, or give --class-map FILE")
