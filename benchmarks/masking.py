"""Guided masking: all masking configurations of a batch in stacked forwards — with the
layers before the first masked checkpoint run once per image (shared prefix) and without —
vs one forward per configuration (the research code's way), on the same network and masks.

Masks: 8 variables x 17 configurations (15 thresholds, raw, inverted) + no mask = 137
configurations on every convolutional checkpoint, as `sa-frame analyze R masking` does.
Prints images/s of both and their ratio, measured in this one run (best of --repeats).

    python benchmarks/masking.py [--model demo-cnn|resnet18] [--batch 16] [--max-rows 256] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch
from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)

from sa_frame import StackedMasking
from sa_frame.core.registry import lookup
from sa_frame.engine.capture import Capture, Masking
from sa_frame.plugins.analyses._predictions import mask_configs, mask_factors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-cnn")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    spec = lookup("model", args.model)
    net = spec.build("random").to(device).eval()
    x = torch.rand(args.batch, 3, *spec.input_size, device=device)
    convs = [c for c in spec.checkpoints if c not in (spec.classifier, "avgpool")]
    with torch.no_grad(), Capture(net, convs) as cap:
        net(x[:1])
    shapes = cap.shapes()
    variables = [f"v{i}" for i in range(8)]
    masks = {c: {v: torch.rand(shapes[c], device=device) for v in variables} for c in convs}
    configs = mask_configs(variables, [0.0, 0.5, 1.5], [0.5, 0.6, 0.7, 0.8, 0.9])
    factors = mask_factors(masks, configs)

    def stacked(shared: bool = False) -> None:
        per = max(1, args.max_rows // args.batch)
        with torch.no_grad(), StackedMasking(net, factors, shared_prefix=shared) as hooks:
            for start in range(0, len(configs), per):
                k = min(per, len(configs) - start)
                hooks.active, hooks.batch = slice(start, start + k), args.batch
                net(x if shared else x.repeat(k, 1, 1, 1))

    def one_by_one() -> None:
        with torch.no_grad():
            for c in configs:
                if c.mode == "none":
                    net(x)
                    continue
                with Masking(net, {n: masks[n][c.variable] for n in convs}, c.mode, c.alpha, c.q):
                    net(x)

    t_shared = best_time(lambda: stacked(True), args.repeats, device)
    t_stacked = best_time(stacked, args.repeats, device)
    t_single = best_time(one_by_one, args.repeats, device)
    print(f"{args.model} on {device}, batch {args.batch}, {len(configs)} configurations on {len(convs)} checkpoints")
    print(f"  stacked (max {args.max_rows} rows/forward): {args.batch / t_stacked:8.2f} images/s "
          f"({args.batch * len(configs) / t_stacked:,.0f} masked evaluations/s)")
    print(f"  stacked, shared prefix:            {args.batch / t_shared:8.2f} images/s "
          f"(first masked checkpoint {convs[0]!r})")
    print(f"  one forward per configuration:      {args.batch / t_single:8.2f} images/s")
    print(f"  ratio stacked / one by one: {t_single / t_stacked:.2f}x; shared prefix / stacked: "
          f"{t_stacked / t_shared:.2f}x")


if __name__ == "__main__":
    main()
