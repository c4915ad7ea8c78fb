"""Standalone segments of a network: consecutive modules copied out of the
model, keeping only selected output channels, fed a single image channel (H, S or V)
repeated to the segment's input channels.

``sequential``: the segment's last convolution is replaced by one holding only the
selected output channels (the modules after it must act per channel: ReLU, pooling,
batch norm is sliced too). ``residual``: the modules run whole and the selected channels
are taken from the output (a residual block's output channels cannot be computed alone).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sa_frame import UsageError, resolve_modules

SEGMENT_KINDS = ("sequential", "residual")


def _slice_conv(conv: nn.Conv2d, channels: Tensor) -> nn.Conv2d:
    if conv.groups != 1:
        raise UsageError("segments cannot slice grouped convolutions; use kind='residual'")
    sliced = nn.Conv2d(conv.in_channels, len(channels), conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, 1, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        sliced.weight.copy_(conv.weight[channels])
        if conv.bias is not None:
            sliced.bias.copy_(conv.bias[channels])
    return sliced


def _slice_norm(norm: nn.BatchNorm2d, channels: Tensor) -> nn.BatchNorm2d:
    sliced = copy.deepcopy(norm)
    sliced.num_features = len(channels)
    for attr in ("weight", "bias"):
        if getattr(norm, attr) is not None:
            setattr(sliced, attr, nn.Parameter(getattr(norm, attr).detach()[channels].clone()))
    for attr in ("running_mean", "running_var"):
        if getattr(norm, attr) is not None:
            setattr(sliced, attr, getattr(norm, attr)[channels].clone())
    return sliced


class Segment(nn.Module):
    """Consecutive modules of a model as one network; accepts 1-channel input."""

    def __init__(self, body: nn.Sequential, in_channels: int, channels: Tensor | None, kind: str) -> None:
        super().__init__()
        self.body, self.in_channels, self.kind = body, in_channels, kind
        self.register_buffer("channels", channels if channels is not None else torch.empty(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1 and self.in_channels != 1:
            x = x.expand(-1, self.in_channels, -1, -1)  # one image channel, repeated
        out = self.body(x)
        if self.kind == "residual" and self.channels.numel():
            out = out.index_select(1, self.channels)
        return out


def build_segment(model: nn.Module, module_names: Sequence[str], kind: str = "sequential",
                  channels: Sequence[int] | None = None) -> Segment:
    """A standalone copy of the consecutive modules `module_names` of `model` (eval mode)."""
    if kind not in SEGMENT_KINDS:
        raise UsageError(f"segment kind must be one of {', '.join(SEGMENT_KINDS)}, got {kind!r}")
    if not module_names:
        raise UsageError("a segment needs at least one module name")
    order = {name: i for i, name in enumerate(n for n, _ in model.named_modules())}
    resolve_modules(model, module_names)
    positions = [order[n] for n in module_names]
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise UsageError(f"segment modules {list(module_names)} must be given in the network's forward order, each "
                         f"once")
    modules = [copy.deepcopy(m) for m in resolve_modules(model, module_names).values()]
    convs = [i for i, m in enumerate(modules) for c in m.modules() if isinstance(c, nn.Conv2d)]
    if not convs:
        raise UsageError(f"segment {list(module_names)} has no convolution to take its input channels from")
    first_conv = next(c for c in modules[convs[0]].modules() if isinstance(c, nn.Conv2d))
    index = torch.as_tensor(list(channels), dtype=torch.long) if channels is not None else None
    if index is not None and kind == "sequential":
        top_level_convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
        if not top_level_convs:
            raise UsageError("a sequential segment needs a top-level Conv2d to slice; use kind='residual'")
        last = top_level_convs[-1]
        for m in modules[last + 1:]:
            if any(isinstance(c, nn.Conv2d) for c in m.modules()):
                raise UsageError(f"sequential segment: a convolution follows {module_names[last]!r}; "
                                 "only per-channel modules may follow the sliced one (use kind='residual')")
        if int(index.max()) >= modules[last].out_channels or int(index.min()) < 0:
            raise UsageError(f"channels must lie in 0..{modules[last].out_channels - 1}")
        modules[last] = _slice_conv(modules[last], index)
        modules[last + 1:] = [_slice_norm(m, index) if isinstance(m, nn.BatchNorm2d) else m
                              for m in modules[last + 1:]]
    return Segment(nn.Sequential(*modules), first_conv.in_channels, index, kind).eval()
