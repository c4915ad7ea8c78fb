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

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml

from sa_frame.core.errors import UsageError

SCHEMA_VERSION = 2
#: versions this sa-frame reads: 1 (before region runs: no mode, /images or /regions) and 2
READABLE_SCHEMAS = (1, 2)
RUNNING, COMPLETE = "running", "complete"
# root attributes every results file has, and their types
REQUIRED_ATTRS: dict[str, type | tuple[type, ...]] = {
    "schema_version": int, "status": str, "estimator": str, "checkpoints": list, "blocks_done": int,
    "n_blocks": int}


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


#: compressions of large arrays: gzip (every HDF5 reader opens it; level 1 writes in about 1.5x
#: LZF's time at a slightly smaller size, benchmarks/compression.py) or LZF (h5py only)
COMPRESSIONS = {"gzip": {"compression": "gzip", "compression_opts": 1}, "lzf": {"compression": "lzf"}}


def _write_tree(group: h5py.Group, tree: Mapping[str, Any], float32: bool = False,
                compression: str = "gzip") -> None:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            _write_tree(group.require_group(key), value, float32, compression)
        else:
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if array.dtype.kind == "U":
                array = array.astype(h5py.string_dtype())
            elif float32 and array.dtype == np.float64:
                array = array.astype(np.float32)
            big = array.size > 1024 and array.dtype.kind in "fiub"
            group.create_dataset(key, data=array, shuffle=big, **(COMPRESSIONS[compression] if big else {}))


SPACE_MARGIN = 1 << 20  # bytes beyond the arrays' own: HDF5 metadata, attributes


def _tree_bytes(tree: Mapping[str, Any], float32: bool = False) -> int:
    """Uncompressed bytes of a tree's arrays as `_write_tree` stores them (an upper bound)."""
    total = 0
    for value in tree.values():
        if isinstance(value, Mapping):
            total += _tree_bytes(value, float32)
        else:
            array = value.detach() if isinstance(value, torch.Tensor) else np.asarray(value)
            itemsize = 4 if float32 and array.dtype in (np.float64, torch.float64) else array.element_size() \
                if isinstance(array, torch.Tensor) else array.dtype.itemsize
            total += int(np.prod(array.shape)) * itemsize
    return total


def check_space(path: Path, needed: int) -> None:
    """Refuse, before HDF5 starts writing, a write the disk cannot hold: HDF5 fails late and
    noisily on a full disk (and h5py can crash cleaning up after it)."""
    import shutil

    free = shutil.disk_usage(path.parent).free
    if free < needed + SPACE_MARGIN:
        raise UsageError(f"no space left on {path.parent} while writing {path} (needs up to {needed / 2**20:,.1f} "
                         f"MiB, {free / 2**20:,.1f} MiB free); the last saved state is intact")


