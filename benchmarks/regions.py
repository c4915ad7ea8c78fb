"""Region runs (SBSA), measured in one run (no timed tests; see docs/performance.md).

T1. `sa-frame run --estimator sbsa` wall time (plan, segmentation, forwards, accumulation,
    writing; after a small warm-up run) against bare forwards of the same perturbed rows at
    the same batch (demo-cnn, 4x4 grid, n = 64, 10 images: 11,520 forwards).
T2. The index stage for 1,000 images analysed together (`sobol_from_outputs`, one call)
    against a per-image loop of SALib's `sobol.analyze` (d = 16, N = 64, first/total).
T3. Segmentation (SLIC, 16 segments, 64 px) as a share of the T1 run's wall time, scaled
    to the same images.
T4. Peak RSS (VmHWM) of a region run with 50 and with 200 images (fresh processes; the
    growth beyond the result arrays).

    python benchmarks/regions.py [--n 64] [--images 10] [--skip-rss]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def t1_run_vs_forwards(n: int, images: int, batch: int) -> dict:
    from sa_frame.engine.config import build_config
    from sa_frame.engine.plan import plan
    from sa_frame.engine.region_runner import RegionRunner
    from sa_frame.engine.run import execute

    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: the one-time costs of a process (the Sobol kernel's JIT compilation, allocator growth)
        execute(build_config({}, dict(estimator="sbsa", regions="grid:cells=4", images=2, n=16, batch_size=batch,
                                      quiet=True, out=str(Path(tmp) / "warm.h5"))))
        config = build_config({}, dict(estimator="sbsa", regions="grid:cells=4", images=images, n=n, batch_size=batch,
                                       quiet=True, out=str(Path(tmp) / "r.h5")))
        started = time.perf_counter()
        run, _, _ = execute(config)
        wall = time.perf_counter() - started
    runner = RegionRunner(plan(config))
    s = runner.setup
    rows = torch.cat([run.problem.values(b.unit, b.known) for b in run.design]).float()
    pairs = rows.shape[0] * s.n_images
    with torch.no_grad():  # the same perturbed inputs, forwards only (inputs built outside the timing)
        forward_time = 0.0
        for start in range(0, pairs, batch):
            p = torch.arange(start, min(start + batch, pairs))
            x = run.spec.normalize(s.perturbation.apply(s.images[p % s.n_images], s.labels[p % s.n_images],
                                                        rows[p // s.n_images], s.perturbation_options))
            t0 = time.perf_counter()
            runner.net(x)
            forward_time += time.perf_counter() - t0
    return {"forwards": pairs, "run_wall_s": wall, "bare_forwards_s": forward_time, "ratio": wall / forward_time}


def t2_index_stage(images: int = 1000, salib_images: int = 20, d: int = 16, n: int = 64) -> dict:
    from SALib.analyze import sobol as salib_sobol

    import sa_frame

    rng = np.random.default_rng(0)
    y = rng.random((n * (d + 2), images))
    t0 = time.perf_counter()
    sa_frame.sobol_from_outputs(y, d, second_order=False)
    ours = (time.perf_counter() - t0) / images
    problem = {"num_vars": d, "names": [f"r{k}" for k in range(d)], "bounds": [[0, 2]] * d}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(salib_images):
            salib_sobol.analyze(problem, y[:, j], calc_second_order=False, seed=0)
    salib = (time.perf_counter() - t0) / salib_images
    return {"sa_frame_ms_per_image": 1e3 * ours, "salib_ms_per_image": 1e3 * salib, "ratio": salib / ours}


def t3_segmentation(images: int, wall_s: float) -> dict:
    from sa_frame import lookup

    source = lookup("data_source", "demo").open("demo", lookup("model", "demo-cnn").input_format())
    classes = torch.arange(images) % 10
    batch = source.load(classes, torch.zeros(images, dtype=torch.long), torch.ones(images, dtype=torch.long))
    slic = lookup("segmenter", "slic")
    t0 = time.perf_counter()
    slic.segment(batch, None, slic.options({"n_segments": 16}))
    seconds = time.perf_counter() - t0
    return {"slic_ms_per_image": 1e3 * seconds / images, "share_of_wall": seconds / wall_s}


def peak_rss(images: int, n: int) -> float:
    code = ("import resource, tempfile, pathlib\n"
            "from sa_frame.engine.config import build_config\nfrom sa_frame.engine.run import execute\n"
            "d = tempfile.mkdtemp()\n"
            f"execute(build_config({{}}, dict(estimator='sbsa', regions='grid:cells=4', images={images}, n={n}, "
            "batch_size=256, quiet=True, out=str(pathlib.Path(d) / 'r.h5'))))\n"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--batch", type=int, default=288)
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    out = {"T1": t1_run_vs_forwards(args.n, args.images, args.batch), "T2": t2_index_stage()}
    out["T3"] = t3_segmentation(args.images, out["T1"]["run_wall_s"])
    if not args.skip_rss:
        small, large = peak_rss(50, 16), peak_rss(200, 16)
        # result arrays: every map of the score is (L, M) float32/64; the state holds ~30 (R, L, M) float64 sums
        out["T4"] = {"rss_50_mib": small, "rss_200_mib": large, "growth": large / small - 1}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
