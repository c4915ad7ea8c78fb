"""Estimator throughput and memory, measured in one run (no timed tests; see docs/performance.md).

1. Per-output throughput of sa-frame's Sobol estimator vs a loop over SALib's
   `sobol.analyze` on identical Y (d = 8 groups, N = 1024 base points, first and total
   order; intervals on both sides: SALib's bootstrap, sa-frame's streaming CLT).
2. Peak RSS of `sa_frame.estimate` at n and 4n (each in a fresh process).
3. Accumulator update throughput with R = 8 randomised-QMC replicates (per-replicate
   sums) against one replicate, on identical outputs, and the finalize time of each
   (R = 8 adds the delete-one-replicate jackknife).

    python benchmarks/estimators.py [--outputs 20000] [--salib-outputs 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np

D, N = 8, 1024


def throughput(outputs: int, salib_outputs: int, repeats: int = 5) -> dict:
    from SALib.analyze import sobol as salib_sobol

    import sa_frame

    rng = np.random.default_rng(0)
    rows = N * (D + 2)
    y = rng.normal(size=(rows, outputs)) * rng.uniform(0.5, 2, size=outputs) + rng.normal(size=outputs)
    problem = {"num_vars": D, "names": [f"x{i}" for i in range(D)], "bounds": [[0, 1]] * D}
    # sa-frame first: SALib's BLAS threads keep spinning after it returns and would steal
    # our two cores. Best of `repeats` for both sides.
    sa_frame.sobol_from_outputs(y[:, :8], n_groups=D, second_order=False)  # warm-up
    ours = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = sa_frame.sobol_from_outputs(y, n_groups=D, second_order=False)
        ours = min(ours, (time.perf_counter() - t0) / outputs)
    salib = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for c in range(salib_outputs):
                salib_sobol.analyze(problem, y[:, c], calc_second_order=False, num_resamples=100, seed=1)
            salib = min(salib, (time.perf_counter() - t0) / salib_outputs)
    assert res["S1"].shape == (D, outputs)
    return {"salib_s_per_output": salib, "sa_frame_s_per_output": ours, "speedup": salib / ours}


def replicate_throughput(outputs: int, repeats: int = 3) -> dict:
    import torch

    import sa_frame
    from sa_frame import Problem, Uniform

    problem = Problem({f"x{i}": Uniform(0, 1) for i in range(D)})
    est = sa_frame.lookup("estimator", "sobol")
    rng = np.random.default_rng(1)
    designs = {r: est.design(problem, N, 0, second_order=False, replicates=r) for r in (1, 8)}
    blocks = {r: list(design) for r, design in designs.items()}
    assert [b.n_rows for b in blocks[1]] == [b.n_rows for b in blocks[8]]
    ys = [torch.from_numpy(rng.normal(size=(b.n_rows, outputs))) for b in blocks[1]]
    out = {}
    for r in (8, 1, 8, 1):  # interleaved, best of `repeats` each
        for _ in range(repeats):
            acc = est.accumulator(problem, designs[r], {"y": (outputs,)})
            t0 = time.perf_counter()
            for block, y in zip(blocks[r], ys):
                acc.update(block, {"y": y})
            update = time.perf_counter() - t0
            t0 = time.perf_counter()
            acc.finalize()
            final = time.perf_counter() - t0
            best = out.setdefault(r, {"update_s": update, "finalize_s": final})
            best["update_s"], best["finalize_s"] = min(best["update_s"], update), min(best["finalize_s"], final)
    return {"update_s_r1": out[1]["update_s"], "update_s_r8": out[8]["update_s"],
            "finalize_s_r1": out[1]["finalize_s"], "finalize_s_r8": out[8]["finalize_s"],
            "update_throughput_r8_vs_r1": out[1]["update_s"] / out[8]["update_s"]}


def peak_rss(n: int, outputs: int) -> float:
    # VmHWM (this process's own peak), not ru_maxrss, which a child inherits across exec
    code = f"""
import re, torch, sa_frame
from sa_frame import Problem, Uniform
torch.set_num_threads(1)
p = Problem({{f"x{{i}}": Uniform(0, 1) for i in range({D})}})
w = torch.linspace(0.1, 1.0, {outputs}, dtype=torch.float64)
sa_frame.estimate(p, lambda x: torch.sin(x.sum(1, keepdim=True) * w), "sobol", n={n}, second_order=False)
print(int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=20_000)
    parser.add_argument("--salib-outputs", type=int, default=20)
    parser.add_argument("--memory-n", type=int, default=4096)
    parser.add_argument("--memory-outputs", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = throughput(args.outputs, args.salib_outputs)
    n = args.memory_n
    result["peak_rss_mib_n"] = peak_rss(n, args.memory_outputs)
    result["peak_rss_mib_4n"] = peak_rss(4 * n, args.memory_outputs)
    result["rss_growth_4n"] = result["peak_rss_mib_4n"] / result["peak_rss_mib_n"] - 1
    result.update(replicate_throughput(args.outputs))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Sobol S1+ST with intervals, d={D}, N={N} ({N * (D + 2)} rows)")
    print(f"  SALib sobol.analyze loop : {result['salib_s_per_output'] * 1e3:10.3f} ms per output "
          f"({args.salib_outputs} outputs, 100 bootstrap resamples)")
    print(f"  sa-frame (streaming)     : {result['sa_frame_s_per_output'] * 1e6:10.3f} us per output "
          f"({args.outputs} outputs at once)")
    print(f"  throughput ratio         : {result['speedup']:10.0f}x")
    print(f"Peak RSS of sa_frame.estimate (sobol, {args.memory_outputs} outputs): "
          f"n={n}: {result['peak_rss_mib_n']:.0f} MiB, 4n={4 * n}: {result['peak_rss_mib_4n']:.0f} MiB "
          f"(growth {100 * result['rss_growth_4n']:+.1f}%)")
    print(f"Accumulator, {args.outputs} outputs, N={N}: update R=1 {result['update_s_r1']:.3f} s, R=8 "
          f"{result['update_s_r8']:.3f} s (throughput R=8 / R=1: {result['update_throughput_r8_vs_r1']:.2f}); "
          f"finalize R=1 {result['finalize_s_r1']:.3f} s, R=8 {result['finalize_s_r8']:.3f} s")


if __name__ == "__main__":
    main()
