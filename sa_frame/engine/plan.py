"""A run's plan: every name resolved and checked — model, data, augmentations, estimator,
its options and design — before any heavy work starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sa_frame.core.data import ImageSet, InputFormat
from sa_frame.core.errors import UsageError, unknown_name
from sa_frame.core.estimator import Design, Estimator
from sa_frame.core.model import Model
from sa_frame.core.problem import Problem
from sa_frame.core.registry import lookup, registered
from sa_frame.engine.capture import resolve_modules
from sa_frame.engine.chain import AugmentationChain, resolve_augmentations
from sa_frame.engine.config import RunConfig
from sa_frame.engine.distributed import local_device
from sa_frame.engine.labels import Labels, network_labels
from sa_frame.engine.laws import Categorical
from sa_frame.engine.regions import (
    SCORE,
    RegionSetup,
    parse_named,
    partition_index,
    per_image_design,
    setup_regions,
)

CLASS, PARTITION = "class", "partition"


@dataclass
class RunPlan:
    """Everything a run needs, resolved and checked before any heavy work."""

    config: RunConfig
    spec: Model
    net: nn.Module | None
    device: torch.device
    checkpoints: list[str]
    source: ImageSet
    #: the augmentations (None in a region run)
    chain: AugmentationChain | None
    problem: Problem
    estimator: Estimator
    design: Design
    n: int
    #: the estimator's Options instance the design was built with
    options: Any
    #: the data's classes in the network's class space
    labels: Labels
    #: the network's number of outputs, when the model says (class names, or a head size)
    n_outputs: int | None = None
    #: a region run's images, regions and perturbation (None: an augmentation run)
    regions: RegionSetup | None = None
    #: a step-wise run's relevance plugin and its options (None otherwise)
    relevance: tuple[Any, Any] | None = None
    #: the partition every row uses when the problem has no partition variable
    partition: int = 0
    #: the size profile the defaults came from: paper, quick or demo
    profile: str = "paper"

    @property
    def map_checkpoints(self) -> list[str]:
        """The names the index maps are stored under: the checkpoints, or for a relevance run the
        consecutive pairs ``upper|lower`` (top pair first)."""
        if self.relevance is None:
            return list(self.checkpoints)
        return [f"{u}|{lo}" for u, lo in zip(self.checkpoints[1:], self.checkpoints[:-1])][::-1]

    @property
    def mode(self) -> str:
        return "regions" if self.regions is not None else "relevance" if self.relevance is not None else \
            "augmentations"

    @property
    def rows_per_batch(self) -> int:
        unit = self.design.unit_rows
        return max(unit, self.config.batch_size // unit * unit)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} was asked for but CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def relevance_problem(chain: AugmentationChain | None, source: ImageSet) -> Problem:
    """A step-wise run's variables: the class (which picks the image of the fixed partition) and,
    when asked, the chain's augmentations."""
    blocks, groups = chain.variables() if chain is not None else ({}, {})
    blocks[CLASS] = Categorical(len(source.classes), labels=source.classes)
    groups[CLASS] = [CLASS]
    return Problem(blocks, groups)


def build_problem(chain: AugmentationChain, source: ImageSet) -> Problem:
    """The chain's variables plus class (which also picks the image) and partition."""
    blocks, groups = chain.variables()
    blocks[CLASS] = Categorical(len(source.classes), labels=source.classes)
    groups[CLASS] = [CLASS]
    if len(source.partitions) == 2:
        blocks[PARTITION] = Categorical(2, labels=source.partitions)
        groups[PARTITION] = [PARTITION]
    return Problem(blocks, groups)


