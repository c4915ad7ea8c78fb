"""`sa-frame show` and `sa-frame plot`: what a results file holds, as tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sa_frame.core.errors import UsageError


def show(results_path: Annotated[Path, typer.Argument(help="a results file")],
         top: Annotated[int, typer.Option("--top", min=1, help="most sensitive units listed per variable")] = 3) -> None:
    """Describe a results file: run, variables, checkpoints, mean indices, most sensitive units."""
    from rich.console import Console
    from rich.table import Table

    from sa_frame.cli.console import print_summary
    from sa_frame.core.registry import lookup
    from sa_frame.results.report import top_units
    from sa_frame.results.store import COMPLETE, ResultsFile

    results = ResultsFile(results_path)
    attrs = results.attrs()
    console = Console()
    if attrs.get("mode") == "influence":  # no variables or maps: training images scored per layer
        from sa_frame.results.influence_report import print_influence_summary

        print_influence_summary(console, results)
        if attrs["status"] != COMPLETE:
            console.print(f"[yellow]this run is not complete ({attrs['blocks_done']} of {attrs['n_blocks']} training "
                          f"batches): `sa-frame influence --resume --out {results_path}` continues it[/]")
        return
    run = Table(title=f"{results_path}", show_header=False)
    design = attrs["design"]
    options = attrs.get("estimator_options", {})
    intervals = attrs.get("intervals") or {}
    for key, value in [("status", attrs["status"]), ("model", attrs["model"]), ("estimator", attrs["estimator"]),
                       ("estimator options", ", ".join(f"{k}={v}" for k, v in options.items()) or "-"),
                       ("design", ", ".join(f"{k}={v}" for k, v in design.items())), ("rows", f"{attrs['n_rows']:,}"),
                       ("blocks done", f"{attrs['blocks_done']} / {attrs['n_blocks']}"), ("seed", attrs["seed"]),
                       ("elapsed", f"{attrs['elapsed_s']:.1f} s" if "elapsed_s" in attrs else "-"),
                       ("intervals", interval_text(intervals))]:
        run.add_row(key, str(value))
    console.print(run)
    if intervals.get("warning"):
        console.print(f"[yellow]warning:[/] {intervals['warning']}")
    variables = results.variables()
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
    maps = results.checkpoint_maps()
    shapes = Table(title="checkpoints")
    shapes.add_column("checkpoint")
    shapes.add_column("maps")
    shapes.add_column("activation shape")
    for name, stats in maps.items():
        first = next(iter(stats.values()))
        shapes.add_row(name, ", ".join(stats), str(tuple(first.shape[1:]) if first.ndim > 1 else first.shape))
    console.print(shapes)
    from sa_frame.results.regions_report import is_region_run, print_region_summary

    if is_region_run(results):
        console.print(f"region run: {attrs.get('segmenter')} {attrs.get('segmenter_options')}, perturbation "
                      f"{attrs.get('perturbation')} {attrs.get('perturbation_options')}")
        print_region_summary(console, results, first=top * 2)
        return
    estimator = lookup("estimator", attrs["estimator"])
    summary = estimator.summary
    print_summary(console, results, estimator)
    units = Table(title=f"most sensitive units ({summary[0]}, mean over pixels)")
    for column in ("checkpoint", "variable", "units (score)"):
        units.add_column(column)
    for row in top_units(results, summary[0], top, estimator):
        units.add_row(*row)
    console.print(units)


def interval_text(intervals: dict) -> str:
    """One line on how the *_conf maps were made, from the results' `intervals` record."""
    if not intervals:
        return "-"
    return f"{intervals['level']:.0%} {intervals['method']}: {intervals['detail']}"


def plot(results_path: Annotated[Path, typer.Argument(help="a results file")],
         checkpoint: Annotated[str | None, typer.Option("--checkpoint", help="checkpoint of the unit")] = None,
         unit: Annotated[int | None, typer.Option("--unit", help="channel (conv) or neuron index")] = None,
         index: Annotated[str | None, typer.Option("--index", help="which map (default: the estimator's "
                                                   "first summary map)")] = None,
         out: Annotated[Path | None, typer.Option("--out", help="PNG file")] = None) -> None:
    """A unit's sensitivity maps per variable (--checkpoint C --unit U), or the summary heatmap."""
    from sa_frame.core.registry import lookup
    from sa_frame.results.report import summary_figure, unit_figure
    from sa_frame.results.store import COMPLETE, ResultsFile

    results = ResultsFile(results_path)
    attrs = results.attrs()
    if attrs["status"] != COMPLETE:
        raise UsageError(f"{results_path} is not complete ({attrs['blocks_done']} of {attrs['n_blocks']} blocks)")
    if (checkpoint is None) != (unit is None):
        raise UsageError("give both --checkpoint and --unit (or neither, for the summary heatmap)")
    from sa_frame.results.regions_report import is_region_run, region_figure

    if checkpoint is None and is_region_run(results):
        path = region_figure(results, out or results_path.with_suffix(".regions.png"))
    elif checkpoint is None:
        path = summary_figure(results, lookup("estimator", attrs["estimator"]),
                              out or results_path.with_suffix(".summary.png"), None if index is None else (index,))
    else:
        path = unit_figure(results, checkpoint, int(unit), index,
                           out or results_path.with_suffix(f".{checkpoint}.{unit}.png"))
    typer.echo(f"wrote {path}")
