"""The on-disk feature cache: backbone features keyed by everything that determines them.

One entry is one named feature of one image. Its key hashes the backbone identity (architecture
+ weights), the numerics (device kind, precision, compiled or not, backbone batch size), the
preprocessing protocol (size, mean, std), the perturbation, the augmented view (augment name, view,
seed) and the SHA-256 of the image file's bytes, so a changed byte or setting can never be served a
stale entry. Entries are stored per feature name: a detector that needs another feature computes only
that, and every detector and run over the same images shares the rest.

Storage is one SQLite database in WAL mode (``$SIDBENCH_CACHE/features/features.sqlite``): each
batch of entries is one transaction, so a process killed at any moment (SIGKILL included) leaves
either the whole batch or none of it, and readers (DataLoader workers, other ranks, other runs)
never see a half-written entry. One file per entry with tmp+rename would be as safe but costs an
inode and a directory walk per image (millions for a benchmark) and makes ``info`` slow; SQLite
keeps it one file with indexed look-ups. Keep the folder on a local disk: SQLite's locking is not
reliable over NFS.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import torch

    from ..api.records import Record

FORMAT = 2  # bump when anything that shapes cached features changes meaning (2: blur into uint8, torchvision RRC fallback)
DB_NAME = "features.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    key TEXT PRIMARY KEY,
    feature TEXT NOT NULL,
    backbone TEXT NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


def default_cache_root() -> Path:
    from ..api.paths import cache_dir

    return cache_dir() / "features"


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_key(identity: str, numerics: str, prompt: str) -> str:
    """The entry key of one prompt's text embedding (cached like image features, so warm runs need no backbone)."""
    return hashlib.sha256(json.dumps([FORMAT, "text", identity, numerics, prompt]).encode()).hexdigest()


class FeatureCache:
    """Content-addressed feature store; safe to share between processes (one connection per process)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self.path = self.root / DB_NAME
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.hits = 0
        self.stored = 0

    # sqlite connections must not cross fork(): DataLoader workers open their own.
    def __getstate__(self) -> dict:
        return {"root": self.root, "path": self.path, "_conn": None, "_pid": -1, "hits": 0, "stored": 0}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after any crash
            conn.execute(SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, "torch.Tensor"]:
        """The entries of ``keys`` that exist and decode intact (anything else is a miss)."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db().execute(f"SELECT key, dtype, shape, data FROM features WHERE key IN ({marks})", list(keys))
        out = {}
        for key, dtype, shape, data in rows:
            tensor = _decode(dtype, shape, data)
            if tensor is not None:
                out[key] = tensor
        return out

    def put_many(self, items: Iterable[tuple[str, str, str, "torch.Tensor"]]) -> None:
        """Store (key, feature name, backbone identity, tensor) entries in one transaction."""
        rows = [(k, f, b, *_encode(t)) for k, f, b, t in items]
        if not rows:
            return
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO features (key, feature, backbone, dtype, shape, data) "
                           "VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.stored += len(rows)

    def info(self) -> dict:
        """Location, entry count, size on disk, and entries/bytes per (backbone, feature)."""
        files = [self.path, self.path.with_name(DB_NAME + "-wal"), self.path.with_name(DB_NAME + "-shm")]
        size = sum(f.stat().st_size for f in files if f.exists())
        out = {"path": str(self.path), "exists": self.path.exists(), "bytes_on_disk": size, "entries": 0, "groups": []}
        if not self.path.exists():
            return out
        rows = self._db().execute("SELECT backbone, feature, COUNT(*), SUM(LENGTH(data)) FROM features "
                                  "GROUP BY backbone, feature ORDER BY backbone, feature").fetchall()
        out["groups"] = [{"backbone": b, "feature": f, "entries": n, "bytes": s} for b, f, n, s in rows]
        out["entries"] = sum(g["entries"] for g in out["groups"])
        return out

    def clear(self, backbone: str | None = None) -> int:
        """Delete every entry (or one backbone identity's); returns how many were removed."""
        if not self.path.exists():
            return 0
        db = self._db()
        where, args = ("WHERE backbone = ?", [backbone]) if backbone else ("", [])
        n = db.execute(f"DELETE FROM features {where}", args).rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
        return n

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


def _encode(t: "torch.Tensor") -> tuple[str, str, bytes]:
    import numpy as np

    arr = np.asarray(t.detach().cpu().numpy(), order="C")  # (ascontiguousarray would make a scalar 1-d)
    return arr.dtype.str, json.dumps(list(arr.shape)), arr.tobytes()


def _decode(dtype: str, shape: str, data: bytes) -> "torch.Tensor | None":
    import numpy as np
    import torch

    try:
        dims = json.loads(shape)
        dt = np.dtype(dtype)
    except (ValueError, TypeError):
        return None
    if len(data) != int(np.prod(dims, dtype=np.int64)) * dt.itemsize:
        return None  # never serve a torn or foreign blob
    return torch.from_numpy(np.frombuffer(data, dtype=dt).reshape(dims).copy())


@dataclass(frozen=True)
class CacheContext:
    """Everything but the image that determines a feature: hashed into every entry key."""

    backbone: str  # source identity: a backbone's (architecture + weights), or a pixel detector's (name + weights)
    numerics: str  # e.g. "cpu-fp32-eager-b64"
    protocol: str  # e.g. "center_crop|224|mean|std"
    perturbation: str = "none"
    view: str = ""  # augmented view identity "augment|view|seed"; "" for the plain view

    @property
    def per_record(self) -> bool:
        """Perturbations and augmentations are seeded from the record key, so it is part of the key."""
        return self.perturbation != "none" or bool(self.view)

    def digest(self) -> str:
        text = json.dumps([FORMAT, self.backbone, self.numerics, self.protocol, self.perturbation, self.view])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheLookup:
    """Picklable: what a DataLoader worker needs to key and fetch the cached features of one image."""

    cache: FeatureCache
    context: CacheContext
    names: tuple[str, ...]

    def keys(self, content: str, record: "Record") -> dict[str, str]:
        """Feature name -> entry key for an image whose bytes hash to ``content``."""
        base = f"{self.context.digest()}|{content}|{record.key if self.context.per_record else ''}"
        return {n: hashlib.sha256(f"{base}|{n}".encode()).hexdigest() for n in self.names}

    def fetch(self, keys: dict[str, str]) -> dict[str, "torch.Tensor"] | None:
        """All requested features, or None when any is missing."""
        found = self.cache.get_many(list(keys.values()))
        if len(found) < len(keys):
            return None
        return {n: found[k] for n, k in keys.items()}
