"""The kernel's main commands: `run`, `show`, `plot` (heavy imports inside the functions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from sa_frame.core.errors import UsageError


def run(
    model: Annotated[str | None, typer.Option("--model", help="resnet18, timm/convnext_tiny, demo-cnn, ...")] = None,
    aug: Annotated[str | None, typer.Option("--aug", help="a1, a2, or comma-separated augmentation names")] = None,
    estimator: Annotated[str | None, typer.Option("--estimator", help="sobol, shapley, variance, contrast")] = None,
    data: Annotated[str | None, typer.Option("--data", help="'demo' or an image folder (ImageFolder layout)")]
    = None,
    weights: Annotated[str | None, typer.Option("--weights", help="imagenet, random, or a state-dict file")]
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
    n_outer: Annotated[int | None, typer.Option("--n-outer", help="shapley: outer samples")] = None,
    n_inner: Annotated[int | None, typer.Option("--n-inner", help="shapley/contrast: inner samples")] = None,
    players: Annotated[str | None, typer.Option("--players", help="shapley: groups or variables")] = None,
    second_order: Annotated[bool | None, typer.Option("--second-order/--no-second-order",
                                                      help="sobol: also S2")] = None,
    scheme: Annotated[int | None, typer.Option("--scheme", help="1 or 2 (default: 1 for sobol/variance, 2 for "
                                               "shapley/contrast)")] = None,
    classifier_output: Annotated[str | None, typer.Option("--classifier-output", help="softmax or logits")] = None,
    postprocess: Annotated[str | None, typer.Option("--postprocess", help="none or minmax")] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="save state every K blocks")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="the research code's test sizes")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue an unfinished results file")] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing results file")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar or tables (results and figure still written)")] = False,
    keep_state: Annotated[bool, typer.Option("--keep-state", help="keep the float64 accumulator state in the "
                                             "complete results file")] = False,
) -> None:
    """Run a sensitivity analysis; with no options, the embedded demo (about a minute on 2 CPU cores)."""
    from rich.console import Console

    from sa_frame.core.config import build_config, load_config_file
    from sa_frame.core.pipeline import execute

    flags: dict[str, Any] = dict(model=model, aug=aug, estimator=estimator, data=data, weights=weights, n=n,
                                 checkpoints=checkpoints, device=device, batch_size=batch_size, seed=seed,
                                 out=str(out) if out else None, n_outer=n_outer, n_inner=n_inner,
                                 players=players, second_order=second_order, scheme=scheme,
                                 classifier_output=classifier_output, postprocess=postprocess,
                                 save_every=save_every, quick=quick or None, resume=resume or None,
                                 force=force or None, quiet=quiet or None, keep_state=keep_state or None)
    file_values = load_config_file(config) if config else {}
    cfg = build_config(file_values, flags)
    reporter = int(os.environ.get("RANK", "0")) == 0  # torchrun: rank 0 reports and draws for all
    if not reporter:
        cfg.quiet = True
    console = Console(stderr=True, quiet=cfg.quiet)
    with _ProgressBars(console, cfg.quiet) as bars:
        run_plan, maps, elapsed = execute(cfg, None if cfg.quiet else
                                          lambda total, done: bars.task("sensitivity rows", total, done))
    if maps is None:
        return
    from sa_frame.core.pipeline import nonfinite_summary

    bad = nonfinite_summary(maps)
    if bad:
        counts = "; ".join(f"{c}: {a:,} activations, {v:,} values" for c, (a, v) in bad.items())
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]warning:[/] non-finite outputs were counted and left out of the statistics: {counts} "
            f"(maps 'nonfinite' per activation)")
    if not reporter:
        return
    from sa_frame.core.report import summary_figure
    from sa_frame.core.store import ResultsFile

    results = ResultsFile(cfg.out)
    figure = summary_figure(results, run_plan.estimator.summary, Path(cfg.out).with_suffix(".png"))
    if cfg.quiet:
        return
    out_console = Console()
    _print_summary(out_console, results, run_plan.estimator.summary)
    out_console.print(f"[bold]{run_plan.design.n_rows:,}[/] rows in {elapsed:.1f} s "
                      f"({run_plan.design.n_rows / max(elapsed, 1e-9):,.0f} rows/s) -> {cfg.out}, {figure}")


def TransferSpeedlessRate() -> Any:  # noqa: N802 - a rich column factory
    """A column showing rows per second (rich's own speed columns print bytes)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:,.0f} rows/s" if task.speed else "- rows/s")

    return RowsPerSecond()


class _ProgressBars:
    """Rich progress bars (with a rate column and ETA), one per long step; nothing when quiet.

    `bars.task(description, total, completed)` adds a bar and returns its advance(n) function.
    """

    def __init__(self, console: Any, quiet: bool, rate: bool = True) -> None:
        self.console, self.quiet, self.rate, self.bar = console, quiet, rate, None

    def __enter__(self) -> _ProgressBars:
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       *([TransferSpeedlessRate()] if self.rate else []), TimeRemainingColumn()]
            self.bar = Progress(*columns, console=self.console, transient=False)
            self.bar.start()
        return self

    def task(self, description: str, total: int, completed: int = 0) -> Any:
        if self.bar is None:
            return lambda _n: None
        bar = self.bar
        task = bar.add_task(description, total=total, completed=completed)
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_summary(console: Any, results: Any, keys: tuple[str, ...]) -> None:
    from rich.table import Table

    from sa_frame.core.report import FRACTION_MAPS, summary_rows

    for key in keys:
        labels, checkpoints, table = summary_rows(results, key)
        clipped = " clipped to [0, 1]" if key in FRACTION_MAPS else ""
        view = Table(title=f"mean {key}{clipped} per activation (rows: variables, columns: checkpoints)")
        view.add_column("variable", no_wrap=True, min_width=max(len(label) for label in labels))
        for c in checkpoints:
            view.add_column(c, justify="right", overflow="fold")
        for label, row in zip(labels, table):
            view.add_row(label, *(f"{v:.3f}" for v in row))
        console.print(view)


