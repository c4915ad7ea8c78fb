"""A test-only third-party plugin that implements every hook with objects keeping the
full contract, so each hook can be exercised end to end through the command line:

- model ``tp-pool``: global average pool (checkpoint ``pool``) then a fixed linear
  classifier ``fc`` over two classes; its output at ``pool`` is the image's mean colour;
- data source ``tp-colours``: ``--data tp-colours:red,green`` gives one class per colour,
  three constant images each, of intensity 0.25, 0.5 and 0.75 in that colour's channel;
- augmentation ``tp-scale`` (x * factor, factor ~ U(0.5, 1)) and set ``tp-set``;
- sampler ``tp-rows`` (i.i.d. rows) and estimator ``tp-moment``: the mean of
  output**power over all rows, per activation, with options `power` and `rows_per_block`;
- analysis ``tp-peak``: the largest moment per checkpoint;
- segmenter ``tp-halves`` (left and right halves) and perturbation ``tp-dim``
  (x * (1 - v), v ~ U(0, 0.5)): the pooled score is linear in the two values, equal weights;
- relevance ``tp-means``: the lower checkpoint's channel means, for every upper neuron;
- command ``tp-hello`` and a checkpoint override for ``tp-pool``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import typer
from torch import Tensor, nn

import sa_frame
from sa_frame import (
    ACC_DTYPE,
    Accumulator,
    Analysis,
    Augmentation,
    DataSource,
    Design,
    DesignBlock,
    Estimator,
    ImageSet,
    InputFormat,
    Model,
    Problem,
    Uniform,
    UsageError,
    hookimpl,
    lookup,
    option,
)

COLOURS = {"red": 0, "green": 1, "blue": 2}
LEVELS = (0.25, 0.5, 0.75)


class PoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(x))


class PoolModel(Model):
    name = "tp-pool"
    description = "mean colour, then a fixed two-class linear layer"
    checkpoints = ("pool", "fc")
    classifier = "fc"
    input_size = (8, 8)
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    default_weights = "random"

    @property
    def class_names(self) -> list[str]:
        return ["reddish", "greenish"]

    def build_module(self, pretrained: bool) -> nn.Module:
        return PoolNet()


class ColourSet(ImageSet):
    def __init__(self, colours: list[str], size: tuple[int, int]) -> None:
        self.classes, self.partitions, self.size = colours, ["all"], size

    def counts(self, partition: int) -> Tensor:
        return torch.full((len(self.classes),), len(LEVELS))

    def load(self, classes: Tensor, index: Tensor, partition: Tensor) -> Tensor:
        images = torch.zeros(classes.shape[0], 3, *self.size)
        channels = torch.tensor([COLOURS[c] for c in self.classes])[classes]
        levels = torch.tensor(LEVELS)[index]
        images[torch.arange(classes.shape[0]), channels] = levels.view(-1, 1, 1)
        return images


class ColourSource(DataSource):
    name = "tp-colours"
    description = "constant images of named colours"

    def open(self, argument: str, fmt: InputFormat) -> ColourSet:
        size = fmt.size
        colours = [c.strip() for c in argument.split(",") if c.strip()]
        unknown = [c for c in colours if c not in COLOURS]
        if not colours or unknown:
            raise UsageError(f"tp-colours takes colours out of {', '.join(COLOURS)}, got {argument!r}")
        return ColourSet(colours, size)


class Scale(Augmentation):
    name = "tp-scale"
    description = "multiply by a factor"
    params = {"factor": Uniform(0.5, 1.0)}
    identity = {"factor": 1.0}

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return images * params["factor"].to(images.dtype).view(-1, 1, 1, 1)


class RowsDesign(Design):
    name = "tp-rows"

    def __init__(self, problem: Problem, n: int, seed: int, rows_per_block: int) -> None:
        self.problem, self.n, self.seed, self.rows_per_block = problem, int(n), int(seed), int(rows_per_block)

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.rows_per_block)

    @property
    def n_rows(self) -> int:
        return self.n

    def block(self, k: int) -> DesignBlock:
        rows = min(self.rows_per_block, self.n - k * self.rows_per_block)
        unit = np.random.default_rng([self.seed, k]).random((rows, self.problem.n_vars))
        return DesignBlock(index=k, unit=torch.from_numpy(unit))

    def config(self) -> dict[str, Any]:
        return {"design": self.name, "n": self.n, "seed": self.seed, "rows_per_block": self.rows_per_block}


class RowsSampler:
    name = "tp-rows"
    description = "i.i.d. uniform rows"

    def design(self, problem: Problem, size: int, seed: int, rows_per_block: int = 16) -> RowsDesign:
        return RowsDesign(problem, size, seed, rows_per_block)


class MomentAccumulator(Accumulator):
    def update_checkpoint(self, name: str, block: DesignBlock, rows: slice, y: Tensor) -> None:
        power = self.power  # set by the estimator
        st = self.stats[name]
        if not st:
            st.update(total=torch.zeros(y.shape[1], dtype=ACC_DTYPE), n=torch.zeros((), dtype=ACC_DTYPE))
        st["total"] += (y.to(ACC_DTYPE) ** power).sum(0)
        st["n"] += y.shape[0]

    def finalize_checkpoint(self, name: str) -> dict[str, np.ndarray]:
        st = self.stats[name]
        return {"moment": (st["total"] / st["n"]).numpy()}


@dataclasses.dataclass
class MomentOptions:
    power: int = option(1, "raise each output to this power before averaging")
    rows_per_block: int = option(16, "rows per design block")
    sampler: str = option("tp-rows", "registered sampler that builds the rows")


class MomentEstimator(Estimator):
    name = "tp-moment"
    description = "mean of output**power over all rows"
    outputs = ("moment",)
    summary = ("moment",)
    ungrouped = frozenset({"moment"})
    Options = MomentOptions
    sizes = {"paper": {"n": 4096}, "quick": {"n": 64}, "demo": {"n": 128}}

    def make_design(self, problem: Problem, size: int, seed: int, options: MomentOptions) -> Design:
        design = lookup("sampler", options.sampler).design(problem, size, seed, rows_per_block=options.rows_per_block)
        design.power = options.power
        return design

    def accumulator(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> MomentAccumulator:
        acc = MomentAccumulator(problem, design, shapes, device)
        acc.power = design.power
        return acc


@dataclasses.dataclass
class PeakOptions:
    checkpoint: str = option("pool", "checkpoint whose largest moment is reported")


class PeakAnalysis(Analysis):
    name = "tp-peak"
    description = "the largest moment of a checkpoint"
    Options = PeakOptions

    def run(self, results: Any, options: PeakOptions, progress: Any = None) -> dict[str, Any]:
        moment = results.dataset(f"checkpoints/{options.checkpoint}/moment")
        return {"peak": np.asarray(float(np.max(moment))), "argmax": np.asarray(int(np.argmax(moment)))}


class Halves(sa_frame.Segmenter):
    name = "tp-halves"
    description = "left and right halves"

    def max_regions(self, size, options):
        return 2

    def segment(self, images, masks, options):
        b, _, h, w = images.shape
        return (torch.arange(w) >= w // 2).long().expand(b, h, w).clone()


class Dim(sa_frame.Perturbation):
    name = "tp-dim"
    description = "x * (1 - v) per region, v ~ U(0, 0.5)"

    def variable(self, options):
        return Uniform(0.0, 0.5)

    def identity(self, options):
        return 0.0

    def apply(self, images, labels, values, options):
        factor = 1 - values.to(images.dtype).gather(1, labels.flatten(1)).view(labels.shape[0], 1, *labels.shape[1:])
        return images * factor


class ChannelMeans(sa_frame.Relevance):
    """Relevance = the lower checkpoint's mean value per channel, for every upper neuron."""

    name = "tp-means"
    description = "the lower channel's mean (test plugin)"
    needs_grad = False

    def compute(self, ctx, options):
        out = {}
        with torch.no_grad():
            got = {}
            hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: got.__setitem__(n, o)) for n, m in ctx.modules.items()]
            ctx.net(ctx.inputs)
            for h in hooks:
                h.remove()
        for upper, lower in ctx.pairs:
            low = got[lower].flatten(2).mean(-1) if got[lower].dim() > 2 else got[lower]
            up = got[upper].flatten(2).mean(-1) if got[upper].dim() > 2 else got[upper]
            out[f"{upper}|{lower}"] = low[:, None, :].expand(-1, up.shape[1], -1)
        return out


