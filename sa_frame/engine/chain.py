"""A chain of augmentations applied in a per-image order, and its SA variables.

Scheme 1 (Sobol): parameterised augmentations are always applied;
parameter-free ones carry a switch ("<aug>.on", applied when on). Scheme 2 (Shapley,
): every augmentation is a spike-and-slab block — a switch plus its parameters,
which sit at their identity values when it is off, and an augmentation that is off is
skipped. A permutation variable (Lehmer code) gives each image its order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from sa_frame.core.augmentation import Augmentation
from sa_frame.core.errors import UsageError
from sa_frame.core.variables import Block
from sa_frame.engine.laws import SpikeAndSlab, Switch
from sa_frame.engine.order import Permutation

SCHEMES = (1, 2)
PERMUTATION = "permutation"


class AugmentationChain:
    """Augmentations applied together, each image in its own order."""

    def __init__(self, augmentations: Sequence[Augmentation], scheme: int = 1, p_on: float = 0.5,
                 permute: bool = True) -> None:
        if scheme not in SCHEMES:
            raise UsageError(f"augmentation scheme must be 1 (always applied / switched if parameter-free) "
                             f"or 2 (every augmentation switched), got {scheme!r}")
        if not augmentations:
            raise UsageError("an augmentation chain needs at least one augmentation")
        names = [a.name for a in augmentations]
        if len(set(names)) != len(names):
            raise UsageError(f"an augmentation appears twice in the chain: {names}")
        masked = [a.name for a in augmentations if a.needs_masks]
        if masked:
            raise UsageError(f"augmentation {masked[0]!r} needs object masks, which random chains do not pass; use it "
                             f"as a fixed disturbance of an influence run (sa-frame influence --disturbances)")
        self.augmentations = list(augmentations)
        self.scheme, self.p_on = scheme, float(p_on)
        self.permutation = Permutation(len(self.augmentations)) if permute and len(self.augmentations) > 1 else None

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.augmentations]

    def switched(self, aug: Augmentation) -> bool:
        return self.scheme == 2 or not aug.params

    def variables(self) -> tuple[dict[str, Block], dict[str, list[str]]]:
        """SA variables (column name or block key -> block) and groups (one per augmentation)."""
        blocks: dict[str, Block] = {}
        groups: dict[str, list[str]] = {}
        for aug in self.augmentations:
            if self.scheme == 2 and aug.params:
                block = SpikeAndSlab(aug.params, aug.identity, p=self.p_on)
                blocks[aug.name] = block
                groups[aug.name] = block.columns(aug.name)
                continue
            cols = []
            if self.switched(aug):
                blocks[f"{aug.name}.on"] = Switch(self.p_on)
                cols.append(f"{aug.name}.on")
            for pname, variable in aug.params.items():
                blocks[f"{aug.name}.{pname}"] = variable
                cols.append(f"{aug.name}.{pname}")
            groups[aug.name] = cols
        if self.permutation is not None:
            blocks[PERMUTATION] = self.permutation
            groups[PERMUTATION] = [PERMUTATION]
        return blocks, groups

    def orders(self, values: Mapping[str, Tensor], batch: int, device: torch.device) -> Tensor:
        """(B, n) execution order of augmentation indices per image."""
        if self.permutation is None or PERMUTATION not in values:
            return torch.arange(len(self.augmentations), device=device).expand(batch, -1)
        return self.permutation.decode(values[PERMUTATION].to(device))

    def apply(self, images: Tensor, values: Mapping[str, Tensor]) -> Tensor:
        """Augment a batch; `values` maps the chain's column names to (B,) tensors.

        A loop over (position, augmentation) pairs — never over images: at each position,
        every augmentation is applied once to the images that run it there.
        """
        batch, device = images.shape[0], images.device
        order = self.orders(values, batch, device)
        active = []
        for aug in self.augmentations:
            on = values.get(f"{aug.name}.on") if self.switched(aug) else None
            active.append(torch.ones(batch, dtype=torch.bool, device=device) if on is None
                          else on.to(device) == 1)
        out = images.clone()
        for position in range(order.shape[1]):
            for index, aug in enumerate(self.augmentations):
                chosen = ((order[:, position] == index) & active[index]).nonzero().squeeze(1)
                if chosen.numel() == 0:
                    continue
                params = {p: values[f"{aug.name}.{p}"].to(device)[chosen] for p in aug.params}
                out.index_copy_(0, chosen, aug.apply(out.index_select(0, chosen), params))
        return out


def resolve_augmentations(spec: str | Sequence[str]) -> list[Augmentation]:
    """Augmentations from a spec: set names (``a1``) and/or augmentation names, comma-separated."""
    from sa_frame.core.registry import registered

    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    sets, augs = registered("augmentation_set"), registered("augmentation")
    names: list[str] = []
    for item in filter(None, items):
        if item in sets:
            names.extend(sets[item])
        elif item in augs:
            names.append(item)
        else:
            from sa_frame.core.errors import unknown_name

            raise unknown_name("augmentation or set", item, [*sets, *augs])
    if not names:
        raise UsageError("no augmentation given; use a set (a1, a2) or comma-separated names")
    missing = [n for n in names if n not in augs]
    if missing:
        raise UsageError(f"augmentation set refers to unregistered augmentations: {missing}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        given = spec if isinstance(spec, str) else ",".join(spec)
        raise UsageError(f"augmentation {twice[0]!r} is given twice in --aug {given!r} (sets and names must not "
                         f"overlap)")
    return [augs[n] for n in names]
