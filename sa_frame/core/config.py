"""The run configuration: one validated dataclass, from a YAML file and/or flags.

Flags override the file. The configuration is saved into the results file; resuming
compares its identity keys (everything that changes the numbers) with the stored ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sa_frame.core.errors import UsageError, closest

# Sample sizes: the paper's (SPEC A5, B §3.3, §4.4, §5.2), the research code's test
# profiles (`--quick`, SPEC B §9.1) and the small demo defaults.
PAPER_SIZES: dict[str, dict[str, Any]] = {
    "sobol": {"n": 2**17},
    "shapley": {"n": 256, "n_outer": 64, "n_inner": 8},
    "variance": {"n": 2**18},
    "contrast": {"n": 50_000, "n_inner": 10},
}
QUICK_SIZES: dict[str, dict[str, Any]] = {
    "sobol": {"n": 64},
    "shapley": {"n": 8, "n_outer": 6, "n_inner": 4},
    "variance": {"n": 1024},
    "contrast": {"n": 1000, "n_inner": 2},
}
DEMO_SIZES: dict[str, dict[str, Any]] = {
    "sobol": {"n": 512},
    "shapley": {"n": 48, "n_outer": 4, "n_inner": 4},
    "variance": {"n": 4096},
    "contrast": {"n": 256, "n_inner": 4},
}
# Keys that do not change the numbers (left out of the resume check).
NON_IDENTITY = frozenset({"out", "resume", "force", "quiet", "save_every", "keep_state"})


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
    n_outer: int | None = None
    n_inner: int | None = None
    players: str | None = None
    second_order: bool = True
    classifier_output: str = "softmax"
    postprocess: str = "none"
    save_every: int = 20
    quick: bool = False
    resume: bool = False
    force: bool = False
    quiet: bool = False
    keep_state: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results (compared on resume)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NON_IDENTITY}

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=True)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def load_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, with errors naming the file, line and key."""
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}:{where}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the config must be a mapping of keys to values, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    for key in data:
        if key not in FIELDS or key in ("resume", "force", "out"):
            allowed = [k for k in FIELDS if k not in ("resume", "force", "extra")]
            near = closest(key, allowed)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UsageError(f"{path}: unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")
    return data


def build_config(file_values: dict[str, Any], flags: dict[str, Any], source: str = "flags") -> RunConfig:
    """Merge file values and flags (flags win) into a checked RunConfig."""
    merged = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    for key, value in list(merged.items()):
        kind = FIELDS[key].type
        if value is None:
            continue
        try:
            if kind in ("int", "int | None"):
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError
                merged[key] = int(value)
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise ValueError
            elif kind in ("str", "str | None"):
                merged[key] = str(value)
            elif kind == "list[str] | None":
                merged[key] = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) \
                    else [str(s) for s in value]
        except (TypeError, ValueError):
            raise UsageError(f"{source}: {key} must be of type {kind}, got {value!r}") from None
    config = RunConfig(**merged)
    if config.batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.postprocess not in ("none", "minmax"):
        raise UsageError(f"postprocess must be 'none' or 'minmax' (the research code's per-image min-max), "
                         f"got {config.postprocess!r}")
    if config.save_every < 1:
        raise UsageError(f"save_every must be >= 1 block, got {config.save_every}")
    return config


def estimator_sizes(config: RunConfig, is_demo: bool) -> dict[str, Any]:
    """Size options for the estimator: explicit values, else quick / demo / paper defaults."""
    table = QUICK_SIZES if config.quick else DEMO_SIZES if is_demo else PAPER_SIZES
    defaults = table.get(config.estimator, {"n": 1024})
    sizes = {"n": config.n if config.n is not None else defaults["n"]}
    for key in ("n_outer", "n_inner"):
        value = getattr(config, key)
        if value is not None or key in defaults:
            sizes[key] = value if value is not None else defaults[key]
    return sizes
