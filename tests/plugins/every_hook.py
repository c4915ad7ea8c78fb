"""A test-only plugin implementing every hook with objects of known behaviour."""

from __future__ import annotations

from collections.abc import Mapping

import typer
from torch import Tensor

from sa_frame import Augmentation, Uniform, hookimpl


class Brighten(Augmentation):
    name = "test-brighten"
    description = "multiply by a factor"
    params = {"factor": Uniform(0.5, 1.0)}
    identity = {"factor": 1.0}

    def apply(self, images: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return images * params["factor"].view(-1, 1, 1, 1)


class TinyModel:
    name = "test-model"
    description = "a model plugin stand-in"


class TinyFamily:
    """Models resolved by prefix, as `timm/*` will be."""

    name = "test-family/*"
    description = "any test-family/<variant>"

    def resolve(self, name):
        model = TinyModel()
        model.name = name
        return model


class TinyAnalysis:
    name = "test-analysis"
    description = "an analysis stand-in"


class TinySampler:
    name = "test-sampler"
    description = "a sampler stand-in"


class TinyEstimator:
    name = "test-estimator"
    description = "an estimator stand-in"


class EveryHookPlugin:
    @hookimpl
    def register_models(self, register):
        register(TinyModel())
        register(TinyFamily())

    @hookimpl
    def register_checkpoints(self, register):
        register("test-model", ["layer1", "fc"])

    @hookimpl
    def register_augmentations(self, register):
        register(Brighten())

    @hookimpl
    def register_augmentation_sets(self, register):
        register("test-set", ["test-brighten"])

    @hookimpl
    def register_samplers(self, register):
        register(TinySampler())

    @hookimpl
    def register_estimators(self, register):
        register(TinyEstimator())

    @hookimpl
    def register_analyses(self, register):
        register(TinyAnalysis())

    @hookimpl
    def register_commands(self, app):
        @app.command("hello")
        def hello(name: str = "world") -> None:
            """Say hello (a plugin-provided command)."""
            typer.echo(f"hello {name}")


class CheckpointOverride:
    @hookimpl
    def register_checkpoints(self, register):
        register("test-model", ["fc"])


class DuplicateEstimator:
    @hookimpl
    def register_estimators(self, register):
        register(TinyEstimator())
