"""Cache maintenance: what a cache folder holds (``cache info``) and emptying it (``cache clear``).

Both work on every database of the folder (the single-process file and the torchrun shards) plus the
older-format files a clear removes. A damaged database is reported by ``info`` and removed whole by
``clear``; a healthy one on a full, read-only or blocked disk is never removed, and the one-line error says
what to fix instead. Nothing here runs during a benchmark: runs only read and write entries.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .faults import advice, is_damage
from .store import OLD_DB_NAMES, databases

SIDECARS = ("", "-wal", "-shm")  # a database file, its write-ahead log and its shared-memory index


@dataclass
class Cleared:
    """What ``cache clear`` did: entries deleted, files removed, and why the database was removed whole."""

    entries: int = 0
    removed: list[str] = field(default_factory=list)
    damaged: str | None = None


def cache_files(root: Path) -> list[Path]:
    """The databases (single-process file and shards), their WAL and shared-memory files, and old-format
    databases, where they exist."""
    if not root.is_dir():
        return []
    names = [p.name for p in databases(root)] + list(OLD_DB_NAMES)
    return [root / (n + s) for n in names for s in SIDECARS if (root / (n + s)).is_file()]


def cache_info(root: Path, path: Path) -> dict:
    """Location (``path``, the database this process writes), entry count, size on disk, entries/bytes per
    (backbone, feature) summed over the databases of ``root``, and any damage."""
    old = [str(root / n) for n in OLD_DB_NAMES if root.is_dir() and (root / n).is_file()]
    size = sum(f.stat().st_size for f in cache_files(root))
    dbs = databases(root) if root.is_dir() else []
    out = {"path": str(path), "exists": bool(dbs), "bytes_on_disk": size, "entries": 0,
           "databases": [str(p) for p in dbs], "groups": [], "damaged": None, "unreadable": None, "old_files": old}
    if root.exists() and not root.is_dir():
        out["damaged"] = advice(root, NotADirectoryError())
        return out
    totals: dict[tuple[str, str], list[int]] = {}
    for db in dbs:
        try:
            rows = store.group_totals(db)
        except sqlite3.Error as exc:
            if is_damage(exc):
                out["damaged"] = out["damaged"] or f"{db.name}: {type(exc).__name__}: {exc}"
            else:
                out["unreadable"] = out["unreadable"] or (f"{db.name}: {type(exc).__name__}: {exc}; "
                                                          f"{advice(root, exc, db.name)}")
            continue
        for b, f, n, s in rows:
            t = totals.setdefault((b, f), [0, 0])
            t[0] += n
            t[1] += s or 0
    out["groups"] = [{"backbone": b, "feature": f, "entries": n, "bytes": s}
                     for (b, f), (n, s) in sorted(totals.items())]
    out["entries"] = sum(g["entries"] for g in out["groups"])
    return out


def clear_cache(root: Path, backbone: str | None = None) -> Cleared:
    """Delete every entry (or one backbone identity's) from every database of ``root``, shards included; a
    damaged database (and old-format ones, on a full clear) is removed as a file."""
    from ...api.errors import SidbenchError

    if root.exists() and not root.is_dir():
        raise SidbenchError(f"feature cache: {advice(root, NotADirectoryError())} (not removed: "
                            "sidbench only deletes its own files)")
    result = Cleared()
    doomed: list[Path] = []
    for path in databases(root):
        try:
            result.entries += store.delete_entries(path, backbone)
        except (sqlite3.DatabaseError, OSError) as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise SidbenchError(f"feature cache {path} is in use by another process ({exc}); "
                                    "try again when it has finished") from None
            if not is_damage(exc):  # a healthy database on a full, read-only or blocked disk stays
                raise SidbenchError(f"feature cache {path}: clear failed ({type(exc).__name__}: {exc}); "
                                    f"{advice(root, exc, path.name)}") from None
            result.damaged = result.damaged or f"{path.name}: {type(exc).__name__}: {exc}"
            doomed += [root / (path.name + s) for s in SIDECARS]
    if backbone is None:
        doomed += [root / (n + s) for n in OLD_DB_NAMES for s in SIDECARS]
    for f in doomed:
        if f.is_file():
            f.unlink()
            result.removed.append(str(f))
    return result
