"""The on-disk feature cache: backbone features keyed by everything that determines them.

One entry is one named feature of one image. Its key hashes the backbone identity (architecture
+ weights), the numerics (device kind, precision, compiled or not, backbone batch size), the
preprocessing protocol (size, mean, std), the perturbation, the augmented view (augment name, view,
seed) and the SHA-256 of the image file's bytes, so a changed byte or setting can never be served a
stale entry. Entries are stored per feature name: a detector that needs another feature computes only
that, and every detector and run over the same images shares the rest.

Storage is one SQLite database in WAL mode (``$SIDBENCH_CACHE/features/features-v2.sqlite``): each
transaction writes whole entries, so a process killed at any moment (SIGKILL included) leaves every
entry whole or absent, and readers (DataLoader workers, other ranks, other runs) never see a
half-written one. Each entry records its torch dtype (features computed in fp16/bf16 on a GPU are
stored in that precision, half the bytes of fp32; fp32 on CPU) and a CRC-32 of its key, dtype, shape
and bytes: a blob damaged on disk is a miss, never served. One file per entry with tmp+rename would be
as safe but costs an inode and a directory walk per image; SQLite keeps it one file with indexed
look-ups. Keep the folder on a local disk: SQLite's locking is not reliable over NFS.

Under ``torchrun`` each rank writes its own shard, ``features-v2.rank<R>.sqlite`` (R the global rank), and no
other process ever writes it, so no lock is shared between machines even when the folder is on a shared file
system. Every process reads its own database first and then, for what it misses, every other database in the
folder (the single-process file and the shards), opened read-only and ``immutable`` (no lock, no shared-memory
index: both are unreliable across machines). What another rank is writing at that moment may be invisible or
read torn: the CRC makes that a miss, and a database that fails to read is dropped for the rest of the process,
never reported as damage. A single process keeps writing ``features-v2.sqlite`` and reads the shards too, so a
distributed run's features serve a later single run and the other way round.

Writes happen off the hot path (:meth:`FeatureCache.store`): a background thread takes batches from a
bounded queue and commits them in large transactions. They are flushed at the end of every extraction
pass (:meth:`FeatureCache.flush`), not before each chunk's scores are written, and that is on purpose:
the cache is an optimisation and scores are the data. An entry always holds exactly the values the
scoring path used, so whether a killed run had committed an image's features or not, the resumed run
computes (or is served) the same bits; a kill loses at most the queued entries, which cost only
recomputation. What resume needs is that committed entries are whole and correct (transactions and
checksums) and that ``scores.csv`` rows are fsynced before they count as done (``ScoreLog``).

A cache that cannot be opened, read or written (damaged file, read-only or full disk, a file where
its folder should be) is reported once, in one line, and the run goes on without it (reads stay on
when only writing fails): no image is ever skipped because of the cache.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import torch

    from ..api.records import Record

FORMAT = 2  # bump when anything that shapes cached features changes meaning (2: blur into uint8, torchvision RRC fallback)
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
DTYPES = ("float32", "float16", "bfloat16", "float64")  # what an entry may hold (torch dtype names)
WRITE_QUEUE = 8  # batches waiting for the writer thread: bounds the memory the cache holds back
TXN_BYTES = 64 << 20  # one transaction commits up to this many queued bytes
PAGE_SIZE = 16384  # new databases: fewer overflow pages per feature blob than SQLite's default 4096

log = logging.getLogger("sidbench.cache")
_FORKED_AWAY: list = []  # connections inherited through fork(): never used or closed in the child


def default_cache_root() -> Path:
    from ..api.paths import cache_dir

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


def text_key(identity: str, numerics: str, prompt: str) -> str:
    """The entry key of one prompt's text embedding (cached like image features, so warm runs need no backbone)."""
    return hashlib.sha256(json.dumps([FORMAT, "text", identity, numerics, prompt]).encode()).hexdigest()


def _connect(path: Path, readonly: bool = False, immutable: bool = False) -> sqlite3.Connection:
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


