"""Influence functions, measured in one run (no timed tests; see docs/performance.md).

T8.  Exact influence on a small reference network (an MLP, last layer 650 parameters, 500 training and 20 test
     points) against Captum's NaiveInfluenceFunction on the same block, each in a fresh process: the whole process
     (start-up included), the first call and a second; and their agreement.
T9.  Curvature products with m = 64 right-hand sides at once against 64 one-by-one, per block: the MLP's last
     layer, demo-cnn's fc and features.0 (40 images).
T10. LiSSA against a transcription of torch-influence's LiSSAInfluenceModule.inverse_hvp loop (not installable
     here) on identical damping, scale, depth and batches: agreement, and time for 16 test points batched (ours)
     against one at a time (theirs).
T11. Memory: the streamed state against the training-set size, without and with --keep-scores, and the peak
     resident memory of `sa-frame influence` on the demo at two training-set sizes.

    python benchmarks/influence.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import sa_frame
from sa_frame.engine.influence import InfluenceAccumulator
from sa_frame.engine.parameter_blocks import BlockCurvature, NetworkFunctions, hessian_batches, parameter_blocks


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10)).double()


def points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 20, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


T8_SETUP = """
import sys, tempfile, time
from pathlib import Path
started = time.perf_counter()
import torch
sys.path.insert(0, "benchmarks")
from influence import mlp, points
net, train, test, damping = mlp(), points(500, 1), points(20, 2), 0.1
"""

T8_OURS = T8_SETUP + """
import sa_frame
calls = []
for _ in range(2):
    start = time.perf_counter()
    scores = sa_frame.influence(net, train, test, solver="exact", damping=damping, layers=["2"], batch_size=500).scores[0]
    calls.append(time.perf_counter() - start)
values = -scores / 500
"""

T8_CAPTUM = T8_SETUP + """
from captum.influence import NaiveInfluenceFunction
tmp = tempfile.mkdtemp()
torch.save(net.state_dict(), Path(tmp) / "w.pt")
calls = []
for _ in range(2):
    start = time.perf_counter()
    naive = NaiveInfluenceFunction(
        net, torch.utils.data.TensorDataset(*train), str(Path(tmp) / "w.pt"), layers=["2"],
        loss_fn=torch.nn.CrossEntropyLoss(reduction="none"), batch_size=500, projection_dim=650,
        hessian_reg=damping * 500, hessian_inverse_tol=-1e30,
        checkpoints_load_func=lambda m, p: (m.load_state_dict(torch.load(p)), 1.0)[1])
    values = naive.influence(test, show_progress=False).detach().numpy()
    calls.append(time.perf_counter() - start)
