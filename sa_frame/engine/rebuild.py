"""The one way back from a finished results file to its run: the plan (model, weights,
data, augmentations, problem, design, estimator options), the network and the runner.

Analyses that run the network again (accuracy, guided masking, segments) or need the
run's data (class names) get them from here, so an analysis cannot silently use another
model, other weights or other data than the maps it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from sa_frame.core.augmentation import Augmentation
from sa_frame.core.data import ImageSet
from sa_frame.core.errors import UsageError
from sa_frame.core.model import Model
from sa_frame.engine.config import build_config
from sa_frame.engine.labels import label_warning
from sa_frame.engine.plan import RunPlan, plan
from sa_frame.engine.region_runner import RegionRunner
from sa_frame.engine.runner import Runner, minmax
from sa_frame.results.store import ResultsFile

VALID_PARTITIONS = ("valid", "val")
# settings of one invocation, not of the run
NOT_REPLAYED = ("resume", "force", "quiet")


@dataclass
class Rebuilt:
    """A finished run made live again: its plan, network (eval mode, on `device`) and runner."""

    plan: RunPlan

    @property
    def spec(self) -> Model:
        return self.plan.spec

    @property
    def net(self) -> nn.Module:
        if self.plan.net is None:
            raise RuntimeError("this run was rebuilt without its network (with_network=False)")
        return self.plan.net

    @property
    def device(self) -> torch.device:
        return self.plan.device

    @property
    def source(self) -> ImageSet:
        return self.plan.source

    @property
    def augmentations(self) -> list[Augmentation]:
        """The run's augmentations (none in a region run)."""
        return [] if self.plan.chain is None else list(self.plan.chain.augmentations)

    @property
    def postprocess(self) -> str:
        return self.plan.config.postprocess

    @cached_property
    def region_runner(self) -> RegionRunner:
        """A region run's scoring of perturbed images (masking, sensitivity-n); UsageError otherwise."""
        if self.plan.regions is None:
            raise UsageError("this is an augmentation run, not a region run (--regions)")
        return RegionRunner(self.plan)

    @cached_property
    def runner(self) -> Runner:
        """Prepares the run's inputs for design rows and folds blocks into accumulators."""
        if self.plan.regions is not None:
            raise UsageError("this is a region run (--regions): it has no augmentation runner; use region_runner")
        return Runner(self.plan)

    def evaluation_images(self, per_class: int, partition: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(classes, within-class index, partition index) of the first `per_class` images of every
        class of the validation partition (or the only one); fewer where a class has fewer."""
        names = list(self.source.partitions)
        if partition is None:
            part = next((i for i, n in enumerate(names) if n in VALID_PARTITIONS), len(names) - 1)
        elif partition in names:
            part = names.index(partition)
        else:
            raise UsageError(f"unknown partition {partition!r}; the data has {', '.join(names)}")
        counts = torch.clamp(self.source.counts(part), max=per_class)
        classes = torch.arange(len(counts)).repeat_interleave(counts)
        starts = torch.cumsum(counts, 0) - counts
        index = torch.arange(classes.numel()) - starts[classes]
        return classes, index, torch.full_like(classes, part)

    def network_labels(self, classes: Tensor) -> Tensor:
        """The data's class indices as the network's output indices (the same where no rule
        maps the data's classes: see `label_warning`)."""
        mapped = self.plan.labels.network_classes
        return classes if mapped is None else torch.as_tensor(mapped, dtype=classes.dtype)[classes]

    def label_warning(self) -> str:
        """Why accuracies may mean nothing: the data's classes cannot be matched to the outputs."""
        return label_warning(self.plan.labels, len(self.source.classes), self.plan.n_outputs)

    def inputs(self, images: Tensor) -> Tensor:
        """[0, 1] images -> the network's input (post-processing of the run, then normalisation)."""
        if self.postprocess == "minmax":
            images = minmax(images)
        return self.spec.normalize(images)


def rebuild(results: ResultsFile, device: str | None = None, n: int | None = None, batch_size: int | None = None,
            with_network: bool = True) -> Rebuilt:
    """The run of a results file, rebuilt from its stored configuration; `device`, `n` and
    `batch_size` may be changed (an analysis re-running the design at another size)."""
    stored: dict[str, Any] = {k: v for k, v in results.config().items() if k not in NOT_REPLAYED}
    config = build_config(stored, {"device": device, "n": n, "batch_size": batch_size})
    run = plan(config, with_network=with_network)
    if run.net is not None:
        run.net.eval()
    return Rebuilt(run)
