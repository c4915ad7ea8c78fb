"""`sa-frame run` overhead: wall time of a run divided by the bare forward passes of the
same number of images at the same batch size, and peak RSS at n and 4n. The libraries
both need (torch, torchvision behind the model plugin) are imported before either is
timed; the figure with those imports counted in the run is printed too.

ResNet18 with random weights, augmentation set a1, Sobol, the demo images rendered at
224 px, CPU (and CUDA when present). Each run is a fresh process; figures in one run.

    python benchmarks/pipeline.py [--n 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = r"""
import json, re, sys, time, torch
from sa_frame.core.config import build_config
from sa_frame.core.pipeline import execute, plan
from sa_frame.core.plugins import lookup
cfg = build_config({}, json.loads(sys.argv[1]))
t_imports = time.perf_counter()
# the libraries both sides need (torchvision behind the model plugin, ...): imported before either is timed
lookup("model", cfg.model), lookup("estimator", cfg.estimator), lookup("augmentation", "erasing")
imports_s = time.perf_counter() - t_imports
t0 = time.perf_counter()
run, maps, _ = execute(cfg)
run_s = time.perf_counter() - t0
rss = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
# the bare forwards: same network, same rows, same batch size, no design/augment/capture/accumulate
net, rows, step = run.net, run.design.n_rows, run.rows_per_batch
x = torch.rand(step, 3, 224, 224, device=run.device)
with torch.no_grad():
    net(x[:2])
    if run.device.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter()
    for start in range(0, rows, step):
        net(x[: min(step, rows - start)])
    if run.device.type == "cuda": torch.cuda.synchronize()
forward_s = time.perf_counter() - t0
print(json.dumps({"rows": rows, "batch": step, "run_s": run_s, "forward_s": forward_s, "rss_mib": rss,
                  "imports_s": imports_s}))
"""


def measure(n: int, device: str, out: Path) -> dict:
    config = {"model": "resnet18", "weights": "random", "aug": "a1", "estimator": "sobol", "data": "demo",
              "n": n, "device": device, "out": str(out), "force": True, "quiet": True, "batch_size": 64}
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(config)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="Sobol base points of the small run (4n for the large)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = measure(args.n, args.device, Path(tmp) / "small.h5")
        large = measure(4 * args.n, args.device, Path(tmp) / "large.h5")
    print(f"resnet18 (random weights), a1, sobol, demo images at 224 px, {args.device}, "
          f"{large['batch']} rows per forward")
    for name, r in (("n", small), ("4n", large)):
        print(f"  {name:>2}: {r['rows']:6d} rows  run {r['run_s']:7.1f} s  bare forwards {r['forward_s']:7.1f} s  "
              f"run/forward {r['run_s'] / r['forward_s']:.3f}  peak RSS {r['rss_mib']:.0f} MiB  "
              f"(library imports before both: {r['imports_s']:.1f} s; counted in the run: "
              f"{(r['run_s'] + r['imports_s']) / r['forward_s']:.3f})")
    print(f"  peak RSS growth n -> 4n: {100 * (large['rss_mib'] / small['rss_mib'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