def plan(config: RunConfig, with_network: bool = True) -> RunPlan:
    """Resolve names, build the problem and design, load the model (UsageError on bad input).
    `with_network=False` skips building the network (net is None), for readers of a run."""
    spec = lookup("model", config.model)
    estimator: Estimator = lookup("estimator", config.estimator)
    device = local_device(resolve_device(config.device))
    source = open_data(config.data, spec.input_format())
    names = spec.class_names
    n_outputs = len(names) if names else int(getattr(spec, "num_classes", 0) or 0) or None
    labels = network_labels(source, spec, n_outputs, config.class_map)
    chain, regions, relevance, fixed_partition = None, None, None, 0
    profile = "quick" if config.quick else "demo" if config.data == "demo" and config.model == "demo-cnn" else "paper"
    sizes = dict(estimator.sizes.get(profile) or estimator.sizes.get("paper") or {})
    n = config.n if config.n is not None else sizes.pop("n", None)
    sizes.pop("n", None)
    if n is None:
        raise UsageError(f"estimator {estimator.name!r} has no default size for profile {profile!r}; give --n")
    options = estimator.options({**sizes, **config.options})
    if config.relevance and not estimator.needs_grad:
        raise UsageError(f"--relevance is for step-wise estimators (ssa); {estimator.name!r} reads activations")
    if estimator.needs_grad:
        if config.regions:
            raise UsageError(f"estimator {estimator.name!r} relates checkpoints; it cannot take --regions")
        relevance = parse_named(config.relevance or "gradients", "relevance")
        fixed_partition = partition_index(source, config.partition or
                                          ("train" if "train" in source.partitions else None))
        chain = AugmentationChain(resolve_augmentations(config.aug), scheme=1, permute=estimator.permute) \
            if getattr(options, "augmentations", False) else None
        problem = relevance_problem(chain, source)
    elif config.regions:
        if estimator.regions == "unsupported":
            raise UsageError(f"estimator {estimator.name!r} cannot analyse regions (--regions); use sbsa, sobol or "
                             f"shapley")
        regions = setup_regions(config, spec, source, labels.network_classes, device)
        problem = regions.problem()
    else:
        if estimator.regions == "required":
            raise UsageError(f"estimator {estimator.name!r} analyses image regions: give --regions (e.g. "
                             f"--regions grid:cells=4)")
        augmentations = resolve_augmentations(config.aug)
        scheme = config.scheme or estimator.schemes[0]
        if scheme not in estimator.schemes:
            raise UsageError(f"estimator {estimator.name!r} takes augmentation scheme "
                             f"{' or '.join(map(str, estimator.schemes))}, got --scheme {scheme}")
        chain = AugmentationChain(augmentations, scheme=scheme, permute=estimator.permute)
        problem = build_problem(chain, source)
    design = estimator.design(problem, n, config.seed, options)
    if regions is not None and regions.design_sharing == "per-image":
        design = per_image_design(estimator, problem, n, config.seed, options, regions)
    if regions is not None:  # the score, and real checkpoints only where asked for
        checkpoints = [SCORE, *(c for c in config.checkpoints or [] if c != SCORE)]
    else:
        checkpoints = list(config.checkpoints or registered("checkpoint").get(spec.name) or spec.checkpoints)
    net = None
    if with_network:
        net = spec.build(config.weights).to(device)
        resolve_modules(net, [c for c in checkpoints if c != SCORE or regions is None])
    if config.classifier_output not in ("softmax", "logits"):
        raise UsageError(f"classifier_output must be softmax or logits, got {config.classifier_output!r}")
    return RunPlan(config, spec, net, device, checkpoints, source, chain, problem, estimator, design, n, options,
                   labels, n_outputs, regions, relevance, fixed_partition, profile)


def open_data(value: str, fmt: InputFormat) -> ImageSet:
    """The images of a ``--data`` value: ``name:argument`` or a bare ``name`` names a registered
    data source; any other value goes to the first source that claims it (a folder path)."""
    sources = registered("data_source")
    name, sep, argument = value.partition(":")
    if sep and name in sources:
        return sources[name].open(argument, fmt)
    if value in sources:
        return sources[value].open(value, fmt)
    for source in sources.values():
        if source.claims(value):
            return source.open(value, fmt)
    raise unknown_name("data source", name if sep else value, sources)