def show(results_path: Annotated[Path, typer.Argument(help="a results file")],
         top: Annotated[int, typer.Option("--top", help="most sensitive units listed per variable")] = 3) -> None:
    """Describe a results file: run, variables, checkpoints, mean indices, most sensitive units."""
    from rich.console import Console
    from rich.table import Table

    from sa_frame.core.plugins import lookup
    from sa_frame.core.report import top_units
    from sa_frame.core.store import COMPLETE, ResultsFile

    results = ResultsFile(results_path)
    attrs = results.attrs()
    console = Console()
    run = Table(title=f"{results_path}", show_header=False)
    design = attrs["design"]
    for key, value in [("status", attrs["status"]), ("model", attrs["model"]), ("estimator", attrs["estimator"]),
                       ("design", ", ".join(f"{k}={v}" for k, v in design.items())), ("rows", f"{attrs['n_rows']:,}"),
                       ("blocks done", f"{attrs['blocks_done']} / {attrs['n_blocks']}"), ("seed", attrs["seed"]),
                       ("elapsed", f"{attrs['elapsed_s']:.1f} s" if "elapsed_s" in attrs else "-")]:
        run.add_row(key, str(value))
    console.print(run)
    variables = results.read("variables")
    table = Table(title="variables")
    for column in ("column", "group", "distribution"):
        table.add_column(column)
    for name, g, dist in zip(variables["names"], variables["group_of_column"], variables["distributions"]):
        table.add_row(str(name), str(variables["groups"][g]), str(dist))
    console.print(table)
    if attrs["status"] != COMPLETE:
        console.print(f"[yellow]this run is not complete ({attrs['blocks_done']} of {attrs['n_blocks']} blocks): "
                      f"`sa-frame run --config ... --resume --out {results_path}` continues it[/]")
        return
    maps = results.read("checkpoints")
    shapes = Table(title="checkpoints")
    shapes.add_column("checkpoint")
    shapes.add_column("maps")
    shapes.add_column("activation shape")
    for name, stats in maps.items():
        first = next(iter(stats.values()))
        shapes.add_row(name, ", ".join(stats), str(tuple(first.shape[1:]) if first.ndim > 1 else first.shape))
    console.print(shapes)
    summary = lookup("estimator", attrs["estimator"]).summary
    _print_summary(console, results, summary)
    units = Table(title=f"most sensitive units ({summary[0]}, mean over pixels)")
    for column in ("checkpoint", "variable", "units (score)"):
        units.add_column(column)
    for row in top_units(results, summary[0], top):
        units.add_row(*row)
    console.print(units)


