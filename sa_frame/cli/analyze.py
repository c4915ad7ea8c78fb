"""`sa-frame analyze`: run a post-analysis of a results file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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

    from sa_frame.cli.console import ProgressBars
    from sa_frame.core.options import option_defaults, option_help
    from sa_frame.core.registry import lookup
    from sa_frame.engine.analyze import run_analysis

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
    with ProgressBars(err, quiet, rate=False) as bars:
        analysis, outputs, written = run_analysis(results_path, name, option or [], bars.task,
                                                  results_path if figures else None)
    if quiet:
        return
    analysis.report(outputs, console)
    console.print(f"stored under /analyses/{analysis.name} in {results_path}"
                  + "".join(f", {p}" for p in written))
