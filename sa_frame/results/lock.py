"""One writer per results file: `<results>.lock` holds the writer's host and pid.

A second `sa-frame run` on the same file (for example a resume started while the
workers of a killed torchrun still run) would interleave its saves with the first
one's. The lock refuses that with a message; the operating system releases it when its holder
dies, so a lock left by a killed run is taken over.
"""

from __future__ import annotations

import fcntl
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
    """Context manager holding `<path>.lock` for the duration of a run.

    The lock is an advisory `flock` on the file, taken without waiting: the kernel releases it
    when its process dies, so a killed run leaves no lock that blocks the next one, and two
    processes can never both hold it (no read-unlink-retry race). The file names the holder
    (host and pid) for the message; one naming another live process of this host is
    respected too, and an empty or unreadable one is stale."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(f"{path}.lock")
        self.held = False
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(100):  # another process may unlink the file between our open and our lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as exc:
                raise UsageError(f"cannot write results file {self.path.with_suffix('')}: {exc.strerror or exc}") \
                    from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise self._busy(holder) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # we locked a file its last holder had already removed: take the new one
                os.close(fd)
                continue
            holder = _read(fd)
            host, _, pid = holder.partition(" ")
            if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                os.close(fd)
                raise self._busy(holder)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, me.encode(), 0)
            except OSError:  # a full disk: the flock holds all the same; the name is only for messages
                pass
            self._fd, self.held = fd, True
            return self
        raise UsageError(f"cannot take the lock {self.path}: other processes keep replacing it")

    def _busy(self, holder: str) -> UsageError:
        host, _, pid = holder.partition(" ")
        return UsageError(f"another run (host {host or '?'}, pid {pid or '?'}) is writing {self.path.with_suffix('')}; "
                          f"wait for it or stop it")

    def __exit__(self, *exc: object) -> None:
        if self.held and self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
            os.close(self._fd)
            self._fd, self.held = None, False


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        return ""
