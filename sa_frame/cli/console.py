"""What the terminal shows: progress bars (with a rows/s column and ETA) and summary tables."""

from __future__ import annotations

from typing import Any

PLAIN_EVERY_S = 10.0  # seconds between progress lines when output is not a terminal


def rate_text(per_second: float | None, unit: str = "rows") -> str:
    """A rate a person can read at any speed: '1,234 rows/s', '0.42 rows/s', '-'."""
    if not per_second:
        return f"- {unit}/s"
    return f"{per_second:,.0f} {unit}/s" if per_second >= 10 else f"{per_second:.2g} {unit}/s"


def RowsPerSecond() -> Any:  # noqa: N802 - a rich column factory
    """A column showing rows per second (rich's own speed columns print bytes)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RowsPerSecondColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(rate_text(task.speed))

    return RowsPerSecondColumn()


class PlainProgress:
    """Progress as a plain line every PLAIN_EVERY_S seconds and at the end of each task, for
    output that is not a terminal (a log file, a batch job), where bars would print nothing."""

    def __init__(self, console: Any, rate: bool) -> None:
        self.console, self.rate = console, rate

    def task(self, description: str, total: int, completed: int = 0) -> Any:
        import time

        state = {"done": completed, "start": time.monotonic(), "last": time.monotonic(), "first": completed}

        def advance(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["last"] >= PLAIN_EVERY_S or state["done"] >= total:
                state["last"] = now
                speed = (state["done"] - state["first"]) / max(now - state["start"], 1e-9)
                left = (total - state["done"]) / speed if speed > 0 else float("nan")
                rate = f", {rate_text(speed)}, about {left:,.0f} s left" if self.rate else ""
                self.console.print(f"{description}: {state['done']:,} / {total:,} "
                                   f"({100 * state['done'] / max(total, 1):.0f}%){rate}", highlight=False)
        return advance


class ProgressBars:
    """Rich progress bars (with a rate column and ETA), one per long step; plain periodic lines
    when the console is not a terminal; nothing when quiet.

    `bars.task(description, total, completed)` adds a bar and returns its advance(n) function.
    """

    def __init__(self, console: Any, quiet: bool, rate: bool = True) -> None:
        self.console, self.quiet, self.rate, self.bar = console, quiet, rate, None
        self.plain: PlainProgress | None = None

    def __enter__(self) -> ProgressBars:
        if self.quiet:
            return self
        if not self.console.is_terminal:
            self.plain = PlainProgress(self.console, self.rate)
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   *([RowsPerSecond()] if self.rate else []), TimeRemainingColumn()]
        self.bar = Progress(*columns, console=self.console, transient=False)
        self.bar.start()
        return self

    def task(self, description: str, total: int, completed: int = 0) -> Any:
        if self.plain is not None:
            return self.plain.task(description, total, completed)
        if self.bar is None:
            return lambda _n: None
        bar = self.bar
        task = bar.add_task(description, total=total, completed=completed)
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_summary(console: Any, results: Any, estimator: Any) -> None:
    """One table per summary map of the estimator: mean per variable (rows) and checkpoint (columns)."""
    from sa_frame.results.report import print_matrix, shown_note, summary_rows

    for key in estimator.summary:
        labels, checkpoints, table = summary_rows(results, key, estimator)
        print_matrix(console, f"mean {key}{shown_note(key, estimator)} per activation (rows: variables, columns: "
                     f"checkpoints)", labels, checkpoints, table, corner="variable")




def print_options(console: Any, estimator: Any) -> None:
    """The estimator's options (default, meaning) and its default sizes per profile."""
    from rich.table import Table

    from sa_frame.core.options import option_defaults, option_help

    table = Table(title=f"options of estimator {estimator.name}: {estimator.description} "
                        f"(sa-frame run -o key=value)")
    for column in ("option", "default", "meaning"):
        table.add_column(column)
    helps = option_help(estimator.Options)
    for name, default in option_defaults(estimator.Options).items():
        table.add_row(name, repr(default), helps[name])
    console.print(table)
    sizes = Table(title="default sizes (--n and size options) per profile: paper (real data), quick (--quick), "
                        "demo (demo model on demo data)")
    sizes.add_column("profile")
    sizes.add_column("sizes")
    for profile, values in estimator.sizes.items():
        sizes.add_row(profile, ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
                                         for k, v in values.items()))
    console.print(sizes)