def _read_rows(db: sqlite3.Connection, keys: Sequence[str]) -> list[tuple]:
    """The stored rows of ``keys`` (the one read call; a test patches it to simulate a damaged page)."""
    marks = ",".join("?" * len(keys))
    return db.execute(f"SELECT key, dtype, shape, crc, data FROM features WHERE key IN ({marks})", list(keys)).fetchall()


def _write_rows(db: sqlite3.Connection, rows: list[tuple]) -> None:
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
        self._writer: _Writer | None = None
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
        path = path or self.path
        if immutable:
            conn = _connect(path, immutable=True)
        elif readonly:
            try:
                conn = _connect(path, readonly=True)
                conn.execute("PRAGMA schema_version").fetchone()  # a WAL database opens lazily: read now
            except sqlite3.Error:
                if not on_read_only_filesystem(path):
                    raise
                conn = _connect(path, immutable=True)  # no WAL index can be made there, and no one writes
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            conn = _connect(path)
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
                    self._fault("open", exc)
                    return None
                try:  # a read-only folder or file system: serve what is there, write nothing
                    self._conn, self._pid = self._open(readonly=True), os.getpid()
                except (sqlite3.Error, OSError) as exc2:
                    self._fault("open", exc2)
                    return None
                self._fault("write", exc)
        return self._conn

    def _readers(self) -> list[tuple[Path, sqlite3.Connection]]:
        """This process's read-only, immutable connections to the other databases of the folder (found once)."""
        if self._others is not None and self._others_pid == os.getpid():
            return self._others
        if self._others is not None:
            _FORKED_AWAY.extend(c for _, c in self._others)
        self._others, self._others_pid = [], os.getpid()
        for path in databases(self.root):
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
                rows = _read_rows(conn, missing)
            except sqlite3.Error as exc:
                log.debug("feature cache: stopped reading %s (%s)", path, exc)
                self._others.remove((path, conn))
                conn.close()
                continue
            for key, dtype, shape, crc, data in rows:
                tensor = _decode(key, dtype, shape, crc, data)
                if tensor is not None and key in missing:
                    out[key] = tensor

    def usable(self) -> bool:
        """Open the cache now (in the main process, before any worker starts); False after a fault."""
        return self._db() is not None

    def _fault(self, what: str, exc: BaseException) -> None:
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
            rows = _read_rows(db, keys)
        except sqlite3.Error as exc:
            self._fault("read", exc)
            return {}
        out = {}
        for key, dtype, shape, crc, data in rows:
            tensor = _decode(key, dtype, shape, crc, data)
            if tensor is not None:
                out[key] = tensor
        if len(out) < len(keys):
            self._read_others(keys, out)
        return out

    def put_many(self, items: Iterable[tuple[str, str, str, "torch.Tensor"]]) -> None:
        """Store (key, feature name, backbone identity, tensor) entries now, in one transaction."""
        db = self._db() if self.writable else None
        rows = [_row(k, f, b, t) for k, f, b, t in items] if db is not None else []
        if not rows:
            return
        try:
            _write_rows(db, rows)
        except (sqlite3.Error, OSError) as exc:
            self._fault("write", exc)
            return
        self.stored += len(rows)

    def store(self, keys: Sequence[str], feature: str, backbone: str, values: "torch.Tensor",
              narrow: "torch.dtype | None" = None) -> None:
        """Queue ``values[j]`` under ``keys[j]`` for the background writer (blocks while the queue is full).
        With ``narrow`` (fp16/bf16), each entry is stored in that dtype when that loses no bit of it."""
        if not keys or not self.writable:
            return
        if os.getpid() != self._owner:  # no writer threads in forked workers
            self.put_many(_split(keys, feature, backbone, values, narrow))
            return
        if self._writer is None:
            self._writer = _Writer(self)
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

    # -- maintenance -------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """The databases (single-process file and shards), their WAL and shared-memory files, and old-format
        databases, where they exist."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in databases(self.root)] + list(OLD_DB_NAMES)
        return [self.root / (n + s) for n in names for s in ("", "-wal", "-shm") if (self.root / (n + s)).is_file()]

    def info(self) -> dict:
        """Location, entry count, size on disk, entries/bytes per (backbone, feature) summed over the databases
        (the single-process file and the torchrun shards), and any damage."""
        old = [str(self.root / n) for n in OLD_DB_NAMES if self.root.is_dir() and (self.root / n).is_file()]
        size = sum(f.stat().st_size for f in self.files())
        dbs = databases(self.root) if self.root.is_dir() else []
        out = {"path": str(self.path), "exists": bool(dbs), "bytes_on_disk": size, "entries": 0,
               "databases": [str(p) for p in dbs], "groups": [], "damaged": None, "unreadable": None, "old_files": old}
        if self.root.exists() and not self.root.is_dir():
            out["damaged"] = advice(self.root, NotADirectoryError())
            return out
        totals: dict[tuple[str, str], list[int]] = {}
        for path in dbs:
            try:
                db = self._open(readonly=True, path=path)
                try:
                    rows = db.execute("SELECT backbone, feature, COUNT(*), SUM(LENGTH(data)) FROM features "
                                      "GROUP BY backbone, feature").fetchall()
                finally:
                    db.close()
            except sqlite3.Error as exc:
                if is_damage(exc):
                    out["damaged"] = out["damaged"] or f"{path.name}: {type(exc).__name__}: {exc}"
                else:
                    out["unreadable"] = out["unreadable"] or (f"{path.name}: {type(exc).__name__}: {exc}; "
                                                              f"{advice(self.root, exc, path.name)}")
                continue
            for b, f, n, s in rows:
                t = totals.setdefault((b, f), [0, 0])
                t[0] += n
                t[1] += s or 0
        out["groups"] = [{"backbone": b, "feature": f, "entries": n, "bytes": s}
                         for (b, f), (n, s) in sorted(totals.items())]
        out["entries"] = sum(g["entries"] for g in out["groups"])
        return out

    def clear(self, backbone: str | None = None) -> "Cleared":
        """Delete every entry (or one backbone identity's) from every database, shards included; a damaged
        database (and old-format ones, on a full clear) is removed as a file."""
        from ..api.errors import SidbenchError

        if self.root.exists() and not self.root.is_dir():
            raise SidbenchError(f"feature cache: {advice(self.root, NotADirectoryError())} (not removed: "
                                "sidbench only deletes its own files)")
        result = Cleared()
        doomed: list[Path] = []
        for path in databases(self.root):
            try:
                result.entries += self._delete(backbone, path)
            except (sqlite3.DatabaseError, OSError) as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise SidbenchError(f"feature cache {path} is in use by another process ({exc}); "
                                        "try again when it has finished") from None
                if not is_damage(exc):  # a healthy database on a full, read-only or blocked disk stays
                    raise SidbenchError(f"feature cache {path}: clear failed ({type(exc).__name__}: {exc}); "
                                        f"{advice(self.root, exc, path.name)}") from None
                result.damaged = result.damaged or f"{path.name}: {type(exc).__name__}: {exc}"
                doomed += [self.root / (path.name + s) for s in ("", "-wal", "-shm")]
        if backbone is None:
            doomed += [self.root / (n + s) for n in OLD_DB_NAMES for s in ("", "-wal", "-shm")]
        for f in doomed:
            if f.is_file():
                f.unlink()
                result.removed.append(str(f))
        return result

    def _delete(self, backbone: str | None, path: Path) -> int:
        db = self._open(path=path)
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


