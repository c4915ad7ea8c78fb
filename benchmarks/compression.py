"""Compression of the results file's maps, measured in one run (docs/performance.md): the
write time and size of a demo run's index maps and state with LZF (h5py only) and gzip
(every HDF5 reader), both with the shuffle filter.

    python benchmarks/compression.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def demo_maps() -> dict:
    from sa_frame.engine.config import build_config
    from sa_frame.engine.run import execute

    with tempfile.TemporaryDirectory() as tmp:
        _, maps, _ = execute(build_config({}, dict(n=512, quiet=True, out=str(Path(tmp) / "r.h5"))))
    return {c: {k: np.asarray(v, np.float32) for k, v in m.items()} for c, m in maps.items()}


def write(maps: dict, path: Path, **filters) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        for c, stats in maps.items():
            g = f.create_group(c)
            for k, v in stats.items():
                g.create_dataset(k, data=v, shuffle=True, **filters)
    return time.perf_counter() - t0


def main() -> None:
    maps = demo_maps()
    raw = sum(v.nbytes for m in maps.values() for v in m.values())
    out = {"raw_mib": raw / 2**20}
    with tempfile.TemporaryDirectory() as tmp:
        for name, filters in {"lzf": {"compression": "lzf"}, "gzip-1": {"compression": "gzip", "compression_opts": 1},
                              "gzip-4": {"compression": "gzip", "compression_opts": 4}}.items():
            path = Path(tmp) / f"{name}.h5"
            seconds = min(write(maps, path, **filters) for _ in range(3))
            out[name] = {"write_s": seconds, "mib": path.stat().st_size / 2**20}
    for name in ("gzip-1", "gzip-4"):
        out[name]["time_vs_lzf"] = out[name]["write_s"] / out["lzf"]["write_s"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
