"""One writer per results file: `<results>.lock` holds the writer's host and pid.

A second `sa-frame run` on the same file (for example a resume started while the
workers of a killed torchrun still run) would interleave its saves with the first
one's. The lock refuses that with a message; a lock left by a process that no longer
exists on this host is taken over.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sa_frame.core.errors import UsageError


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a killed process nobody reaped is a zombie: dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class WriterLock:
    """Context manager holding `<path>.lock` for the duration of a run."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(f"{path}.lock")
        self.held = False

    def __enter__(self) -> WriterLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                host, _, pid = self.path.read_text().strip().partition(" ")
                if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                    self.path.unlink(missing_ok=True)  # left by a killed run
                    continue
                raise UsageError(f"another run (host {host}, pid {pid}) is writing {self.path.with_suffix('')}; "
                                 f"wait for it or stop it (if it no longer runs, delete {self.path})") from None
            except OSError as exc:
                raise UsageError(f"cannot write results file {self.path.with_suffix('')}: {exc.strerror or exc}") \
                    from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise UsageError(f"cannot take over the stale lock {self.path}; delete it")

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
