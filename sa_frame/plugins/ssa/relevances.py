"""Built-in relevances of step-wise sensitivity analysis, per image and checkpoint pair
(upper | lower), shaped (B, K_upper, K_lower):

- `gradients` (the paper's eq. 1): |mean over positions of d(upper neuron) / d(lower activation)|,
  the upper neuron a conv map's spatial mean (or max). Exact by reverse mode (one batched
  VJP per upper neuron) or forward mode (one JVP per lower channel with an all-ones tangent
  on that channel, which gives the positional sum of the same derivatives); `mode=auto`
  takes forward mode where it needs JVP_ADVANTAGE times fewer passes.
- `activations`: the lower channel's mean |activation| (the same for every upper neuron).
- `weights`: |W| of the weighted layer (conv or linear) between the two checkpoints,
  averaged over kernel positions (data-independent).
- `weight-activations`: |W| x mean |activation| (PatternNet-like).
- `weight-gradients`: what the authors' evaluation code calls gradients — |d mean(output of
  the weighted layer) / d W| per image, kernel positions averaged (per-sample gradients by
  torch.func), named apart from eq. 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from sa_frame import Relevance, RelevanceContext, UsageError, option

MODES = ("auto", "vjp", "jvp")
ABS = ("after", "before")
#: cotangents (VJP) and tangents (JVP) vectorised at once (they also bound the batched
#: derivatives' memory). On 2 CPU cores with demo-cnn, one plain backward pass per upper neuron
#: beat every vmap'd chunk size (benchmarks/ssa.py); on a GPU the batched passes are the point
VJP_CHUNK, VJP_CHUNK_CUDA, JVP_CHUNK = 1, 16, 16
#: auto takes forward mode when the lower side has this many times fewer neurons: a JVP pass
#: costs about 3x a VJP pass on the CPU (benchmarks/ssa.py)
JVP_ADVANTAGE = 4


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence the FutureWarning torch's own vmap decompositions raise about torch.jit.script."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


def channel_mean(t: Tensor) -> Tensor:
    """(B, K, *spatial) -> (B, K): the mean over positions (identity for (B, K))."""
    return t.flatten(2).mean(-1) if t.dim() > 2 else t


def reduce_upper(u: Tensor, how: str) -> Tensor:
    """An upper checkpoint's output (B, K, *spatial) as one scalar per neuron and image (B, K)."""
    if u.dim() <= 2:
        return u
    if how == "max":
        return u.flatten(2).amax(-1)
    return u.flatten(2).mean(-1)


def lower_outputs(ctx: RelevanceContext) -> dict[str, Tensor]:
    """Every checkpoint's output of the batch (no gradients)."""
    out: dict[str, Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, name=name: out.__setitem__(name, o.detach()))
               for name, m in ctx.modules.items()]
    try:
        with torch.no_grad():
            ctx.net(ctx.inputs)
    finally:
        for h in handles:
            h.remove()
    return out


class _Stop(Exception):
    """Raised by a hook once every needed checkpoint output is recorded (the rest of the forward is skipped)."""


def segmented_forward(ctx: RelevanceContext, leaves: dict[str, Tensor], needed: set[str]) -> dict[str, Tensor]:
    """One forward in which each checkpoint named in `leaves` outputs its leaf instead of what it
    computed, so that every other checkpoint's recorded output depends on the leaves only
    through the layers since the last one; stops once the `needed` outputs are recorded."""
    got: dict[str, Tensor] = {}

    def hook(name: str) -> Callable[..., Tensor]:
        def record(_m: nn.Module, _i: tuple, output: Tensor) -> Tensor:
            got[name] = output
            if needed <= got.keys():
                raise _Stop
            return leaves.get(name, output)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in ctx.modules.items()]
    try:
        ctx.net(ctx.inputs)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return got


def vjp_means(u: Tensor, a: Tensor, absolute_first: bool) -> Tensor:
    """(B, K_up, K_low): positional means of d u_n / d a by reverse mode, one backward pass per
    upper neuron on the CPU (VJP_CHUNK_CUDA cotangents batched on a GPU) through the graph
    already built; |.| before the mean when `absolute_first`."""
    out = []
    chunk = VJP_CHUNK_CUDA if a.is_cuda else VJP_CHUNK
    k_up = u.shape[1]
    for start in range(0, k_up, chunk):
        n = min(chunk, k_up - start)
        cot = torch.zeros(n, *u.shape, dtype=u.dtype, device=u.device)
        cot[torch.arange(n), :, torch.arange(start, start + n)] = 1.0
        if n == 1:  # one plain backward pass
            (g,) = torch.autograd.grad(u, a, cot[0], retain_graph=True)
            g = g.unsqueeze(0)
        else:
            with quiet_jit():
                (g,) = torch.autograd.grad(u, a, cot, retain_graph=True, is_grads_batched=True)  # (n, B, ..)
        out.append(channel_mean((g.abs() if absolute_first else g).flatten(0, 1)).view(n, a.shape[0], -1))
    return torch.cat(out).permute(1, 0, 2)


