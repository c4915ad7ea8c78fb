"""Stopping a run in-process at a chosen point, as Ctrl-C does (tests of resume)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def stop_after(calls: int) -> Callable[[int, int], Callable[[int], None]]:
    """A progress factory for `execute` that sends this process SIGINT on the `calls`-th progress
    update: the run then stops, saved, at the next block boundary."""
    seen = {"n": 0}

    def factory(total: int, done: int) -> Callable[[int], None]:
        def advance(rows: int) -> None:
            seen["n"] += 1
            if seen["n"] == calls:
                os.kill(os.getpid(), signal.SIGINT)
        return advance

    return factory
