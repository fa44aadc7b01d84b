"""The background writer: cache writes off the hot path, with bounded memory.

:meth:`FeatureCache.store` hands each batch to one thread through a queue of at most ``WRITE_QUEUE``
batches (the producer blocks while it is full, so the cache never holds back more than that). The thread
encodes the batches and commits as many as fit in ``TXN_BYTES`` per transaction; ``finish`` (called by
:meth:`FeatureCache.flush` at the end of every extraction pass) waits until all are committed, folds the WAL
into the database file, and re-raises any bug met in the thread. A cache fault (full disk, read-only file)
is not a bug: it is reported once through the cache and the remaining batches are dropped.
"""
from __future__ import annotations

import queue
import sqlite3
import threading
from typing import TYPE_CHECKING

from . import encoding, store

if TYPE_CHECKING:
    from .features import FeatureCache

WRITE_QUEUE = 8  # batches waiting for the writer thread: bounds the memory the cache holds back
TXN_BYTES = 64 << 20  # one transaction commits up to this many queued bytes

_STOP = object()


class Writer:
    """The background writer: a bounded queue of batches, committed in transactions of up to ``TXN_BYTES``."""

    def __init__(self, cache: "FeatureCache"):
        self.cache = cache
        self.error: BaseException | None = None  # a bug in the writer: re-raised by finish(), in the caller's thread
        self.queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.thread = threading.Thread(target=self._run, name="sidbench-cache-writer", daemon=True)
        self.thread.start()

    def put(self, item: tuple) -> None:
        """Queue one batch ``(keys, feature, backbone, values, narrow)``; blocks while the queue is full."""
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
            db = db or store.open_database(self.cache.path)
            rows = [r for b in batches for r in encoding.encode_batch(*b)]
            store.write_rows(db, rows)
            self.cache.stored += len(rows)
        except (sqlite3.Error, OSError) as exc:
            self.cache.fault("write", exc)
        return db


def _nbytes(item: object) -> int:
    return 0 if item is _STOP else item[3].element_size() * item[3].numel()  # type: ignore[index]
