"""Forward hooks: record checkpoint outputs, and mask them (guided masking).

`Capture` records the outputs of the chosen modules for one forward pass, kept on the
device; the classifying module's output is recorded as softmax probabilities by
default (the paper), or as logits. `Masking` multiplies checkpoint outputs by a mask,
by 1 - mask, or by alpha where the mask is at or above its q-quantile over the whole
checkpoint. Both are context managers whose hooks are removed on exit, and they can be
combined (masking hooks are registered first, so captures see masked outputs).
`StackedMasking` evaluates K masking configurations in one forward of a K-times repeated
batch (prediction analyses, SSA graph evaluation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from sa_frame.core.errors import UsageError, did_you_mean

CLASSIFIER_OUTPUTS = ("softmax", "logits")
MASK_MODES = ("raw", "invert", "threshold")


def resolve_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """`{name: module}` for module names of `model`; UsageError listing names and the closest."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules or name == "":
            hint = did_you_mean(name, [n for n in modules if n])
            listed = ", ".join(n for n in modules if n)
            if len(listed) > 600:
                listed = listed[:600] + ", ..."
            raise UsageError(f"unknown checkpoint {name!r}{hint}; module names: {listed}")
        out[name] = modules[name]
    return out


class ForwardHooks:
    """Base of the hook context managers: handles registered in `__enter__` are removed on exit."""

    _handles: list[RemovableHandle]

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class Capture(ForwardHooks):
    """Record the outputs of `checkpoints` during forward passes (context manager).

    >>> with Capture(net, ["layer1", "fc"], classifier="fc") as cap:
    ...     net(x)
    >>> cap.outputs["fc"]   # (B, 1000) probabilities
    """

    def __init__(self, model: nn.Module, checkpoints: Iterable[str], classifier: str | None = None,
                 classifier_output: Literal["softmax", "logits"] = "softmax", copy: bool = True) -> None:
        if classifier_output not in CLASSIFIER_OUTPUTS:
            raise UsageError(f"classifier_output must be one of {', '.join(CLASSIFIER_OUTPUTS)}, "
                             f"got {classifier_output!r}")
        self.checkpoints = list(dict.fromkeys(checkpoints))
        self.modules = resolve_modules(model, self.checkpoints)
        self.classifier = classifier
        self.classifier_output = classifier_output
        if classifier is not None:
            resolve_modules(model, [classifier])
        self._model = model
        self._handles: list[RemovableHandle] = []
        self.copy = copy
        self.outputs: dict[str, Tensor] = {}
        self._versions: dict[str, int] = {}

    def __enter__(self) -> Capture:
        if self.classifier is not None and self.classifier_output == "softmax":
            module = dict(self._model.named_modules())[self.classifier]
            self._handles.append(module.register_forward_hook(lambda _m, _i, out: torch.softmax(out, dim=-1)))
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._recorder(name)))
        return self

    def _recorder(self, name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            # a later in-place module (ReLU(inplace=True)) would overwrite the tensor: copy it,
            # or (copy=False) remember its version counter and let `verify` check it
            self.outputs[name] = output.detach().clone() if self.copy else output.detach()
            self._versions[name] = output._version
        return hook

    def verify(self) -> None:
        """With copy=False: fail if a later module modified a recorded output in place."""
        changed = [n for n, t in self.outputs.items() if t._version != self._versions.get(n)]
        if changed:
            raise UsageError(f"checkpoint output(s) {changed} were modified in place by a later module "
                             f"(e.g. ReLU(inplace=True)); choose the module after it as checkpoint")


    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-image output shape of every recorded checkpoint."""
        return {name: tuple(t.shape[1:]) for name, t in self.outputs.items()}


def mask_factor(mask: Tensor, mode: str, alpha: float = 0.0, q: float = 0.5) -> Tensor:
    """The multiplier applied to a checkpoint's output for one masking configuration."""
    if mode == "raw":
        return mask
    if mode == "invert":
        return 1.0 - mask
    if mode == "threshold":
        if not 0.0 <= q <= 1.0:
            raise UsageError(f"masking quantile q must lie in [0, 1], got {q}")
        level = torch.quantile(mask.flatten().to(torch.float64), q).to(mask.dtype)
        return torch.where(mask >= level, torch.as_tensor(alpha, dtype=mask.dtype, device=mask.device),
                           torch.ones((), dtype=mask.dtype, device=mask.device))
    raise UsageError(f"masking mode must be one of {', '.join(MASK_MODES)}, got {mode!r}")


class Masking(ForwardHooks):
    """Multiply the outputs of several checkpoints by masks (context manager).

    `masks` maps module names to tensors shaped like one image's output of that module
    (e.g. (C, H, W)); every masked checkpoint uses the same mode, alpha and q.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, Tensor], mode: str = "raw", alpha: float = 0.0,
                 q: float = 0.5) -> None:
        self.modules = resolve_modules(model, masks)
        self.factors = {name: mask_factor(mask, mode, alpha, q) for name, mask in masks.items()}
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> Masking:
        for name, module in self.modules.items():
            factor = self.factors[name]

            def hook(_module: nn.Module, _inputs: tuple, output: Tensor, factor: Tensor = factor,
                     name: str = name) -> Tensor:
                if tuple(output.shape[1:]) != tuple(factor.shape):
                    raise UsageError(f"mask for {name!r} has shape {tuple(factor.shape)}, the checkpoint "
                                     f"outputs {tuple(output.shape[1:])}")
                return output * factor.to(device=output.device, dtype=output.dtype)

            self._handles.append(module.register_forward_hook(hook))
        return self


class StackedMasking(ForwardHooks):
    """Hooks that multiply copy k of a repeated batch by factor k, on every masked checkpoint.

    With `shared_prefix` the network is fed the batch once: the first masked checkpoint the
    forward reaches repeats its output K times, so the layers before it run once per image
    instead of once per configuration. That is exact when everything after that checkpoint
    depends on the input only through it (sequential networks, checkpoints between residual
    blocks); where a skip connection jumps over it, the shapes disagree and `predict_batch`
    falls back to repeating the input."""

    def __init__(self, net: nn.Module, factors: Mapping[str, Tensor], shared_prefix: bool = True) -> None:
        self.modules = resolve_modules(net, factors)
        self.factors = dict(factors)
        self.active: slice = slice(0, 1)
        self.batch = 0  # images per forward before repetition (set by predict_batch)
        self.shared_prefix = shared_prefix
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> StackedMasking:
        for name, module in self.modules.items():
            def hook(_m: nn.Module, _i: tuple, output: Tensor, name: str = name) -> Tensor:
                factor = self.factors[name][self.active]
                k = factor.shape[0]
                if self.shared_prefix and k > 1 and output.shape[0] == self.batch:
                    output = output.repeat(k, *([1] * (output.ndim - 1)))  # the prefix ends here
                view = output.reshape(k, output.shape[0] // k, *output.shape[1:])
                return (view * factor.unsqueeze(1).to(output.dtype)).reshape(output.shape)
            self._handles.append(module.register_forward_hook(hook))
        return self
