"""Rows/s of one `sa-frame run` split over 2 processes with 1 thread each (torchrun,
gloo) vs 1 process with 2 threads, on the same machine, measured in this one run.

The run's own elapsed time (`elapsed_s` in the results file: the design loop, without
start-up) gives rows/s; start-up (imports, model build, process group) is printed apart.

    python benchmarks/distributed.py [--model resnet18] [--n 8] [--aug a1] [--estimator sobol] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sa_frame.results.store import ResultsFile


def run(args: argparse.Namespace, out: Path, processes: int, threads: int) -> tuple[float, float]:
    """(rows/s of the design loop, wall time of the whole command)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    common = ["run", "--model", args.model, "--aug", args.aug, "--estimator", args.estimator, "--weights", "random",
              "--size", str(args.n), "--batch-size", str(args.batch_size), "--out", str(out), "--quiet", "--force"]
    if args.data:
        common += ["--data", args.data]
    command = [sys.executable, "-m", "sa_frame", *common] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
         "-m", "sa_frame", *common]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    wall = time.perf_counter() - started
    attrs = ResultsFile(out).attrs()
    return attrs["n_rows"] / attrs["elapsed_s"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--aug", default="a1")
    parser.add_argument("--estimator", default="sobol")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one, wall_one = run(args, Path(folder) / "one.h5", processes=1, threads=2)
        two, wall_two = run(args, Path(folder) / "two.h5", processes=2, threads=1)
    print(f"{args.model} {args.aug} {args.estimator}, n={args.n}, batch {args.batch_size}, {os.cpu_count()} CPUs")
    print(f"  1 process x 2 threads: {one:8.1f} rows/s (command {wall_one:.1f} s)")
    print(f"  2 processes x 1 thread: {two:8.1f} rows/s (command {wall_two:.1f} s)")
    print(f"  ratio 2 processes / 1 process: {two / one:.2f}")


if __name__ == "__main__":
    main()
