"""Step-wise sensitivity (SSA), measured in one run (no timed tests; see docs/performance.md).

T5. The `gradients` relevance per checkpoint pair of demo-cnn, 64 images: the chosen mode
    (auto: VJP or JVP) against a plain loop of one backward pass per upper neuron.
T6. The ssa state size against its formula (classes x sum K_up K_low x 8 B x 4 statistics),
    and that it does not depend on the number of images (n = 64 and n = 256).
T7. ssa-eval's stacked forward (all graphs x keep fractions at once, its default 4 images
    per forward, the layers before the first mask run once) against one forward per
    configuration, on the same images and masks.

    python benchmarks/ssa.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

import sa_frame
from sa_frame import RelevanceContext

CHECKPOINTS = ["features.2", "features.5", "features.8", "features.10", "fc"]


def demo_batch(n: int = 64):
    spec = sa_frame.lookup("model", "demo-cnn")
    net = spec.build()
    source = sa_frame.lookup("data_source", "demo").open("demo", spec.input_format())
    classes = torch.arange(n) % 10
    x = spec.normalize(source.load(classes, torch.arange(n) // 10, torch.zeros(n, dtype=torch.long)))
    return net, x


def loop_backward(net, x, lower: str, upper: str) -> torch.Tensor:
    """The reference: one backward pass per upper neuron (spatial mean), |mean over positions|."""
    modules = dict(net.named_modules())
    got = {}
    h1 = modules[lower].register_forward_hook(lambda _m, _i, o: got.__setitem__("a", o))
    h2 = modules[upper].register_forward_hook(lambda _m, _i, o: got.__setitem__("u", o))
    with torch.enable_grad():
        net(x)
    h1.remove()
    h2.remove()
    a, u = got["a"], got["u"]
    u = u.flatten(2).mean(-1) if u.dim() > 2 else u
    rows = []
    for n in range(u.shape[1]):
        (g,) = torch.autograd.grad(u[:, n].sum(), a, retain_graph=True)
        rows.append(g.flatten(2).mean(-1).abs() if g.dim() > 2 else g.abs())
    return torch.stack(rows, 1)


def t5_modes() -> list[dict]:
    net, x = demo_batch()
    modules = dict(net.named_modules())
    gradients = sa_frame.lookup("relevance", "gradients")
    out = []
    for lower, upper in zip(CHECKPOINTS[:-1], CHECKPOINTS[1:]):
        ctx = RelevanceContext(net, x, torch.zeros(len(x), dtype=torch.long),
                               {lower: modules[lower], upper: modules[upper]}, [(upper, lower)])
        t0 = time.perf_counter()
        reference = loop_backward(net, x, lower, upper)
        loop = time.perf_counter() - t0
        row = {"pair": f"{upper}|{lower}", "loop_s": loop}
        for mode in ("auto", "vjp", "jvp"):
            t0 = time.perf_counter()
            got = gradients.compute(ctx, gradients.options({"mode": mode}))[f"{upper}|{lower}"]
            row[f"{mode}_s"] = time.perf_counter() - t0
            row[f"{mode}_max_rel_error"] = float((got - reference).abs().max() / reference.abs().max())
        row["auto_speedup"] = loop / row["auto_s"]
        out.append(row)
    return out


def t5_all_pairs(repeats: int = 3) -> dict:
    """Every pair at once (one forward with each lower checkpoint a leaf) vs the loops of all pairs,
    best of `repeats`."""
    net, x = demo_batch()
    modules = dict(net.named_modules())
    pairs = list(zip(CHECKPOINTS[1:], CHECKPOINTS[:-1]))[::-1]
    ctx = RelevanceContext(net, x, torch.zeros(len(x), dtype=torch.long), {c: modules[c] for c in CHECKPOINTS},
                           pairs)
    gradients = sa_frame.lookup("relevance", "gradients")
    loops, ours = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for upper, lower in pairs:
            loop_backward(net, x, lower, upper)
        loops.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gradients.compute(ctx, gradients.options({"mode": "auto"}))
        ours.append(time.perf_counter() - t0)
    return {"loop_s": min(loops), "auto_s": min(ours), "speedup": min(loops) / min(ours)}


def t6_state(n_small: int = 64, n_large: int = 256) -> dict:
    from sa_frame.engine.config import build_config
    from sa_frame.engine.run import execute

    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (n_small, n_large):
            out = Path(tmp) / f"s{n}.h5"
            execute(build_config({}, dict(estimator="ssa", checkpoints=",".join(CHECKPOINTS), n=n, quiet=True,
                                          keep_state=True, out=str(out))))
            state = sa_frame.ResultsFile(out).state()
            sizes[n] = sum(t.numel() * t.element_size() for k, t in state.items() if "/" in k)
    k = [16, 32, 64, 64, 10]
    formula = 10 * sum(k[i] * k[i + 1] for i in range(4)) * 8 * 4
    return {"state_bytes_n64": sizes[n_small], "state_bytes_n256": sizes[n_large], "formula_bytes": formula}


def t7_stacked(configs: int = 33, images: int = 4) -> dict:
    from sa_frame import StackedMasking

    net, x = demo_batch(images)
    torch.manual_seed(0)
    factors = {c: (torch.rand(configs, k, 1, 1) > 0.5).float() for c, k in
               (("features.2", 16), ("features.5", 32), ("features.8", 64), ("features.10", 64))}
    with torch.no_grad():
        t0 = time.perf_counter()
        with StackedMasking(net, factors, shared_prefix=True) as stacked:  # the layers before the first mask once
            stacked.active, stacked.batch = slice(0, configs), images
            stacked_out = net(x)
        stacked_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        shapes = {"features.2": (16, 32, 32), "features.5": (32, 16, 16), "features.8": (64, 8, 8),
                  "features.10": (64, 8, 8)}
        single = []
        for k in range(configs):
            with sa_frame.Masking(net, {c: f[k].expand(shapes[c]) for c, f in factors.items()}):
                single.append(net(x))
        single_s = time.perf_counter() - t0
    same = float((stacked_out - torch.cat(single)).abs().max())
    return {"configs": configs, "images": images, "stacked_s": stacked_s, "one_by_one_s": single_s,
            "throughput_ratio": single_s / stacked_s, "max_abs_difference": same}


def main() -> None:
    torch.manual_seed(0)
    print(json.dumps({"T5": t5_modes(), "T5_all_pairs": t5_all_pairs(), "T6": t6_state(), "T7": t7_stacked()},
                     indent=2))


if __name__ == "__main__":
    main()
