"""Peak memory of the contrast experiment on the demo, measured in one run (docs/performance.md):
binned (the default) against exact at n and 4n, each in its own process, next to the peak of a
process that only imports torch and loads the plugins (the floor no run goes below).

    python benchmarks/contrast_memory.py [--n 32] [--n-inner 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

IMPORT_ONLY = """
import resource, sa_frame, torch, torchvision
sa_frame.registry().entries("model")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

RUN = """
import resource, sys
from sa_frame.engine.config import build_config
from sa_frame.engine.run import execute
execute(build_config({{}}, dict(estimator="contrast", n={n}, n_inner={n_inner}, options={{"mode": "{mode}"}},
                              quiet=True, out=sys.argv[1])))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_mib(code: str, *args: str) -> float:
    """Peak resident memory (MiB) of a fresh Python process running `code`."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--n-inner", type=int, default=2)
    args = parser.parse_args()
    floor = peak_mib(IMPORT_ONLY)
    rows = {"import torch + plugins": floor}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("binned", "exact"):
            for n in (args.n, 4 * args.n):
                out = str(Path(tmp) / f"{mode}-{n}.h5")
                rows[f"{mode} n={n}"] = peak_mib(RUN.format(n=n, n_inner=args.n_inner, mode=mode), out)
    for name, mib in rows.items():
        print(f"{name:<24} {mib:8.0f} MiB peak   {mib - floor:+7.0f} MiB over the import")
    for mode in ("binned", "exact"):
        small, large = rows[f"{mode} n={args.n}"] - floor, rows[f"{mode} n={4 * args.n}"] - floor
        print(f"{mode}: 4n / n over the import = {large / max(small, 1e-9):.2f}")
    print(json.dumps({k: round(v) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
