"""`sa-frame influence`: which training images drive each test prediction, layer by layer (docs/influence.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def influence(
    model: Annotated[str, typer.Option("--model", help="demo-cnn, resnet18, timm/..., efficientnet-lite0")] = "demo-cnn",
    weights: Annotated[str | None, typer.Option("--weights", help="imagenet, random or a state-dict file")] = None,
    data: Annotated[str, typer.Option("--data", help="'demo' or an image folder")] = "demo",
    train_partition: Annotated[str, typer.Option("--train-partition", help="partition of the training images")]
    = "train",
    train_per_class: Annotated[int | None, typer.Option("--train-per-class", help="the first K training images "
                                                        "of every class (default: all)")] = None,
    train_images: Annotated[int | None, typer.Option("--train-images", help="N training images, round-robin over "
                                                     "the classes")] = None,
    test_partition: Annotated[str | None, typer.Option("--test-partition", help="partition of the test images "
                                                       "(default: the other one)")] = None,
    test_per_class: Annotated[int | None, typer.Option("--test-per-class", help="the first K test images of every "
                                                       "class (default 5)")] = None,
    test_images: Annotated[int | None, typer.Option("--test-images", help="N test images, round-robin")] = None,
    disturbances: Annotated[str, typer.Option(
        "--disturbances", help="test conditions: original, white_background, texture_swap, style, or an "
        "augmentation at fixed values (hue:factor=0.45), comma-separated")] = "original",
    test_label: Annotated[str, typer.Option("--test-label", help="test loss at the true class (default) or the "
                                            "predicted one")] = "true",
    layers: Annotated[str, typer.Option("--layers", help="weighted (every layer with parameters) or module names, "
                                        "comma-separated")] = "weighted",
    layer_mode: Annotated[str, typer.Option("--layer-mode", help="block: each layer's own Hessian block (the "
                                            "paper's; the layers do not sum to the full influence) or masked (an "
                                            "exact decomposition of it)")] = "block",
    solver: Annotated[str, typer.Option("--solver", help="auto (exact up to 2,000 parameters, cg above), exact, cg, "
                                        "lissa, arnoldi, with [:key=value,...] (sa-frame plugins --all --kind ihvp)")]
    = "auto",
    damping: Annotated[str, typer.Option("--damping", help="λ of H + λI: a number >= 0, or auto (1e-3 above the "
                                         "most negative eigenvalue; random or unconverged weights make H indefinite)")]
    = "auto",
    curvature: Annotated[str, typer.Option("--curvature", help="hessian (default) or ggn (Gauss-Newton, PSD)")]
    = "hessian",
    hvp: Annotated[str, typer.Option("--hvp", help="double-backward (default) or jvp")] = "double-backward",
    l2: Annotated[float, typer.Option("--l2", help="L2 term of the training objective (Koh & Liang's)")] = 0.0,
    hessian_samples: Annotated[int | None, typer.Option("--hessian-samples", help="training images the Hessian "
                                                        "is taken over, spread evenly; 0 = all")] = 200,
    precision: Annotated[str, typer.Option("--precision", help="float64 (default: residuals the solvers can "
                                           "reach) or float32 (about 2x faster; loosen the solver's tol)")]
    = "float64",
    top_k: Annotated[int, typer.Option("--top-k", help="proponents and opponents kept per test image and layer")]
    = 10,
    keep_scores: Annotated[bool, typer.Option("--keep-scores", help="also store the full (layers+1, tests, train) "
                                              "score matrix")] = False,
    self_influence: Annotated[bool, typer.Option("--self-influence", help="also I(j, j) of every training "
                                                 "image (one solve per training batch)")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per gradient batch")] = 64,
    save_every: Annotated[int, typer.Option("--save-every", help="save the state every K training batches")] = 10,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N")] = "cpu",
    out: Annotated[Path, typer.Option("--out", help="results file (HDF5)")] = Path("influence.h5"),
    resume: Annotated[bool, typer.Option("--resume", help="continue an unfinished --out with the configuration "
                                         "stored in it (--device may differ)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar or tables")] = False,
) -> None:
    """Layer-wise influence functions: which training images drive each test prediction, per layer."""
    import dataclasses

    import yaml
    from rich.console import Console

    from sa_frame import InfluenceConfig, ProgressBars, ResultsFile, UsageError, execute_influence

    try:
        damping_value: float | str = damping if damping == "auto" else float(damping)
    except ValueError:
        raise UsageError(f"--damping must be a number >= 0 or auto, got {damping!r}") from None
    if resume:
        stored = yaml.safe_load(ResultsFile(out).attrs().get("config", "{}")) or {}
        known = {f.name for f in dataclasses.fields(InfluenceConfig)}
        config = InfluenceConfig(**{k: v for k, v in stored.items() if k in known})
        config.device, config.out = device, str(out)
    else:
        config = InfluenceConfig(
            model=model, weights=weights, data=data, train_partition=train_partition,
            train_per_class=train_per_class, train_images=train_images, test_partition=test_partition,
            test_per_class=test_per_class, test_images=test_images, disturbances=[disturbances],
            test_label=test_label, layers=layers if layers == "weighted" else [x.strip() for x in layers.split(",")],
            layer_mode=layer_mode, solver=solver, damping=damping_value, curvature=curvature, hvp=hvp, l2=l2,
            hessian_samples=hessian_samples or None, precision=precision, top_k=top_k, keep_scores=keep_scores,
            self_influence=self_influence,
            batch_size=batch_size, save_every=save_every, device=device, out=str(out))
    quiet = quiet or int(os.environ.get("RANK", "0")) != 0
    console = Console(stderr=True, quiet=quiet)
    notes = Console(stderr=True, soft_wrap=True, quiet=quiet)
    with ProgressBars(console, quiet, rate=False) as bars:
        tree = execute_influence(config, lambda total, done: bars.task("training batches", total, done),
                                 notify=lambda note: notes.print(f"[dim]{note}[/]"), resume=resume)
    if tree is None or quiet:
        return
    from sa_frame import print_influence_summary

    print_influence_summary(Console(), ResultsFile(out))