def plot(results_path: Annotated[Path, typer.Argument(help="a results file")],
         checkpoint: Annotated[str | None, typer.Option("--checkpoint", help="checkpoint of the unit")] = None,
         unit: Annotated[int | None, typer.Option("--unit", help="channel (conv) or neuron index")] = None,
         index: Annotated[str | None, typer.Option("--index", help="which map (default: the estimator's "
                                                   "first summary map)")] = None,
         out: Annotated[Path | None, typer.Option("--out", help="PNG file")] = None) -> None:
    """A unit's sensitivity maps per variable (--checkpoint C --unit U), or the summary heatmap."""
    from sa_frame.core.plugins import lookup
    from sa_frame.core.report import summary_figure, unit_figure
    from sa_frame.core.store import COMPLETE, ResultsFile

    results = ResultsFile(results_path)
    attrs = results.attrs()
    if attrs["status"] != COMPLETE:
        raise UsageError(f"{results_path} is not complete ({attrs['blocks_done']} of {attrs['n_blocks']} blocks)")
    if (checkpoint is None) != (unit is None):
        raise UsageError("give both --checkpoint and --unit (or neither, for the summary heatmap)")
    if checkpoint is None:
        summary = lookup("estimator", attrs["estimator"]).summary
        path = summary_figure(results, summary if index is None else (index,),
                              out or results_path.with_suffix(".summary.png"))
    else:
        path = unit_figure(results, checkpoint, int(unit), index,
                           out or results_path.with_suffix(f".{checkpoint}.{unit}.png"))
    typer.echo(f"wrote {path}")


def analyze(results_path: Annotated[Path, typer.Argument(help="a complete results file")],
            name: Annotated[str, typer.Argument(help="analysis (see `sa-frame plugins --all --kind analysis`)")],
            option: Annotated[list[str] | None, typer.Option("-o", "--option", help="key=value (repeatable); "
                                                              "--options lists them")] = None,
            figures: Annotated[bool, typer.Option("--figures/--no-figures", help="write PNG figures next to "
                                                  "the results file")] = True,
            list_options: Annotated[bool, typer.Option("--options", help="list the analysis' options and "
                                                       "exit")] = False,
            quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar or tables")] = False) -> None:
    """Run a post-analysis of a results file; its numbers go under /analyses/<name> in the file."""
    from rich.console import Console

    from sa_frame.core.analysis import option_defaults, option_help, run_analysis
    from sa_frame.core.plugins import lookup

    console = Console()
    if list_options:
        analysis = lookup("analysis", name)
        from rich.table import Table

        table = Table(title=f"options of {name}: {analysis.description}")
        table.add_column("option")
        table.add_column("default")
        table.add_column("meaning")
        helps = option_help(analysis.Options)
        for option, default in option_defaults(analysis.Options).items():
            table.add_row(option, repr(default), helps[option])
        console.print(table)
        return
    err = Console(stderr=True, quiet=quiet)
    with _ProgressBars(err, quiet, rate=False) as bars:
        analysis, outputs, written = run_analysis(results_path, name, option or [], bars.task,
                                                  results_path if figures else None)
    if quiet:
        return
    analysis.report(outputs, console)
    console.print(f"stored under /analyses/{analysis.name} in {results_path}"
                  + "".join(f", {p}" for p in written))
