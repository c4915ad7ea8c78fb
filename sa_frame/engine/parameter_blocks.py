"""Parameter blocks of a network and the derivatives influence functions take of them (docs/influence.md).

A block is one module's own parameters (weight + bias), or a named list of modules: the paper's layers. Everything
is a `torch.func` view of the network in eval mode with its other parameters fixed: per-example gradients of the
cross-entropy by `vmap(grad)`, and curvature-vector products on several vectors at once, the Hessian by double
backward (the default: faster on CPUs, benchmarks/influence.py) or jvp-of-grad, or the Gauss-Newton matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from sa_frame.core.errors import UsageError, did_you_mean
from sa_frame.core.influence import Curvature

CURVATURES = ("hessian", "ggn")
HVP_MODES = ("double-backward", "jvp")


@dataclass(frozen=True)
class ParameterBlock:
    """Named parameters of a network taken together; vectors over them are flat, in `params` order."""

    name: str
    params: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def dim(self) -> int:
        return sum(self.sizes)


def parameter_blocks(net: nn.Module, layers: str | Sequence[str] = "weighted") -> list[ParameterBlock]:
    """``weighted``: one block per module that owns trainable parameters, in module order; else those modules."""
    owners = {name: [(f"{name}.{p}" if name else p, t) for p, t in module.named_parameters(recurse=False)
                     if t.requires_grad] for name, module in net.named_modules()}
    weighted = [name for name, params in owners.items() if params]
    names = weighted if layers == "weighted" else [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise UsageError("no layers given; use --layers weighted or module names such as "
                         f"{', '.join(weighted[:3])}")
    blocks = []
    for name in names:
        if name not in owners:
            raise UsageError(f"layer {name!r} is not a module of the network{did_you_mean(name, weighted)}; layers "
                             f"with parameters: {', '.join(weighted[:12])}{' ...' if len(weighted) > 12 else ''}")
        if not owners[name]:
            raise UsageError(f"layer {name!r} ({type(net.get_submodule(name)).__name__}) has no trainable parameters "
                             f"of its own; layers with parameters: {', '.join(weighted[:12])}")
        blocks.append(ParameterBlock(name, tuple(p for p, _ in owners[name]),
                                     tuple(t.numel() for _, t in owners[name])))
    if len(set(names)) != len(names):
        raise UsageError(f"a layer is given twice: {names}")
    return blocks


def union_block(blocks: Sequence[ParameterBlock], name: str = "all") -> ParameterBlock:
    """All blocks' parameters as one block (the full-parameter influence of eq. 5)."""
    return ParameterBlock(name, tuple(p for b in blocks for p in b.params), tuple(s for b in blocks for s in b.sizes))


def block_slices(blocks: Sequence[ParameterBlock]) -> list[slice]:
    """Where each block sits in a vector over `union_block(blocks)`."""
    ends = [0, *torch.tensor([b.dim for b in blocks]).cumsum(0).tolist()]
    return [slice(a, b) for a, b in zip(ends[:-1], ends[1:])]


class NetworkFunctions:
    """The network as functions of a block's flat parameter vector (eval mode, other parameters fixed)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net.eval()
        self.fixed = {name: p.detach() for name, p in net.named_parameters()}
        self.fixed.update(dict(net.named_buffers()))

    def flat(self, block: ParameterBlock) -> Tensor:
        return torch.cat([self.fixed[p].reshape(-1) for p in block.params])

    def logits(self, block: ParameterBlock, flat: Tensor, inputs: Tensor) -> Tensor:
        pieces = flat.split(list(block.sizes))
        values = dict(self.fixed)
        values.update({p: piece.view_as(self.fixed[p]) for p, piece in zip(block.params, pieces)})
        return functional_call(self.net, values, (inputs,))

    def loss(self, block: ParameterBlock, flat: Tensor, inputs: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of a batch (the risk of eq. 1 on it)."""
        return F.cross_entropy(self.logits(block, flat, inputs), labels)

    def per_example_grads(self, block: ParameterBlock, inputs: Tensor, labels: Tensor, chunk: int = 64) -> Tensor:
        """(B, P): the gradient of each example's loss over the block, `chunk` examples per vmap call."""
        flat = self.flat(block)

        def one(x: Tensor, y: Tensor) -> Tensor:
            return grad(lambda w: self.loss(block, w, x[None], y[None]))(flat)

        return torch.cat([vmap(one)(x, y) for x, y in zip(inputs.split(chunk), labels.split(chunk))]) \
            if len(inputs) else flat.new_zeros(0, block.dim)