def _no_links(f: h5py.File, path: str) -> None:
    """Refuse soft and external links on `path` and below it: sa-frame writes none, and an
    external link would make a reader open another file (or loop)."""
    group: h5py.Group = f
    parts = [p for p in path.split("/") if p]
    for depth, part in enumerate(parts):
        link = group.get(part, getlink=True)
        if link is None:
            return
        if not isinstance(link, h5py.HardLink):
            raise ValueError(f"/{'/'.join(parts[:depth + 1])} is a {type(link).__name__}")
        group = group[part]
        if not isinstance(group, h5py.Group):
            return
    stack = [group]
    while stack:
        current = stack.pop()
        for name in current:
            link = current.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise ValueError(f"{current.name}/{name} is a {type(link).__name__}")
            item = current[name]
            if isinstance(item, h5py.Group):
                stack.append(item)


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

    def __init__(self, path: Path | str, compression: str = "gzip") -> None:
        if compression not in COMPRESSIONS:
            raise UsageError(f"compression must be {' or '.join(COMPRESSIONS)}, got {compression!r}")
        self.compression = compression
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
        with self._reading("the root attributes"), self._open() as f:
            attrs = {key: _decode(value) for key, value in f.attrs.items()}
        if "schema_version" not in attrs:
            raise UsageError(f"{self.path} is an HDF5 file but not an sa-frame results file")
        for key, kinds in REQUIRED_ATTRS.items():
            if key not in attrs:
                raise self._invalid(f"attribute {key!r} is missing")
            if not isinstance(attrs[key], kinds) or isinstance(attrs[key], bool):
                raise self._invalid(f"attribute {key!r} is {attrs[key]!r}")
        if attrs["schema_version"] not in READABLE_SCHEMAS:
            raise self._invalid(f"schema version {attrs['schema_version']} (this sa-frame reads "
                                f"{', '.join(map(str, READABLE_SCHEMAS))})")
        if attrs["status"] not in (RUNNING, COMPLETE) or not 0 <= attrs["blocks_done"] <= attrs["n_blocks"]:
            raise self._invalid(f"status {attrs['status']!r} with {attrs['blocks_done']} of {attrs['n_blocks']} "
                                f"blocks")
        return attrs

    def _invalid(self, what: str) -> UsageError:
        return UsageError(f"{self.path} is not a valid sa-frame results file: {what}")

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Damage found while reading (bad bytes, odd attributes, links) as one clear error."""
        try:
            yield
        except UsageError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, RecursionError) as exc:
            raise self._invalid(f"cannot read {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") \
                from None

    def status(self) -> str:
        return str(self.attrs().get("status"))

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.attrs()["config"])

    def variables(self) -> dict[str, Any]:
        """The `/variables` section (read once while the file is unchanged)."""
        variables = self._cached("variables", lambda: self.read("variables"))
        missing = [k for k in ("names", "groups", "group_of_column") if k not in variables]
        if missing:
            raise self._invalid(f"/variables lacks {', '.join(missing)}")
        return variables

    def checkpoint_maps(self) -> dict[str, Any]:
        """Every checkpoint's index maps, `{checkpoint: {map: array}}` (read once while unchanged)."""
        maps = self._cached("checkpoints", lambda: self.read("checkpoints"))
        missing = [str(c) for c in self.attrs()["checkpoints"] if str(c) not in maps]
        if missing and self.attrs()["status"] == COMPLETE:
            raise self._invalid(f"/checkpoints lacks {', '.join(missing[:3])}")
        return maps

    def read(self, section: str) -> dict[str, Any]:
        """A whole section (`variables`, `checkpoints`, `state`, `analyses`) as nested dicts."""
        with self._reading(f"/{section}"), self._open() as f:
            if section not in f:
                return {}
            _no_links(f, section)
            return _read_tree(f[section])

    def dataset(self, path: str) -> np.ndarray:
        """One dataset (e.g. ``checkpoints/fc/S1``) without reading the rest of the file."""
        with self._reading(path), self._open() as f:
            _no_links(f, path)
            if path not in f or not isinstance(f[path], h5py.Dataset):
                raise UsageError(f"{self.path} has no dataset {path!r}")
            return f[path][()]

    def keys(self, group: str) -> list[str]:
        """Member names of a group (empty when the group is absent)."""
        with self._reading(group), self._open() as f:
            _no_links(f, group)
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
        check_space(self.path, sum(_tree_bytes(tree, name in FLOAT32_SECTIONS) for name, tree in sections.items()))
        try:
            with h5py.File(tmp, "w") as f:
                for key, value in attrs.items():
                    if isinstance(value, dict):
                        value = JSON_PREFIX + json.dumps(value, sort_keys=True)
                    elif isinstance(value, list):
                        value = np.array([str(v) for v in value], dtype=h5py.string_dtype())
                    f.attrs[key] = value
                for name, tree in sections.items():
                    _write_tree(f.require_group(name), tree, float32=name in FLOAT32_SECTIONS,
                                compression=self.compression)
            os.replace(tmp, self.path)
        except (OSError, RuntimeError) as exc:  # h5py reports some write failures as RuntimeError
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write results file {self.path}: {getattr(exc, 'strerror', None) or exc}; "
                             f"the last saved state is intact") from None
        finally:
            tmp.unlink(missing_ok=True)

    def write_analysis(self, name: str, tree: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        """Replace `/analyses/<name>` (small: kept in float64), atomically: everything else is
        copied into a new file that is renamed over the original (a crash leaves the old file;
        a replaced analysis leaves no dead space behind, unlike deleting it in place)."""
        self._cache.clear()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        if not os.access(self.path, os.W_OK):
            raise UsageError(f"cannot store the {name!r} analysis: {self.path} is read-only (copy it, or make it "
                             f"writable)")
        check_space(self.path, self.path.stat().st_size + _tree_bytes(tree))
        try:
            with self._reading("the file"), self._open() as src:
                _no_links(src, "")
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
                _write_tree(group, tree, compression=self.compression)
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
        with self._reading(f"/analyses/{name}"), self._open() as f:
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
