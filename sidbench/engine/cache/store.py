"""The SQLite store: file names, schema, connections and the row-level reads, writes and deletes.

The cache folder holds ``features-v2.sqlite`` (a single process's database) and, under ``torchrun``, one
``features-v2.rank<R>.sqlite`` shard per global rank, each written by that rank only. A database is opened in
WAL mode with ``synchronous=NORMAL`` for writing (consistent after any crash), read-only for reading, or
``immutable`` (no lock, no shared-memory index) for another process's database or one on a read-only file
system. Every read and write of entries goes through :func:`read_rows` and :func:`write_rows`, one call each,
so tests can inject a damaged page or a full disk there. File names, schema and page size are part of the
on-disk format: old caches must keep opening.
"""
from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Sequence

DB_NAME = "features-v2.sqlite"  # v2: per-entry torch dtype and CRC-32 (a new file, so old caches never break runs)
SHARD = re.compile(r"features-v2\.rank(\d+)\.sqlite")  # one torchrun rank's database (written by that rank only)
OLD_DB_NAMES = ("features.sqlite",)  # v1 (fp32 numpy blobs, no checksum): never opened; `cache clear` removes it
SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    key TEXT PRIMARY KEY,
    feature TEXT NOT NULL,
    backbone TEXT NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    crc INTEGER NOT NULL,
    data BLOB NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""
COLUMNS = ("key", "feature", "backbone", "dtype", "shape", "crc", "data", "created")
PAGE_SIZE = 16384  # new databases: fewer overflow pages per feature blob than SQLite's default 4096


def default_cache_root() -> Path:
    from ...api.paths import cache_dir

    return cache_dir() / "features"


def shard_name(rank: int | None) -> str:
    """The database a process writes: the single-process file, or global rank ``rank``'s shard under torchrun."""
    return DB_NAME if rank is None else f"features-v2.rank{int(rank)}.sqlite"


def databases(root: Path) -> list[Path]:
    """Every current-format database in ``root``: the single-process file, then the shards by rank."""
    if not root.is_dir():
        return []
    shards = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := SHARD.fullmatch(p.name)) and p.is_file())
    return [p for p in [root / DB_NAME] if p.is_file()] + [p for _, p in shards]


def connect(path: Path, readonly: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """A raw connection (the one call that opens a database file; a test patches it to simulate a read-only one)."""
    mode = "ro&immutable=1" if immutable else "ro" if readonly else "rwc"
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    return sqlite3.connect(uri, uri=True, timeout=120, isolation_level=None, check_same_thread=False)


def on_read_only_filesystem(path: Path) -> bool:
    """Whether ``path`` (or its folder) lies on a file system mounted read-only (nobody can write to it, so its
    database may be opened as immutable: no lock, no WAL index to create)."""
    try:
        return bool(os.statvfs(path if path.exists() else path.parent).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def open_database(path: Path, readonly: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """A checked connection to the database at ``path``: created (with its folder) when opened for writing, read
    as immutable where a read-only file system allows nothing else, and refused unless it has our table."""
    if immutable:
        conn = connect(path, immutable=True)
    elif readonly:
        try:
            conn = connect(path, readonly=True)
            conn.execute("PRAGMA schema_version").fetchone()  # a WAL database opens lazily: read now
        except sqlite3.Error:
            if not on_read_only_filesystem(path):
                raise
            conn = connect(path, immutable=True)  # no WAL index can be made there, and no one writes
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(path)
        if not path.stat().st_size:
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after any crash
        conn.execute(SCHEMA)
    cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(features)"))
    if cols != COLUMNS:
        conn.close()
        raise sqlite3.DatabaseError(f"not a sidbench feature cache (table columns {list(cols) or 'missing'})")
    return conn


def read_rows(db: sqlite3.Connection, keys: Sequence[str]) -> list[tuple]:
    """The stored rows of ``keys`` (the one read call; a test patches it to simulate a damaged page)."""
    marks = ",".join("?" * len(keys))
    return db.execute(f"SELECT key, dtype, shape, crc, data FROM features WHERE key IN ({marks})", list(keys)).fetchall()


def write_rows(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """One transaction of encoded entries (the one write call; a test patches it to simulate a full disk)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR REPLACE INTO features (key, feature, backbone, dtype, shape, crc, data) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    except BaseException as exc:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the failed COMMIT already ended it; the original error is the one to report
        raise exc


def group_totals(path: Path) -> list[tuple]:
    """(backbone, feature, entries, bytes) of every group of entries in the database at ``path``."""
    db = open_database(path, readonly=True)
    try:
        return db.execute("SELECT backbone, feature, COUNT(*), SUM(LENGTH(data)) FROM features "
                          "GROUP BY backbone, feature").fetchall()
    finally:
        db.close()


def delete_entries(path: Path, backbone: str | None) -> int:
    """Delete every entry (or one backbone identity's) of the database at ``path`` and shrink it where the disk
    allows; the number deleted."""
    db = open_database(path)
    try:
        where, args = ("WHERE backbone = ?", [backbone]) if backbone else ("", [])
        n = db.execute(f"DELETE FROM features {where}", args).rowcount
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
        except sqlite3.OperationalError:
            pass  # entries are gone; shrinking the file needs free space the disk may not have
        return n
    finally:
        db.close()
