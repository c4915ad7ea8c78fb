"""One writer per results file: `<results>.lock` holds the writer's host and pid.

A second `sa-frame run` on the same file (for example a resume started while the
workers of a killed torchrun still run) would interleave its saves with the first
one's. The lock refuses that with a message; the operating system releases it when its holder
dies, so a lock left by a killed run is taken over.

The locking itself is filelock's (an advisory `flock`, taken without waiting, that refuses an
inode unlinked between open and lock); what is ours is the holder's name in the file, the
respect for a live holder named there, and removing the file when the run ends.
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


class _HeldByLiveProcess(Exception):
    """Raised inside filelock's `on_acquired`, which then gives the flock back."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class WriterLock:
    """Context manager holding `<path>.lock` for the duration of a run.

    The kernel releases the flock when its process dies, so a killed run leaves no lock that
    blocks the next one, and two processes can never both hold it. The file names the holder
    (host and pid) for the message; one naming another live process of this host is respected
    too (torchrun workers outliving their killed launcher), and an empty or unreadable one is
    stale. filelock >= 4.2.1 leaves the previous holder's text in place until we read it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(f"{path}.lock")
        self.held = False
        self._lock = None

    def __enter__(self) -> WriterLock:
        import filelock

        if not self.path.parent.is_dir():  # filelock would create it (and the run its file there)
            raise UsageError(f"cannot write results file {self.path.with_suffix('')}: no such directory "
                             f"{self.path.parent}")
        lock = filelock.FileLock(self.path, blocking=False, fallback_to_soft=False, on_acquired=_claim)
        for _ in range(100):
            try:
                lock.acquire()
            except filelock.Timeout:
                if not self.path.exists():  # we locked the inode its last holder unlinked on leaving: retry
                    continue
                raise self._busy(_read_path(self.path)) from None
            except _HeldByLiveProcess as exc:
                raise self._busy(exc.holder) from None
            except OSError as exc:
                raise UsageError(f"cannot write results file {self.path.with_suffix('')}: {exc.strerror or exc}") \
                    from None
            self._lock, self.held = lock, True
            return self
        raise UsageError(f"cannot take the lock {self.path}: other processes keep replacing it")

    def _busy(self, holder: str) -> UsageError:
        host, _, pid = holder.partition(" ")
        return UsageError(f"another run (host {host or '?'}, pid {pid or '?'}) is writing {self.path.with_suffix('')}; "
                          f"wait for it or stop it")

    def __exit__(self, *exc: object) -> None:
        if self.held and self._lock is not None:
            # Unlinked while still held: a waiter that opened this inode finds it unlinked after its
            # flock and opens the path afresh (filelock checks st_nlink), so no two holders can exist.
            self.path.unlink(missing_ok=True)
            self._lock.release()
            self._lock, self.held = None, False


def _claim(fd: int) -> None:
    """filelock's `on_acquired`: refuse a file naming another live process here, else write our name."""
    holder = _read(fd)
    host, _, pid = holder.partition(" ")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
        raise _HeldByLiveProcess(holder)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}".encode(), 0)
    except OSError:  # a full disk: the flock holds all the same; the name is only for messages
        pass


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _read_path(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[:256]
    except OSError:
        return ""
