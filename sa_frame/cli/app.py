"""The ``sa-frame`` command line (typer + rich).

Exit status: 0 success; 2 a usage or input error (one line on stderr, a traceback only
with ``--debug``); 1 an unexpected failure. Plugins add sub-commands through the
`register_commands` hook; heavy imports happen inside the commands.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import traceback
from typing import Annotated, Any

import typer

from sa_frame.core.errors import UsageError
from sa_frame.engine.stop import RunInterrupted

KIND_ALIASES = {"models": "model", "checkpoints": "checkpoint", "data_sources": "data_source",
                "data": "data_source", "augmentations": "augmentation",
                "augmentation_sets": "augmentation_set", "samplers": "sampler", "estimators": "estimator",
                "analyses": "analysis"}


def _version(value: bool) -> None:
    if value:
        from sa_frame import __version__

        typer.echo(f"sa-frame {__version__}")
        raise typer.Exit()


def plugins(
    all_: Annotated[bool, typer.Option("--all", help="Include the built-in plugins.")] = False,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind (model, augmentation, ...), built-ins "
                                             "included.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list of objects.")] = False,
) -> None:
    """List registered plugins: kind, name, providing distribution and version (third-party
    ones; --all or --kind K adds the built-ins)."""
    from sa_frame.core.registry import KIND_HOOKS, registry

    kinds = [KIND_ALIASES.get(kind, kind)] if kind else list(KIND_HOOKS)
    all_ = all_ or kind is not None  # asking for a kind means all of that kind
    reg = registry()
    rows = [r for k in kinds for r in reg.entries(k).values() if all_ or not r.builtin]

    def description(r: Any) -> str:
        return ", ".join(r.obj) if isinstance(r.obj, list) else getattr(r.obj, "description", "")

    if as_json:
        typer.echo(json.dumps([{"kind": r.kind, "name": r.name, "provider": r.provider, "version": r.version,
                                "builtin": r.builtin, "description": description(r)} for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sa-frame plugins" + ("" if all_ else " (third-party; --all adds built-ins)"))
    for column in ("kind", "name", "provider", "version", "description"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.kind, r.name, r.provider, r.version, description(r))
    Console().print(table)
    if not rows:
        typer.echo("no third-party plugins installed; `sa-frame plugins --all` lists the built-in ones")


def build_app() -> typer.Typer:
    """A fresh application with the kernel's commands and every plugin's."""
    from sa_frame.core.registry import registry

    app = typer.Typer(name="sa-frame", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      help="Sensitivity analysis of CNN activations under simultaneous image augmentations.")

    @app.callback()
    def root(
        version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")] = False,
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    ) -> None:
        """sa-frame: which parts of a network react to which changes of its input, and how much."""

    from sa_frame.cli.analyze import analyze
    from sa_frame.cli.run import run
    from sa_frame.cli.show import plot, show

    app.command("run")(run)
    app.command("show")(show)
    app.command("plot")(plot)
    app.command("analyze")(analyze)
    app.command("plugins")(plugins)
    registry().commands(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit statuses."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        build_app()(args=args, prog_name="sa-frame", standalone_mode=True)
    except RunInterrupted as exc:  # a signal: the run saved its state and stopped
        typer.echo(f"sa-frame: {exc}", err=True)
        raise SystemExit(130) from None
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"sa-frame: error: {exc}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        typer.echo("sa-frame: interrupted", err=True)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:  # a bug, not a user mistake
        if debug:
            traceback.print_exc()
        else:
            typer.echo(f"sa-frame: unexpected error: {type(exc).__name__}: {exc} (run with --debug for the "
                       f"traceback)", err=True)
        raise SystemExit(1) from None


def console_main(argv: list[str] | None = None) -> None:
    """The ``sa-frame`` script: `main`, then a quick exit once torch is loaded.

    After torch and torchvision are imported, the interpreter's teardown takes about 1 s and the
    C libraries' exit handlers touch 128 MiB beyond the command's own peak (measured on
    `import torch, torchvision` alone: 2.5 s and 688 MiB with this exit, 3.8 s and 816 MiB
    without). Streams are flushed and Python's atexit handlers run (logging, multiprocessing);
    only the module teardown and the C exit handlers are skipped. Commands close every file
    they write before they return. Tests call `main`, which exits normally."""
    try:
        main(argv)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if "torch" not in sys.modules:  # --help and other light commands: nothing to gain
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # noqa: SLF001 -- the handlers os._exit would skip
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)
