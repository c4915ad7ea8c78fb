"""`sbsa`: the Sobol estimator as Sample-Based Semantic Analysis uses it — first and total
order only, any n (the paper's N = 50) — for region runs (``--regions``). It delegates to
the registered ``sobol`` estimator, so the two agree to the last bit on the same rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import torch

from sa_frame import Accumulator, Design, Estimator, Problem, lookup

#: sobol's options whose defaults differ for SBSA
SBSA_DEFAULTS = {"second_order": False, "allow_any_n": True}


def with_defaults(options_type: type, defaults: Mapping[str, Any]) -> type:
    """A copy of an Options dataclass with other defaults (help texts kept)."""
    fields = []
    for f in dataclasses.fields(options_type):
        default = defaults.get(f.name, f.default)
        fields.append((f.name, f.type, dataclasses.field(default=default, metadata=f.metadata)
                       if f.default is not dataclasses.MISSING or f.name in defaults else f))
    return dataclasses.make_dataclass("SbsaOptions", fields)


class SbsaEstimator(Estimator):
    name = "sbsa"
    description = "region Sobol indices S1, ST (no S2, any n): Sample-Based Semantic Analysis; needs --regions"
    regions = "required"

    @cached_property
    def sobol(self) -> Estimator:
        return lookup("estimator", "sobol")

    @cached_property
    def Options(self) -> type:  # type: ignore[override]
        return with_defaults(self.sobol.Options, SBSA_DEFAULTS)

    # everything else is sobol's
    @property
    def outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(o for o in self.sobol.outputs if o not in ("S2", "S2_conf"))

    summary = ("S1", "ST")
    fractions = frozenset({"S1", "ST"})
    analysis_maps = {"ST": ("ST", "clip"), "S1": ("S1", "clip")}
    #: the paper's N = 50; quick; the demo's
    sizes = {"paper": {"n": 50}, "quick": {"n": 16}, "demo": {"n": 64}}
    schemes = (1,)
    permute = False

    @property
    def ungrouped(self) -> frozenset[str]:  # type: ignore[override]
        return self.sobol.ungrouped

    def _sobol_options(self, options: Any) -> Any:
        return self.sobol.options(dataclasses.asdict(options))

    def make_design(self, problem: Problem, size: int, seed: int, options: Any) -> Design:
        return self.sobol.make_design(problem, size, seed, self._sobol_options(options))

    def accumulator(self, problem: Problem, design: Design, shapes: Mapping[str, tuple[int, ...]],
                    device: str | torch.device = "cpu") -> Accumulator:
        return self.sobol.accumulator(problem, design, shapes, device)

    def intervals(self, design: Design) -> dict[str, Any]:
        return self.sobol.intervals(design)

    def split_error(self, design: Design) -> str | None:
        return self.sobol.split_error(design)
