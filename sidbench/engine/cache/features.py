"""The feature cache a run uses: :class:`FeatureCache` (one per process tree) and :class:`CacheLookup`.

A :class:`FeatureCache` owns this process's connections (its own database for reading and writing, the
folder's other databases read-only and immutable, reopened after ``fork()``), serves ``get_many`` from its
own database first and the others for what it misses, queues writes for the background writer, and turns
any fault of opening, reading or writing into one reported line and a cache that stops doing that (a
DataLoader worker sends its faults back to the main process, which reports them). :class:`CacheLookup` is
the picklable part a worker needs to key and fetch one image's features.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from . import encoding
from . import store as sqlite_store
from .faults import advice, is_read_only
from .keys import CacheContext, feature_keys
from .maintenance import Cleared, cache_files, cache_info, clear_cache
from .store import default_cache_root, on_read_only_filesystem, shard_name
from .writer import Writer

if TYPE_CHECKING:
    import torch

    from ...api.records import Record

log = logging.getLogger("sidbench.cache")
_FORKED_AWAY: list = []  # connections inherited through fork(): never used or closed in the child


class FeatureCache:
    """Content-addressed feature store; safe to share between processes (one connection per process)."""

    def __init__(self, root: Path | str | None = None, rank: int | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self.rank = rank  # torchrun's global rank: this process writes only its shard (None: the single-process file)
        self.path = self.root / shard_name(rank)
        self._conn: sqlite3.Connection | None = None
        self._others: list[tuple[Path, sqlite3.Connection]] | None = None  # the other databases, read-only
        self._others_pid = -1
        self._pid = -1
        self._owner = os.getpid()  # the process that reports faults; DataLoader workers send theirs back
        self.hits = 0
        self.stored = 0
        self.readable = True
        self.writable = True
        self.faults: dict[str, str] = {}  # what failed -> the one line reported
        self._unsent: list[tuple[str, str]] = []  # faults met in a worker, returned with its items
        self._writer: Writer | None = None
        self._lock = threading.Lock()

    # sqlite connections and threads must not cross fork(): DataLoader workers open their own connection.
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_conn", "_writer", "_lock", "_unsent", "_others")}
        return {**state, "_conn": None, "_pid": -1, "_writer": None, "_unsent": [], "hits": 0, "stored": 0,
                "_others": None, "_others_pid": -1}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- connections and faults --------------------------------------------------------------
    def _open(self, readonly: bool = False, path: Path | None = None, immutable: bool = False) -> sqlite3.Connection:
        return sqlite_store.open_database(path or self.path, readonly=readonly, immutable=immutable)

    def _db(self) -> sqlite3.Connection | None:
        """This process's reading connection (None once the cache failed)."""
        if self._conn is not None and self._pid != os.getpid():
            _FORKED_AWAY.append(self._conn)  # closing it here could disturb the parent's locks
            self._conn = None
        if self._conn is None and self.readable:
            try:
                self._conn, self._pid = self._open(readonly=not self.writable), os.getpid()
            except (sqlite3.Error, OSError) as exc:
                if not ((is_read_only(exc) or on_read_only_filesystem(self.path)) and self.path.is_file()):
                    self.fault("open", exc)
                    return None
                try:  # a read-only folder or file system: serve what is there, write nothing
                    self._conn, self._pid = self._open(readonly=True), os.getpid()
                except (sqlite3.Error, OSError) as exc2:
                    self.fault("open", exc2)
                    return None
                self.fault("write", exc)
        return self._conn

    def _readers(self) -> list[tuple[Path, sqlite3.Connection]]:
        """This process's read-only, immutable connections to the other databases of the folder (found once)."""
        if self._others is not None and self._others_pid == os.getpid():
            return self._others
        if self._others is not None:
            _FORKED_AWAY.extend(c for _, c in self._others)
        self._others, self._others_pid = [], os.getpid()
        for path in sqlite_store.databases(self.root):
            if path.name == self.path.name:
                continue
            try:
                conn = self._open(path=path, immutable=True)
                if conn.execute("SELECT 1 FROM features LIMIT 1").fetchone() is None:
                    conn.close()  # an empty database costs a look-up per miss and serves nothing
                    continue
            except (sqlite3.Error, OSError) as exc:
                log.debug("feature cache: not reading %s (%s)", path, exc)
                continue
            self._others.append((path, conn))
        return self._others

    def _read_others(self, keys: Sequence[str], out: dict[str, "torch.Tensor"]) -> None:
        """Fill ``out`` with what the other databases hold of ``keys``; one that fails to read is dropped (another
        rank may be writing it: a miss, not damage)."""
        for path, conn in list(self._readers()):
            missing = [k for k in keys if k not in out]
            if not missing:
                return
            try:
                rows = sqlite_store.read_rows(conn, missing)
            except sqlite3.Error as exc:
                log.debug("feature cache: stopped reading %s (%s)", path, exc)
                self._others.remove((path, conn))
                conn.close()
                continue
            for key, dtype, shape, crc, data in rows:
                tensor = encoding.decode(key, dtype, shape, crc, data)
                if tensor is not None and key in missing:
                    out[key] = tensor

    def usable(self) -> bool:
        """Open the cache now (in the main process, before any worker starts); False after a fault."""
        return self._db() is not None

    def fault(self, what: str, exc: BaseException) -> None:
        """Turn the cache (or only its writes) off and report it once: which file, what failed, how to fix it."""
        rest = "without writing to it" if what == "write" else "without it"
        msg = (f"feature cache {self.path}: {what} failed ({type(exc).__name__}: {exc}); the run continues "
               f"{rest} (scores are unaffected): {advice(self.root, exc, self.path.name)}")
        if os.getpid() == self._owner:
            self.absorb([(what, msg)])
        elif self._disable(what, msg):
            self._unsent.append((what, msg))

    def _disable(self, what: str, msg: str) -> bool:
        """Stop writing (a write fault) or using the cache at all; True the first time ``what`` failed."""
        with self._lock:
            self.writable = False
            if what != "write":
                self.readable = False
            first = what not in self.faults
            self.faults.setdefault(what, msg)
        return first

    def take_unsent(self) -> list[tuple[str, str]]:
        """Faults met in this (worker) process since the last call, for the main process to report."""
        out, self._unsent = self._unsent, []
        return out

    def absorb(self, faults: Iterable[tuple[str, str]]) -> None:
        """Report faults (this process's, or those a DataLoader worker sent back) once each, and stop
        using the cache accordingly."""
        for what, msg in faults:
            if self._disable(what, msg):
                log.warning(msg)

    # -- reading and writing -----------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> dict[str, "torch.Tensor"]:
        """The entries of ``keys`` that exist and decode intact (anything else, or a failing cache, is a miss)."""
        if not keys or not self.readable:
            return {}
        db = self._db()
        if db is None:
            return {}
        try:
            rows = sqlite_store.read_rows(db, keys)
        except sqlite3.Error as exc:
            self.fault("read", exc)
            return {}
        out = {}
        for key, dtype, shape, crc, data in rows:
            tensor = encoding.decode(key, dtype, shape, crc, data)
            if tensor is not None:
                out[key] = tensor
        if len(out) < len(keys):
            self._read_others(keys, out)
        return out

    def put_many(self, items: Iterable[tuple[str, str, str, "torch.Tensor"]]) -> None:
        """Store (key, feature name, backbone identity, tensor) entries now, in one transaction."""
        db = self._db() if self.writable else None
        rows = [encoding.encode_row(k, f, b, t) for k, f, b, t in items] if db is not None else []
        if not rows:
            return
        try:
            sqlite_store.write_rows(db, rows)
        except (sqlite3.Error, OSError) as exc:
            self.fault("write", exc)
            return
        self.stored += len(rows)

    def store(self, keys: Sequence[str], feature: str, backbone: str, values: "torch.Tensor",
              narrow: "torch.dtype | None" = None) -> None:
        """Queue ``values[j]`` under ``keys[j]`` for the background writer (blocks while the queue is full).
        With ``narrow`` (fp16/bf16), each entry is stored in that dtype when that loses no bit of it."""
        if not keys or not self.writable:
            return
        if os.getpid() != self._owner:  # no writer threads in forked workers
            self.put_many(encoding.encode_batch(keys, feature, backbone, values, narrow))
            return
        if self._writer is None:
            self._writer = Writer(self)
        self._writer.put((list(keys), feature, backbone, values, narrow))

    def flush(self) -> None:
        """Wait until every queued entry is committed (or dropped after a fault); the writer thread ends."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.finish()

    def close(self) -> None:
        self.flush()
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        if self._others is not None and self._others_pid == os.getpid():
            for _, conn in self._others:
                conn.close()
        self._others = None

    # -- maintenance (``sidbench cache info|clear``) -------------------------------------------
    def files(self) -> list[Path]:
        """The databases (single-process file and shards), their WAL and shared-memory files, and old-format
        databases, where they exist."""
        return cache_files(self.root)

    def info(self) -> dict:
        """Location, entry count, size on disk, entries/bytes per (backbone, feature) summed over the databases
        (the single-process file and the torchrun shards), and any damage."""
        return cache_info(self.root, self.path)

    def clear(self, backbone: str | None = None) -> Cleared:
        """Delete every entry (or one backbone identity's) from every database, shards included; a damaged
        database (and old-format ones, on a full clear) is removed as a file."""
        return clear_cache(self.root, backbone)


@dataclass(frozen=True)
class CacheLookup:
    """Picklable: what a DataLoader worker needs to key and fetch the cached features of one image."""

    cache: FeatureCache
    context: CacheContext
    names: tuple[str, ...]

    def keys(self, content: str, record: "Record") -> dict[str, str]:
        """Feature name -> entry key for an image whose bytes hash to ``content``."""
        return feature_keys(self.context, content, record, self.names)

    def fetch(self, keys: dict[str, str]) -> dict[str, "torch.Tensor"] | None:
        """All requested features, or None when any is missing (or the cache failed: a miss, never an error)."""
        found = self.cache.get_many(list(keys.values()))
        if len(found) < len(keys):
            return None
        return {n: found[k] for n, k in keys.items()}
