"""Test-only plugins with a known answer through the whole image pipeline.

Three augmentations write their parameter value (uniform on [-pi, pi]) into their own
pixel of channel 0, encoded into [0, 1]; a model decodes the pixels and outputs the
Ishigami function of them. The indices stored by `sa-frame run` must then match the
analytic Ishigami values (the class, partition and permutation variables have none).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from sa_frame import Augmentation, Uniform, hookimpl
from sa_frame.core.model import Model

SIZE = 16


class WriteValue(Augmentation):
    """Write the parameter into pixel (0, column) of channel 0."""

    params = {"v": Uniform(-math.pi, math.pi)}
    identity = {"v": 0.0}

    def __init__(self, column: int) -> None:
        self.name, self.column = f"ka{column + 1}", column
        self.description = f"writes x{column + 1} into pixel (0, {column})"

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        out = images.clone()
        out[:, 0, 0, self.column] = ((params["v"].to(images) + math.pi) / (2 * math.pi))
        return out


class Ishigami(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        v = x[:, 0, 0, :3].double() * 2 * math.pi - math.pi
        y = torch.sin(v[:, 0]) + 7 * torch.sin(v[:, 1]) ** 2 + 0.1 * v[:, 2] ** 4 * torch.sin(v[:, 0])
        return self.out(y[:, None])


class IshigamiWithHoles(Ishigami):
    """Two outputs: Ishigami, and Ishigami with NaN where x1 > 2.5 (non-finite injection)."""

    def __init__(self) -> None:
        super().__init__()
        self.both = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)[:, 0]
        x1 = x[:, 0, 0, 0].double() * 2 * math.pi - math.pi
        return self.both(torch.stack([y, torch.where(x1 > 2.5, float("nan"), y)], 1))


class IshigamiModel(Model):
    name = "ka-ishigami"
    description = "decodes three pixels and returns the Ishigami function"
    checkpoints = ["out"]
    classifier = ""
    input_size = (SIZE, SIZE)
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    default_weights = "random"

    def build_module(self, pretrained: bool) -> nn.Module:
        return Ishigami()


class IshigamiWithHolesModel(IshigamiModel):
    name = "ka-holes"
    description = "Ishigami, and a copy with NaN where x1 > 2.5"
    checkpoints = ["both"]

    def build_module(self, pretrained: bool) -> nn.Module:
        return IshigamiWithHoles()


class KnownAnswerPlugin:
    @hookimpl
    def register_augmentations(self, register):
        for column in range(3):
            register(WriteValue(column))

    @hookimpl
    def register_augmentation_sets(self, register):
        register("ishigami", ["ka1", "ka2", "ka3"])

    @hookimpl
    def register_models(self, register):
        register(IshigamiModel())
        register(IshigamiWithHolesModel())


def install() -> None:
    """Register the plugins in the current registry (once)."""
    from sa_frame.core.registry import registry

    reg = registry()
    if reg.pm.get_plugin("known-answer") is None:
        reg.add_plugin(KnownAnswerPlugin(), provider="tests", name="known-answer")


if __name__ == "__main__":  # `python -m tests.plugins.known_answer run ...`: the CLI with these plugins
    install()
    from sa_frame.cli.app import console_main  # the script's quick exit, as `sa-frame` has it

    console_main(sys.argv[1:])
