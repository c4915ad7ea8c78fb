"""The Python form of `sa-frame run`: `sa_frame.run(model=..., ...)` on a registered model name or
any `nn.Module`, and `sa_frame.open_results(path)`. The same configuration checks, plan, runner
and results file as the command; a run's numbers equal the command's for the same settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from sa_frame.core.errors import UsageError, did_you_mean
from sa_frame.core.model import IMAGENET_MEAN, IMAGENET_STD
from sa_frame.core.registry import lookup
from sa_frame.engine.config import FILE_KEYS, OPTION_ALIASES, build_config
from sa_frame.engine.module_model import register_module
from sa_frame.engine.results_view import Results
from sa_frame.engine.run import execute

#: RunConfig fields that sa_frame.run takes as its own arguments or sets itself
_OWN = ("model", "aug", "estimator", "data", "checkpoints", "out", "quiet", "options")


def run(model: str | nn.Module = "demo-cnn", data: str = "demo", aug: str | Sequence[str] = "a1",
        estimator: str = "sobol", checkpoints: Sequence[str] | None = None, *, out: str | Path = "results.h5",
        progress: bool | Callable[[int, int], Callable[[int], None]] = False, name: str | None = None,
        classifier: str | None = None, input_size: tuple[int, int] = (224, 224),
        mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
        class_names: Sequence[str] | None = None, **settings: Any) -> Results:
    """Run a sensitivity analysis and return its Results (the file at `out` holds them too).

    `model` is a registered name (``resnet18``, ``demo-cnn``) or an `nn.Module` taking (B, 3, H, W)
    images normalised with `mean`/`std` at `input_size`; its default checkpoints are its
    top-level children and its classifier the last of them when it is `nn.Linear`. `settings` are
    `sa-frame run`'s options by their Python names (``n=512``, ``seed=1``, ``batch_size=32``,
    ``force=True``, ``resume=True``, ``weights=...``) and the estimator's options
    (``second_order=False``, ``n_outer=4``; `sa-frame run --estimator E --options` lists them).
    `progress`: True for progress bars on stderr, or a factory ``(total_rows, done) -> advance(n)``.
    """
    if isinstance(model, nn.Module):
        model = register_module(model, name, checkpoints, classifier, input_size, mean, std, class_names).name
    elif not isinstance(model, str):
        raise UsageError(f"model must be a registered model name or a torch.nn.Module, got {type(model).__name__}")
    flags: dict[str, Any] = {"model": model, "data": str(data), "estimator": estimator, "out": str(out),
                             "aug": aug if isinstance(aug, str) else ",".join(aug),
                             "checkpoints": list(checkpoints) if checkpoints else None, "quiet": not progress}
    options: dict[str, Any] = {}
    option_names = [f.name for f in dataclasses.fields(lookup("estimator", estimator).Options)]
    for key, value in settings.items():
        if key in _OWN:
            raise UsageError(f"sa_frame.run: give {key} as its own argument")
        if key in FILE_KEYS or key in ("resume", "force"):
            flags[key] = value
        elif key in option_names or key in OPTION_ALIASES:
            options[key] = value
        else:
            allowed = sorted({*FILE_KEYS, "resume", "force"} - set(_OWN))
            raise UsageError(f"sa_frame.run: unknown setting {key!r}{did_you_mean(key, [*allowed, *option_names])}; "
                             f"run settings: {', '.join(allowed)}; options of estimator {estimator!r}: "
                             f"{', '.join(option_names) or '-'}")
    for alias in OPTION_ALIASES:  # n_outer, players, ...: the same either way
        if alias in options:
            flags[alias] = options.pop(alias)
    flags["options"] = options
    config = build_config({}, flags, source="sa_frame.run")
    with _progress(progress) as factory:
        execute(config, factory, notify=lambda note: print(f"note: {note}", file=sys.stderr))
    return Results(config.out)


@contextlib.contextmanager
def _progress(progress: bool | Callable[[int, int], Callable[[int], None]]) \
        -> Iterator[Callable[[int, int], Callable[[int], None]] | None]:
    """The progress the caller asked for: none, theirs, or the command's bars on stderr (plain
    lines when stderr is not a terminal)."""
    if callable(progress) or not progress:
        yield progress or None
        return
    from rich.console import Console

    from sa_frame.cli.console import ProgressBars  # the one look of progress: the command's

    with ProgressBars(Console(stderr=True), quiet=False) as bars:
        yield lambda total, done: bars.task("sensitivity rows", total, done)


def open_results(path: str | Path) -> Results:
    """A complete results file of `sa-frame run` or `sa_frame.run` (UsageError if missing or unfinished)."""
    if not Path(path).is_file():
        raise UsageError(f"results file not found: {path}")
    return Results(str(path))
