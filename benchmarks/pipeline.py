"""`sa-frame run` overhead: wall time of a run divided by the bare forward passes of the
same number of images at the same batch size, and peak RSS at n and 4n. The libraries
both need (torch, torchvision behind the model plugin) are imported before either is
timed; the figure with those imports counted in the run is printed too.

The bare forwards are interleaved with the run's (one after each of the run's batches, on a
hook-free copy of the network) and subtracted from the run's wall time: on a shared
machine forward speed drifts by 10-20% from minute to minute, as much as the overhead
being measured, and interleaving puts both sides in the same minutes. Peak RSS is read
before the last bare forward; the network copy adds its weights (45 MiB) to both n and 4n.

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
from statistics import median

PROBE = r"""
import copy, json, re, sys, time, torch
import sa_frame.engine.run as pipeline
from sa_frame.engine.config import build_config
from sa_frame.core.registry import lookup
cfg = build_config({}, json.loads(sys.argv[1]))
t_imports = time.perf_counter()
# the libraries both sides need (torchvision behind the model plugin, ...): imported before either is timed
lookup("model", cfg.model), lookup("estimator", cfg.estimator), lookup("augmentation", "erasing")
imports_s = time.perf_counter() - t_imports

# Bare forwards interleaved with the run's: before each of the run's forwards but the first, a copy
# of the network (no capture hooks) runs one bare forward of the previous batch's size on a fixed
# input; the last one follows the run. The run pays its own warm-up (its first forward is cold),
# and the bare forwards see the machine in the same minutes as the run's own.
bare = {"s": 0.0, "pending": 0, "net": None, "x": None, "device": None, "each": []}
_plan, _forward = pipeline.plan, pipeline.Runner.forward

# a diagnostic: wall time inside the run's own forward calls (pre- and post-forward hooks on its
# network; on CUDA they time kernel launches, not their completion)
own = {"t": 0.0, "each": []}

def planned(config):
    run = _plan(config)
    bare.update(net=copy.deepcopy(run.net), device=run.device,
                x=torch.rand(run.rows_per_batch, 3, *run.spec.input_size, device=run.device))
    run.net.register_forward_pre_hook(lambda m, a: own.__setitem__("t", time.perf_counter()))
    run.net.register_forward_hook(lambda m, a, o: own["each"].append(time.perf_counter() - own["t"]))
    return run

def bare_forward():
    if bare["pending"]:
        if bare["device"].type == "cuda": torch.cuda.synchronize(bare["device"])
        t = time.perf_counter()
        bare["net"](bare["x"][: bare["pending"]])
        if bare["device"].type == "cuda": torch.cuda.synchronize(bare["device"])
        bare["each"].append(time.perf_counter() - t)
        bare["s"] += bare["each"][-1]
    bare["pending"] = 0

def forward(self, unit, values):
    bare_forward()
    bare["pending"] = unit.shape[0]
    return _forward(self, unit, values)

pipeline.plan, pipeline.Runner.forward = planned, forward
t0 = time.perf_counter()
run, maps, _ = pipeline.execute(cfg)
wall_s = time.perf_counter() - t0
run_s = wall_s - bare["s"]  # the run alone: its wall time less the bare forwards done inside it
rss = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
with torch.no_grad():
    bare_forward()
print(json.dumps({"rows": run.design.n_rows, "batch": run.rows_per_batch, "run_s": run_s, "forward_s": bare["s"],
                  "rss_mib": rss, "imports_s": imports_s,
                  "own_s": sum(own["each"][1:]), "own_each": own["each"][1:], "bare_each": bare["each"]}))
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
        print(f"      the run's own forwards {r['own_s']:.1f} s, everything else {r['run_s'] - r['own_s']:.1f} s; "
              f"median full batch: own {median(r['own_each'][1:-1] or r['own_each']):.2f} s (warm), "
              f"bare {median(r['bare_each'][:-1] or r['bare_each']):.2f} s")
    print(f"  peak RSS growth n -> 4n: {100 * (large['rss_mib'] / small['rss_mib'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
