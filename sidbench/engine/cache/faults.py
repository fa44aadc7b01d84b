"""Cache faults: telling a damaged database from a fault of the disk or folder, and how to fix each.

A run reports a failing cache in one line and goes on without it; that line (and ``cache info`` / ``cache
clear``) ends with :func:`advice`. Only a database found damaged is worth clearing: a full or read-only disk,
a file size limit, or a file where the folder should be is the disk's or the folder's fault, and clearing
would throw away healthy entries.
"""
from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from .store import DB_NAME, on_read_only_filesystem

DAMAGE = ("malformed", "not a database", "not a sidbench feature cache", "file is encrypted", "unsupported file format")


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is damaged (only then is removing it the fix)."""
    return isinstance(exc, sqlite3.DatabaseError) and any(d in str(exc).lower() for d in DAMAGE)


def is_read_only(exc: BaseException) -> bool:
    text = str(exc).lower()
    return ("readonly" in text or "read-only" in text or isinstance(exc, PermissionError)
            or getattr(exc, "errno", None) == errno.EROFS)


def advice(root: Path, exc: BaseException, name: str = DB_NAME) -> str:
    """How to fix a cache that failed with ``exc``: one clause for the one-line report. Only a database found
    damaged is worth clearing; every other fault is the disk's or the folder's, and clearing would throw away
    healthy entries."""
    text = str(exc).lower()
    if isinstance(exc, (NotADirectoryError, FileExistsError)) or (root.exists() and not root.is_dir()):
        return f"{root} is not a folder: move that file away or set SIDBENCH_CACHE to another folder"
    for suffix, role in (("", "database"), ("-wal", "write-ahead log"), ("-shm", "shared-memory index")):
        where = root / (name + suffix)
        if where.exists() and not where.is_file():
            return f"{where} is not a file (SQLite keeps the cache's {role} under that name): move it away"
    if "full" in text or getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free some space or set SIDBENCH_CACHE to another disk"
    if getattr(exc, "errno", None) == errno.EFBIG or ("i/o" in text and _file_size_limited()):
        return "the file size limit of this shell (`ulimit -f`) stops the database from growing: raise it or use --no-cache"
    if is_read_only(exc) or on_read_only_filesystem(root):
        return (f"make {root} writable or set SIDBENCH_CACHE to a writable folder (its entries are still served "
                "where it can be read)")
    if is_damage(exc):
        return "`sidbench cache clear` removes the damaged database"
    return (f"check the disk and folder holding {root} (free space, file size limit, permissions); the database "
            "was not found damaged, so do not clear it")


def _file_size_limited() -> bool:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        return soft != resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):
        return False