#: vectors per batched curvature product (the memory bound above; throughput barely grows past it, T9)
VECTORS_PER_PRODUCT = 16


class BlockCurvature(Curvature):
    """H V (or G V, the Gauss-Newton matrix) of one block over Hessian samples held as batches, plus `l2` V:
    the mean loss over all samples (each batch weighted by its size), as in eq. 4 with Koh & Liang's L2 term."""

    def __init__(self, functions: NetworkFunctions, block: ParameterBlock, batches: Sequence[tuple[Tensor, Tensor]],
                 l2: float = 0.0, kind: str = "hessian", hvp: str = "double-backward") -> None:
        if kind not in CURVATURES:
            raise UsageError(f"curvature must be one of {', '.join(CURVATURES)}, got {kind!r}")
        if hvp not in HVP_MODES:
            raise UsageError(f"hvp mode must be one of {', '.join(HVP_MODES)}, got {hvp!r}")
        if not batches:
            raise UsageError("no Hessian samples: the training selection is empty")
        self.functions, self.block, self.batches = functions, block, list(batches)
        self.l2, self.kind, self.hvp = float(l2), kind, hvp
        self.dim, self.n_batches = block.dim, len(self.batches)
        self.n_samples = sum(len(y) for _, y in self.batches)
        self.flat = functions.flat(block)

    def matvec(self, vectors: Tensor) -> Tensor:
        vectors = vectors.to(self.flat.dtype)
        out = self.l2 * vectors
        for inputs, labels in self.batches:
            out = out + (len(labels) / self.n_samples) * self._product(inputs, labels, vectors)
        return out

    def batch_matvec(self, vectors: Tensor, step: int) -> Tensor:
        inputs, labels = self.batches[step % self.n_batches]
        vectors = vectors.to(self.flat.dtype)
        return self.l2 * vectors + self._product(inputs, labels, vectors)

    def _product(self, inputs: Tensor, labels: Tensor, vectors: Tensor) -> Tensor:
        """The batch's product with `VECTORS_PER_PRODUCT` vectors at a time: a batched backward holds one copy of
        the graph's activations per vector (64 vectors through demo-cnn's first layer on 40 images: 10 GB)."""
        return torch.cat([self._vectors_product(inputs, labels, v) for v in vectors.split(VECTORS_PER_PRODUCT)]) \
            if len(vectors) else vectors

    def _vectors_product(self, inputs: Tensor, labels: Tensor, vectors: Tensor) -> Tensor:
        if self.kind == "ggn":
            return self._ggn(inputs, labels, vectors)
        if self.hvp == "jvp":
            gradient = grad(lambda w: self.functions.loss(self.block, w, inputs, labels))
            return vmap(lambda v: jvp(gradient, (self.flat,), (v,))[1])(vectors)
        with torch.enable_grad():
            w = self.flat.clone().requires_grad_(True)
            g = torch.autograd.grad(self.functions.loss(self.block, w, inputs, labels), w, create_graph=True)[0]
            return torch.autograd.grad(g, w, grad_outputs=vectors, is_grads_batched=True)[0]

    def _ggn(self, inputs: Tensor, labels: Tensor, vectors: Tensor) -> Tensor:
        """Jᵀ H_out J V with H_out = (diag p - p pᵀ) / B, the cross-entropy's Hessian in the logits."""

        def logits(w: Tensor) -> Tensor:
            return self.functions.logits(self.block, w, inputs)

        out, pullback = vjp(logits, self.flat)
        p = out.softmax(-1).detach()
        jv = vmap(lambda v: jvp(logits, (self.flat,), (v,))[1])(vectors)  # (m, B, C)
        hu = (p * jv - p * (p * jv).sum(-1, keepdim=True)) / len(labels)
        return vmap(lambda u: pullback(u)[0])(hu)


def hessian_batches(inputs: Tensor, labels: Tensor, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """The Hessian samples cut into batches of `batch_size`."""
    n = max(1, math.ceil(len(labels) / max(1, batch_size)))
    return list(zip(inputs.tensor_split(n), labels.tensor_split(n)))
