"""The hook specifications: the whole contract between sa-frame and its plugins.

Every hook receives a `register` callback instead of returning a list (the style of simonw/llm): a plugin calls
`register(obj)` once per thing it provides. The kernel records which plugin (and which distribution) registered
what, so that a duplicate name can be reported naming both providers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "sa_frame"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register: Callable[[Any], None]) -> None:
    """Register image classifiers.

    Call `register(model)` with a `sa_frame.Model` subclass instance: a unique `name` (e.g. ``resnet18``,
    ``demo-cnn``), `build_module(pretrained)` returning the `torch.nn.Module` (the base class' `build(weights)`
    calls it and loads ``random``, ``imagenet`` or state-dict weights), `input_size`, `mean`/`std`, the name of
    the `classifier` module, default `checkpoints` and `class_names`. A name ending in ``/*`` registers a
    *family*: an object whose `resolve(name)` returns the model for any name with that prefix, e.g. ``timm/*`` for
    ``timm/convnext_tiny``.
    """


@hookspec
def register_checkpoints(register: Callable[[str, list[str]], None]) -> None:
    """Register the default checkpoints (module names) of a model.

    Call `register(model_name, [module names])`. Unlike other kinds, a later plugin may override the defaults of a
    model registered earlier (the last one wins), so a third party can change where activations are read without
    touching the model.
    """


@hookspec
def register_data_sources(register: Callable[[Any], None]) -> None:
    """Register sources of images.

    Call `register(source)` with a `sa_frame.DataSource` subclass instance: a unique `name`, `claims(value)`
    (whether a bare ``--data`` value is meant for it) and `open(argument, fmt)` returning a `sa_frame.ImageSet`
    (classes, partitions, `counts(partition)`, `load(classes, index, partition)` of float images in [0, 1]).
    ``--data name:argument`` picks a source by name; ``--data demo`` and folder paths go to the built-in ``demo``
    and ``folder`` sources.
    """


@hookspec
def register_augmentations(register: Callable[[Any], None]) -> None:
    """Register image augmentations.

    Call `register(aug)` with an object implementing `sa_frame.Augmentation`: a unique `name`, `params` (ordered
    mapping parameter name -> SA variable; the augmentation's variables form one group), `identity` (parameter
    values that make it a no-op; empty for parameter-free augmentations, which get a switch) and `apply(images,
    params)` working on a whole (B, 3, H, W) batch with one parameter value per image.
    """


@hookspec
def register_augmentation_sets(register: Callable[[str, list[str]], None]) -> None:
    """Register named sets of augmentations.

    Call `register(set_name, [augmentation names])`, e.g. ``register("a1", [...])``. The set name can then be
    given wherever an augmentation list is expected (``--aug a1``).
    """


@hookspec
def register_samplers(register: Callable[[Any], None]) -> None:
    """Register sampling designs.

    Call `register(sampler)` with an object that has a unique `name`, a `description` and `design(problem, size,
    seed, **keywords)` returning a `sa_frame.Design`. Every built-in estimator resolves its design through this
    registry by the name in its ``sampler`` option (``saltelli``, ``shapley-permutations``, ``iid``, ``paired``),
    so a third party can supply another design with the same row layout and select it with ``sa-frame run -o
    sampler=NAME``.
    """


@hookspec
def register_estimators(register: Callable[[Any], None]) -> None:
    """Register sensitivity estimators.

    Call `register(estimator)` with a `sa_frame.Estimator` subclass instance: a unique `name` (``sobol``,
    ``shapley``, ``variance``, ``contrast``), `Options` (a dataclass of `sa_frame.option` fields, set with
    ``sa-frame run -o key=value``), `sizes` per profile (``paper``, ``quick``, ``demo``), `make_design(problem,
    size, seed, options)` returning a block-wise `sa_frame.Design`, and `accumulator(problem, design, shapes,
    device)` returning a `sa_frame.Accumulator`, whose `update_checkpoint(name, block, rows, y)` receives outputs
    in the model's own dtype and whose `merge`, `state`, `load_state` and `finalize` the engine calls.
    """


@hookspec
def register_analyses(register: Callable[[Any], None]) -> None:
    """Register post-analyses of results files.

    Call `register(analysis)` with a `sa_frame.Analysis` subclass instance: a unique `name`, `Options` (a
    dataclass of `sa_frame.option` fields) and `run(results, options, progress)` returning named outputs, which
    the engine writes under ``/analyses/<name>`` of the results file; optional `report` and `figures`.
    """


@hookspec
def register_segmenters(register: Callable[[Any], None]) -> None:
    """Register segmenters (image -> region labels) for region runs (``--regions NAME:k=v``).

    Call `register(segmenter)` with a `sa_frame.Segmenter` instance: a unique `name` (``grid``, ``slic``), `Options`,
    `max_regions(size, options)` (the region variables) and `segment(images, masks, options)` -> (B, H, W) labels.
    """


@hookspec
def register_perturbations(register: Callable[[Any], None]) -> None:
    """Register perturbations (region values -> image) for region runs (``--perturbation``).

    Call `register(perturbation)` with a `sa_frame.Perturbation` instance: a unique `name` (``scale``), `Options`,
    `variable(options)` (a region value's law), `identity(options)` and `apply(images, labels, values, options)`.
    """


@hookspec
def register_relevances(register: Callable[[Any], None]) -> None:
    """Register relevances (lower neuron -> upper neuron) for step-wise runs (``--relevance NAME:k=v``).

    Call `register(relevance)` with a `sa_frame.Relevance` instance: a unique `name` (``gradients``), `Options`,
    `needs_grad` and `compute(ctx, options)` -> ``{"upper|lower": (B, K_upper, K_lower)}`` per checkpoint pair.
    """


@hookspec
def register_ihvp_solvers(register: Callable[[Any], None]) -> None:
    """Register inverse-Hessian solvers for influence runs (``--solver NAME:k=v``).

    Call `register(solver)` with a `sa_frame.IhvpSolver`: a unique `name` (``cg``), `Options` and
    `solve(curvature, rhs, damping, options)` -> ``((H + damping I)^-1 rhs, SolveReport)``.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``sa-frame`` command line.

    `app` is the `typer.Typer` application; decorate functions with ``@app.command()``. Keep the module that
    implements this hook cheap to import (import heavy libraries inside the command functions): it runs for every
    invocation of ``sa-frame``, ``--help`` included.
    """