@dataclass
class Cleared:
    """What ``cache clear`` did: entries deleted, files removed, and why the database was removed whole."""

    entries: int = 0
    removed: list[str] = field(default_factory=list)
    damaged: str | None = None


_STOP = object()


class _Writer:
    """The background writer: a bounded queue of batches, committed in transactions of up to ``TXN_BYTES``."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.error: BaseException | None = None  # a bug in the writer: re-raised by finish(), in the caller's thread
        self.queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.thread = threading.Thread(target=self._run, name="sidbench-cache-writer", daemon=True)
        self.thread.start()

    def put(self, item: tuple) -> None:
        self.queue.put(item)

    def finish(self) -> None:
        self.queue.put(_STOP)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        db, stop = None, False
        while not stop:
            items = [self.queue.get()]
            size = _nbytes(items[0])
            while size < TXN_BYTES and items[-1] is not _STOP:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
                size += _nbytes(items[-1])
            stop = items[-1] is _STOP
            batches = [i for i in items if i is not _STOP]
            if batches and self.cache.writable and self.error is None:
                try:
                    db = self._commit(db, batches)
                except BaseException as exc:  # noqa: BLE001 - not a cache fault: a bug, surfaced by finish()
                    self.error = exc
        if db is not None:
            try:  # fold the WAL into the database file: readers on other machines (immutable) see only that
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # a later writer or the last connection to close checkpoints it
            db.close()

    def _commit(self, db: sqlite3.Connection | None, batches: list[tuple]) -> sqlite3.Connection | None:
        try:
            db = db or self.cache._open()
            rows = [r for b in batches for r in _split(*b)]
            _write_rows(db, rows)
            self.cache.stored += len(rows)
        except (sqlite3.Error, OSError) as exc:
            self.cache._fault("write", exc)
        return db


def _nbytes(item: object) -> int:
    return 0 if item is _STOP else item[3].element_size() * item[3].numel()  # type: ignore[index]


def _split(keys: Sequence[str], feature: str, backbone: str, values: "torch.Tensor",
           narrow: "torch.dtype | None") -> list[tuple]:
    """Encoded rows of one batch, each in ``narrow`` where that is exact (else as computed)."""
    import torch

    v = values.detach().cpu()
    exact = None
    if narrow is not None and v.dtype == torch.float32 and len(v):
        small = v.to(narrow)
        wide = small.float()
        exact = [True] * len(v) if torch.equal(wide, v) else (wide == v).reshape(len(v), -1).all(1).tolist()
    return [_row(k, feature, backbone, small[j] if exact and exact[j] else v[j]) for j, k in enumerate(keys)]


def _row(key: str, feature: str, backbone: str, t: "torch.Tensor") -> tuple:
    """(key, feature, backbone, dtype, shape, crc, data) of one entry; the bytes are the tensor's own (no copy)."""
    import torch

    t = t.detach().cpu().contiguous()
    dtype, shape = str(t.dtype).removeprefix("torch."), json.dumps(list(t.shape))
    data = t.reshape(-1).view(torch.uint8).numpy()
    return key, feature, backbone, dtype, shape, _crc(key, dtype, shape, data), memoryview(data)


