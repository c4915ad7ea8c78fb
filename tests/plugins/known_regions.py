"""Test-only plugins with known answers for region runs.

`ka-flat` holds flat float64 images of value 0.25 (no multiplier in [0, 2] clamps) whose
masks split them into a left and a right half. `ka-regions` reads the mean of the left
and right halves (alpha_k times 0.25) and returns planted scores of the alphas: class 0
the product a1 a2 (S1 = 3/7, ST = 4/7, PIR = 3/4 for alpha ~ U(0, 2)), class 1 the
additive 2 a1 + a2 (PIR = 1, S1 = ST = 4/5 and 1/5), class 2 a1 alone.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn

from sa_frame import DataSource, ImageSet, InputFormat, hookimpl
from sa_frame.core.model import Model

SIZE = 8


VALUE = 0.25


class FlatSet(ImageSet):
    classes = ["a", "b"]
    partitions = ["all"]

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def counts(self, partition: int) -> Tensor:
        return torch.tensor([4, 4])

    def load(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        return torch.full((classes.shape[0], 3, *self.size), VALUE, dtype=torch.float64)

    def masks(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        h, w = self.size
        right = (torch.arange(w) >= w // 2).to(torch.uint8)
        return right.expand(classes.shape[0], h, w).clone()


class FlatSource(DataSource):
    name = "ka-flat"
    description = "flat float64 images, two halves as masks"

    def open(self, argument: str, fmt: InputFormat) -> FlatSet:
        return FlatSet(tuple(fmt.size))


def planted(alpha: Tensor) -> Tensor:
    """Planted scores (rows, 3) of region multipliers alpha (rows, >= 2)."""
    a1, a2 = alpha[:, 0], alpha[:, 1]
    return torch.stack([a1 * a2, 2 * a1 + a2, a1], 1)


class RegionReader(nn.Module):
    """The multiplier of each cell of a rows x cols grid: its mean over the flat value."""

    def __init__(self, rows: int, cols: int) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols
        self.cells = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        cells = x[:, 0].reshape(b, self.rows, SIZE // self.rows, self.cols, SIZE // self.cols).mean((2, 4))
        return self.cells(cells.reshape(b, -1) / VALUE)


class PlantedModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.reader = RegionReader(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return planted(self.reader(x))


WEIGHTS = (4.0, 3.0, 2.0, 1.0)


class LinearModel(nn.Module):
    """Both classes score sum_k w_k alpha_k over a 2 x 2 grid (w = 4, 3, 2, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.reader = RegionReader(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        score = self.reader(x) @ torch.tensor(WEIGHTS, dtype=x.dtype)
        return torch.stack([score, score], 1)


class RegionsModel(Model):
    name = "ka-regions"
    description = "planted scores of the left/right halves' multipliers"
    checkpoints = ["reader.cells"]
    classifier = ""
    input_size = (SIZE, SIZE)
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    default_weights = "random"

    def build_module(self, pretrained: bool) -> nn.Module:
        return PlantedModel()


class LinearRegionsModel(RegionsModel):
    name = "ka-linear4"
    description = "a linear score of the four cells of a 2 x 2 grid, weights 4, 3, 2, 1"

    def build_module(self, pretrained: bool) -> nn.Module:
        return LinearModel()


class KnownRegionsPlugin:
    @hookimpl
    def register_data_sources(self, register):
        register(FlatSource())

    @hookimpl
    def register_models(self, register):
        register(RegionsModel())
        register(LinearRegionsModel())


def install() -> None:
    """Register the plugins in the current registry (once)."""
    from sa_frame.core.registry import registry

    reg = registry()
    if reg.pm.get_plugin("known-regions") is None:
        reg.add_plugin(KnownRegionsPlugin(), provider="tests", name="known-regions")


if __name__ == "__main__":  # `python -m tests.plugins.known_regions run ...`
    install()
    from sa_frame.cli.app import console_main  # the script's quick exit, as `sa-frame` has it

    console_main(sys.argv[1:])
