"""`sa-frame augment`: a preview grid like the paper's Figure 2.

Row 1: the original image and its H, S and V channels; row 2: each augmentation alone
(random parameters, switched ones on); then `n` simultaneous chains in random orders.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from torch import Tensor

from sa_frame import (
    AugmentationChain,
    InputFormat,
    Problem,
    UsageError,
    lookup,
    prepare_image,
    read_image,
    resolve_augmentations,
    save_figure,
)

SIZE = 224


def test_card(size: int = SIZE) -> Tensor:
    """A procedural colour image (gradients, a disc, a square, stripes) when none is given."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([xx, yy, 1 - xx * yy], 0)
    disc = (xx - 0.35) ** 2 + (yy - 0.4) ** 2 < 0.04
    img[:, disc] = torch.tensor([0.95, 0.8, 0.1]).view(3, 1)
    square = (xx > 0.6) & (xx < 0.85) & (yy > 0.55) & (yy < 0.8)
    img[:, square] = torch.tensor([0.1, 0.3, 0.9]).view(3, 1)
    stripes = (yy > 0.85) & ((xx * 20).floor() % 2 == 0)
    img[:, stripes] = 0.05
    return img


def demo_image(data: str, seed: int, size: int = SIZE) -> Tensor:
    """An image of the embedded demo set, rendered at `size` (the class is seed mod 10)."""
    if data != "demo":
        raise UsageError(f"--data takes 'demo' here (folders come with `sa-frame run`), got {data!r}")
    demo = lookup("data_source", "demo").open("demo", InputFormat((size, size)))
    return demo.load(torch.tensor([seed % len(demo.classes)]), torch.tensor([0]), torch.tensor([0]))[0]


def load_image(path: Path, size: int = SIZE) -> Tensor:
    """An RGB image in [0, 1]: shorter side resized to `size`, centre-cropped to size x size."""
    return prepare_image(read_image(path), InputFormat((size, size), crop_pct=1.0))


def preview(spec: str, image: Tensor, n: int, seed: int, scheme: int) -> tuple[list[Tensor], list[str], int]:
    """The grid's tiles, their titles and the number of columns."""
    from torchvision.transforms.v2.functional._color import _rgb_to_hsv

    augs = resolve_augmentations(spec)
    hsv = _rgb_to_hsv(image.unsqueeze(0))[0]
    tiles = [image] + [hsv[c].expand(3, -1, -1) for c in range(3)]
    titles = ["original", "hue", "saturation", "value"]
    gen = torch.Generator().manual_seed(seed)
    for aug in augs:  # each alone
        chain = AugmentationChain([aug], scheme=1, permute=False)
        problem = Problem(*chain.variables())
        x = problem.values(torch.rand(1, problem.n_vars, dtype=torch.float64, generator=gen))
        values = {name: x[:, i] for i, name in enumerate(problem.names)}
        values.update({k: torch.ones(1) for k in values if k.endswith(".on")})
        tiles.append(chain.apply(image.unsqueeze(0), values)[0])
        titles.append(aug.name)
    chain = AugmentationChain(augs, scheme=scheme)
    problem = Problem(*chain.variables())
    x = problem.values(torch.rand(n, problem.n_vars, dtype=torch.float64, generator=gen))
    values = {name: x[:, i] for i, name in enumerate(problem.names)}
    out = chain.apply(image.unsqueeze(0).expand(n, -1, -1, -1).contiguous(), values)
    orders = chain.orders(values, n, torch.device("cpu"))
    for b in range(n):
        used = [augs[i].name for i in orders[b].tolist()
                if not chain.switched(augs[i]) or values[f"{augs[i].name}.on"][b] == 1]
        tiles.append(out[b])
        titles.append(textwrap.fill(" > ".join(used), 30) or "(none on)")
    return tiles, titles, max(4, min(len(augs), 7))


def save_grid(tiles: list[Tensor], titles: list[str], columns: int, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, label in zip(axes.flat, tiles, titles):
        ax.imshow(tile.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(label, fontsize=7, wrap=True)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out)
