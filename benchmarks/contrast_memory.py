"""Peak memory of the contrast experiment on the demo, measured in one run (docs/performance.md):
binned (the default) against exact at n and 4n, each in its own process, next to the peak of a
process that only imports torch and loads the plugins (the floor no run goes below), and the
issue's target run, `sa-frame run --estimator contrast --quick` through the installed script,
whose whole-process peak (exit included, as `/usr/bin/time` reports it) comes from wait4.

    python benchmarks/contrast_memory.py [--n 32] [--n-inner 2] [--no-quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def script_peak_mib(*args: str) -> tuple[float, float]:
    """Peak resident memory (MiB) of the whole `sa-frame` process, exit included, and its wall time."""
    import time

    started = time.perf_counter()
    proc = subprocess.Popen([shutil.which("sa-frame") or "sa-frame", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sa-frame {' '.join(args)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--n-inner", type=int, default=2)
    parser.add_argument("--no-quick", action="store_true", help="skip the --quick run through the script")
    args = parser.parse_args()
    floor = peak_mib(IMPORT_ONLY)
    rows = {"import torch + plugins": floor}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("binned", "exact"):
            for n in (args.n, 4 * args.n):
                out = str(Path(tmp) / f"{mode}-{n}.h5")
                rows[f"{mode} n={n}"] = peak_mib(RUN.format(n=n, n_inner=args.n_inner, mode=mode), out)
        if not args.no_quick:
            rows["script --quick"], wall = script_peak_mib("run", "--estimator", "contrast", "--quick", "--quiet",
                                                           "--out", str(Path(tmp) / "quick.h5"))
            print(f"sa-frame run --estimator contrast --quick: {wall:.1f} s")
    for name, mib in rows.items():
        print(f"{name:<24} {mib:8.0f} MiB peak   {mib - floor:+7.0f} MiB over the import")
    for mode in ("binned", "exact"):
        small, large = rows[f"{mode} n={args.n}"] - floor, rows[f"{mode} n={4 * args.n}"] - floor
        print(f"{mode}: 4n / n over the import = {large / max(small, 1e-9):.2f}")
    print(json.dumps({k: round(v) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