def jvp_means(f: Callable[[Tensor], Tensor], a: Tensor) -> Tensor:
    """(B, K_up, K_low): the same signed means by forward mode, one all-ones tangent per
    lower channel (vectorised JVP_CHUNK at a time), divided by the number of positions."""
    from torch.func import jvp, vmap

    k_low, positions = a.shape[1], max(1, a[0, 0].numel())
    out = []
    for start in range(0, k_low, JVP_CHUNK):
        n = min(JVP_CHUNK, k_low - start)
        tangents = torch.zeros(n, *a.shape, dtype=a.dtype, device=a.device)
        tangents[torch.arange(n), :, torch.arange(start, start + n)] = 1.0
        with quiet_jit():
            out.append(vmap(lambda t: jvp(f, (a,), (t,))[1])(tangents))  # (n, B, K_up)
    return (torch.cat(out) / positions).permute(1, 2, 0)


@dataclasses.dataclass
class GradientOptions:
    mode: str = option("auto", "vjp (one pass per upper neuron), jvp (one per lower channel) or auto (fewer)")
    abs: str = option("after", "|.| after the positional mean (the paper's map gradient) or before it (vjp only)")


class Gradients(Relevance):
    name = "gradients"
    description = "|d upper neuron / d lower channel|, positions averaged (the paper's eq. 1)"
    Options = GradientOptions

    def compute(self, ctx: RelevanceContext, options: GradientOptions) -> dict[str, Tensor]:
        if options.mode not in MODES or options.abs not in ABS:
            raise UsageError(f"relevance 'gradients': mode must be one of {', '.join(MODES)} and abs one of "
                             f"{', '.join(ABS)}, got mode={options.mode!r}, abs={options.abs!r}")
        if options.abs == "before" and options.mode == "jvp":
            raise UsageError("relevance 'gradients': abs=before needs per-position derivatives: use mode=vjp or auto")
        lowers = lower_outputs(ctx)

        def forward_mode(upper: str, lower: str) -> bool:
            k_up, k_low = reduce_upper(lowers[upper], ctx.upper).shape[1], lowers[lower].shape[1]
            return options.mode == "jvp" or (options.mode == "auto" and JVP_ADVANTAGE * k_low <= k_up
                                             and options.abs == "after")

        out = {}
        reverse = [(u, lo) for u, lo in ctx.pairs if not forward_mode(u, lo)]
        if reverse:  # one forward for every reverse-mode pair: each lower checkpoint a leaf
            leaves = {lo: lowers[lo].clone().requires_grad_(True) for _, lo in reverse}
            with torch.enable_grad():
                got = segmented_forward(ctx, leaves, {u for u, _ in reverse})
                for u, lo in reverse:
                    if not got[u].requires_grad:
                        raise UsageError(f"relevance 'gradients': checkpoint {u!r} does not depend differentiably on "
                                         f"{lo!r} (the model's forward runs without autograd, e.g. under no_grad "
                                         f"or inference_mode); use a relevance without gradients: activations, "
                                         f"weights, weight-activations")
                    g = vjp_means(reduce_upper(got[u], ctx.upper), leaves[lo], options.abs == "before")
                    out[f"{u}|{lo}"] = g.abs().detach()
        for u, lo in ctx.pairs:
            if (u, lo) not in reverse:
                def f(a: Tensor, u: str = u, lo: str = lo) -> Tensor:
                    return reduce_upper(segmented_forward(ctx, {lo: a}, {u})[u], ctx.upper)

                out[f"{u}|{lo}"] = jvp_means(f, lowers[lo]).abs().detach()
        return {f"{u}|{lo}": out[f"{u}|{lo}"] for u, lo in ctx.pairs}


