"""The one way tests run the command line: in-process, through the real `main` (exit
statuses and stderr lines as a user sees them)."""

from __future__ import annotations

import contextlib
import io

from sa_frame.cli.app import main


def cli(*args: object) -> tuple[int, str, str]:
    """Run ``sa-frame ARGS`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()
