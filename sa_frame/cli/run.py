"""`sa-frame run`: a sensitivity analysis of a network (heavy imports inside the function)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer


def run(
    model: Annotated[str | None, typer.Option("--model", help="resnet18, timm/convnext_tiny, demo-cnn, ...")] = None,
    aug: Annotated[str | None, typer.Option("--aug", help="a1, a2, or comma-separated augmentation names")] = None,
    estimator: Annotated[str | None, typer.Option("--estimator", help="sobol, shapley, variance, contrast")] = None,
    data: Annotated[str | None, typer.Option("--data", help="'demo' or an image folder (ImageFolder layout)")]
    = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="imagenet, random, a state-dict file, or a torchvision weight name (IMAGENET1K_V2)")]
    = None,
    n: Annotated[int | None, typer.Option("--n", "--size", help="design size: Sobol base points, Shapley "
                                          "permutations, rows, outer samples (write --size under torchrun, "
                                          "which takes --n as its own option)")] = None,
    checkpoints: Annotated[str | None, typer.Option("--checkpoints", help="comma-separated module names")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="rows per forward (rounded to the "
                                                   "design's unit)")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="results file (HDF5)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML run configuration; flags override it")]
    = None,
    option: Annotated[list[str] | None, typer.Option("-o", "--option", help="estimator option key=value "
                                                      "(repeatable); --options lists them")] = None,
    list_options: Annotated[bool, typer.Option("--options", help="list the estimator's options and sizes, and "
                                               "exit")] = False,
    n_outer: Annotated[int | None, typer.Option("--n-outer", help="shapley: outer samples (= -o n_outer=K)")]
    = None,
    n_inner: Annotated[int | None, typer.Option("--n-inner", help="shapley/contrast: inner samples (= -o "
                                                                     "n_inner=K)")] = None,
    players: Annotated[str | None, typer.Option("--players", help="shapley: groups or variables (= -o "
                                                                   "players=P)")] = None,
    second_order: Annotated[bool | None, typer.Option("--second-order/--no-second-order",
                                                      help="sobol: also S2 (= -o second_order=B)")] = None,
    scheme: Annotated[int | None, typer.Option("--scheme", help="1 or 2 (default: 1 for sobol/variance, 2 for "
                                               "shapley/contrast)")] = None,
    classifier_output: Annotated[str | None, typer.Option("--classifier-output", help="softmax or logits")] = None,
    postprocess: Annotated[str | None, typer.Option("--postprocess", help="none or minmax")] = None,
    class_map: Annotated[Path | None, typer.Option("--class-map", help="YAML/JSON: data class -> network output "
                                                   "index or class id (for a subset of the network's classes)")]
    = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="save state every K blocks")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="the research code's test sizes")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue an unfinished results file")] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing results file")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar or tables (results and figure still written)")] = False,
    regions: Annotated[str | None, typer.Option(
        "--regions", help="a region run: segmenter[:key=value,...], e.g. grid:cells=4, slic:n_segments=16, "
        "demo-foreground (sa-frame plugins --kind segmenter)")] = None,
    perturbation: Annotated[str | None, typer.Option(
        "--perturbation", help="region run: how region values change the image, e.g. scale:low=0,high=2 or "
        "inpaint:baseline=blur (default scale)")] = None,
    images: Annotated[int | None, typer.Option("--images", help="region run: analyse N images, round-robin over "
                                               "the classes")] = None,
    per_class: Annotated[int | None, typer.Option("--per-class", help="region run: the first K images of every "
                                                  "class (default 5)")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="region run: the images' partition "
                                                  "(default valid)")] = None,
    score: Annotated[str | None, typer.Option("--score", help="region run: logit (default) or softmax")] = None,
    target: Annotated[str | None, typer.Option("--target", help="region run: the score of the true class "
                                               "(default), the predicted class, or all classes")] = None,
    design: Annotated[str | None, typer.Option("--design", help="region run: one design shared by all images "
                                               "(shared, default) or one per image (per-image)")] = None,
    relevance: Annotated[str | None, typer.Option(
        "--relevance", help="step-wise run (estimator ssa): gradients (default), activations, weights, "
        "weight-activations, weight-gradients, with [:key=value,...]")] = None,
    compression: Annotated[str | None, typer.Option("--compression", help="gzip (default: any HDF5 reader opens "
                                                    "the file) or lzf (faster, h5py only)")] = None,
    keep_state: Annotated[bool, typer.Option("--keep-state", help="keep the float64 accumulator state in the "
                                             "complete results file")] = False,
) -> None:
    """Run a sensitivity analysis; with no options, the embedded demo (about a minute on 2 CPU cores)."""
    from rich.console import Console

    from sa_frame.cli.console import ProgressBars, print_options, print_summary, rate_text
    from sa_frame.core.options import parse_pairs
    from sa_frame.engine.config import build_config, load_config_file
    from sa_frame.engine.run import execute

    flags: dict[str, Any] = dict(model=model, aug=aug, estimator=estimator, data=data, weights=weights, n=n,
                                 checkpoints=checkpoints, device=device, batch_size=batch_size, seed=seed,
                                 out=str(out) if out else None, n_outer=n_outer, n_inner=n_inner,
                                 players=players, second_order=second_order, scheme=scheme,
                                 classifier_output=classifier_output, postprocess=postprocess,
                                 class_map=str(class_map) if class_map else None,
                                 save_every=save_every, quick=quick or None, resume=resume or None,
                                 force=force or None, quiet=quiet or None, keep_state=keep_state or None,
                                 regions=regions, perturbation=perturbation, images=images, per_class=per_class,
                                 partition=partition, score=score, target=target, design=design, relevance=relevance,
                                 compression=compression)
    file_values = load_config_file(config) if config else {}
    if resume and config is None and out is not None:  # --resume alone: the configuration stored in the file
        from sa_frame.engine.resume import stored_run_values

        file_values = stored_run_values(out)
    if list_options:
        from sa_frame.core.registry import lookup

        print_options(Console(), lookup("estimator", estimator or file_values.get("estimator") or "sobol"))
        return
    flags["options"] = parse_pairs(option or [], "sa-frame run") if option else None
    cfg = build_config(file_values, flags)
    reporter = int(os.environ.get("RANK", "0")) == 0  # torchrun: rank 0 reports and draws for all
    if not reporter:
        cfg.quiet = True
    console = Console(stderr=True, quiet=cfg.quiet)
    with ProgressBars(console, cfg.quiet) as bars:
        notes = Console(stderr=True, soft_wrap=True)
        run_plan, maps, elapsed = execute(cfg, None if cfg.quiet else
                                          lambda total, done: bars.task("sensitivity rows", total, done),
                                          notify=lambda note: notes.print(f"[yellow]note:[/] {note}"))
    if maps is None:
        return
    import numpy as np

    from sa_frame.engine.run import nonfinite_summary

    bad = nonfinite_summary(maps)
    if bad:
        counts = "; ".join(f"{c}: {a:,} activations, {v:,} values" for c, (a, v) in bad.items())
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]warning:[/] non-finite outputs were counted and left out of the statistics: {counts} "
            f"(maps 'nonfinite' per activation)")
    undefined = {c: (int(np.count_nonzero(m["low_variance"])), m["low_variance"].size) for c, m in maps.items()
                 if "low_variance" in m and np.any(m["low_variance"])}
    if undefined and not cfg.quiet:
        counts = ", ".join(f"{c} {k:,} of {size:,}" for c, (k, size) in undefined.items())
        Console(stderr=True, soft_wrap=True).print(
            f"note: indices left undefined (NaN; map 'low_variance') for activations whose variance is noise next "
            f"to their checkpoint's: {counts} (docs/estimators.md: undefined indices)", highlight=False)
    few = run_plan.estimator.intervals(run_plan.design).get("warning")
    if few:
        Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {few} (raise --n, or see docs/estimators.md)")
    if not reporter:
        return
    from sa_frame.results.regions_report import print_region_summary, region_figure
    from sa_frame.results.report import summary_figure
    from sa_frame.results.store import ResultsFile

    results = ResultsFile(cfg.out)
    regions = run_plan.regions is not None
    figure = region_figure(results, Path(cfg.out).with_suffix(".png")) if regions else \
        summary_figure(results, run_plan.estimator, Path(cfg.out).with_suffix(".png"))
    if cfg.quiet:
        return
    out_console = Console()
    if regions:
        print_region_summary(out_console, results)
    else:
        print_summary(out_console, results, run_plan.estimator)
    images = run_plan.regions.n_images if run_plan.regions is not None else 1
    rows = f"{run_plan.design.n_rows:,}[/] rows" + (f" x {images} images" if regions else "")
    unit = "forwards" if regions else "rows"
    out_console.print(f"[bold]{rows} in {elapsed:.1f} s "
                      f"({rate_text(run_plan.design.n_rows * images / max(elapsed, 1e-9), unit)})"
                      f" -> {cfg.out}, {figure}")
