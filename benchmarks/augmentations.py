"""Time of the full A1 and A2 chains relative to a ResNet18 forward of the same batch.

Batch of 32 images at 224x224, every augmentation on (switches on, random parameters,
random per-image orders), torchvision resnet18 with random weights in eval mode under
no_grad; best of `--repeats`, all measured in this one run. On CUDA too when present.

    python benchmarks/augmentations.py [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)

from sa_frame import Problem
from sa_frame.engine.chain import AugmentationChain, resolve_augmentations


def chain_inputs(spec: str, batch: int, device: torch.device):
    chain = AugmentationChain(resolve_augmentations(spec), scheme=1)
    problem = Problem(*chain.variables())
    x = problem.values(torch.rand(batch, problem.n_vars, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    values = {name: x[:, i].to(device) for i, name in enumerate(problem.names)}
    for name in values:
        if name.endswith(".on"):
            values[name] = torch.ones_like(values[name])  # the full chain: everything applied
    return chain, values


def measure(device: torch.device, batch: int, repeats: int) -> dict[str, float]:
    images = torch.rand(batch, 3, 224, 224, device=device)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    with torch.no_grad():
        forward = best_time(lambda: model(images), repeats, device)
    out = {"forward_s": forward}
    for spec in ("a1", "a2"):
        chain, values = chain_inputs(spec, batch, device)
        out[f"{spec}_s"] = best_time(lambda c=chain, v=values: c.apply(images, v), repeats, device)
        out[f"{spec}_ratio"] = out[f"{spec}_s"] / forward
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        r = measure(device, args.batch, args.repeats)
        print(f"{device.type}: batch {args.batch} x 3 x 224 x 224, threads {torch.get_num_threads()}")
        print(f"  resnet18 forward : {r['forward_s'] * 1e3:8.1f} ms")
        for spec in ("a1", "a2"):
            print(f"  full {spec.upper()} chain   : {r[spec + '_s'] * 1e3:8.1f} ms  = {r[spec + '_ratio']:.3f} x forward")


if __name__ == "__main__":
    main()