class Activations(Relevance):
    name = "activations"
    description = "the lower channel's mean |activation| over positions (the same for every upper neuron)"
    needs_grad = False

    def compute(self, ctx: RelevanceContext, options: Any) -> dict[str, Tensor]:
        outs = lower_outputs(ctx)
        result = {}
        for upper, lower in ctx.pairs:
            act = channel_mean(outs[lower].abs())  # (B, K_low)
            k_up = reduce_upper(outs[upper], ctx.upper).shape[1]
            result[f"{upper}|{lower}"] = act[:, None, :].expand(-1, k_up, -1)
        return result


def connecting_weights(ctx: RelevanceContext, lower: str, upper: str, outputs: dict[str, Tensor]) -> Tensor:
    """(K_up, K_low): |W| averaged over kernel positions of the layer between the checkpoints."""
    w = connecting_layer(ctx, lower, upper, outputs).weight.detach().abs()
    return w.flatten(2).mean(-1) if w.dim() > 2 else w


def connecting_layer(ctx: RelevanceContext, lower: str, upper: str, outputs: dict[str, Tensor]) -> nn.Module:
    """The one weighted layer (conv or linear) that reads the lower checkpoint's output and has as
    many outputs as the upper checkpoint has neurons (UsageError otherwise)."""
    seen: list[tuple[nn.Module, int]] = []
    target = outputs[lower]
    weighted = [m for m in ctx.net.modules() if isinstance(getattr(m, "weight", None), Tensor)
                and m.weight.dim() >= 2]
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0].data_ptr()))
                                         if args and isinstance(args[0], Tensor) else None) for m in weighted]
    lower_ptr: list[int] = []
    hook = ctx.modules[lower].register_forward_hook(lambda _m, _i, o: lower_ptr.append(o.data_ptr()))
    try:
        with torch.no_grad():
            ctx.net(ctx.inputs[:1])
    finally:
        for h in [*hooks, hook]:
            h.remove()
    k_up = reduce_upper(outputs[upper], ctx.upper).shape[1]
    readers = [m for m, ptr in seen if lower_ptr and ptr == lower_ptr[0]]
    fitting = [m for m in readers if m.weight.shape[0] == k_up and m.weight.shape[1] == target.shape[1]]
    if len(fitting) != 1:
        raise UsageError(f"relevance weights: no single conv or linear layer reads checkpoint {lower!r} and gives "
                         f"the {k_up} neurons of {upper!r}; choose checkpoints around one weighted layer")
    return fitting[0]


class Weights(Relevance):
    name = "weights"
    description = "|W| of the weighted layer between the checkpoints, kernel positions averaged (data-independent)"
    needs_grad = False

    def compute(self, ctx: RelevanceContext, options: Any) -> dict[str, Tensor]:
        outs = lower_outputs(ctx)
        b = ctx.inputs.shape[0]
        return {f"{u}|{lo}": connecting_weights(ctx, lo, u, outs).expand(b, -1, -1) for u, lo in ctx.pairs}


class WeightActivations(Relevance):
    name = "weight-activations"
    description = "|W| x the lower channel's mean |activation| (PatternNet-like)"
    needs_grad = False

    def compute(self, ctx: RelevanceContext, options: Any) -> dict[str, Tensor]:
        outs = lower_outputs(ctx)
        return {f"{u}|{lo}": connecting_weights(ctx, lo, u, outs)[None] * channel_mean(outs[lo].abs())[:, None, :]
                for u, lo in ctx.pairs}


class WeightGradients(Relevance):
    name = "weight-gradients"
    description = ("the research code's 'gradients': |d mean(layer output) / d W| of the layer between the "
                   "checkpoints, per image, kernel positions averaged")

    def compute(self, ctx: RelevanceContext, options: Any) -> dict[str, Tensor]:
        from torch.func import functional_call, grad, vmap

        outs = lower_outputs(ctx)
        result = {}
        for u, lo in ctx.pairs:
            layer = connecting_layer(ctx, lo, u, outs)
            params = {k: v.detach() for k, v in layer.named_parameters()}

            def loss(weight: Tensor, x: Tensor, layer: nn.Module = layer, params: dict = params) -> Tensor:
                return functional_call(layer, {**params, "weight": weight}, (x.unsqueeze(0),)).mean()

            with quiet_jit():
                g = vmap(grad(loss), in_dims=(None, 0))(params["weight"], outs[lo])  # (B, K_up, K_low, ...)
            result[f"{u}|{lo}"] = g.abs().flatten(3).mean(-1) if g.dim() > 3 else g.abs()
        return result
