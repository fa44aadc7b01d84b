"""One run at a time per results folder: an exclusive lock on ``.sidbench-lock`` inside it.

The lock is a kernel file lock (``flock``), so it dies with its process: a run killed by SIGKILL leaves no
stale lock, and the next run simply takes it. The file names the holder (pid, host, start, command) so a
second run can say which run it met. Under torchrun, rank 0 holds it for every rank of the run.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..api.errors import SidbenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; runs are not serialised there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
LOCK_NAME = ".sidbench-lock"


class FolderLock:
    """The lock of one results folder, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        """Take the lock, or stop at once with one line naming the run that holds it."""
        if fcntl is None:
            return self
        while True:
            fd = _open(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise SidbenchError(f"{self.path.parent} is in use by another sidbench run ({holder}); wait for it "
                                    "to finish or choose another --out") from None
            except OSError as exc:  # e.g. a network file system without locks: run, but say so
                log.warning(f"cannot lock {self.path} ({exc.strerror}); two runs into this folder at once would mix")
                os.close(fd)
                return self
            if _same_file(fd, self.path):  # not unlinked by a run that released it meanwhile
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode() + b"\n")
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and let go (unlinked first, so nobody locks a file that is going away)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _open(path: Path) -> int:
    from ..api.paths import open_no_follow

    try:
        return open_no_follow(path, os.O_RDWR | os.O_CREAT, 0o644)  # a planted link is refused, never written through
    except OSError as exc:
        raise SidbenchError(f"--out {path.parent}: cannot write there ({exc.strerror}); choose a writable folder") from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["sidbench", *sys.argv[1:]])[:500]}


def _holder(fd: int) -> str:
    """The holder's description from the lock file (it may not have written it yet)."""
    from ..api.escape import one_line

    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "starting"
    return one_line(f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: {info.get('command')}")
