"""The run configuration: one validated dataclass, from a YAML file and/or flags.

Flags override the file. The configuration is saved into the results file; resuming
compares its identity keys (everything that changes the numbers) with the stored ones.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from sa_frame.core.errors import UsageError, did_you_mean, yaml_error

# Flags and top-level YAML keys kept as documented aliases of estimator options
# (``--n-outer 4`` is ``-o n_outer=4``).
OPTION_ALIASES = ("n_outer", "n_inner", "players", "second_order")
RESULTS_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
MAX_SIZE = 2**30  # design sizes beyond this are a typo, not a run that could finish
# Keys that do not change the numbers (left out of the resume check).
NON_IDENTITY = frozenset({"out", "resume", "force", "quiet", "save_every", "keep_state", "compression"})


@dataclass
class RunConfig:
    model: str = "demo-cnn"
    aug: str = "a1"
    estimator: str = "sobol"
    data: str = "demo"
    weights: str | None = None
    n: int | None = None
    checkpoints: list[str] | None = None
    device: str = "cpu"
    batch_size: int = 64
    seed: int = 0
    out: str = "results.h5"
    scheme: int | None = None
    classifier_output: str = "softmax"
    postprocess: str = "none"
    #: YAML/JSON file mapping the data's classes to the network's output indices or class ids
    class_map: str | None = None
    save_every: int = 20
    quick: bool = False
    resume: bool = False
    force: bool = False
    quiet: bool = False
    keep_state: bool = False
    #: compression of the results' large arrays: gzip (any HDF5 reader) or lzf (h5py only)
    compression: str = "gzip"
    #: region runs: the segmenter (``grid:cells=4``), the perturbation, which images, the score
    regions: str | None = None
    perturbation: str = "scale"
    images: int | None = None
    per_class: int | None = None
    partition: str | None = None
    score: str = "logit"
    target: str = "true"
    #: one design for every image (shared) or one per image, seeded by the image (per-image)
    design: str = "shared"
    #: step-wise runs (estimator ssa): the relevance between consecutive checkpoints, name[:key=value,...]
    relevance: str | None = None
    #: the estimator's options (its Options dataclass' fields), from -o key=value or YAML
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results (compared on resume)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NON_IDENTITY}

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=True)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
HINTS = typing.get_type_hints(RunConfig)


@functools.cache
def _adapter(key: str) -> TypeAdapter:
    """pydantic's validator of one field (numbers given for a name are read as text: ``--weights 1``)."""
    return TypeAdapter(HINTS[key], config=ConfigDict(coerce_numbers_to_str=True))
# what a YAML file may set: everything but the acts of one invocation
FILE_KEYS = [k for k in FIELDS if k not in ("resume", "force")]


def read_yaml_file(path: Path | str, what: str, hint: str = "") -> Any:
    """The YAML (or JSON) content of a file; a missing file, a syntax error (file, line,
    column, then `hint`) or a file that is not UTF-8 text is one UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{yaml_error(path, exc)}{hint}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {exc.start}): a {what} is YAML text") from None


def load_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, with errors naming the file, line and key."""
    data = read_yaml_file(path, "config file") or {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the config must be a mapping of keys to values, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    for key in ("extra", "options"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise UsageError(f"{path}: {key!r} must be a mapping of estimator options, got {data[key]!r}")
    if "extra" in data:  # the name of `options` before estimators owned their options
        data["options"] = {**(data.pop("extra") or {}), **(data.get("options") or {})}
    for key in data:
        if key in FILE_KEYS or key in OPTION_ALIASES:
            continue
        allowed = [*FILE_KEYS, *OPTION_ALIASES]
        raise UsageError(f"{path}: unknown key {key!r}{did_you_mean(key, allowed, 1)}; allowed: "
                         f"{', '.join(allowed)}")
    return data


def build_config(file_values: dict[str, Any], flags: dict[str, Any], source: str = "flags") -> RunConfig:
    """Merge file values and flags (flags win) into a checked RunConfig."""
    given = {k: v for k, v in flags.items() if v is not None}
    merged = {**file_values, **given}
    # estimator options: the file's, then its aliases, then the flags' (-o and alias flags)
    options = {**(file_values.get("extra") or {}), **(file_values.get("options") or {})}
    options.update({a: file_values[a] for a in OPTION_ALIASES if file_values.get(a) is not None})
    options.update(given.get("options") or {})
    options.update({a: given[a] for a in OPTION_ALIASES if a in given})
    for key in ("extra", *OPTION_ALIASES):
        merged.pop(key, None)
    merged["options"] = options
    for key, value in list(merged.items()):
        if value is None:
            continue
        if key == "checkpoints" and isinstance(value, str):  # --checkpoints a,b,c
            value = [s.strip() for s in value.split(",") if s.strip()]
        try:
            if isinstance(value, bool) != (HINTS[key] is bool):  # YAML's yes/1 are not a size, nor 1 a yes
                raise ValueError
            merged[key] = _adapter(key).validate_python(value)
        except (ValueError, ValidationError):
            raise UsageError(f"{source}: {key} must be of type {FIELDS[key].type}, got {value!r}") from None
    config = RunConfig(**merged)
    if Path(config.out).suffix.lower() not in RESULTS_SUFFIXES:
        raise UsageError(f"--out {config.out}: a results file is HDF5, its name ends in "
                         f"{' or '.join(RESULTS_SUFFIXES)} (figures are written next to it as .png)")
    if config.n is not None and not 1 <= config.n <= MAX_SIZE:
        raise UsageError(f"n must lie in 1..{MAX_SIZE:,} (2^30), got {config.n:,}")
    if config.batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.postprocess not in ("none", "minmax"):
        raise UsageError(f"postprocess must be 'none' or 'minmax' (the research code's per-image min-max), "
                         f"got {config.postprocess!r}")
    if config.compression not in ("gzip", "lzf"):
        raise UsageError(f"compression must be gzip (any HDF5 reader) or lzf (h5py only), got {config.compression!r}")
    if config.save_every < 1:
        raise UsageError(f"save_every must be >= 1 block, got {config.save_every}")
    return config
