"""Ctrl-C and SIGTERM during a run: finish the block in progress, save the state, release the
lock, say how to resume. A second signal stops at once (the last saved state is intact)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from sa_frame.core.errors import UsageError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(UsageError):
    """The run stopped on a signal after saving its state (the message says how to resume)."""


class StopRequest:
    """While entered (in the main thread), SIGINT/SIGTERM set `requested` instead of raising."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name
        for sig, previous in self._previous.items():  # a second signal acts as usual: stop now
            signal.signal(sig, previous)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()
