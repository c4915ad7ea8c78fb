"""The hook specifications: the whole contract between sa-frame and its plugins.

Every hook receives a `register` callback instead of returning a list (the style of
simonw/llm): a plugin calls `register(obj)` once per thing it provides. The kernel
records which plugin (and which distribution) registered what, so that a duplicate
name can be reported naming both providers.
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

    Call `register(model)` with an object implementing `sa_frame.Model`: a unique
    `name` (e.g. ``resnet18``, ``demo-cnn``), `build(weights)` returning a
    `torch.nn.Module`, its input size and normalisation, the name of the classifying
    module and the class names. A name ending in ``/*`` registers a *family*: an object
    whose `resolve(name)` builds the model for any name with that prefix, e.g. ``timm/*``
    for ``timm/convnext_tiny``.
    """


@hookspec
def register_checkpoints(register: Callable[[str, list[str]], None]) -> None:
    """Register the default checkpoints (module names) of a model.

    Call `register(model_name, [module names])`. Unlike other kinds, a later plugin
    may override the defaults of a model registered earlier (the last one wins), so a
    third party can change where activations are read without touching the model.
    """


@hookspec
def register_augmentations(register: Callable[[Any], None]) -> None:
    """Register image augmentations.

    Call `register(aug)` with an object implementing `sa_frame.Augmentation`: a unique
    `name`, `params` (ordered mapping parameter name -> SA variable; the
    augmentation's variables form one group), `identity` (parameter values that make
    it a no-op; empty for parameter-free augmentations, which get a switch) and
    `apply(images, params)` working on a whole (B, 3, H, W) batch with one parameter
    value per image.
    """


@hookspec
def register_augmentation_sets(register: Callable[[str, list[str]], None]) -> None:
    """Register named sets of augmentations.

    Call `register(set_name, [augmentation names])`, e.g. ``register("a1", [...])``.
    The set name can then be given wherever an augmentation list is expected
    (``--aug a1``).
    """


@hookspec
def register_samplers(register: Callable[[Any], None]) -> None:
    """Register sampling designs.

    Call `register(design_type)` with an object that has a unique `name` and builds
    block-wise designs (``design(problem, size, seed, **options)``). Estimators bring
    the design they need; this hook lets a third party add or replace one and lets
    ``sa-frame plugins --kind sampler`` show what exists.
    """


@hookspec
def register_estimators(register: Callable[[Any], None]) -> None:
    """Register sensitivity estimators.

    Call `register(estimator)` with an object implementing `sa_frame.Estimator`: a
    unique `name` (``sobol``, ``shapley``, ``variance``, ``contrast``), `design(problem,
    size, seed, **options)` returning a block-wise design, and
    `accumulator(problem, design, activation_shapes, device)` returning a streaming
    accumulator with `update`, `merge`, `state`, `load_state` and `finalize`.
    """


@hookspec
def register_analyses(register: Callable[[Any], None]) -> None:
    """Register post-analyses of results files.

    Call `register(analysis)` with an object implementing `sa_frame.Analysis`: a
    unique `name` and `run(results, options)` returning named outputs, which the
    kernel writes under ``/analyses/<name>`` of the results file.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``sa-frame`` command line.

    `app` is the `typer.Typer` application; decorate functions with
    ``@app.command()``. Keep the module that implements this hook cheap to import
    (import heavy libraries inside the command functions): it runs for every
    invocation of ``sa-frame``, ``--help`` included.
    """
