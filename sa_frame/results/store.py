"""The HDF5 results file (docs/architecture.md), written atomically.

Root attributes: schema version, run config (YAML), package and plugin versions, seed,
design, status (running / complete), blocks done. `/variables`, `/checkpoints/<name>/<stat>`
shaped (n_groups, *activation_shape) or (*activation_shape), `/state/<name>/<stat>` for
resuming, `/analyses/<name>/` for post-analyses.

Every write goes to a temporary file in the same folder that is then renamed over the
results file, so a killed run leaves either the previous consistent file or the new
one — never a half-written file, and never one that reads as complete when it is not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml

from sa_frame.core.errors import UsageError

SCHEMA_VERSION = 1
RUNNING, COMPLETE = "running", "complete"


JSON_PREFIX = "json:"


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        return json.loads(value[len(JSON_PREFIX):])
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# Sections whose float64 arrays are stored as float32: index maps need no more
# (float32 storage, float64 accumulation). The resumable state keeps float64 so
# that a resumed run is exactly an uninterrupted one; analyses are small and stay float64.
FLOAT32_SECTIONS = frozenset({"checkpoints"})


def _write_tree(group: h5py.Group, tree: Mapping[str, Any], float32: bool = False) -> None:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            _write_tree(group.require_group(key), value, float32)
        else:
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if array.dtype.kind == "U":
                array = array.astype(h5py.string_dtype())
            elif float32 and array.dtype == np.float64:
                array = array.astype(np.float32)
            big = array.size > 1024 and array.dtype.kind in "fiub"
            # LZF: several times faster than gzip at a similar ratio on these maps
            group.create_dataset(key, data=array, compression="lzf" if big else None, shuffle=big)


def _read_tree(group: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _read_tree(item)
        else:
            value = item[()]
            if isinstance(value, bytes):  # a scalar string
                value = value.decode()
            out[key] = value.astype(str) if isinstance(value, np.ndarray) and item.dtype.kind == "O" else value
    return out


class ResultsFile:
    """Read and atomically (re)write one run's results file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # attrs, variables and maps read once while the file is unchanged (by size and mtime)
        self._cache: dict[str, Any] = {}
        self._cache_stamp: tuple[int, int, int] | None = None

    def _cached(self, key: str, read: Any) -> Any:
        try:
            info = self.path.stat()
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp is None or stamp != self._cache_stamp:
            self._cache.clear()
            self._cache_stamp = stamp
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    # -- reading --------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.exists()

    def _open(self) -> h5py.File:
        if not self.path.is_file():
            raise UsageError(f"results file not found: {self.path}")
        try:
            return h5py.File(self.path, "r")
        except OSError as exc:
            raise UsageError(f"{self.path} is not a readable sa-frame results file (HDF5): {exc}") from None

    def attrs(self) -> dict[str, Any]:
        """Root attributes; dicts (written as JSON) and string lists come back as Python objects."""
        return dict(self._cached("attrs", self._read_attrs))

    def _read_attrs(self) -> dict[str, Any]:
        with self._open() as f:
            attrs = {key: _decode(value) for key, value in f.attrs.items()}
        if "schema_version" not in attrs:
            raise UsageError(f"{self.path} is an HDF5 file but not an sa-frame results file")
        return attrs

    def status(self) -> str:
        return str(self.attrs().get("status"))

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.attrs()["config"])

    def variables(self) -> dict[str, Any]:
        """The `/variables` section (read once while the file is unchanged)."""
        return self._cached("variables", lambda: self.read("variables"))

    def checkpoint_maps(self) -> dict[str, Any]:
        """Every checkpoint's index maps, `{checkpoint: {map: array}}` (read once while unchanged)."""
        return self._cached("checkpoints", lambda: self.read("checkpoints"))

    def read(self, section: str) -> dict[str, Any]:
        """A whole section (`variables`, `checkpoints`, `state`, `analyses`) as nested dicts."""
        with self._open() as f:
            return _read_tree(f[section]) if section in f else {}

    def dataset(self, path: str) -> np.ndarray:
        """One dataset (e.g. ``checkpoints/fc/S1``) without reading the rest of the file."""
        with self._open() as f:
            if path not in f or not isinstance(f[path], h5py.Dataset):
                raise UsageError(f"{self.path} has no dataset {path!r}")
            return f[path][()]

    def keys(self, group: str) -> list[str]:
        """Member names of a group (empty when the group is absent)."""
        with self._open() as f:
            return list(f[group].keys()) if group in f else []

    def state(self) -> dict[str, torch.Tensor]:
        """The saved accumulator state, flat `{"<checkpoint>/<stat>": tensor}`."""
        flat = {}
        for name, stats in self.read("state").items():
            if isinstance(stats, dict):
                for stat, value in stats.items():
                    flat[f"{name}/{stat}"] = torch.from_numpy(np.asarray(value))
            else:
                flat[name] = torch.as_tensor(stats)
        return flat

    # -- writing --------------------------------------------------------------------------
    def write(self, attrs: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the file with `attrs` and `sections`, atomically."""
        self._cache.clear()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with h5py.File(tmp, "w") as f:
                for key, value in attrs.items():
                    if isinstance(value, dict):
                        value = JSON_PREFIX + json.dumps(value, sort_keys=True)
                    elif isinstance(value, list):
                        value = np.array([str(v) for v in value], dtype=h5py.string_dtype())
                    f.attrs[key] = value
                for name, tree in sections.items():
                    _write_tree(f.require_group(name), tree, float32=name in FLOAT32_SECTIONS)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write results file {self.path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def write_analysis(self, name: str, tree: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        """Replace `/analyses/<name>` (small: kept in float64), atomically: everything else is
        copied into a new file that is renamed over the original (a crash leaves the old file;
        a replaced analysis leaves no dead space behind, unlike deleting it in place)."""
        self._cache.clear()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with self._open() as src, h5py.File(tmp, "w") as dst:
                dst.attrs.update(src.attrs)
                for key in src:
                    if key != "analyses":
                        src.copy(src[key], dst, name=key)
                analyses = dst.create_group("analyses")
                for other in src.get("analyses", {}):
                    if other != name:
                        src.copy(src[f"analyses/{other}"], analyses, name=other)
                group = analyses.create_group(name)
                _write_tree(group, tree)
                for key, value in attrs.items():
                    group.attrs[key] = JSON_PREFIX + json.dumps(value, sort_keys=True) \
                        if isinstance(value, (dict, list)) else value
            os.replace(tmp, self.path)
        except OSError as exc:
            raise UsageError(f"cannot write results file {self.path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def analysis_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of `/analyses/<name>` (UsageError if that analysis was not run)."""
        with self._open() as f:
            if f"analyses/{name}" not in f:
                raise UsageError(f"{self.path} has no '{name}' analysis; run `sa-frame analyze {self.path} {name}` "
                                 f"first")
            return {key: _decode(value) for key, value in f[f"analyses/{name}"].attrs.items()}


def state_tree(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """`{"<checkpoint>/<stat>": t}` -> `{checkpoint: {stat: t}}` (counters stay at the top)."""
    tree: dict[str, Any] = {}
    for key, value in state.items():
        if "/" in key:
            name, stat = key.rsplit("/", 1)
            tree.setdefault(name, {})[stat] = value
        else:
            tree[key] = value
    return tree