class IdentitySolver(sa_frame.IhvpSolver):
    """H taken as the identity: (1 + damping)^-1 V, a gradient-similarity influence (TracIn-like)."""

    name = "tp-identity"
    description = "the identity as the Hessian"

    def solve(self, curvature, rhs, damping, options):
        return rhs / (1.0 + damping), sa_frame.SolveReport(converged=True, iterations=0, residual=0.0)


class FullContractPlugin:
    @hookimpl
    def register_models(self, register):
        register(PoolModel())

    @hookimpl
    def register_checkpoints(self, register):
        register("tp-pool", ["pool", "fc"])

    @hookimpl
    def register_data_sources(self, register):
        register(ColourSource())

    @hookimpl
    def register_augmentations(self, register):
        register(Scale())

    @hookimpl
    def register_augmentation_sets(self, register):
        register("tp-set", ["tp-scale"])

    @hookimpl
    def register_samplers(self, register):
        register(RowsSampler())

    @hookimpl
    def register_estimators(self, register):
        register(MomentEstimator())

    @hookimpl
    def register_analyses(self, register):
        register(PeakAnalysis())

    @hookimpl
    def register_segmenters(self, register):
        register(Halves())

    @hookimpl
    def register_perturbations(self, register):
        register(Dim())

    @hookimpl
    def register_relevances(self, register):
        register(ChannelMeans())

    @hookimpl
    def register_ihvp_solvers(self, register):
        register(IdentitySolver())

    @hookimpl
    def register_commands(self, app):
        @app.command("tp-hello")
        def hello(name: str = "world") -> None:
            """Say hello (a plugin-provided command)."""
            typer.echo(f"hello {name}")