def _crc(key: str, dtype: str, shape: str, data) -> int:
    return zlib.crc32(data, zlib.crc32(f"{key}|{dtype}|{shape}".encode()))


def _decode(key: str, dtype: str, shape: str, crc: int, data: bytes) -> "torch.Tensor | None":
    """The stored tensor, widened to fp32 when stored in half precision; None for anything not intact."""
    import torch

    if dtype not in DTYPES or not isinstance(data, bytes):
        return None
    try:
        dims = [int(d) for d in json.loads(shape)]
    except (ValueError, TypeError):
        return None
    dt = getattr(torch, dtype)
    n = 1
    for d in dims:
        n *= d
    if min(dims, default=1) < 0 or len(data) != n * dt.itemsize or _crc(key, dtype, shape, data) != crc:
        return None  # never serve a torn, damaged or foreign blob
    t = torch.frombuffer(bytearray(data), dtype=dt) if n else torch.empty(0, dtype=dt)
    t = t.reshape(dims)
    return t.float() if dt in (torch.float16, torch.bfloat16) else t


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

    @functools.cached_property
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
        base = f"{self.context.digest}|{content}|{record.key if self.context.per_record else ''}"
        return {n: hashlib.sha256(f"{base}|{n}".encode()).hexdigest() for n in self.names}

    def fetch(self, keys: dict[str, str]) -> dict[str, "torch.Tensor"] | None:
        """All requested features, or None when any is missing (or the cache failed: a miss, never an error)."""
        found = self.cache.get_many(list(keys.values()))
        if len(found) < len(keys):
            return None
        return {n: found[k] for n, k in keys.items()}
