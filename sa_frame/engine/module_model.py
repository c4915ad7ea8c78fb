"""A user's own `nn.Module` as a model plugin, so that `sa_frame.run(model=net, ...)` goes through
the same plan, runner and results file as `sa-frame run --model NAME`.

The module is registered in this process under a name (``module:<ClassName>`` unless given);
analyses that rebuild the network (masking, single-class, ...) find it there while the process
lives. Another process needs the network registered as a plugin (docs/plugins/tutorial.md).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sa_frame.core.errors import UsageError
from sa_frame.core.hookspecs import hookimpl
from sa_frame.core.model import IMAGENET_MEAN, IMAGENET_STD, Model
from sa_frame.core.registry import registry


class ModuleModel(Model):
    """Wraps a live network: `build` returns a copy of it (the run never changes the caller's
    module: eval mode, hooks and in-place activations stay on the copy)."""

    default_weights = "module"

    def __init__(self, module: nn.Module, name: str, checkpoints: Sequence[str], classifier: str,
                 input_size: tuple[int, int], mean: tuple[float, float, float], std: tuple[float, float, float],
                 class_names: Sequence[str] | None) -> None:
        self.module, self.name = module, name
        self.description = f"the nn.Module {type(module).__name__} given to sa_frame.run"
        self.checkpoints, self.classifier = list(checkpoints), classifier
        self.input_size, self.mean, self.std = tuple(input_size), tuple(mean), tuple(std)  # type: ignore[assignment]
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def class_names(self) -> list[str] | None:
        return self._class_names

    def build_module(self, pretrained: bool) -> nn.Module:
        return copy.deepcopy(self.module)

    def build(self, weights: str | Path | None = None) -> nn.Module:
        """A copy of the module with its own weights, or with a state-dict file's (`weights=`)."""
        if weights is None or weights == self.default_weights:
            return self.build_module(pretrained=False).eval()
        return super().build(weights)

    def state_digest(self) -> str:
        """SHA-256 of the module's parameters and buffers: a resumed run refuses another network."""
        digest = hashlib.sha256()
        for key, tensor in sorted(self.module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


class _ModulePlugin:
    """The plugin object registering one ModuleModel."""

    def __init__(self, spec: ModuleModel) -> None:
        self.spec = spec

    @hookimpl
    def register_models(self, register) -> None:  # type: ignore[no-untyped-def]
        register(self.spec)


_REGISTERED: dict[str, _ModulePlugin] = {}


def default_checkpoints(module: nn.Module) -> list[str]:
    """The module's top-level children (a Sequential's layers), when no checkpoints are given."""
    names = [name for name, _ in module.named_children()]
    if not names:
        raise UsageError(f"{type(module).__name__} has no child modules to record; give checkpoints=[module names]")
    return names


def register_module(module: nn.Module, name: str | None = None, checkpoints: Sequence[str] | None = None,
                    classifier: str | None = None, input_size: tuple[int, int] = (224, 224),
                    mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                    class_names: Sequence[str] | None = None) -> ModuleModel:
    """Register `module` as model `name` in this process (replacing an earlier module of that name)."""
    name = name or f"module:{type(module).__name__}"
    checkpoints = list(checkpoints) if checkpoints else default_checkpoints(module)
    modules = dict(module.named_modules())
    if classifier is None:  # the last checkpoint when it is a linear layer: its outputs are the class scores
        classifier = checkpoints[-1] if isinstance(modules.get(checkpoints[-1]), nn.Linear) else ""
    if len(input_size) != 2 or min(input_size) < 1:
        raise UsageError(f"input_size must be (height, width) in pixels, got {tuple(input_size)}")
    spec = ModuleModel(module, name, checkpoints, classifier, input_size, mean, std, class_names)
    plugins = registry()
    previous = _REGISTERED.pop(name, None)
    if previous is not None and plugins.pm.is_registered(previous):
        plugins.remove_plugin(previous)
    elif name in plugins.entries("model"):
        raise UsageError(f"model name {name!r} is taken by a registered plugin; give sa_frame.run another name=")
    plugin = _REGISTERED[name] = _ModulePlugin(spec)
    plugins.add_plugin(plugin, provider="sa_frame.run", name=f"sa_frame.run:{name}")
    return spec
