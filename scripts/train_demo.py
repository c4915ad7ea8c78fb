"""Train `demo-cnn` on freshly rendered demo images and save its weights into the package.

Reproducible with a seed; a few minutes on two CPU cores. Prints the accuracy on a
held-out set rendered with another seed (recorded in docs/models.md).

    python scripts/train_demo.py [--seed 0] [--steps 900] [--out sa_frame/plugins/models/weights/demo_cnn.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sa_frame.plugins.data.demo import DemoImages, draw_demo_params, render_demo
from sa_frame.plugins.models.demo import DemoCNN, DemoModel

HELD_OUT_SEED = 1000


def batch(rng: np.random.Generator, size: int, n_classes: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    classes = torch.from_numpy(rng.integers(0, n_classes, size=size))
    params = {k: torch.from_numpy(v) for k, v in draw_demo_params(rng, (size,)).items()}
    return render_demo(classes, params, image_size), classes


def accuracy(model: nn.Module, spec: DemoModel, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(spec.normalize(x)).argmax(1) for x in images.split(500)])
    return float((predictions == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("sa_frame/plugins/models/weights/demo_cnn.pt"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    spec, data = DemoModel(), DemoImages()
    model = DemoCNN(data.n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.steps)
    held_out = DemoImages(seed=HELD_OUT_SEED, valid_per_class=100)
    test_images, test_labels = held_out.all_images("valid")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        images, labels = batch(rng, args.batch, data.n_classes, data.size)
        loss = nn.functional.cross_entropy(model(spec.normalize(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.4f}  held-out accuracy "
                  f"{accuracy(model, spec, test_images, test_labels):.4f}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB); held-out accuracy "
          f"{accuracy(model, spec, test_images, test_labels):.4f} on {len(test_labels)} images")


if __name__ == "__main__":
    main()