"""

T8_REPORT = """
import json, numpy
numpy.save(sys.argv[1], values)
print(json.dumps({"process_s": time.perf_counter() - started, "first_s": calls[0], "second_s": calls[1]}))
"""


def t8_captum() -> list[dict]:
    """Each side in a fresh process: the whole process (imports, torch.func's first use, the network), the first
    call and a second one."""
    import numpy as np

    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side, code in (("ours", T8_OURS), ("captum", T8_CAPTUM)):
            out = subprocess.run([sys.executable, "-W", "ignore", "-c", code + T8_REPORT, f"{tmp}/{side}.npy"],
                                 capture_output=True, text=True, check=True)
            measured[side] = json.loads(out.stdout.strip().splitlines()[-1]) | {"values": np.load(f"{tmp}/{side}.npy")}
    ours, theirs = measured["ours"], measured["captum"]
    gap = float(abs(ours["values"] - theirs["values"]).max() / abs(theirs["values"]).max())
    return [{"test": f"T8 exact vs Captum NaiveInfluenceFunction (650 params, n=500, T=20), {key}",
             "ours_s": round(ours[key], 3), "captum_s": round(theirs[key], 3),
             "speedup": round(theirs[key] / ours[key], 1), "max_rel_gap": gap}
            for key in ("process_s", "first_s", "second_s")]


def timed(f, repeat: int = 3) -> float:
    f()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def t9_multi_rhs() -> list[dict]:
    rows = []
    net = mlp()
    cases = [("mlp last layer", NetworkFunctions(net), parameter_blocks(net, ["2"])[0], points(500, 1))]
    spec = sa_frame.lookup("model", "demo-cnn")
    cnn = spec.build().double()
    source = sa_frame.lookup("data_source", "demo").open("demo", spec.input_format())
    classes = torch.arange(40) % 10
    x = spec.normalize(source.load(classes, torch.arange(40) // 10, torch.zeros(40, dtype=torch.long))).double()
    for layer in ("fc", "features.0"):
        cases.append((f"demo-cnn {layer}", NetworkFunctions(cnn), parameter_blocks(cnn, [layer])[0], (x, classes)))
    for name, functions, block, (inputs, labels) in cases:
        for hvp in ("double-backward", "jvp"):
            curvature = BlockCurvature(functions, block, hessian_batches(inputs, labels, 64), hvp=hvp)
            v = torch.randn(64, block.dim, dtype=torch.float64)
            repeat = 1 if "features" in name else 3
            together = timed(lambda: curvature.matvec(v), repeat)
            single = timed(lambda: [curvature.matvec(v[i:i + 1]) for i in range(8)], repeat) * 8  # 8 of 64, scaled
            rows.append({"test": f"T9 {name} ({block.dim} params) {hvp}", "m64_s": round(together, 4),
                         "one_by_one_s": round(single, 4), "throughput_ratio": round(single / together, 2)})
    return rows


def torch_influence_lissa(curvature: BlockCurvature, vec: torch.Tensor, damping: float, scale: float, depth: int,
                          repeat: int) -> torch.Tensor:
    """torch-influence's LiSSAInfluenceModule.inverse_hvp, transcribed: one vector, one batch's HVP per step
    (torch.autograd.functional.hvp on that batch's mean loss), h <- v + h - (H_b h + damping h) / scale."""
    functions, block = curvature.functions, curvature.block
    ihvp = torch.zeros_like(vec)
    for _ in range(repeat):
        h_est = vec.clone()
        for t in range(depth):
            inputs, labels = curvature.batches[t % curvature.n_batches]
            _, hvp_batch = torch.autograd.functional.hvp(lambda w: functions.loss(block, w, inputs, labels),
                                                         curvature.flat, h_est)
            with torch.no_grad():
                hvp_batch = hvp_batch + damping * h_est
                h_est = vec + h_est - hvp_batch / scale
        ihvp = ihvp + h_est / scale
    return ihvp / repeat


def t10_lissa() -> dict:
    net, train, test = mlp(), points(500, 1), points(16, 2)
    functions = NetworkFunctions(net)
    block = parameter_blocks(net, ["2"])[0]
    curvature = BlockCurvature(functions, block, hessian_batches(*train, 100))
    rhs = functions.per_example_grads(block, *test)
    damping, depth = 0.1, 300
    lam_max = float(torch.linalg.eigvalsh(curvature.dense())[-1]) + damping
    scale = 1.5 * lam_max
    solver = sa_frame.lookup("ihvp", "lissa")
    options = solver.options({"scale": scale, "depth": depth, "repeat": 1, "tol": 1.0})
    start = time.perf_counter()
    ours, report = solver.solve(curvature, rhs, damping, options)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = torch.stack([torch_influence_lissa(curvature, v, damping, scale, depth, 1) for v in rhs])
    t_theirs = time.perf_counter() - start
    gap = float((ours - theirs).norm(dim=1).max() / theirs.norm(dim=1).max())
    return {"test": f"T10 LiSSA vs torch-influence loop (650 params, depth {depth}, 16 test points)",
            "ours_s": round(t_ours, 3), "torch_influence_s": round(t_theirs, 3),
            "speedup": round(t_theirs / t_ours, 1), "max_rel_gap": gap, "residual": report.residual}


def state_bytes(n_train: int, keep: bool) -> int:
    acc = InfluenceAccumulator(5, 30, 10, 10, n_train, keep_scores=keep)
    return sum(t.element_size() * t.numel() for t in acc.state().values())


def peak_rss_mb(per_class: int) -> float:
    """VmHWM of a fresh `sa-frame influence` process (ru_maxrss would carry this process's peak across exec)."""
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import sys; from sa_frame.cli.app import main\n"
                "try: main(sys.argv[1:])\nexcept SystemExit: pass\n"
                "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", code, "influence", "--layers", "fc",
                              "--train-per-class", str(per_class), "--test-per-class", "1", "--hessian-samples", "40",
                              "--quiet", "--out", str(Path(tmp) / "m.h5")], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1]) / 1024


def t11_memory() -> list[dict]:
    rows = [{"test": f"T11 state bytes, n_train={n}, keep_scores={keep}", "bytes": state_bytes(n, keep)}
            for keep in (False, True) for n in (1_000, 100_000)]
    small, large = peak_rss_mb(4), peak_rss_mb(40)
    rows.append({"test": "T11 sa-frame influence peak memory (VmHWM), demo fc, 40 vs 400 training images", "mb_40": round(small),
                 "mb_400": round(large), "ratio": round(large / small, 2)})
    return rows


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for row in [*t8_captum(), *t9_multi_rhs(), t10_lissa(), *t11_memory()]:
        print(json.dumps(row))
    print(json.dumps({"max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
